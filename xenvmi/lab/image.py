"""Build the lab's dom0 disk image: debootstrap, then the shared provisioning script in a chroot.

The image is cached under a digest of everything that shapes it (the provisioning files, the
SSH key it trusts, this module's format number), so a second `lab up` reuses it. The xenvmi
source is not part of the digest (it is synced into dom0 at every start instead), but
the Python requirements setup.cfg gives dom0 are: their wheels are baked into the image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from xenvmi.errors import LabError, PermissionDenied, Unavailable
from xenvmi.lab import integrity, kernels, releases, services
from xenvmi.lab.paths import DATA, LabPaths, is_guest_payload
from xenvmi.lab.releases import Release
from xenvmi.lab.remote import source_root, source_tarball

FORMAT = 3  # 2: the other releases' guest kernels are in the image; 3: the integrity input
SUITE = releases.DEFAULT.suite
MIRROR = os.environ.get("XENVMI_LAB_MIRROR", "http://deb.debian.org/debian")
DISK_SIZE = "10G"
MIN_FREE_BYTES = 12 * 1024**3
#: setup.cfg extras provision.sh installs in dom0 (``pip install -e SRC[dom0,test]``).
DOM0_EXTRAS = ("dom0", "test")
BUILD_WHEELS = ("setuptools>=64", "wheel")


def dom0_requirements(setup_cfg: Path, release: Release = releases.DEFAULT) -> list[str]:
    """What dom0's offline pip install needs, read from setup.cfg so the wheels downloaded
    on the host (dom0 cannot reach PyPI) always match what provision.sh installs; less what
    the release has no wheel for."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    lines = cfg["options"].get("install_requires", "").splitlines()
    for extra in DOM0_EXTRAS:
        lines += cfg["options.extras_require"].get(extra, "").splitlines()
    reqs = [ln.split("#", 1)[0].strip() for ln in lines]
    return sorted({r for r in reqs if r and release.keeps(r)}) + list(BUILD_WHEELS)


HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
}
#: What the test suite uses on the host beside the lab (path -> Debian package): Xen's
#: public headers (the ABI tables are tested against them), BTF tools the BTF reader is
#: compared with, tmux for the TUI, vagrant and its libvirt provider to validate the
#: Vagrant lab's file (provider settings included), Prometheus to scrape the exporter
#: (its packaged service is never started: xenvmi.lab.services), readelf for a vmlinux's
#: build ID, and QEMU's arm64 system emulator that boots Debian's arm64 kernels for the
#: arm64 guest-view tests (xenvmi.lab.arm64mem, tests/lab_host/test_arm64_guest.py).
TEST_PACKAGES = {
    "/usr/bin/qemu-system-aarch64": "qemu-system-arm",
    "/usr/bin/prometheus": "prometheus",
    "/usr/bin/readelf": "binutils",
    "/usr/include/xen/errno.h": "libxen-dev",
    "/usr/sbin/bpftool": "bpftool",
    "/usr/bin/pahole": "pahole",
    "/usr/bin/tmux": "tmux",
    "/usr/bin/vagrant": "vagrant",
    "/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json": "vagrant-libvirt",
}


def missing_host_packages(with_tests: bool = True) -> list[str]:
    missing = {pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)}
    if with_tests:
        missing |= {pkg for path, pkg in TEST_PACKAGES.items() if not Path(path).exists()}
    return sorted(missing)


def install_host_packages(log=print) -> None:
    """apt-get install the host tools; what is already there is left alone."""
    if os.geteuid() != 0:
        raise PermissionDenied("installing host packages needs root: run as root or with sudo")
    if not shutil.which("apt-get"):
        raise Unavailable(
            "no apt-get here: install "
            + " ".join(missing_host_packages())
            + " with this system's package manager"
        )
    missing = missing_host_packages()
    if not missing:
        log("host packages: all present")
        return
    log(f"host packages: installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # --no-install-recommends also keeps out prometheus' recommended node exporter (a
    # second daemon on every address)
    with services.held(missing, log=log):
        for argv in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        ):
            res = subprocess.run(argv, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                raise Unavailable(
                    f"{' '.join(argv[:2])} failed: {res.stderr.strip().splitlines()[-1:]}"
                )


def _recipe_file(f: Path, release: Release) -> bytes:
    """A recipe file as the release's build uses it (provision.sh with its edits)."""
    data = f.read_bytes()
    if f == DATA / "provision.sh" and release.edits:
        data = release.render(data.decode()).encode()
    return data


def recipe_digest(paths: LabPaths, release: Release = releases.DEFAULT) -> str:
    head = f"format={FORMAT} suite={release.suite}"
    if release != releases.DEFAULT:  # the default's digest predates releases
        head += f" xen={release.xen} python={release.python}"
    h = hashlib.sha256(f"{head}\n".encode())
    for f in sorted(p for p in DATA.rglob("*") if p.is_file() and not is_guest_payload(p, DATA)):
        h.update(str(f.relative_to(DATA)).encode() + b"\0" + _recipe_file(f, release))
    h.update(paths.key.with_suffix(".pub").read_bytes())
    root = source_root()
    if root is not None:  # the wheels baked into dom0 follow setup.cfg's extras
        h.update("\n".join(dom0_requirements(root / "setup.cfg", release)).encode())
    return h.hexdigest()[:16]


def ensure_key(paths: LabPaths) -> None:
    if paths.key.exists():
        return
    paths.key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xenvmi-lab", "-f", str(paths.key)],
        check=True,
    )


def _checkout() -> Path:
    """The source checkout the lab is built from (LabError when xenvmi is installed)."""
    root = source_root()
    if root is None:
        raise LabError("building the lab needs a source checkout of xenvmi (it is synced to dom0)")
    return root


def preflight(paths: LabPaths) -> None:
    """Everything a build needs, checked up front so failures are one clear line."""
    if os.geteuid() != 0:
        raise PermissionDenied(
            "building the lab image needs root (debootstrap, chroot): run as root or with sudo"
        )
    missing = missing_host_packages(with_tests=False)
    if missing:
        raise Unavailable(f"missing host tools: apt-get install {' '.join(missing)}")
    _checkout()
    paths.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(paths.root).free
    if free < MIN_FREE_BYTES:
        raise LabError(
            f"not enough disk space in {paths.root}: {free / 1024**3:.1f} GiB free, "
            f"{MIN_FREE_BYTES / 1024**3:.0f} GiB needed (set XENVMI_LAB_DIR elsewhere)"
        )


class _Steps:
    """Progress lines with elapsed time; the full output goes to build.log."""

    def __init__(self, log_path: Path, log) -> None:
        self.log_path, self.log, self.t0 = log_path, log, time.monotonic()
        self.times: dict[str, float] = {}

    def run(self, name: str, argv: list[str], echo_prefix: str | None = None, **kw) -> None:
        self.log(f"[{time.monotonic() - self.t0:5.0f}s] {name} ...")
        start = time.monotonic()
        with open(self.log_path, "a") as out:
            out.write(f"\n### {name}: {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                **kw,
            )
            assert proc.stdout is not None
            tail: list[str] = []
            for line in proc.stdout:
                out.write(line)
                tail = (tail + [line.rstrip()])[-15:]
                if echo_prefix and line.startswith(echo_prefix):
                    self.log(f"[{time.monotonic() - self.t0:5.0f}s]   {line.strip()}")
            rc = proc.wait()
        self.times[name] = round(time.monotonic() - start, 1)
        if rc != 0:
            detail = "\n  ".join(tail)
            raise LabError(f"{name} failed (exit {rc}); last lines of {self.log_path}:\n  {detail}")


def build(paths: LabPaths, log=print, release: Release = releases.DEFAULT) -> Path:
    """Build (or reuse) the release's image; returns its directory. Images of other
    releases stay cached beside it."""
    ensure_key(paths)
    digest = recipe_digest(paths, release)
    final = paths.image(digest)
    if (final / "manifest.json").exists():
        return final
    preflight(paths)
    work = paths.images / f"{digest}.partial"
    if work.exists():
        _remove_tree(work)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    steps = _Steps(work / "build.log", log)
    log(f"building the {release.suite} lab image {digest} in {work} (log: {work / 'build.log'})")
    steps.run(
        "debootstrap",
        [
            "debootstrap",
            "--variant=minbase",
            "--include=ca-certificates",
            release.suite,
            str(rootfs),
            MIRROR,
        ],
    )
    wheels = rootfs / "opt/xenvmi/wheels"
    requirements = dom0_requirements(_checkout() / "setup.cfg", release)
    steps.run(
        "download wheels",
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "--python-version",
            release.python,
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "-d",
            str(wheels),
            *requirements,
        ],
    )
    (wheels / releases.REQUIREMENTS).write_text("\n".join(requirements) + "\n")
    _install_source(rootfs / "opt/xenvmi/src")
    provision = "/opt/xenvmi/src/xenvmi/lab/data/provision.sh"
    if release.edits:  # beside the original, so it finds make-guests.sh as it does
        provision = f"/opt/xenvmi/src/xenvmi/lab/data/provision-{release.suite}.sh"
        (rootfs / provision.lstrip("/")).write_bytes(_recipe_file(DATA / "provision.sh", release))
    # The other releases' guest kernels go in the image, so the chroot (host speed) makes
    # their initramfs and dom0 has nothing to remake on its first start.
    blob, kernels_digest = kernels.bundle(kernels.fetch(paths, log=log))
    kdir = rootfs / "var/lib/xenvmi-lab/kernels"
    kdir.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(kdir, filter="data")
    (kdir / ".digest").write_text(kernels_digest + "\n")
    # Made at host speed: in dom0 it cost about 90 s of every `lab up`.
    integrity.packed_input(rootfs / integrity.WORK.relative_to("/"))
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy(paths.key.with_suffix(".pub"), ssh_dir / "authorized_keys")
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    script = (
        "mount -t proc proc /proc && mount -t sysfs sysfs /sys && "
        f"bash {provision} --image "
        "--src /opt/xenvmi/src --wheels /opt/xenvmi/wheels"
    )
    steps.run(
        "provision (chroot)",
        ["unshare", "--mount", "--fork", "chroot", str(rootfs), "/bin/bash", "-c", script],
        echo_prefix="== provision",
        env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"),
    )
    _extract_boot(rootfs, work, release)
    steps.run(
        "mkfs.ext4",
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "xenvmi-dom0",
            "-d",
            str(rootfs),
            str(work / "disk.img"),
            DISK_SIZE,
        ],
    )
    _remove_tree(rootfs)
    (work / "manifest.json").write_text(
        json.dumps(
            {
                "digest": digest,
                "suite": release.suite,
                "xen": release.xen,
                "built": time.time(),
                "step_seconds": steps.times,
                "kernel": (work / "kernel-release").read_text().strip(),
            },
            indent=2,
        )
    )
    for old in paths.images.iterdir():
        if old.name != work.name and old.is_dir() and image_suite(old) == release.suite:
            _remove_tree(old)
    work.rename(final)
    log(f"[{time.monotonic() - steps.t0:5.0f}s] image ready: {final}")
    return final


def _install_source(dest: Path) -> None:
    root = _checkout()
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(source_tarball(root)), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")


def image_suite(image: Path) -> str | None:
    """The release a cached image was built from (None: unreadable or unfinished)."""
    try:
        return json.loads((image / "manifest.json").read_text()).get("suite")
    except (OSError, ValueError, AttributeError):
        return None


def _extract_boot(rootfs: Path, work: Path, release: Release) -> None:
    """Xen (gunzipped: QEMU's multiboot loader wants the ELF), dom0's kernel and initrd."""
    boot = rootfs / "boot"
    xen = sorted(boot.glob(f"xen-{release.xen}-*.gz"))
    kernels = sorted(boot.glob("vmlinuz-*"))
    if not xen or not kernels:
        raise LabError(f"provisioning left no Xen or kernel in {boot}")
    kver = kernels[-1].name.removeprefix("vmlinuz-")
    with gzip.open(xen[-1]) as src, open(work / "xen", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(kernels[-1], work / "vmlinuz")
    shutil.copy(boot / f"initrd.img-{kver}", work / "initrd.img")
    (work / "kernel-release").write_text(kver + "\n")


def _remove_tree(path: Path) -> None:
    # A crashed build may leave /proc mounted in the tree; never follow it.
    subprocess.run(["umount", "-R", str(path / "rootfs" / "proc")], capture_output=True)
    subprocess.run(["umount", "-R", str(path / "proc")], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
