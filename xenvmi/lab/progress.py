"""Waiting on the lab by progress, not by the clock.

Machines of the lab's kind differ in emulation speed by 3x or more, so a fixed limit that one
machine meets fails on the next (a PVH guest still printing its kernel's boot at 180 s was
declared dead). A boot is judged alive while it advances: its console grows, or its CPU
time does. It fails only when nothing has advanced for ``stall`` seconds (hung, or dead
and silent), or when an explicit ``abort`` check says it is gone. ``cap`` is the last
resort against a guest that advances forever without finishing (a boot loop that keeps
printing): generous, and reported as such. Standard library only (runs in dom0).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    done: bool
    elapsed: float
    #: why it ended without being done: "stalled", "aborted: ...", "cap"; "" when done
    reason: str = ""
    #: seconds since the last sign of progress when it ended
    idle: float = 0.0


def wait_progress(
    done: Callable[[], bool],
    progress: Callable[[], Hashable],
    *,
    stall: float,
    poll: float = 3.0,
    cap: float | None = None,
    abort: Callable[[], str | None] = lambda: None,
    note: Callable[[float, float], None] | None = None,
    note_every: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Poll until ``done()``; fail when ``progress()`` returned the same value for ``stall``
    seconds, when ``abort()`` returns a reason, or after ``cap`` seconds in all.

    ``progress`` returns anything comparable that changes as the work advances (a log's
    size, a CPU-time counter); ``note(elapsed, idle)`` is called every ``note_every``
    seconds for progress lines.
    """
    t0 = clock()
    last_value = progress()
    last_change = t0
    next_note = t0 + note_every
    while True:
        now = clock()
        if done():
            return Outcome(True, now - t0)
        reason = abort()
        if reason:
            return Outcome(False, now - t0, f"aborted: {reason}", now - last_change)
        value = progress()
        if value != last_value:
            last_value, last_change = value, now
        if now - last_change >= stall:
            return Outcome(False, now - t0, "stalled", now - last_change)
        if cap is not None and now - t0 >= cap:
            return Outcome(False, now - t0, "cap", now - last_change)
        if note is not None and now >= next_note:
            note(now - t0, now - last_change)
            next_note = now + note_every
        sleep(poll)


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """A console's line fit for the operator's terminal: escape sequences (dom0's systemd
    colours its boot messages) and other control characters removed."""
    return _ESCAPES.sub("", text)
