"""Named requirements a plugin declares, and the one-line reason each is unmet here.

Checked before a plugin runs (and shown by ``xenvmi plugins``) so an operator reads
"bcc: python3-bpfcc is not installed" instead of a traceback from deep inside the
plugin. Each check is cheap and never raises; import probes are cached per process.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path


@functools.cache
def _import_error(module: str) -> str | None:
    """Why ``import module`` fails (None if it works); cached, imports can be slow."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        return str(e)
    return None


def clear_cache() -> None:
    """Forget cached import probes (after installing a package, and in tests)."""
    _import_error.cache_clear()


def _root() -> str | None:
    return None if os.geteuid() == 0 else "root: run as root"


def _dom0() -> str | None:
    try:
        caps = Path("/proc/xen/capabilities").read_text()
    except OSError:
        caps = ""
    if "control_d" in caps:
        return None
    return "dom0: not a Xen dom0 (/proc/xen/capabilities lacks control_d)"


def _xenstore() -> str | None:
    if _import_error("pyxs"):
        return "xenstore: pip install 'pyxs>=0.4.1'"
    from xenvmi.backends.xenstore import SOCKET_PATHS, XENBUS_PATHS

    if not any(os.path.exists(p) for p in (*SOCKET_PATHS, *XENBUS_PATHS)):
        return "xenstore: no xenstored socket or /dev/xen/xenbus here (run in dom0)"
    return None


def _libvmi() -> str | None:
    return "libvmi: pip install libvmi" if _import_error("libvmi") else None


def _guest_memory() -> str | None:
    """A live guest's memory can be read: through LibVMI, or else Xen's own libraries."""
    if not _import_error("libvmi"):
        return None
    from xenvmi.backends.native import unavailable

    why = unavailable()
    return None if why is None else f"guest-memory: pip install libvmi, or {why}"


def _drgn() -> str | None:
    return "drgn: pip install drgn" if _import_error("drgn") else None


def _bcc() -> str | None:
    if _import_error("bcc"):
        return (
            "bcc: python3-bpfcc is not installed (apt install python3-bpfcc; a venv "
            "needs --system-site-packages)"
        )
    return None


#: Requirement name -> check returning why it is unmet (None: met).
CHECKS: dict[str, Callable[[], str | None]] = {
    "root": _root,
    "dom0": _dom0,
    "xenstore": _xenstore,
    "libvmi": _libvmi,
    "guest-memory": _guest_memory,
    "drgn": _drgn,
    "bcc": _bcc,
}

#: Requirements that stand for several others (checked in this order).
IMPLIES: dict[str, tuple[str, ...]] = {"linux-guest": ("dom0", "guest-memory", "drgn")}
#: What they stand for when a plugin reads a dump file instead of a live domain: its
#: kernel is still read with drgn, but no Xen, LibVMI or root is involved (the file's
#: own permissions decide).
IMPLIES_FOR_DUMP: dict[str, tuple[str, ...]] = {
    "linux-guest": ("drgn",),
    "root": (),
    "dom0": (),
    "libvmi": (),
    "guest-memory": (),
}


def known() -> list[str]:
    return sorted([*CHECKS, *IMPLIES])


def unmet(requires: Iterable[str], dump_file: bool = False) -> list[str]:
    """One reason per unmet requirement, in declaration order, without repeats;
    ``dump_file``: for a run on a dump file rather than a live domain."""
    reasons: list[str] = []
    for name in requires:
        parts = IMPLIES.get(name, (name,))
        if dump_file:
            parts = IMPLIES_FOR_DUMP.get(name, parts)
        for part in parts:
            check = CHECKS.get(part)
            why = check() if check else f"{part}: unknown requirement (known: {', '.join(known())})"
            if why and why not in reasons:
                reasons.append(why)
    return reasons
