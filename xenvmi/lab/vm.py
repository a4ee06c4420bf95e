"""Boot the lab image: Xen as a multiboot kernel under QEMU TCG, dom0 reached by ssh.

The CPU model is the one that passed the integrity check (shared/xen-lab-notes.md):
SMAP/SMEP hidden (else the PV dom0 faults at once) and XSAVE/AVX hidden (else data in dom0
is silently corrupted once guests run). Each boot runs on a fresh qcow2 overlay of the
cached image, so every lab starts from the same disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from xenvmi.errors import LabError, Unavailable
from xenvmi.lab.paths import LabPaths, RunState
from xenvmi.lab.remote import reachable

CPU_MODEL = os.environ.get("XENVMI_LAB_CPU", "max,-smap,-smep,-xsave,-avx,-avx2")
#: TCG threading (XENVMI_LAB_TCG): "single", or "multi" (a host thread per vCPU, which buys
#: nothing with one vCPU, and under which a 5.10 HVM guest once lost its GS base on entry);
#: single was as fast in the lab (see README, "Lab notes").
TCG_THREAD = os.environ.get("XENVMI_LAB_TCG", "single")
#: Emulated CPUs (XENVMI_LAB_SMP). One by default: with two, QEMU 7.2's SVM emulation under
#: multi-threaded TCG corrupts guest vCPU state (a guest resumed at Xen's own RIP after
#: VMRUN, then a triple fault; a guest's GS base lost on interrupt entry, then a panic):
#: see README, "Lab notes".
SMP = int(os.environ.get("XENVMI_LAB_SMP", "1"))


#: dom0's memory (MiB). The dom0 tests keep three 256 MiB guest dumps for a session and
#: write more beside them: with 1536 MiB, reading and writing dumps then went to the
#: emulated disk (a raw dump and its kernel scan took 352 s beside them, 75 s alone).
#: The VM has 6 GiB (`lab up --memory`); the six guests take 1.5 GiB of the rest.
DOM0_MEM_MB = 3072


def xen_cmdline(cpus: int = SMP) -> str:
    return (
        f"console=com1 com1=115200,8n1 dom0_mem={DOM0_MEM_MB}M,max:{DOM0_MEM_MB}M "
        f"dom0_max_vcpus={cpus} loglvl=all guest_loglvl=all console_timestamps=boot "
        "noreboot"
    )


DOM0_CMDLINE = "root=/dev/vda rw console=hvc0"

#: The arm64 lab's machine (shared/xen-lab-notes.md, issue 20): QEMU's virt board with EL2
#: (Xen runs there) and GICv2 (Xen 4.17's vGIC for guests), a Cortex-A57 under TCG. Xen is
#: the kernel QEMU boots; dom0's kernel and initrd are placed by guest-loader devices,
#: which name them in the device tree as Xen's boot modules. Dom0's devices are virtio-mmio
#: (the board's own transports), which dom0 drives directly as Xen passes them through.
ARM64_CPU = os.environ.get("XENVMI_LAB_ARM64_CPU", "cortex-a57")
ARM64_KERNEL_ADDR = "0x49000000"
ARM64_INITRD_ADDR = "0x50000000"


def xen_cmdline_arm64(cpus: int = SMP) -> str:
    return (
        "console=dtuart dom0_mem=1536M,max:1536M "
        f"dom0_max_vcpus={cpus} loglvl=all guest_loglvl=all console_timestamps=boot "
        "noreboot"
    )


def machine_args(arch: str, image: Path, overlay: Path) -> list[str]:
    """QEMU's machine, CPU, firmware-less boot and disk for dom0 of ``arch``."""
    if arch == "amd64":
        return [
            "-machine",
            "q35",
            "-cpu",
            CPU_MODEL,
            "-kernel",
            str(image / "xen"),
            "-append",
            xen_cmdline(),
            "-initrd",
            f"{image / 'vmlinuz'} {DOM0_CMDLINE},{image / 'initrd.img'}",
            "-drive",
            f"file={overlay},format=qcow2,if=virtio,cache=unsafe",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]
    return [
        "-machine",
        "virt,virtualization=on,gic-version=2",
        "-cpu",
        ARM64_CPU,
        "-kernel",
        str(image / "xen"),
        "-append",
        xen_cmdline_arm64(),
        "-device",
        f"guest-loader,addr={ARM64_KERNEL_ADDR},kernel={image / 'Image'},bootargs={DOM0_CMDLINE}",
        "-device",
        f"guest-loader,addr={ARM64_INITRD_ADDR},initrd={image / 'initrd.img'}",
        "-drive",
        f"file={overlay},format=qcow2,if=none,id=hd0,cache=unsafe",
        "-device",
        "virtio-blk-device,drive=hd0",
        "-device",
        "virtio-net-device,netdev=n0",
    ]


QEMU_BINARY = {
    "amd64": ("qemu-system-x86_64", "qemu-system-x86"),
    "arm64": ("qemu-system-aarch64", "qemu-system-arm"),
}


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return "qemu" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


def running(paths: LabPaths) -> RunState | None:
    state = paths.load_state()
    return state if state and pid_alive(state.pid) else None


def serial_tail(paths: LabPaths, lines: int = 25) -> str:
    try:
        text = paths.serial_log.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return "(no serial log)"
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def boot(
    paths: LabPaths,
    image: Path,
    port: int,
    memory_mb: int,
    release: str = "bookworm",
    arch: str = "amd64",
) -> RunState:
    binary, package = QEMU_BINARY[arch]
    qemu = (os.environ.get("XENVMI_LAB_QEMU") if arch == "amd64" else None) or shutil.which(binary)
    if not qemu or not shutil.which("qemu-img"):
        raise Unavailable(f"QEMU is missing: apt-get install {package} qemu-utils")
    if not 1 <= port <= 65535:
        raise LabError(f"port {port} is not a TCP port")
    if not port_free(port):
        raise LabError(f"port {port} on 127.0.0.1 is in use: pass --port N or stop what uses it")
    if "," in str(image):
        raise LabError(f"the lab path {image} contains a comma, which QEMU's -initrd cannot take")
    paths.run.mkdir(parents=True, exist_ok=True)
    overlay = paths.run / "dom0.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(image / "disk.img"),
            str(overlay),
        ],
        check=True,
    )
    paths.serial_log.unlink(missing_ok=True)
    pidfile = paths.run / "qemu.pid"
    pidfile.unlink(missing_ok=True)
    argv = [
        qemu,
        *machine_args(arch, image, overlay),
        "-accel",
        f"tcg,thread={TCG_THREAD}",
        "-m",
        str(memory_mb),
        "-smp",
        str(SMP),
        "-display",
        "none",
        "-no-reboot",
        "-netdev",
        f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-serial",
        f"file:{paths.serial_log}",
        "-monitor",
        f"unix:{paths.run / 'monitor.sock'},server,nowait",
        "-pidfile",
        str(pidfile),
        "-daemonize",
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise LabError(f"QEMU did not start: {res.stderr.strip().splitlines()[-1:]}")
    state = RunState(
        pid=int(pidfile.read_text().strip()),
        port=port,
        image=image.name,
        started=time.time(),
        release=release,
        arch=arch,
    )
    paths.save_state(state)
    return state


#: Seconds without a new byte on the serial console before a booting dom0 counts as hung:
#: Xen, dom0's kernel and systemd all print there while they work.
BOOT_STALL = float(os.environ.get("XENVMI_LAB_BOOT_STALL", "300"))


def _serial_size(paths: LabPaths) -> int:
    try:
        return paths.serial_log.stat().st_size
    except FileNotFoundError:
        return 0


def wait_ssh(paths: LabPaths, state: RunState, cap: float, log=print) -> None:
    """Wait until dom0 answers ssh while its serial console advances; on failure (QEMU gone,
    no console output for BOOT_STALL seconds, or ``cap`` seconds in all) the VM is stopped
    and the error carries the serial log's tail."""
    from xenvmi.lab.progress import printable, wait_progress

    def note(elapsed: float, idle: float) -> None:
        log(f"[{elapsed:5.0f}s] booting... {printable(serial_tail(paths, 1)).strip()[:100]}")

    out = wait_progress(
        lambda: reachable(paths, state.port),
        lambda: _serial_size(paths),
        stall=BOOT_STALL,
        cap=cap,
        note=note,
        note_every=15.0,
        abort=lambda: None if pid_alive(state.pid) else "QEMU exited",
    )
    if out.done:
        return
    if out.reason != "aborted: QEMU exited":
        stop(paths)
    why = {
        "stalled": f"its console printed nothing for {out.idle:.0f}s",
        "cap": f"it did not answer ssh within {cap:.0f}s",
    }.get(out.reason, "QEMU exited")
    raise LabError(f"dom0 did not come up: {why}; serial log tail:\n{serial_tail(paths)}")


def stop(paths: LabPaths) -> bool:
    """Kill the lab VM (its disk is a throwaway overlay); True if one was running."""
    state = paths.load_state()
    was = bool(state and pid_alive(state.pid))
    if state and was:
        os.kill(state.pid, signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(state.pid):
                break
            time.sleep(0.1)
        else:
            os.kill(state.pid, signal.SIGKILL)
    paths.state_file.unlink(missing_ok=True)
    return was
