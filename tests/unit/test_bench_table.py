"""benchmarks/run.py's table, JSON and goals, on fake rows and fake benchmarks."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import run  # noqa: E402
import table  # noqa: E402
from table import Goal, Row, Skip  # noqa: E402


def test_at_most_goal_with_an_allowance():
    goal = Goal.at_most(2, 0.05, "<= 2x python -c pass + the view")
    assert goal.met(0.25, 0.1) and goal.met(0.2, 0.1)
    assert not goal.met(0.26, 0.1)
    assert Goal.at_most(1.5).text == "<= 1.5x peer"


def test_at_least_goal_is_for_rates():
    goal = Goal.at_least(1.0)
    assert goal.met(120.0, 100.0) and goal.met(100.0, 100.0) and not goal.met(99.0, 100.0)
    with pytest.raises(ValueError):
        Goal("sideways", 1.0).met(1, 1)


def test_row_ratio_and_met():
    row = Row("domains_refresh", "xenvmi list", "5 domains", 0.75, 0.5, goal=Goal.at_most(1.5))
    assert row.ratio == pytest.approx(1.5) and row.met is True and row.met_text() == "yes"
    row.ours = 1.0
    assert row.met is False and row.met_text() == "NO"
    assert Row("b", "no goal", ours=1.0, peer=2.0).met is None
    assert Row("b", "no goal", ours=1.0, peer=2.0).met_text() == "-"
    assert Row("b", "no peer", ours=1.0, goal=Goal.at_most(2)).met_text() == "no peer"
    assert Row("b", "zero peer", ours=1.0, peer=0.0).ratio is None


def test_a_blocker_fails_the_goal_whatever_the_numbers():
    row = Row("trace", "stream", ours=1.01, peer=1.0, goal=Goal.at_most(1.05), blocker="3 lost")
    assert row.met is False and row.met_text() == "NO (3 lost)"


def test_a_skipped_row_is_not_judged():
    row = Row("x", "TUI idle", ours=1.0, goal=Goal.at_most(2), status="skipped: no xentop")
    assert row.met is None and row.met_text() == "skipped: no xentop"
    assert table.skipped("x", "all", "why").met_text() == "skipped: why"
    assert table.failed("x", "all", "boom").met_text() == "failed: boom"


def test_fmt_units():
    assert table.fmt(0.0123) == "12.3 ms"
    assert table.fmt(1.234) == "1.23 s"
    assert table.fmt(171.4) == "171 s"
    assert table.fmt(56.25, "MB/s") == "56.2 MB/s"
    assert table.fmt(None) == "-"


def _rows():
    return [
        Row("a", "fast", "1", 1.0, 2.0, peer_name="peer", goal=Goal.at_most(1.5)),
        Row("a", "slow", "1", 4.0, 2.0, goal=Goal.at_most(1.5)),
        Row("b", "rate", "2", 50.0, 100.0, unit="MB/s", goal=Goal.at_least(1), higher_better=True),
        table.skipped("c", "all rows", "not a Xen dom0"),
        table.failed("d", "all rows", "RuntimeError: boom"),
        Row("e", "info", "3", 0.5),
    ]


def test_text_table_has_every_column_and_groups_by_benchmark():
    out = table.text_table(_rows())
    lines = out.splitlines()
    assert lines[0].split() == ["what", "size", "ours", "peer", "ratio", "goal", "met?"]
    assert [ln for ln in lines if ln.startswith("[")] == ["[a]", "[b]", "[c]", "[d]", "[e]"]
    fast = next(ln for ln in lines if ln.startswith("fast"))
    assert "1.00 s" in fast and "2.00 s (peer)" in fast and "0.50x" in fast
    assert fast.split()[-1] == "yes"
    assert next(ln for ln in lines if ln.startswith("slow")).split()[-1] == "NO"
    assert "skipped: not a Xen dom0" in out and "failed: RuntimeError: boom" in out


def test_long_cells_are_cut():
    row = table.skipped("c", "all rows", "x" * 200)
    assert max(len(c) for c in table.text_table([row], width=40).splitlines()[2:]) < 120


def test_summary_counts():
    assert table.summary(_rows()) == {
        "rows": 6,
        "goals": 3,
        "met": 1,
        "missed": 2,
        "skipped": 1,
        "failed": 1,
    }
    assert table.summary_text(_rows()).startswith("goals: 1 met, 2 missed, 0 not measured")


def test_json_round_trips_every_row():
    data = json.loads(table.to_json(_rows(), {"host": "h"}))
    assert data["meta"] == {"host": "h"} and data["summary"]["missed"] == 2
    fast, slow, rate, skip, fail, info = data["rows"]
    assert fast["ratio"] == 0.5 and fast["met"] is True and fast["goal"]["kind"] == "at_most"
    assert slow["met"] is False and rate["met"] is False and rate["unit"] == "MB/s"
    assert skip["met"] is None and skip["met_text"] == "skipped: not a Xen dom0"
    assert fail["status"] == "failed: RuntimeError: boom"
    assert info["goal"] is None and info["ratio"] is None


@pytest.fixture
def fake_benchmarks(monkeypatch):
    """Three fake benchmark scripts: one returns rows, one skips, one fails."""

    def good(opts):
        return [Row("fake_good", f"quick={opts.quick}", "1", 1.0, 1.0, goal=Goal.at_most(1.5))]

    def skips(opts):
        raise Skip("no xentop here")

    def fails(opts):
        raise RuntimeError("the tool died\nsecond line")

    for name, func in (("fake_good", good), ("fake_skip", skips), ("fake_fail", fails)):
        mod = types.ModuleType(name)
        mod.bench = func  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(
        run,
        "BENCHMARKS",
        {
            "good": ("fake_good", "bench"),
            "skip": ("fake_skip", "bench"),
            "fail": ("fake_fail", "bench"),
            "missing": ("no_such_benchmark_module", "bench"),
        },
    )


def test_run_turns_skips_and_failures_into_rows(fake_benchmarks, capsys, tmp_path):
    status = run.main(["--json", "--quick", "--workdir", str(tmp_path)])
    out, err = capsys.readouterr()
    data = json.loads(out)
    texts = [(r["bench"], r["what"], r["met_text"]) for r in data["rows"]]
    assert texts == [
        ("fake_good", "quick=True", "yes"),
        ("fake_skip", "all rows", "skipped: no xentop here"),
        ("fake_fail", "all rows", "failed: RuntimeError: the tool died"),
        ("no_such_benchmark_module", "all rows", "skipped: cannot import no_such_benchmark_module"),
    ]
    assert status == 1  # a failed benchmark
    assert "good ..." in err and "RuntimeError" in err  # progress and the traceback
    assert list(tmp_path.iterdir()) == []  # the work directory is removed


def test_only_runs_the_named_benchmarks_and_prints_the_table(fake_benchmarks, capsys, tmp_path):
    assert run.main(["--only", "good,skip", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "quick=False" in out and "skipped: no xentop here" in out and "fake_fail" not in out
    assert "goals: 1 met, 0 missed" in out


def test_only_rejects_an_unknown_name(fake_benchmarks):
    with pytest.raises(SystemExit, match="unknown benchmark nope"):
        run.main(["--only", "good,nope"])


def test_every_registered_benchmark_exists():
    """Each name run.py lists is a function of a script here (no Xen needed to check)."""
    for module, func in run.BENCHMARKS.values():
        source = (BENCH / f"{module}.py").read_text()
        assert f"\ndef {func}(opts" in source, (module, func)
