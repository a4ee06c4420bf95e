"""Dom0 side of the lab: start the lab guests and prove each reached its init.

Run in dom0 as ``python3 -m xenvmi.lab.dom0 start|status [--json]``. Standard library only.
Guests are found by name, never by domid (a guest restarted by Xen gets a new one). A guest
counts as up only once its console shows a complete ground-truth report from the current
boot; a guest that dies at creation or never reports is destroyed and created again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xenvmi.lab.groundtruth import (
    INIT_DONE,
    last_boot,
    latest_begun_seq,
    latest_report,
    parse_reports,
)
from xenvmi.lab.paths import DATA, payload_digest
from xenvmi.lab.progress import printable, wait_progress

LAB_DIR = Path(os.environ.get("XENVMI_LAB_GUEST_DIR", "/var/lib/xenvmi-lab"))
CONSOLE_DIR = Path("/var/log/xen/console")
#: A booting guest is alive while its console grows or it gets CPU time; it is dead after
#: this many seconds with neither (a guest that crashes is destroyed at once: on_crash).
BOOT_STALL = float(os.environ.get("XENVMI_LAB_BOOT_STALL", "300"))
#: Last resort against a boot that advances forever without reporting (seconds per attempt).
BOOT_CAP = float(os.environ.get("XENVMI_LAB_BOOT_CAP", "2400"))
ATTEMPTS = 5


@dataclass
class GuestStatus:
    name: str
    type: str
    domid: int | None = None
    up: bool = False
    attempts: int = 0
    boot_seconds: float | None = None
    release: str = ""
    processes: int = 0
    modules: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _run(cmd: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run a toolstack command; a hang (an overloaded emulated dom0) or a missing tool (not
    a dom0) is a failed run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:.0f}s")
    except FileNotFoundError:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: not installed")


def guest_configs() -> dict[str, Path]:
    return {p.stem: p for p in sorted((LAB_DIR / "guests").glob("*.cfg"))}


def guest_type(cfg: Path) -> str:
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "type":
            return value.strip().strip('"')
    return "pv"


def console_logs(name: str) -> list[Path]:
    """The HVM guest's kernel prints on its emulated serial port (serial-NAME.log); every
    guest's init reports on Xen's PV console (guest-NAME.log, through xenconsoled), where
    PV and PVH kernels print too."""
    return [CONSOLE_DIR / f"serial-{name}.log", CONSOLE_DIR / f"guest-{name}.log"]


def read_console(name: str) -> str:
    """Everything the guest printed: its serial log (if any), then its PV console log, so
    the last report is always last."""
    texts = []
    for path in console_logs(name):
        try:
            texts.append(path.read_text(errors="replace"))
        except FileNotFoundError:
            pass
    return "\n".join(texts)


def console_size(name: str) -> int:
    size = 0
    for path in console_logs(name):
        try:
            size += path.stat().st_size
        except FileNotFoundError:
            pass
    return size


def console_tty(name: str) -> str | None:
    """The dom0 side of the guest's PV console: xenconsoled's pty, named in xenstore."""
    did = domid(name)
    if did is None:
        return None
    res = _run(["xenstore-read", f"/local/domain/{did}/console/tty"])
    tty = res.stdout.strip()
    return tty if res.returncode == 0 and tty.startswith("/dev/pts/") else None


def request_report(name: str) -> bool:
    """Ask the guest's init for a report now: a line on its console input (its init waits
    on it). False if the guest has no console pty."""
    tty = console_tty(name)
    if tty is None:
        return False
    fd = os.open(tty, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"report\n")
    finally:
        os.close(fd)
    return True


def latest_seq(name: str) -> int:
    """The sequence number of the guest's latest complete report this boot (-1: none)."""
    reports = parse_reports(last_boot(read_console(name)))
    return reports[-1].seq if reports else -1


def wait_report(name: str, after_seq: int, stall: float = 180.0):
    """The guest's first report after ``after_seq``; None if its console printed nothing
    for ``stall`` seconds."""
    found: list = []

    def done() -> bool:
        found[:] = [r for r in parse_reports(last_boot(read_console(name))) if r.seq > after_seq]
        return bool(found)

    out = wait_progress(done, lambda: console_size(name), stall=stall, poll=1.0)
    return found[0] if out.done else None


def fresh_report(name: str, stall: float = 180.0):
    """The guest's first report that starts after this call (asked for now): a process in
    a report before a read and in this one was alive during the whole read. None if the
    guest has no console pty or printed nothing for ``stall`` seconds."""
    after_seq = latest_begun_seq(last_boot(read_console(name)))
    return wait_report(name, after_seq, stall) if request_report(name) else None


def parse_xl_list(text: str) -> dict[str, tuple[int, float]]:
    """Name -> (domid, CPU seconds) from `xl list`'s table."""
    out = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit():
            try:
                cpu = float(parts[5])
            except ValueError:
                cpu = 0.0
            out[parts[0]] = (int(parts[1]), cpu)
    return out


def domain_table() -> dict[str, tuple[int, float]] | None:
    """Name -> (domid, CPU seconds) of every domain (None if xl did not answer)."""
    res = _run(["xl", "list"])
    return parse_xl_list(res.stdout) if res.returncode == 0 else None


def running_domains() -> dict[str, int] | None:
    """Name -> domid of every domain, from one `xl list` (None if xl did not answer)."""
    table = domain_table()
    return None if table is None else {name: d for name, (d, _) in table.items()}


def domid(name: str) -> int | None:
    return (running_domains() or {}).get(name)


def reported(name: str) -> bool:
    text = read_console(name)
    return INIT_DONE in text and latest_report(last_boot(text)) is not None


def _truncate_console(name: str) -> None:
    for path in console_logs(name):
        if path.exists():
            path.unlink()


def _why_failed(name: str) -> str:
    tail = read_console(name).strip().splitlines()[-3:]
    dmesg = _run(["xl", "dmesg"]).stdout.strip().splitlines()[-3:]
    return f"console: {' | '.join(tail) or '(empty)'}; xl dmesg: {' | '.join(dmesg)}"


#: Boot order: the HVM guest first, alone, because its kernel crawls in through QEMU's fw_cfg
#: port (about two minutes under TCG) and concurrent boots starve it and each other.
BOOT_ORDER = {"hvm": 0, "pv": 1, "pvh": 2}


def payload_stamp() -> Path:
    return LAB_DIR / "payload.sha256"


def ensure_payload(log=print) -> bool:
    """Make the guests' initramfs and configs from this tree's data/ and the kernels in
    LAB_DIR/kernels if they changed since they were made (the image holds the ones of its
    build); True if they were remade. Guests running the old payload must be restarted
    by the caller."""
    want = payload_digest(LAB_DIR, DATA)
    try:
        if payload_stamp().read_text().strip() == want:
            return False
    except FileNotFoundError:
        pass
    log("guest payload changed: rebuilding the guests' initramfs and configs")
    res = _run(["bash", str(DATA / "make-guests.sh"), str(LAB_DIR)], timeout=BOOT_CAP)
    if res.returncode != 0:
        raise SystemExit(f"make-guests.sh failed: {res.stderr.strip()[-500:]}")
    payload_stamp().write_text(want + "\n")
    return True


#: dom0's scheduler weight against a guest's 256. Measured on the six-guest lab (2026-12-05),
#: a CPU-bound loop in dom0 for 60 s: at 1024 dom0 got 56 % of the one emulated CPU and
#: the idle guests 48 % (their wake-ups cost four times more while dom0 ran); at 8192 and
#: at 65535 alike, dom0 79 % and the guests 21 %, each guest still getting the 2.5 % it
#: uses when the lab is idle.
DOM0_WEIGHT = 8192


def favour_dom0(log) -> None:
    """Give dom0 the larger share of the CPU, as Xen hosts do: with one emulated CPU, a
    guest booting flat out left dom0's sshd too slow to send its banner in 30 s, and every
    lab command failed until the boot ended; and the lab's tests run in dom0."""
    for sched in ("sched-credit2", "sched-credit"):
        res = _run(["xl", sched, "-d", "Domain-0", "-w", str(DOM0_WEIGHT)])
        if res.returncode == 0:
            return
    log(f"could not raise dom0's scheduler weight: {res.stderr.strip()[-200:]}")


START_LOCK = Path(os.environ.get("XENVMI_LAB_START_LOCK", "/run/xenvmi-lab-start.pid"))


def _take_start_lock(log) -> None:
    """Only one `start` creates guests: a `lab up` interrupted on the host leaves its dom0
    starter running, and two starters destroy and create each other's guests (seen: xl
    create failing four times in a row). The newest one wins: it stops the one before."""
    import fcntl
    import signal

    START_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(START_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    for _ in range(30):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            try:
                old = int(os.pread(fd, 32, 0).decode().strip() or 0)
            except ValueError:
                old = 0
            if old > 1 and old != os.getpid():
                log(f"stopping the earlier guest starter (pid {old})")
                try:
                    os.kill(old, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            time.sleep(1)
    else:
        raise SystemExit(f"another guest starter holds {START_LOCK}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _start_lock_fds.append(fd)  # held until this process exits


_start_lock_fds: list[int] = []


def start(names: list[str] | None = None, log=print) -> list[GuestStatus]:
    """Create the lab guests one at a time; each must report before the next starts.

    Booting them together on an emulated 2-CPU host overloads it: guests hit soft lockups
    and dom0's toolstack stops answering. One at a time is slower to start but predictable.
    """
    _take_start_lock(log)
    favour_dom0(log)
    remade = ensure_payload(log)
    configs = guest_configs()
    if not configs:
        raise SystemExit(f"no guest configs in {LAB_DIR / 'guests'}")
    chosen = [n for n in configs if not names or n in names]
    if remade:  # guests of the old payload would slow every boot that follows
        for name in chosen:
            if domid(name) is not None:
                _run(["xl", "destroy", name])
    todo = sorted(
        (GuestStatus(n, guest_type(configs[n])) for n in chosen),
        key=lambda st: (BOOT_ORDER.get(st.type, 9), st.name),
    )
    for st in todo:
        if not remade and domid(st.name) is not None and reported(st.name):
            st.up = True
            log(f"{st.name} already up")
            continue
        while not st.up and st.attempts < ATTEMPTS:
            _boot_once(st, configs[st.name], log)
    return [fill(st) for st in todo]


#: What a guest's console shows when its kernel is broken rather than slow: its boot is
#: abandoned at once (the console advances with each report, so progress would not stop it).
BROKEN_SIGNS = ("Kernel panic", "soft lockup", "Oops:", "BUG:", "rcu_sched self-detected stall")


def broken_sign(console: str) -> str | None:
    return next((sign for sign in BROKEN_SIGNS if sign in console), None)


def _boot_once(st: GuestStatus, cfg: Path, log) -> None:
    if domid(st.name) is not None:
        _run(["xl", "destroy", st.name])
    _truncate_console(st.name)
    st.attempts += 1
    t0 = time.monotonic()
    # `xl create` of an HVM guest waits for its device model: under a loaded emulated host
    # that can take minutes, and a create that hangs is as dead as one that fails.
    res = _run(["xl", "create", str(cfg)], timeout=BOOT_CAP)
    if res.returncode != 0:
        st.failures.append(f"attempt {st.attempts}: xl create: {res.stderr.strip()[-300:]}")
        tail = res.stderr.strip().splitlines()[-1:] or ["(no message)"]
        log(f"{st.name}: xl create failed (attempt {st.attempts}): {tail[0][:160]}")
        return
    log(
        f"created {st.name} ({st.type}), attempt {st.attempts}, "
        f"{time.monotonic() - t0:.0f}s in xl create"
    )
    table: dict[str, tuple[int, float]] = {}

    def alive() -> str | None:
        nonlocal table
        table = domain_table() or table
        if st.name not in table:
            return "the domain is gone"
        sign = broken_sign(read_console(st.name))
        return f"its kernel shows '{sign}': a broken boot, not a slow one" if sign else None

    def progress() -> tuple[int, int]:
        # whole CPU seconds: the scheduler's crumbs for a blocked guest are not progress
        return console_size(st.name), int(table.get(st.name, (0, 0.0))[1])

    def note(elapsed: float, idle: float) -> None:
        tail = printable(read_console(st.name)).strip().splitlines()[-1:] or ["(console empty)"]
        log(
            f"{st.name}: booting for {elapsed:.0f}s (last progress {idle:.0f}s ago): {tail[0][:90]}"
        )

    out = wait_progress(
        lambda: st.name in table and reported(st.name),
        progress,
        stall=BOOT_STALL,
        cap=BOOT_CAP,
        abort=alive,
        note=note,
    )
    if out.done:
        st.up, st.boot_seconds = True, round(time.monotonic() - t0, 1)
        log(f"{st.name} up after {st.boot_seconds:.0f}s")
        return
    reason = {
        "stalled": f"made no progress for {out.idle:.0f}s",
        "cap": f"booted for {out.elapsed:.0f}s without reporting",
    }.get(out.reason, out.reason.removeprefix("aborted: "))
    st.failures.append(f"attempt {st.attempts}: {reason}; {_why_failed(st.name)}")
    log(f"{st.name}: {reason}")


def fill(st: GuestStatus) -> GuestStatus:
    st.domid = domid(st.name)
    report = latest_report(last_boot(read_console(st.name)))
    if report:
        st.release, st.processes, st.modules = report.release, len(report.processes), report.modules
    st.up = st.domid is not None and report is not None
    return st


def status() -> list[GuestStatus]:
    return [fill(GuestStatus(n, guest_type(c))) for n, c in guest_configs().items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xenvmi.lab.dom0")
    parser.add_argument("action", choices=["start", "status"])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = start(args.names, log=log) if args.action == "start" else status()
    if args.json:
        print(json.dumps([asdict(s) for s in result], indent=2))
    else:
        for s in result:
            state = "up" if s.up else "DOWN"
            print(
                f"{s.name:10} {s.type:4} domid={s.domid} {state} processes={s.processes} "
                f"modules={','.join(s.modules)} attempts={s.attempts} "
                + (f"failures={s.failures}" if s.failures else "")
            )
    return 0 if all(s.up for s in result) else 1


if __name__ == "__main__":
    sys.exit(main())
