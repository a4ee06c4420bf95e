"""History: CPU % and memory sparklines of the selected domain."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.renderables.sparkline import Sparkline as SparklineRenderable
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


class GrowingSparkline(Sparkline):
    """One cell per sample, growing to HISTORY, drawn at the left of a box HISTORY wide
    (CSS): a new sample repaints the sparkline alone, where a widget growing with its
    data made Textual lay the whole screen out again on every refresh."""

    #: Cells drawn; None (nothing shown yet): the whole box.
    cells: int | None = None

    def render(self) -> RenderResult:
        sparkline = super().render()
        if isinstance(sparkline, SparklineRenderable) and self.cells is not None:
            sparkline.width = self.cells
        return sparkline


class History(Vertical):
    """Two labelled sparklines; ``show`` picks the domain."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._labels: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="spark-row"):
            yield Label("CPU%      ", id="cpu-label", classes="spark-label")
            yield GrowingSparkline([], id="cpu-spark")
        with Horizontal(classes="spark-row"):
            yield Label("Mem       ", id="mem-label", classes="spark-label")
            yield GrowingSparkline([], id="mem-spark")

    def show(self, histories: Histories, sample: DomainSample | None) -> None:
        cpu = list(histories.cpu.get(sample.domid, [])) if sample else []
        mem = list(histories.mem.get(sample.domid, [])) if sample else []
        for spark, data in (("#cpu-spark", cpu), ("#mem-spark", mem)):
            widget = self.query_one(spark, GrowingSparkline)
            cells = max(1, len(data))
            if widget.data != data or widget.cells != cells:
                widget.cells = cells
                widget.data = data
                widget.refresh()
        labels = (
            f"CPU {pct(sample.cpu_percent) if sample else '-':>5}%",
            f"Mem {kib(sample.memory_kib) if sample else '-':>6}",
        )
        if labels != self._labels:  # fixed-width labels (.spark-label): no layout pass
            self._labels = labels
            self.query_one("#cpu-label", Label).update(labels[0], layout=False)
            self.query_one("#mem-label", Label).update(labels[1], layout=False)
