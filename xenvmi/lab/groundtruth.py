"""Parse the lab guests' console reports: what each guest says runs inside it.

Each guest's init (data/guest-init.sh) prints, when dom0 asks and every 600 s::

    XENVMI-REPORT-BEGIN <name> <n> <uptime>
    XENVMI-RELEASE <uname -r>
    XENVMI-MODULES <mod> <mod> ...
    XENVMI-KTEXT <address of _text, hex>
    XENVMI-KSTEXT <address of _stext, hex> (arm64's kallsyms has no _text)
    XENVMI-PS <pid> <ppid> (<comm>)
    XENVMI-REPORT-END <name> <n>

Only complete reports count; console logs may hold garbage, partial lines or several boots.
Standard library only: this runs in dom0 before xenvmi's dependencies are installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INIT_DONE = "XENVMI-INIT-DONE"
KMSG_LINE = "xenvmi-lab: guest {name} is up"

_PS = re.compile(r"XENVMI-PS (\d+) (\d+) \((.{1,64})\)\s*$")  # kthreads: full names


@dataclass(frozen=True)
class GuestProcess:
    pid: int
    ppid: int
    comm: str


@dataclass
class GuestReport:
    name: str
    seq: int
    uptime: float
    release: str = ""
    ktext: int | None = None
    kstext: int | None = None
    modules: list[str] = field(default_factory=list)
    processes: list[GuestProcess] = field(default_factory=list)


def _begun(line: str) -> GuestReport | None:
    """The (still empty) report a ``XENVMI-REPORT-BEGIN name n uptime`` line starts."""
    parts = line.split()
    if len(parts) < 4 or parts[0] != "XENVMI-REPORT-BEGIN":
        return None
    try:
        return GuestReport(parts[1], int(parts[2]), float(parts[3]))
    except ValueError:
        return None


def parse_reports(text: str) -> list[GuestReport]:
    """All complete reports in a console log, oldest first."""
    reports: list[GuestReport] = []
    current: GuestReport | None = None
    for raw in text.splitlines():
        line = raw.strip("\r\x00 ")
        if line.startswith("XENVMI-REPORT-BEGIN "):
            current = _begun(line)
        elif current is None:
            continue
        elif line.startswith("XENVMI-RELEASE "):
            current.release = line.split(" ", 1)[1].strip()
        elif line.startswith(("XENVMI-KTEXT ", "XENVMI-KSTEXT ")):
            try:
                value: int | None = int(line.split()[1], 16)
            except (IndexError, ValueError):
                value = None
            if line.startswith("XENVMI-KTEXT "):
                current.ktext = value
            else:
                current.kstext = value
        elif line.startswith("XENVMI-MODULES"):
            current.modules = line.split()[1:]
        elif line.startswith("XENVMI-PS "):
            m = _PS.match(line)
            if m:
                current.processes.append(GuestProcess(int(m[1]), int(m[2]), m[3]))
        elif line.startswith("XENVMI-REPORT-END "):
            parts = line.split()
            if len(parts) == 3 and parts[1] == current.name and parts[2] == str(current.seq):
                reports.append(current)
            current = None
    return reports


def last_boot(text: str) -> str:
    """The part of a console log written since the guest's latest init started reporting."""
    idx = text.rfind(INIT_DONE)
    return text if idx < 0 else text[idx:]


#: Where x86-64 Linux links its text; the KASLR slide is the distance from here.
X86_64_TEXT_BASE = 0xFFFFFFFF81000000
#: Where arm64 Linux 6.1 (48-bit VAs, as Debian builds it) links _stext: KIMAGE_VADDR
#: (MODULES_END = 0xffff800000000000 + 128 MiB) plus the 64 KiB head segment. (Linux 6.6
#: moved KIMAGE_VADDR up to 0xffff800080000000.)
ARM64_STEXT_BASE = 0xFFFF800008010000


def kaslr_slide(report: GuestReport) -> int | None:
    """The guest kernel's KASLR slide from its own kallsyms: x86-64's _text, else (arm64,
    which has no _text there) its _stext."""
    if report.ktext is not None:
        return report.ktext - X86_64_TEXT_BASE
    if report.kstext is not None:
        return report.kstext - ARM64_STEXT_BASE
    return None


def latest_begun_seq(text: str) -> int:
    """The sequence number of the latest report that has begun, complete or not (-1: none).
    A report already under way when dom0 asks for one is not the answer: the request waits
    on the console until it ends, and the next report is the one asked for."""
    begun = (_begun(raw.strip("\r\x00 ")) for raw in text.splitlines())
    return max((r.seq for r in begun if r is not None), default=-1)


def latest_report(text: str) -> GuestReport | None:
    reports = parse_reports(text)
    return reports[-1] if reports else None
