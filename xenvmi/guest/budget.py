"""A view's deadline and warnings (drgn-free, so plugins can use it where drgn is absent).

Guest memory is hostile: every walk checks the deadline and records why a result is partial
instead of raising. ``bounded.py`` re-exports these for the walks themselves.
"""

from __future__ import annotations

import time

from xenvmi.errors import GuestDataError

MAX_WARNINGS = 50


class DeadlineExceeded(GuestDataError):
    """The view ran out of time (raised from inside memory reads, so drgn stops too)."""


class Budget:
    """A deadline plus the warnings one view collects on its way."""

    def __init__(self, seconds: float | None = 60.0) -> None:
        self.deadline = float("inf") if seconds is None else time.monotonic() + seconds
        self.seconds = seconds
        self.warnings: list[str] = []
        self.complete = True

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def check(self) -> None:
        if self.expired():
            raise DeadlineExceeded(f"deadline of {self.seconds:.0f}s exceeded")

    def warn(self, message: str, partial: bool = True) -> None:
        """Record a problem; ``partial`` marks the result as incomplete."""
        if partial:
            self.complete = False
        if message in self.warnings:
            return
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("(more warnings suppressed)")
