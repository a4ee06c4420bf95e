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
from xenvmi.lab import wheels as wheels_mod
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


def _project(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def built_requirements(requirements: list[str], release: Release) -> list[str]:
    """The requirements PyPI has no wheel of for the release's platform (built on the host)."""
    return [r for r in requirements if _project(r) in release.built]


HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    # the arm64 lab (`--arch arm64`): its emulator, and qemu-user through binfmt for the
    # arm64 tree's chroot steps (debootstrap's second stage, provisioning, wheel builds)
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support",
}
#: Host tools only one architecture's lab needs: a build of another does not ask for them.
ARCH_TOOLS = {
    "qemu-system-x86_64": "amd64",
    "qemu-system-aarch64": "arm64",
    "qemu-aarch64-static": "arm64",
    "update-binfmts": "arm64",
}
#: What the test suite uses on the host beside the lab (path -> Debian package): Xen's
#: public headers (the ABI tables are tested against them), BTF tools the BTF reader is
#: compared with, tmux for the TUI, vagrant and its libvirt provider to validate the
#: Vagrant lab's file (provider settings included), Prometheus to scrape the exporter
#: (its packaged service is never started: xenvmi.lab.services), readelf for a vmlinux's
#: build ID, and QEMU's arm64 and x86 system emulators that boot distribution kernels for
#: the guest-view tests without Xen (xenvmi.lab.qemumem, tests/lab_host/test_arm64_guest.py,
#: test_x86_guest.py; gpg checks Ubuntu's archive keys there).
TEST_PACKAGES = {
    "/usr/bin/qemu-system-aarch64": "qemu-system-arm",
    "/usr/bin/qemu-system-x86_64": "qemu-system-x86",
    "/usr/bin/gpg": "gpg",
    "/usr/bin/prometheus": "prometheus",
    "/usr/bin/readelf": "binutils",
    "/usr/include/xen/errno.h": "libxen-dev",
    "/usr/sbin/bpftool": "bpftool",
    "/usr/bin/pahole": "pahole",
    "/usr/bin/tmux": "tmux",
    "/usr/bin/vagrant": "vagrant",
    "/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json": "vagrant-libvirt",
}


def missing_host_packages(with_tests: bool = True, arch: str | None = None) -> list[str]:
    """Debian packages of missing host tools: every lab's (``arch`` None) or one's."""
    missing = {
        pkg
        for tool, pkg in HOST_TOOLS.items()
        if not shutil.which(tool) and arch in (None, ARCH_TOOLS.get(tool, arch))
    }
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
    if release.arch != "amd64":  # and architectures
        head += f" arch={release.arch}"
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


def preflight(paths: LabPaths, release: Release = releases.DEFAULT) -> None:
    """Everything a build needs, checked up front so failures are one clear line."""
    if os.geteuid() != 0:
        raise PermissionDenied(
            "building the lab image needs root (debootstrap, chroot): run as root or with sudo"
        )
    missing = missing_host_packages(with_tests=False, arch=release.arch)
    if missing:
        raise Unavailable(f"missing host tools: apt-get install {' '.join(missing)}")
    if release.arch != "amd64":
        ensure_binfmt(release.arch)
    _checkout()
    paths.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(paths.root).free
    if free < MIN_FREE_BYTES:
        raise LabError(
            f"not enough disk space in {paths.root}: {free / 1024**3:.1f} GiB free, "
            f"{MIN_FREE_BYTES / 1024**3:.0f} GiB needed (set XENVMI_LAB_DIR elsewhere)"
        )


BINFMT = Path("/proc/sys/fs/binfmt_misc")


def ensure_binfmt(arch: str) -> None:
    """The kernel runs arm64 programs through qemu-user (binfmt_misc, with the interpreter
    fixed at registration: the F flag, so it works inside a chroot). Mounts binfmt_misc
    and enables qemu-user-static's entry where a container's boot did not."""
    name = {"arm64": "qemu-aarch64"}[arch]
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=False)
    if not (BINFMT / name).exists():
        subprocess.run(["update-binfmts", "--enable", name], capture_output=True, check=False)
    try:
        entry = (BINFMT / name).read_text()
    except OSError:
        entry = ""
    if "enabled" not in entry.splitlines()[:1] or "F" not in _binfmt_flags(entry):
        raise Unavailable(
            f"binfmt_misc cannot run {arch} programs here ({BINFMT / name}): "
            "apt-get install qemu-user-static binfmt-support, and mount binfmt_misc"
        )


def _binfmt_flags(entry: str) -> str:
    for line in entry.splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


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
    preflight(paths, release)
    work = paths.images / f"{digest}.partial"
    if work.exists():
        _remove_tree(work)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    steps = _Steps(work / "build.log", log)
    log(f"building the {release.name} lab image {digest} in {work} (log: {work / 'build.log'})")
    _debootstrap(steps, rootfs, release)
    wheels = rootfs / "opt/xenvmi/wheels"
    requirements = dom0_requirements(_checkout() / "setup.cfg", release)
    built = built_requirements(requirements, release)
    machine = wheels_mod.MACHINE[release.arch]
    platforms = [
        arg
        for tag in ("manylinux_2_28", "manylinux2014", "manylinux_2_17")
        for arg in ("--platform", f"{tag}_{machine}")
    ]
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
            *platforms,
            "-d",
            str(wheels),
            *[r for r in requirements if r not in built],
        ],
    )
    for requirement in built:
        shutil.copy(_built_wheel(paths, work, steps, rootfs, requirement, release), wheels)
    (wheels / releases.REQUIREMENTS).write_text("\n".join(requirements) + "\n")
    _install_source(rootfs / "opt/xenvmi/src")
    provision = "/opt/xenvmi/src/xenvmi/lab/data/provision.sh"
    if release.edits:  # beside the original, so it finds make-guests.sh as it does
        provision = f"/opt/xenvmi/src/xenvmi/lab/data/provision-{release.name}.sh"
        (rootfs / provision.lstrip("/")).write_bytes(_recipe_file(DATA / "provision.sh", release))
    # The other releases' guest kernels go in the image, so the chroot (host speed) makes
    # their initramfs and dom0 has nothing to remake on its first start. (They are amd64
    # kernels: an arm64 lab's guests run dom0's own.)
    if release.arch == "amd64":
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
                "arch": release.arch,
                "xen": release.xen,
                "built": time.time(),
                "step_seconds": steps.times,
                "kernel": (work / "kernel-release").read_text().strip(),
            },
            indent=2,
        )
    )
    for old in paths.images.iterdir():
        if old.name != work.name and old.is_dir() and image_name(old) == release.name:
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


def image_name(image: Path) -> str | None:
    """The release and architecture of a cached image, as Release.name spells them (an
    image from before architectures is amd64's)."""
    try:
        manifest = json.loads((image / "manifest.json").read_text())
        suite, arch = manifest.get("suite"), manifest.get("arch", "amd64")
    except (OSError, ValueError, AttributeError):
        return None
    if suite is None:
        return None
    return suite if arch == "amd64" else f"{suite}-{arch}"


def _debootstrap(steps: _Steps, rootfs: Path, release: Release) -> None:
    """The base tree: in one go for the host's architecture; for another, debootstrap's
    first stage on the host and its second stage in the tree under qemu-user."""
    argv = ["debootstrap", "--variant=minbase", "--include=ca-certificates"]
    if release.arch == "amd64":
        steps.run("debootstrap", [*argv, release.suite, str(rootfs), MIRROR])
        return
    steps.run(
        "debootstrap (first stage)",
        [*argv, "--foreign", f"--arch={release.arch}", release.suite, str(rootfs), MIRROR],
    )
    steps.run(
        "debootstrap (second stage, qemu-user)",
        [*_chroot(rootfs), "/debootstrap/debootstrap", "--second-stage"],
        env=_CHROOT_ENV,
    )


_CHROOT_ENV = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL="C.UTF-8")


def _chroot(rootfs: Path) -> list[str]:
    """Run in ``rootfs`` in a mount namespace of its own (a /proc mounted there goes away
    with the command)."""
    return ["unshare", "--mount", "--fork", "chroot", str(rootfs)]


def _built_wheel(
    paths: LabPaths, work: Path, steps: _Steps, rootfs: Path, requirement: str, release: Release
) -> Path:
    """The requirement's wheel for the release's platform: cached, or built now in a
    throwaway copy of the base tree (a step of its own in build.log, timed there)."""
    project = _project(requirement)
    hit = wheels_mod.cached(paths, project, release.python, release.arch)
    if hit is not None:
        steps.log(f"{project}: cached wheel {hit.name}")
        return hit
    builder = work / f"build-{project}"
    steps.run("copy the base tree for the wheel build", ["cp", "-a", str(rootfs), str(builder)])
    sdist = wheels_mod.fetch_sdist(requirement, builder / "wheel-in")
    (builder / "wheel-out").mkdir()
    steps.run(
        f"build the {project} wheel (qemu-user)",
        [*_chroot(builder), "/bin/bash", "-c", wheels_mod.build_script(sdist.name)],
        env=_CHROOT_ENV,
    )
    made = sorted((builder / "wheel-out").glob("*.whl"))
    if not made:
        raise LabError(f"the {project} wheel build left no wheel in {builder / 'wheel-out'}")
    cache = wheels_mod.cache_dir(paths)
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(made[-1], cache / made[-1].name)
    _remove_tree(builder)
    return cache / made[-1].name


def _extract_boot(rootfs: Path, work: Path, release: Release) -> None:
    """Xen (gunzipped: QEMU's multiboot loader wants the ELF), dom0's kernel and initrd.
    On arm64 the kernel is also written as a plain Image: QEMU's guest-loader puts the
    file's bytes in memory as they are, and Xen boots dom0 from an Image."""
    boot = rootfs / "boot"
    if release.arch == "amd64":
        xen = sorted(boot.glob(f"xen-{release.xen}-*.gz"))
    else:
        xen = sorted(  # beside it are its .config and an EFI build
            p
            for p in boot.glob(f"xen-{release.xen}-{release.arch}*")
            if not p.name.endswith((".config", ".efi"))
        )
    kernels = sorted(boot.glob("vmlinuz-*"))
    if not xen or not kernels:
        raise LabError(f"provisioning left no Xen or kernel in {boot}")
    kver = kernels[-1].name.removeprefix("vmlinuz-")
    _gunzipped(xen[-1], work / "xen")
    shutil.copy(kernels[-1], work / "vmlinuz")
    if release.arch != "amd64":
        _gunzipped(kernels[-1], work / "Image")
    shutil.copy(boot / f"initrd.img-{kver}", work / "initrd.img")
    (work / "kernel-release").write_text(kver + "\n")


def _gunzipped(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, decompressed if it is gzip."""
    with open(src, "rb") as f:
        packed = f.read(2) == b"\x1f\x8b"
    with gzip.open(src) if packed else open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def _remove_tree(path: Path) -> None:
    # A crashed build may leave /proc mounted in the tree; never follow it.
    subprocess.run(["umount", "-R", str(path / "rootfs" / "proc")], capture_output=True)
    subprocess.run(["umount", "-R", str(path / "proc")], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
