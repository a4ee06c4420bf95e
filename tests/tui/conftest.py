"""Helpers for the TUI tests: the committed lab recording, an app on it, and waiting for
worker results without fixed sleeps."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("textual")

from xenvmi.tui.app import XenvmiApp
from xenvmi.tui.recorded import RecordedSource, Recording, load

LAB = Path(__file__).parent / "fixtures" / "lab"


def lab_recording() -> Recording:
    return load(LAB)


def make_app(
    recording: Recording | None = None,
    *,
    refresh: float = 3600,
    domain: str | None = None,
    **source_kw,
) -> XenvmiApp:
    """An app on a recording; the long refresh means only the first sample and explicit
    refreshes (the r key) happen, so what a test sees is deterministic."""
    source = RecordedSource(recording or lab_recording(), **source_kw)
    return XenvmiApp(source, refresh=refresh, domain=domain)


async def wait_for(pilot, predicate, timeout: float = 5.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` holds (worker threads post asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # the widget may not be mounted yet: keep waiting
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


def table_loaded(app) -> bool:
    return app.screen.query_one("#domains").row_count > 0


@pytest.fixture
def tui():
    return SimpleNamespace(
        make_app=make_app, wait_for=wait_for, lab=lab_recording, table_loaded=table_loaded, LAB=LAB
    )
