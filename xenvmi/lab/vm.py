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


def xen_cmdline(cpus: int = SMP) -> str:
    return (
        "console=com1 com1=115200,8n1 dom0_mem=1536M,max:1536M "
        f"dom0_max_vcpus={cpus} loglvl=all guest_loglvl=all console_timestamps=boot "
        "noreboot"
    )


DOM0_CMDLINE = "root=/dev/vda rw console=hvc0"


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
    paths: LabPaths, image: Path, port: int, memory_mb: int, release: str = "bookworm"
) -> RunState:
    qemu = os.environ.get("XENVMI_LAB_QEMU") or shutil.which("qemu-system-x86_64")
    if not qemu or not shutil.which("qemu-img"):
        raise Unavailable("QEMU is missing: apt-get install qemu-system-x86 qemu-utils")
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
        "-machine",
        "q35",
        "-cpu",
        CPU_MODEL,
        "-accel",
        f"tcg,thread={TCG_THREAD}",
        "-m",
        str(memory_mb),
        "-smp",
        str(SMP),
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(image / "xen"),
        "-append",
        xen_cmdline(),
        "-initrd",
        f"{image / 'vmlinuz'} {DOM0_CMDLINE},{image / 'initrd.img'}",
        "-drive",
        f"file={overlay},format=qcow2,if=virtio,cache=unsafe",
        "-netdev",
        f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
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


def wait_ssh(paths: LabPaths, state: RunState, cap: float, log=print) -> float:
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
        return out.elapsed
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
