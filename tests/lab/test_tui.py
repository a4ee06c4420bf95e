"""`xenvmi tui` in tmux on the lab's real Xen host, read back from the screen as an operator
would: the domains table lists the guests live, a guest's processes are two keystrokes
away (filter, Enter, then the Processes tab), and a destroyed domain's row goes away."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from .conftest import GUESTS
from .test_domains import paused_domain

SESSION = "xenvmi-lab-tui"
GUEST = "xvm-pvh1"
#: The last-resort limit of one wait (see wait_for); a test makes a few.
WAIT_CAP = 1200.0
pytestmark = pytest.mark.timeout(3 * WAIT_CAP)


#: tmux gives every pane the environment of the client that started its server; pytest's
#: run has COLUMNS=80 LINES=24 set (pytest-textual-snapshot), and shutil.get_terminal_size(),
#: which Textual asks, trusts those over the terminal: the TUI drew 80x24 in a 120x100
#: window. The TUI must see the real terminal, as for an operator (hence also `env -u`
#: in the pane's command, for a server some other run started).
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=True, timeout=60, env=ENV
    ).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def window_size() -> str:
    return tmux("display", "-p", "-t", SESSION, "#{window_width}x#{window_height}").strip()


def tui_running() -> bool:
    """Whether the TUI's own process still runs (not the shell around it in tmux)."""
    pattern = "^[^ ]*python[^ ]* -m xenvmi tui"
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def wait_for(predicate, what: str, cap: float = WAIT_CAP) -> str:
    """The screen once it shows ``what``. No deadline a slow machine can miss: the wait
    fails at once when the TUI has exited or shows a traceback, and otherwise only after
    ``cap`` seconds, a last resort against a TUI that runs but never gets there."""
    end = time.monotonic() + cap
    text = ""
    while time.monotonic() < end:
        text = screen()
        if predicate(text):
            return text
        if "Traceback" in text or not tui_running():
            pytest.fail(f"the TUI failed before showing {what}; screen:\n{text}")
        time.sleep(1)
    pytest.fail(
        f"TUI never showed {what} within {cap:.0f}s; window {window_size()}; screen:\n{text}"
    )


@pytest.fixture(scope="module")
def tui(guests):
    """One TUI for the module (its start and the warm-up cost minutes on the lab): the
    tests run in file order, the domains table's first, then one that leaves it."""
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    # The guest's kernel found and cached first (`xenvmi ps`, as test_guest_views does it
    # cold): a cold discovery in the TUI's worker takes minutes on the one-CPU lab.
    warm = subprocess.run(
        [sys.executable, "-m", "xenvmi", "ps", GUEST],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert warm.returncode == 0, warm.stderr
    tmux(
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "120",
        "-y",
        "100",
        f"env -u COLUMNS -u LINES {sys.executable} -m xenvmi tui --refresh 1; sleep 600",
    )
    assert window_size() == "120x100"
    try:
        yield
    finally:
        subprocess.run(["tmux", "send-keys", "-t", SESSION, "q"], capture_output=True)
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_a_destroyed_domain_leaves_the_table(tui):
    wait_for(lambda s: "Domain-0" in s, "the domains table")
    with paused_domain("test-tui-gone"):
        wait_for(lambda s: "test-tui-gone" in s, "the new paused domain")
    wait_for(lambda s: "test-tui-gone" not in s, "the destroyed domain's row gone")
    assert "Traceback" not in screen()


def test_domains_live_and_a_guests_screen(tui):
    wait_for(
        lambda s: all(g in s for g in GUESTS) and "Domain-0" in s,
        "Domain-0 and every lab guest",
    )
    tmux("send-keys", "-t", SESSION, "/")
    wait_for(lambda s: "filter by name" in s, "the filter box")
    tmux("send-keys", "-t", SESSION, "-l", GUEST)
    tmux("send-keys", "-t", SESSION, "Enter")
    wait_for(lambda s: "xvm-pvh2" not in s and "xvm-pvh1" in s, "the filtered table")
    tmux("send-keys", "-t", SESSION, "Enter")
    wait_for(lambda s: "Processes" in s and "Overview" in s, "the domain screen")
    assert "Traceback" not in screen()


def test_a_guests_processes_and_kernel_log(tui):
    """On the domain screen the previous test opened."""
    tmux("send-keys", "-t", SESSION, "3")
    text = wait_for(lambda s: "xvm-alpha" in s, "the guest's processes")
    assert "xvm-parent" in text and "Traceback" not in text
    tmux("send-keys", "-t", SESSION, "5")
    # The pane shows the log's tail: the lab's own lines may have scrolled away (a guest
    # paused by the dump tests logs soft lockups, dozens of lines each), so the count and
    # a kernel timestamp are what it always shows.
    wait_for(
        lambda s: re.search(r"\d+ log records", s) and re.search(r"^\[ *\d+\.\d{6}\] ", s, re.M),
        "the guest's kernel log",
    )
