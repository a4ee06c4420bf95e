"""The Xen releases xenvmi holds ABI tables for, and which one a version string selects.

Hypercall and sub-op numbers, interface versions and trace event names move between Xen
releases (domctl 0x15 in 4.17, 0x16 in 4.18, 0x17 from 4.19; new commands; 4.19 split
the HVM exit event), so every table is keyed by release. A hypervisor newer or between the releases
held here gets the nearest older one, with a warning saying so: numbers Xen added later
then show as ``unknown_<n>``, which is honest, where a newer table would name commands an
older Xen never had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xenvmi.abi import domctl, hvm_op, hypercalls, memory_op, sysctl
from xenvmi.abi.hypercalls import Hypercall
from xenvmi.abi.subops import SubOpTable
from xenvmi.errors import UsageError

#: Releases with tables, oldest first; each has its headers in tests/unit/data/xen-headers/.
KNOWN: tuple[str, ...] = ("4.17", "4.18", "4.19", "4.20")
#: The release assumed when none is given and no hypervisor is running (the lab's, Debian 12).
DEFAULT = "4.17"

_VERSION = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})(?:[.\-+~][\w.\-+~]*)?\s*$")


@dataclass(frozen=True)
class AbiRelease:
    """Every table of one Xen release."""

    version: str  #: "4.17"
    hypercalls: tuple[Hypercall, ...]
    subop_tables: dict[str, SubOpTable]  #: domctl, sysctl, memory_op, hvm_op
    interface_versions: dict[str, int]  #: domctl, sysctl -> XEN_*_INTERFACE_VERSION

    def hypercall(self, number: int) -> Hypercall:
        """This release's entry for hypercall ``number`` (its availability may differ)."""
        return next(h for h in self.hypercalls if h.number == number)

    def table(self, hypercall: str) -> SubOpTable | None:
        """The command table of ``hypercall`` (by name), None if it has none here."""
        return self.subop_tables.get(hypercall)


def _build(version: str) -> AbiRelease:
    return AbiRelease(
        version,
        hypercalls.HYPERCALLS_BY_RELEASE[version],
        {
            "domctl": domctl.TABLES[version],
            "sysctl": sysctl.TABLES[version],
            "memory_op": memory_op.TABLES[version],
            "hvm_op": hvm_op.TABLES[version],
        },
        {
            "domctl": domctl.INTERFACE_VERSIONS[version],
            "sysctl": sysctl.INTERFACE_VERSIONS[version],
        },
    )


RELEASES: dict[str, AbiRelease] = {v: _build(v) for v in KNOWN}


def parse(text: str) -> tuple[int, int]:
    """(major, minor) of "4.20", "4.17.5", "4.20.1-pre"; UsageError for anything else."""
    m = _VERSION.match(text) if isinstance(text, str) else None
    if not m:
        shown = repr(text)[:40]
        raise UsageError(
            f"xen release {shown} is not a version like 4.20 (known: {', '.join(KNOWN)})"
        )
    return int(m.group(1)), int(m.group(2))


def nearest(text: str) -> tuple[str, str | None]:
    """The known release whose tables serve Xen ``text``, and a warning when not exact.

    A newer or in-between release gets the nearest older known one; one older than every
    known release gets the oldest (xenvmi is not built for such a Xen; the warning says so).
    """
    wanted = parse(text)
    exact = f"{wanted[0]}.{wanted[1]}"
    if exact in RELEASES:
        return exact, None
    older = [k for k in KNOWN if parse(k) < wanted]
    if not older:
        return KNOWN[0], (
            f"Xen {exact} is older than every release xenvmi has ABI tables for "
            f"({', '.join(KNOWN)}); using Xen {KNOWN[0]}'s"
        )
    return older[-1], (
        f"no ABI tables for Xen {exact}; using Xen {older[-1]}'s (known: {', '.join(KNOWN)}), "
        "so commands added after it show as unknown_<n>"
    )


def get(release: str | None = None) -> AbiRelease:
    """The tables of a known release ("4.20"); DEFAULT for None. UsageError if unknown."""
    key = DEFAULT if release is None else release
    if key not in RELEASES:
        raise UsageError(f"no ABI tables for Xen {key!r} (known: {', '.join(KNOWN)})")
    return RELEASES[key]
