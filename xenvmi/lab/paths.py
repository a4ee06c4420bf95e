"""Where the lab keeps its images, its running VM's state and its SSH key."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from xenvmi.errors import LabError

DATA = Path(__file__).with_name("data")
#: What the lab guests are made of (their initramfs and xl configs): rebuilt in dom0 from the
#: synced tree when these change (xenvmi.lab.dom0), so they are not part of the image recipe.
GUEST_PAYLOAD = ("make-guests.sh", "guest-init.sh", "guests")


def is_guest_payload(path: Path, data: Path = DATA) -> bool:
    return path.relative_to(data).parts[0] in GUEST_PAYLOAD


def guest_payload_digest(data: Path = DATA) -> str:
    """SHA-256 of the guest payload's files, names included."""
    import hashlib

    h = hashlib.sha256()
    for part in GUEST_PAYLOAD:
        root = data / part
        for f in sorted([root] if root.is_file() else root.rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(data)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def payload_digest(lab_dir: Path, data: Path = DATA) -> str:
    """What a lab directory's guest payload is made from: the guest files of ``data``,
    and the other Debian releases' kernels in ``lab_dir``/kernels (their bundle's digest,
    written there by the image build or `xenvmi lab up`)."""
    import hashlib

    want = guest_payload_digest(data)
    try:
        kernels = (Path(lab_dir) / "kernels" / ".digest").read_text().strip()
    except FileNotFoundError:
        return want
    return hashlib.sha256(f"{want} kernels {kernels}".encode()).hexdigest()


DEFAULT_PORT = 2222


@dataclass
class RunState:
    """What `lab up` started: read by every other lab command."""

    pid: int
    port: int
    image: str
    started: float
    release: str = "bookworm"  # a state written before releases is the default's
    arch: str = "amd64"  # and before architectures, amd64


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @classmethod
    def default(cls) -> LabPaths:
        root = os.environ.get("XENVMI_LAB_DIR") or Path.home() / ".cache" / "xenvmi" / "lab"
        return cls(Path(root))

    @property
    def key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def images(self) -> Path:
        return self.root / "images"

    def image(self, digest: str) -> Path:
        return self.images / digest

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def serial_log(self) -> Path:
        return self.run / "serial.log"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    def load_state(self) -> RunState | None:
        try:
            return RunState(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise LabError(
                f"corrupt lab state {self.state_file}: {exc}; run `xenvmi lab down`"
            ) from None

    def save_state(self, state: RunState) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(state)))
