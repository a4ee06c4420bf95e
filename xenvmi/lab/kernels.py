"""Guest kernels of other Debian releases for the lab, fetched on the host.

The lab's first guests boot dom0's own kernel (Debian 12's 6.1). Operators run older and
newer ones, and xenvmi must read them with no configuration, so the lab also boots
Debian 11's 5.10 and Debian 13's 6.12 kernels, exactly as Debian ships them: the host
downloads each release's current ``linux-image-amd64`` dependency with a throwaway apt
state (nothing changes in the host's own apt configuration), keeps its vmlinuz and the
``dummy`` module the guest's init loads, and `xenvmi lab up` copies them to dom0, where
make-guests.sh builds each kernel's initramfs next to it. They are guest payload, not part
of dom0's image: a new kernel does not rebuild the image.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xenvmi.errors import LabError
from xenvmi.lab.paths import LabPaths

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
#: Where dom0 keeps them: make-guests.sh builds a guest payload for each directory.
REMOTE_DIR = "/var/lib/xenvmi-lab/kernels"


@dataclass(frozen=True)
class GuestKernel:
    name: str  # the directory name, and the xl configs' @KERNEL@ tag
    release: str  # Debian's codename
    what: str

    def sources(self) -> str:
        return f"deb {MIRROR} {self.release} main\ndeb {SECURITY} {self.release}-security main\n"


KERNELS = (
    GuestKernel("deb11", "bullseye", "Debian 11 (Linux 5.10)"),
    GuestKernel("deb13", "trixie", "Debian 13 (Linux 6.12)"),
)


def _apt(state: Path, sources: str, arch: str = "amd64") -> list[str]:
    """apt options for a private state directory of one release and architecture (the
    host's apt and dpkg architectures untouched); ``sources``: its sources.list."""
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "etc" / "sources.list").write_text(sources)
    return [
        "-o",
        f"Dir::State::Lists={state / 'lists'}",
        "-o",
        f"Dir::Etc::SourceList={state / 'etc' / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::Cache={state / 'cache'}",
        "-o",
        "Dir::State::status=/dev/null",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        f"APT::Architecture={arch}",
        "-o",
        "Acquire::Retries=3",
    ]


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if res.returncode != 0:
        raise LabError(f"{' '.join(argv[:2])} failed: {res.stderr.strip()[-400:]}")
    return res.stdout


#: The Ubuntu archive's signing keys (2012 and 2018), by fingerprint: a Debian host has
#: no Ubuntu keyring, so the one Ubuntu ships is fetched unverified and only these keys,
#: which their fingerprints authenticate, are kept from it.
UBUNTU_KEYS = (
    "790BC7277767219C42C86F933B4FE6ACC0B21F32",
    "F6ECB3762474EDA9D21B7022871920D1991BC93C",
)


def ubuntu_keyring(state: Path, mirror: str, release: str, arch: str) -> Path:
    """A keyring of UBUNTU_KEYS (apt's ``signed-by``) for an Ubuntu release's archive,
    made once in its apt state."""
    out = state / "ubuntu-archive-keys.gpg"
    if out.exists():
        return out
    if not shutil.which("gpg"):
        raise LabError("fetching Ubuntu's kernel needs gpg (to check the archive's keys)")
    boot = state.with_name(state.name + "-keyring")
    opts = _apt(boot, f"deb {mirror} {release} main\n", arch=arch)
    opts += ["-o", "Acquire::AllowInsecureRepositories=true"]
    _run(["apt-get", *opts, "update"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _run(["apt-get", *opts, "download", "--allow-unauthenticated", "ubuntu-keyring"], cwd=work)
        deb = next(work.glob("ubuntu-keyring_*.deb"), None)
        if deb is None:
            raise LabError("apt-get download ubuntu-keyring gave no .deb")
        _run(["dpkg-deb", "-x", str(deb), str(work / "x")])
        home = work / "gnupg"
        home.mkdir(mode=0o700)
        gpg = ["gpg", "--batch", "--homedir", str(home)]
        _run([*gpg, "--import", str(work / "x/usr/share/keyrings/ubuntu-archive-keyring.gpg")])
        listed = _run([*gpg, "--with-colons", "--fingerprint", *UBUNTU_KEYS])
        have = {ln.split(":")[9] for ln in listed.splitlines() if ln.startswith("fpr:")}
        if not set(UBUNTU_KEYS) <= have:
            raise LabError(
                f"ubuntu-keyring lacks the archive keys {sorted(set(UBUNTU_KEYS) - have)}"
            )
        keys = subprocess.run([*gpg, "--export", *UBUNTU_KEYS], capture_output=True, timeout=60)
        if keys.returncode != 0 or not keys.stdout:
            raise LabError(f"gpg --export failed: {keys.stderr.decode(errors='replace')[-300:]}")
        state.mkdir(parents=True, exist_ok=True)
        out.write_bytes(keys.stdout)
    shutil.rmtree(boot, ignore_errors=True)
    return out


def image_package(show: str, arch: str = "amd64") -> str:
    """The versioned image package ``linux-image-ARCH``'s record depends on."""
    m = re.search(rf"^Depends:.*?\b(linux-image-[0-9][^\s,(]*-{arch})\b", show, re.M)
    if not m:
        raise LabError(f"linux-image-{arch} names no versioned kernel package")
    return m.group(1)


def dummy_module(tree: Path, kver: str, package: str) -> Path:
    """The ``dummy`` module (the guest's init loads it) in an unpacked kernel package."""
    found = sorted(
        f
        for lib in ("lib", "usr/lib")  # usr-merged since Debian 13
        for f in (tree / lib / "modules" / kver).rglob("dummy.ko*")
    )
    if not found:
        raise LabError(f"{package} holds no dummy.ko for {kver}")
    return found[0]


def fetch_one(paths: LabPaths, kernel: GuestKernel, log=print) -> Path:
    """The kernel's directory on the host (vmlinuz, dummy.ko, kernel-release), fetched
    once and kept; apt's lists are refreshed only when the directory is missing."""
    out = paths.root / "kernels" / kernel.name
    if (out / "kernel-release").exists() and (out / "vmlinuz").exists():
        return out
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise LabError("fetching guest kernels needs apt-get and dpkg-deb (Debian/Ubuntu)")
    log(f"fetching the {kernel.what} guest kernel from Debian's archive")
    opts = _apt(paths.root / "kernels" / "apt" / kernel.release, kernel.sources())
    _run(["apt-get", *opts, "update"])
    package = image_package(_run(["apt-cache", *opts, "show", "linux-image-amd64"]))
    with tempfile.TemporaryDirectory(dir=paths.root) as tmp:
        work = Path(tmp)
        _run(["apt-get", *opts, "download", package], cwd=work)
        deb = next(work.glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(work / "x")])
        vmlinuz = sorted((work / "x" / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise LabError(f"{deb.name} holds no /boot/vmlinuz")
        kver = vmlinuz[0].name.removeprefix("vmlinuz-")
        dummy = dummy_module(work / "x", kver, deb.name)
        publish(out, {"vmlinuz": vmlinuz[0], dummy.name: dummy}, kver, deb.name)
    log(f"{kernel.name}: {kver} ({package})")
    return out


def publish(out: Path, files: dict[str, Path | bytes], kver: str, package: str) -> None:
    """Write a kernel's directory (``files``: name -> a file to copy or the bytes, plus
    its ``kernel-release`` and ``package``) whole or not at all: staged beside it, then
    renamed over it, so that a fetch interrupted half way leaves no directory a later
    run would take for complete."""
    part = out.with_name(out.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    for name, source in files.items():
        if isinstance(source, bytes):
            (part / name).write_bytes(source)
        else:
            shutil.copy(source, part / name)
    (part / "kernel-release").write_text(kver + "\n")
    (part / "package").write_text(package + "\n")
    shutil.rmtree(out, ignore_errors=True)
    part.rename(out)


def debug_vmlinux(paths: LabPaths, kernel: GuestKernel, log=print) -> Path:
    """The vmlinux with DWARF of the exact kernel the lab's ``kernel`` guest boots, from
    Debian's ``linux-image-*-dbg`` (an 800 MB download, 5.6 GB unpacked, of which only the
    vmlinux is kept, outside the kernel directory dom0 gets). Fetched once and kept."""
    guest = fetch_one(paths, kernel, log)
    out = paths.root / "kernels-dbg" / kernel.name / "vmlinux"
    if out.exists():
        return out
    name, version, _ = (guest / "package").read_text().strip().split("_")
    kver = (guest / "kernel-release").read_text().strip()
    log(f"fetching {name}-dbg {version} (about 800 MB) from Debian's archive")
    opts = _apt(paths.root / "kernels" / "apt" / kernel.release, kernel.sources())
    _run(["apt-get", *opts, "update"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        _run(["apt-get", *opts, "download", f"{name}-dbg={version}"], cwd=work, timeout=3600)
        deb = next(work.glob("*.deb"))
        member = f"./usr/lib/debug/boot/vmlinux-{kver}"
        part = work / "vmlinux"
        # The vmlinux comes early in the package's tar: stream it, stop there.
        unpack = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            with tarfile.open(fileobj=unpack.stdout, mode="r|") as tar:
                for info in tar:
                    if info.name == member and info.isfile():
                        src = tar.extractfile(info)
                        assert src is not None
                        with part.open("wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                        break
        finally:
            unpack.kill()
            unpack.wait()
        if not part.exists():
            raise LabError(f"{deb.name} holds no {member}")
        part.rename(out)
    log(f"{kernel.name}: {out} ({out.stat().st_size >> 20} MiB)")
    return out


def fetch(paths: LabPaths, log=print) -> list[Path]:
    return [fetch_one(paths, k, log) for k in KERNELS]


def bundle(dirs: list[Path]) -> tuple[bytes, str]:
    """A tar of the kernel directories and its digest (dom0 keeps the digest it got)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in sorted(dirs):
            for f in sorted(d.iterdir()):
                info = tar.gettarinfo(str(f), arcname=f"{d.name}/{f.name}")
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                with open(f, "rb") as fh:
                    tar.addfile(info, fh)
    blob = buf.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()
