"""The running hypervisor's release ("4.17"), for choosing xenvmi's ABI tables.

libxenctrl's xc_version is the authority (what every Xen tool asks); it needs root in
dom0. Without it (an unprivileged user, no libxenctrl) the same numbers are in
/sys/hypervisor/version/{major,minor}, which Linux's Xen support exports to every user.
Off Xen there is no release: None, and the caller uses its default.
"""

from __future__ import annotations

from pathlib import Path

from xenvmi.errors import PermissionDenied, Unavailable

SYS_HYPERVISOR = Path("/sys/hypervisor")
#: Xen's version numbers are small; anything else in sysfs is not a Xen version.
_MAX_PART = 999


def _release(major: int, minor: int) -> str | None:
    if 0 <= major <= _MAX_PART and 0 <= minor <= _MAX_PART:
        return f"{major}.{minor}"
    return None


def from_xenctrl() -> str | None:
    """xc_version's answer, None when libxenctrl cannot be used here."""
    from xenvmi.backends.xenctrl import XenCtrl

    try:
        xc = XenCtrl()
    except (Unavailable, PermissionDenied):
        return None
    try:
        return _release(*xc.xen_version())
    except Unavailable:
        return None
    finally:
        xc.close()


def from_sysfs(root: Path = SYS_HYPERVISOR) -> str | None:
    """/sys/hypervisor's version, None when it is absent, not Xen's, or not numbers."""
    try:
        if (root / "type").read_text(errors="replace").strip() != "xen":
            return None
        parts = [
            (root / "version" / p).read_text(errors="replace")[:16] for p in ("major", "minor")
        ]
    except OSError:
        return None
    if not all(p.strip().isdigit() for p in parts):
        return None
    return _release(int(parts[0]), int(parts[1]))


def running_release() -> str | None:
    """ "4.17" for the hypervisor this runs on; None when not on Xen (or it cannot tell)."""
    return from_xenctrl() or from_sysfs()
