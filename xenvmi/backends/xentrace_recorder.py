"""Record Xen's trace buffers by running Xen's own ``xentrace`` (the only supported way
to read them from dom0), for the CLI, the API and the TUI alike."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Callable

from xenvmi.errors import PermissionDenied, Unavailable, XenvmiError


def find_xentrace() -> str:
    """Path of Xen's xentrace tool; Debian installs it under /usr/lib/xen-<ver>/bin."""
    found = shutil.which("xentrace") or next(
        iter(sorted(glob.glob("/usr/lib/xen-*/bin/xentrace"), reverse=True)), None
    )
    if not found:
        raise Unavailable(
            "xentrace: Xen's `xentrace` tool is not installed "
            "(Debian: apt install xen-utils-4.17; it runs only in dom0)"
        )
    return found


def record_command(
    binary: str, path: str, mask: int, seconds: int, buffer_pages: int | None = None
) -> list[str]:
    """The xentrace command line (options from tools/xentrace/xentrace.c parse_args)."""
    cmd = [binary, "-D", "-e", f"0x{mask:08x}", "-T", str(seconds)]
    if buffer_pages:
        cmd += ["-S", str(buffer_pages)]
    return cmd + [path]


def record(
    path: str,
    mask: int,
    seconds: int,
    *,
    grace: float = 30.0,
    buffer_pages: int | None = None,
    binary: str | None = None,
    announce: Callable[[list[str]], None] = lambda cmd: None,
) -> int:
    """Trace ``mask``'s event classes into ``path`` for ``seconds``; the file's size.
    xentrace stops itself after ``seconds``; ``grace`` more and it is killed."""
    binary = binary or find_xentrace()
    if os.geteuid() != 0:
        raise PermissionDenied("xentrace: needs root in dom0 (it maps Xen's trace buffers)")
    cmd = record_command(binary, path, mask, seconds, buffer_pages)
    announce(cmd)
    try:
        res = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=seconds + grace,
        )
    except FileNotFoundError:
        raise Unavailable(f"xentrace: cannot run {binary}") from None
    except subprocess.TimeoutExpired:
        raise XenvmiError(
            f"xentrace: did not stop within {seconds + grace}s "
            "(killed); the trace file may be incomplete"
        ) from None
    if res.returncode != 0:
        last = (res.stderr or "").strip().splitlines()
        raise XenvmiError(
            f"xentrace: exited with {res.returncode}: {last[-1] if last else 'no message'}"
        )
    return os.path.getsize(path) if os.path.exists(path) else 0
