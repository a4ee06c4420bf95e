"""Real Linux kernels' memory without Xen, arm64 and x86-64: the guest views' test bed.

Distribution kernels (Debian's ``linux-image-FLAVOUR`` of a release, Ubuntu 20.04's
``linux-image-generic``, fetched with a throwaway apt state and ``APT::Architecture``:
the host's dpkg architectures stay as they are) boot under QEMU's TCG (no KVM needed:
``qemu-system-aarch64 -machine virt``, ``qemu-system-x86_64 -machine q35``) with the lab
guests' own busybox init (data/guest-init.sh, the release's ``busybox-static``). Once the
init has printed its report (processes, modules, release, kernel text) to the serial
console, QMP's ``dump-guest-memory`` writes an ELF core of the guest (EM_AARCH64 or
EM_X86_64, an NT_PRSTATUS per vCPU) next to the console log: what xenvmi reads and what
the guest said it runs, to compare.

Everything lives under ~/.cache/xenvmi/arm64 and ~/.cache/xenvmi/x86
(``$XENVMI_ARM64_DIR``, ``$XENVMI_X86_DIR``), made once and kept.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from xenvmi.errors import LabError
from xenvmi.lab import kernels
from xenvmi.lab.groundtruth import GuestReport, parse_reports
from xenvmi.lab.paths import DATA

#: Console silence (no new byte) after which a boot counts as stuck: TCG boots a
#: distribution kernel in 10-120 s here, printing all the while, so silence means a hang.
STALL = 300.0
#: The named processes of the guest init (make-guests.sh makes the same ones in dom0).
NAMED = ("xvm-alpha", "xvm-beta", "xvm-gamma")
#: The guest's RAM in MiB: busybox and a distribution kernel need less than half; each
#: dump is this big.
MEMORY = 256


@dataclass(frozen=True)
class Arch:
    """How QEMU emulates one Debian architecture, and where its captures are kept."""

    name: str  # Debian's architecture
    qemu: str
    machine: str
    console: str  # the serial console's device in the guest
    cache: str  # the directory under ~/.cache/xenvmi
    package: str  # the Debian package with ``qemu``


ARCHES = {
    "arm64": Arch("arm64", "qemu-system-aarch64", "virt", "ttyAMA0", "arm64", "qemu-system-arm"),
    "amd64": Arch("amd64", "qemu-system-x86_64", "q35", "ttyS0", "x86", "qemu-system-x86"),
}

DEBIAN = ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security", "-security")
UBUNTU = ("http://archive.ubuntu.com/ubuntu", "http://archive.ubuntu.com/ubuntu", "-security")


@dataclass(frozen=True)
class QemuKernel:
    name: str
    release: str  # the distribution's codename
    what: str
    #: The kernel flavour (linux-image-FLAVOUR) and a CPU QEMU emulates that it runs on
    #: (the Cortex-A57 has 4K and 64K, not 16K pages; QEMU's "max" has all; x86's qemu64
    #: has no LA57, so the kernel keeps 4-level paging)
    flavour: str = "arm64"
    cpu: str = "cortex-a57"
    arch: str = "arm64"
    mirror: tuple[str, str, str] = DEBIAN

    def sources(self, keyring: Path | None = None) -> str:
        main, security, suffix = self.mirror
        signed = f"[signed-by={keyring}] " if keyring else ""
        lines = [f"deb {signed}{main} {self.release} main"]
        if self.mirror == UBUNTU:
            lines.append(f"deb {signed}{main} {self.release}-updates main")
        lines.append(f"deb {signed}{security} {self.release}{suffix} main")
        return "\n".join(lines) + "\n"


def _x86(name: str, release: str, what: str, flavour: str = "amd64", **kw) -> QemuKernel:
    return QemuKernel(name, release, what, flavour, "qemu64", "amd64", **kw)


KERNELS = {
    "deb12": QemuKernel("deb12", "bookworm", "Debian 12 arm64 (Linux 6.1)"),
    "deb11": QemuKernel("deb11", "bullseye", "Debian 11 arm64 (Linux 5.10)"),
    "deb13": QemuKernel("deb13", "trixie", "Debian 13 arm64 (Linux 6.12)"),
    "deb13-16k": QemuKernel(
        "deb13-16k", "trixie", "Debian 13 arm64, 16K pages (Linux 6.12)", "arm64-16k", "max"
    ),
    "x86-deb11": _x86("x86-deb11", "bullseye", "Debian 11 amd64 (Linux 5.10)"),
    "x86-deb12": _x86("x86-deb12", "bookworm", "Debian 12 amd64 (Linux 6.1)"),
    "x86-deb13": _x86("x86-deb13", "trixie", "Debian 13 amd64 (Linux 6.12)"),
    "x86-focal": _x86(
        "x86-focal", "focal", "Ubuntu 20.04 amd64 (Linux 5.4)", "generic", mirror=UBUNTU
    ),
}


def root(arch: str = "arm64") -> Path:
    a = ARCHES[arch]
    env = os.environ.get(f"XENVMI_{a.cache.upper()}_DIR")
    return Path(env) if env else Path.home() / ".cache" / "xenvmi" / a.cache


def missing_tools(arch: str = "arm64") -> list[str]:
    """Host tools this needs that are not installed (``Arch.package`` has QEMU)."""
    return [t for t in (ARCHES[arch].qemu, "apt-get", "dpkg-deb") if not shutil.which(t)]


def _download(opts: list[str], package: str, work: Path) -> Path:
    """Download and unpack ``package``: its candidate version, else the other versions
    the archive lists (a security update may be listed before the mirror has its file)."""
    madison = kernels._run(["apt-cache", *opts, "madison", package])
    versions = [ln.split("|")[1].strip() for ln in madison.splitlines() if ln.count("|") >= 2]
    problems = []
    for version in versions or [""]:
        try:
            kernels._run(
                ["apt-get", *opts, "download", f"{package}={version}" if version else package],
                cwd=work,
            )
            break
        except LabError as e:
            problems.append(str(e)[-200:])
    else:
        raise LabError(f"cannot download {package}: {'; '.join(problems)}")
    debs = sorted(work.glob(f"{package.split(':')[0]}_*.deb"))
    if not debs:
        raise LabError(f"apt-get download {package} gave no .deb")
    kernels._run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")])
    return debs[0]


def _download_kernel(
    opts: list[str], show: str, work: Path, flavour: str = "arm64"
) -> tuple[str, Path]:
    """The newest of the image packages ``linux-image-FLAVOUR``'s records depend on that
    the mirror serves (a security update may be listed before the mirror has it)."""
    records = [r for r in show.split("\n\n") if r.strip()]
    problems = []
    for record in records:
        package = kernels.image_package(record, arch=flavour)
        try:
            return package, _download(opts, package, work)
        except LabError as e:
            problems.append(str(e))
    raise LabError(f"no linux-image-{flavour} could be downloaded: {'; '.join(problems)[-400:]}")


def fetch(name: str, log=print) -> Path:
    """The kernel's directory (vmlinuz, dummy.ko, busybox, kernel-release), fetched once."""
    k = KERNELS[name]
    out = root(k.arch) / "kernels" / name
    if (out / "kernel-release").exists():
        return out
    log(f"fetching the {k.what} kernel and busybox from the distribution's archive")
    state = root(k.arch) / "apt" / k.release
    keyring = (
        kernels.ubuntu_keyring(state, k.mirror[0], k.release, k.arch)
        if k.mirror == UBUNTU
        else None
    )
    opts = kernels._apt(state, k.sources(keyring), arch=k.arch)
    kernels._run(["apt-get", *opts, "update"])
    show = kernels._run(["apt-cache", *opts, "show", f"linux-image-{k.flavour}"])
    root(k.arch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root(k.arch)) as tmp:
        work = Path(tmp)
        package, deb = _download_kernel(opts, show, work, k.flavour)
        _download(opts, "busybox-static", work)
        vmlinuz = sorted((work / "x" / "boot").glob("vmlinuz-*"))
        busybox = next(
            (b for b in (work / "x" / d / "busybox" for d in ("bin", "usr/bin")) if b.exists()),
            None,
        )
        if not vmlinuz or busybox is None:
            raise LabError(f"{deb.name} or busybox-static lacks vmlinuz or /bin/busybox")
        kver = vmlinuz[0].name.removeprefix("vmlinuz-")
        dummy = _dummy(k, opts, work, kver, deb.name)
        files: dict[str, Path | bytes] = {
            "vmlinuz": vmlinuz[0],
            "busybox": busybox,
            "dummy.ko": _decompress(dummy),
        }
        kernels.publish(out, files, kver, deb.name)
    log(f"{name}: {kver} ({package})")
    return out


def _dummy(k: QemuKernel, opts: list[str], work: Path, kver: str, package: str) -> Path:
    """The dummy module: in Debian's image package; Ubuntu keeps modules apart (in
    linux-modules-KVER, the rarer ones in linux-modules-extra-KVER)."""
    try:
        return kernels.dummy_module(work / "x", kver, package)
    except LabError:
        if k.mirror != UBUNTU:
            raise
    for extra in (f"linux-modules-{kver}", f"linux-modules-extra-{kver}"):
        _download(opts, extra, work)
        try:
            return kernels.dummy_module(work / "x", kver, package)
        except LabError:
            continue
    raise LabError(f"neither {package} nor linux-modules(-extra)-{kver} holds dummy.ko")


def _decompress(path: Path) -> bytes:
    if path.suffix == ".xz":
        return kernels_run_bytes(["xz", "-dc", str(path)])
    if path.suffix == ".zst":
        return kernels_run_bytes(["zstd", "-qdc", str(path)])
    return path.read_bytes()


def kernels_run_bytes(argv: list[str]) -> bytes:
    res = subprocess.run(argv, capture_output=True, timeout=300)
    if res.returncode != 0:
        raise LabError(f"{argv[0]} failed: {res.stderr.decode(errors='replace')[-300:]}")
    return res.stdout


# -- initramfs -------------------------------------------------------------------------


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio "newc" archive of (path, mode, data) entries: what the kernel unpacks as
    its initramfs (the host needs no cpio tool). Symlinks hold their target as data."""
    out = bytearray()
    for ino, (path, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        name = path.encode() + b"\0"
        nlink = 2 if mode & 0o170000 == 0o040000 else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name
        out += bytes(-len(out) % 4) + data
        out += bytes(-len(out) % 4)
    return bytes(out)


def initramfs(kdir: Path) -> bytes:
    """The lab guests' userland (guest-init.sh, the named processes, the dummy module)
    with the kernel's architecture's busybox."""
    d, x, f = 0o040755, 0o100755, 0o100644
    script = (
        "#!/bin/sh\n# {0}: a named process for xenvmi ground truth\nwhile :; do sleep 300; done\n"
    )
    entries = [(p, d, b"") for p in ("bin", "sbin", "usr", "usr/bin", "proc", "sys", "dev")]
    entries += [(p, d, b"") for p in ("tmp", "lib", "lib/modules")]
    entries += [
        ("bin/busybox", x, (kdir / "busybox").read_bytes()),
        ("bin/sh", 0o120777, b"busybox"),
        ("init", x, (DATA / "guest-init.sh").read_bytes()),
        ("lib/modules/dummy.ko", f, (kdir / "dummy.ko").read_bytes()),
    ]
    entries += [(f"usr/bin/{n}", x, script.format(n).encode()) for n in NAMED]
    parent = b"#!/bin/sh\n# xvm-parent: a process with a child\n/usr/bin/xvm-child &\nwait\n"
    entries += [
        ("usr/bin/xvm-parent", x, parent),
        ("usr/bin/xvm-child", x, b"#!/bin/sh\nwhile :; do sleep 300; done\n"),
    ]
    return gzip.compress(cpio_newc(entries), 6)


# -- boot and dump ---------------------------------------------------------------------


@dataclass
class Capture:
    """One guest's memory dump and what its console said."""

    core: Path
    console: Path
    report: GuestReport
    release: str
    hostname: str = ""
    arch: str = "arm64"


def hostname(name: str) -> str:
    """The guest's name (its init sets it as the hostname): the x86 kernels' names say
    their architecture already."""
    return name if KERNELS[name].arch != "arm64" else f"arm64-{name}"


def _qmp(sock_path: Path, *commands: dict, timeout: float = 1800) -> list[dict]:
    """Run QMP commands in order; each one's return (an error raises LabError)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        f = s.makefile("rwb")
        json.loads(f.readline())  # the greeting
        results = []
        for cmd in ({"execute": "qmp_capabilities"}, *commands):
            f.write(json.dumps(cmd).encode() + b"\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    if cmd.get("execute") == "quit":
                        break
                    raise LabError(f"QMP closed during {cmd['execute']}")
                msg = json.loads(line)
                if "event" in msg:
                    continue
                if "error" in msg:
                    raise LabError(f"QMP {cmd['execute']}: {msg['error'].get('desc')}")
                results.append(msg.get("return"))
                break
        return results[1:]


def capture(
    name: str,
    *,
    vmcoreinfo_device: bool = True,
    kaslr: bool = True,
    cpu: str | None = None,
    log=print,
) -> Capture:
    """Boot kernel ``name`` once (on ``cpu``, else the kernel's) and dump its memory after
    the init's first report; kept under root()/cores and reused while the files are there.
    ``kaslr``: the kernel's default (on x86 also ``kaslr`` on its command line), else
    ``nokaslr``."""
    k = KERNELS[name]
    arch = ARCHES[k.arch]
    kdir = fetch(name, log)
    tag = f"{name}{'-vmci' if vmcoreinfo_device else ''}{'' if kaslr else '-nokaslr'}"
    tag += f"-{cpu}" if cpu else ""
    cores = root(k.arch) / "cores"
    core, console = cores / f"{tag}.core", cores / f"{tag}.console"
    if core.exists() and console.exists():
        return _result(core, console, kdir, name)
    if missing_tools(k.arch):
        missing = " ".join(missing_tools(k.arch))
        raise LabError(f"missing host tools: {missing} (`xenvmi lab deps`: {arch.package})")
    cores.mkdir(parents=True, exist_ok=True)
    rd = kdir / "initramfs.cpio.gz"
    rd.write_bytes(initramfs(kdir))
    with tempfile.TemporaryDirectory(prefix=f"xenvmi-{arch.cache}-") as tmp:
        qmp, log_tmp = Path(tmp) / "qmp.sock", Path(tmp) / "console"
        append = f"console={arch.console} xenvmi.name={hostname(name)} panic=-1"
        if not kaslr:
            append += " nokaslr"
        elif k.arch == "amd64":
            append += " kaslr"
        argv = [arch.qemu, "-machine", arch.machine, "-cpu", cpu or k.cpu, "-accel", "tcg"]
        argv += ["-smp", "2", "-m", str(MEMORY), "-display", "none", "-monitor", "none"]
        argv += ["-nodefaults", "-serial", f"file:{log_tmp}"]
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
        argv += ["-kernel", str(kdir / "vmlinuz"), "-initrd", str(rd), "-append", append]
        if vmcoreinfo_device:
            argv += ["-device", "vmcoreinfo"]
        log(f"booting {name} under {arch.qemu} (TCG) to dump its memory")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_report(proc, log_tmp, arch.qemu)
            part = core.with_suffix(".partial")
            part.unlink(missing_ok=True)
            _qmp(
                qmp,
                {"execute": "stop"},
                {
                    "execute": "dump-guest-memory",
                    "arguments": {"paging": False, "protocol": f"file:{part}"},
                },
                {"execute": "quit"},
            )
            proc.wait(timeout=120)
            shutil.copy(log_tmp, console)
            part.rename(core)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _result(core, console, kdir, name)


def _wait_report(proc: subprocess.Popen, console: Path, qemu: str) -> None:
    """Until the console holds the init's first complete report; a QEMU that exits or a
    console silent for STALL seconds fails (progress, not a fixed time, decides)."""
    size, last = -1, time.monotonic()
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise LabError(f"{qemu} exited ({proc.returncode}) before the report: {err[-300:]}")
        text = console.read_text(errors="replace") if console.exists() else ""
        if parse_reports(text):
            return
        if len(text) != size:
            size, last = len(text), time.monotonic()
        elif time.monotonic() - last > STALL:
            raise LabError(f"the guest's console was silent for {STALL:.0f}s: {text[-300:]}")
        time.sleep(0.5)


def _result(core: Path, console: Path, kdir: Path, name: str) -> Capture:
    reports = parse_reports(console.read_text(errors="replace"))
    if not reports:
        raise LabError(f"{console} holds no complete report")
    release = (kdir / "kernel-release").read_text().strip()
    return Capture(core, console, reports[0], release, hostname(name), KERNELS[name].arch)
