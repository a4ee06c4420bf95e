"""History: CPU % and memory sparklines of the selected domain."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from xenvmi.model.host import DomainSample
from xenvmi.tui.format import kib, pct

#: Samples kept per domain (2 minutes at the default 2 s refresh).
HISTORY = 60


class Histories:
    """Per-domain CPU and memory history, fed by every refresh; forgets vanished domains.
    A sample with the time of the domain's last one is not new (a refresh that found no
    new frame, as with --host between two of a host's samples) and adds no point."""

    def __init__(self, size: int = HISTORY) -> None:
        self.size = size
        self.cpu: dict[int, deque[float]] = {}
        self.mem: dict[int, deque[float]] = {}
        self.last: dict[int, float] = {}

    def add(self, samples: list[DomainSample]) -> None:
        seen = set()
        for s in samples:
            seen.add(s.domid)
            if self.last.get(s.domid) == s.time:
                continue
            self.last[s.domid] = s.time
            self.cpu.setdefault(s.domid, deque(maxlen=self.size)).append(s.cpu_percent or 0.0)
            self.mem.setdefault(s.domid, deque(maxlen=self.size)).append(float(s.memory_kib))
        for gone in set(self.cpu) - seen:
            del self.cpu[gone], self.mem[gone], self.last[gone]


class History(Vertical):
    """Two labelled sparklines; ``show`` picks the domain."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._widths: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="spark-row"):
            yield Label("CPU%      ", id="cpu-label", classes="spark-label")
            yield Sparkline([], id="cpu-spark")
        with Horizontal(classes="spark-row"):
            yield Label("Mem       ", id="mem-label", classes="spark-label")
            yield Sparkline([], id="mem-spark")

    def show(self, histories: Histories, sample: DomainSample | None) -> None:
        cpu = list(histories.cpu.get(sample.domid, [])) if sample else []
        mem = list(histories.mem.get(sample.domid, [])) if sample else []
        for spark, data in (("#cpu-spark", cpu), ("#mem-spark", mem)):
            widget = self.query_one(spark, Sparkline)
            widget.data = data
            width = max(1, len(data))  # one cell per sample, growing to HISTORY
            if self._widths.get(spark) != width:  # a new width costs a layout pass
                self._widths[spark] = width
                widget.styles.width = width
        # fixed-width labels (.spark-label): no layout pass needed
        self.query_one("#cpu-label", Label).update(
            f"CPU {pct(sample.cpu_percent) if sample else '-':>5}%", layout=False
        )
        self.query_one("#mem-label", Label).update(
            f"Mem {kib(sample.memory_kib) if sample else '-':>6}", layout=False
        )
