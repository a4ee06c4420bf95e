"""The rows every benchmark returns, their goals, and the one table (text or JSON) of them.

A row compares ``ours`` with ``peer`` in one unit; the ratio is always ours / peer (for a
time: above 1 is slower than the peer; for a rate, ``higher_better``: above 1 is faster).
A goal says how the two must compare (issue 22's goals: e.g. at most 1.5x ``xl list``).
A benchmark that cannot run here raises ``Skip`` (its row says why); one that fails says
so in its row, so one missing tool never ends the run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field


class Skip(Exception):
    """This benchmark (or its peer) cannot run here; the message says why."""


@dataclass(frozen=True)
class Goal:
    """ours <= factor * peer + plus (``at_most``), or ours >= factor * peer (``at_least``)."""

    kind: str  # "at_most" or "at_least"
    factor: float
    plus: float = 0.0
    text: str = ""

    @classmethod
    def at_most(cls, factor: float, plus: float = 0.0, text: str = "") -> Goal:
        extra = f" + {fmt(plus)}" if plus else ""
        return cls("at_most", factor, plus, text or f"<= {factor:g}x peer{extra}")

    @classmethod
    def at_least(cls, factor: float, text: str = "") -> Goal:
        return cls("at_least", factor, 0.0, text or f">= {factor:g}x peer")

    def met(self, ours: float, peer: float) -> bool:
        if self.kind == "at_most":
            return ours <= self.factor * peer + self.plus
        if self.kind == "at_least":
            return ours >= self.factor * peer
        raise ValueError(f"unknown goal kind {self.kind!r}")


@dataclass
class Row:
    bench: str
    what: str
    size: str = ""
    ours: float | None = None
    peer: float | None = None
    unit: str = "s"
    peer_name: str = ""
    goal: Goal | None = None
    higher_better: bool = False
    #: set when the row could not be measured (or its peer could not): "skipped: ..."
    status: str = ""
    #: a condition that fails the goal whatever the numbers say (e.g. events lost)
    blocker: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.peer:
            return None
        return self.ours / self.peer

    @property
    def met(self) -> bool | None:
        """True/False against the goal; None without a goal or without both numbers."""
        if self.goal is None or self.ours is None or self.peer is None or self.status:
            return None
        return self.goal.met(self.ours, self.peer) and not self.blocker

    def met_text(self) -> str:
        if self.status:
            return self.status
        met = self.met
        if met is None:
            return "-" if self.goal is None else "no peer"
        if not met and self.blocker:
            return f"NO ({self.blocker})"
        return "yes" if met else "NO"

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(ratio=self.ratio, met=self.met, met_text=self.met_text())
        out["goal"] = None if self.goal is None else {**asdict(self.goal)}
        return out


def skipped(bench: str, what: str, why: str) -> Row:
    return Row(bench, what, status=f"skipped: {why}")


def failed(bench: str, what: str, why: str) -> Row:
    return Row(bench, what, status=f"failed: {why}")


def _sig3(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:#.3g}"


def fmt(value: float | None, unit: str = "s") -> str:
    """A value in its unit with 3 significant digits; seconds below 1 s as ms."""
    if value is None or math.isnan(value):
        return "-"
    if unit == "s" and abs(value) < 1:
        return f"{_sig3(value * 1000)} ms"
    return f"{_sig3(value)} {unit}".rstrip()


COLUMNS = ("what", "size", "ours", "peer", "ratio", "goal", "met?")


def cells(row: Row) -> list[str]:
    peer = fmt(row.peer, row.unit)
    if row.peer is not None and row.peer_name:
        peer = f"{peer} ({row.peer_name})"
    elif row.peer_name and row.peer is None:
        peer = f"- ({row.peer_name})"
    ratio = row.ratio
    return [
        row.what,
        row.size,
        fmt(row.ours, row.unit),
        peer,
        "-" if ratio is None else f"{ratio:.2f}x",
        row.goal.text if row.goal else "-",
        row.met_text(),
    ]


def text_table(rows: list[Row], width: int = 60) -> str:
    """The table, one line a row, grouped by benchmark; long cells are cut at ``width``."""
    body = [[c if len(c) <= width else c[: width - 1] + "…" for c in cells(r)] for r in rows]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(COLUMNS)]
    line = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip()  # noqa: E731
    out = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    bench = None
    for row, b in zip(rows, body):
        if row.bench != bench:
            bench = row.bench
            out.append(f"[{bench}]")
        out.append(line(b))
    return "\n".join(out)


def summary(rows: list[Row]) -> dict:
    """Counts of goals met, missed, and rows skipped or failed."""
    goals = [r for r in rows if r.goal is not None]
    return {
        "rows": len(rows),
        "goals": len(goals),
        "met": sum(r.met is True for r in goals),
        "missed": sum(r.met is False for r in goals),
        "skipped": sum(r.status.startswith("skipped") for r in rows),
        "failed": sum(r.status.startswith("failed") for r in rows),
    }


def summary_text(rows: list[Row]) -> str:
    s = summary(rows)
    return (
        f"goals: {s['met']} met, {s['missed']} missed, "
        f"{s['goals'] - s['met'] - s['missed']} not measured; "
        f"rows: {s['rows']} ({s['skipped']} skipped, {s['failed']} failed)"
    )


def to_json(rows: list[Row], meta: dict) -> str:
    return json.dumps(
        {"meta": meta, "summary": summary(rows), "rows": [r.to_json() for r in rows]}, indent=1
    )
