"""A domain destroyed while a plugin reads it: the run names that, not its symptom.

Reads of a destroyed domain fail like holes in its memory, so a view would otherwise end
with "no kernel found" or a partial walk blamed on the guest's data."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from xenvmi import guests, plugins
from xenvmi.backends.memory import BytesMemory
from xenvmi.errors import GuestDataError, NotFoundError, Unavailable
from xenvmi.plugins import Plugin

pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class Row:
    n: int


class Memory(BytesMemory):
    """One page of guest memory whose domain is there or not, as the test says."""

    alive: BaseException | None = None

    def check_alive(self) -> None:
        if self.alive is not None:
            raise self.alive


def _plugin(body):
    class Reader(Plugin):
        name = "reader"
        description = "reads a guest"
        row = Row
        requires = ()

        def run(self, ctx):
            ctx.guest()
            yield from body(ctx)

    return Reader


def _fails(ctx):
    yield Row(1)
    raise GuestDataError("no valid VMCOREINFO note in the guest's memory")


def _partial(ctx):
    yield Row(1)
    ctx.warn("the task list ended in a hole")


@pytest.fixture
def memory(monkeypatch):
    mem = Memory(b"\0" * 4096, name="xvm-gone")
    monkeypatch.setattr(guests, "open_guest", lambda target, **kw: guests.Guest(mem))
    return mem


@pytest.mark.parametrize("body", [_fails, _partial], ids=["failed", "partial"])
def test_a_gone_domain_is_the_error(memory, body):
    memory.alive = NotFoundError("xvm-gone (domain 7) went away while being read")
    result = plugins.run("reader", "xvm-gone", plugin=_plugin(body), timeout=10)
    assert result.error == "xvm-gone (domain 7) went away while being read"
    assert result.exit_code == 3 and not result.complete
    assert [r.n for r in result.rows] == [1]  # what was read before is kept


def test_a_live_domain_keeps_the_runs_own_error(memory):
    result = plugins.run("reader", "xvm-gone", plugin=_plugin(_fails), timeout=10)
    assert "VMCOREINFO" in result.error and result.exit_code == GuestDataError.exit_code


def test_a_complete_run_does_not_ask(memory):
    memory.alive = NotFoundError("asked when it need not")

    def whole(ctx):
        yield Row(1)

    result = plugins.run("reader", "xvm-gone", plugin=_plugin(whole), timeout=10)
    assert result.error is None and result.complete


def test_when_it_cannot_ask_the_runs_error_stays_and_says_so(memory):
    memory.alive = Unavailable("xenstored is not answering")
    result = plugins.run("reader", "xvm-gone", plugin=_plugin(_fails), timeout=10)
    assert "VMCOREINFO" in result.error
    assert any("could not check" in w and "xenstored" in w for w in result.warnings)
