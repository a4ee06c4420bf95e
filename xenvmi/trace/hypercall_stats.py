"""Per-call counts, error counts and log2 latency histograms of traced privcmd calls.

Filled either from decoded events (streaming mode, so totals match the printed lines) or
from the BPF maps (``--summary``/``--hist`` without events: the kernel counts, nothing is
sent per call). Both paths land in the same Stats, rendered here as tables and as
bcc-style histograms (the layout of bcc's print_log2_hist, so the output reads like
biolatency's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xenvmi import render
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.trace import hypercall_subops
from xenvmi.trace.hypercall_decode import describe_ret, error_name, op_name

#: bcc's histogram widths: 40 stars for slots up to 2^32, 20 beyond.
STARS = 40


def log2_slot(value: int) -> int:
    """bcc's bpf_log2l(): 0 and 1 -> 1, 2-3 -> 2, 4-7 -> 3, ... (slot i holds
    [2^(i-1), 2^i - 1], slot 1 also 0)."""
    return max(1, int(value).bit_length())


def slot_range(slot: int) -> tuple[int, int]:
    """The values ``slot`` counts, as print_log2_hist labels them."""
    low, high = (1 << slot) >> 1, (1 << slot) - 1
    return (low - 1, high) if low == high else (low, high)


def _stars(val: int, val_max: int, width: int) -> str:
    """As many stars as floor(width * val / val_max), at most ``width`` (bcc's _stars)."""
    return "*" * (min(width, int(width * val / val_max)) if val_max else 0)


def format_log2_hist(slots: Mapping[int, int], val_type: str = "usecs") -> str:
    """A histogram laid out like bcc's print_log2_hist (empty string if no samples)."""
    nonzero = [s for s, v in slots.items() if v > 0]
    if not nonzero:
        return ""
    idx_max = max(nonzero)
    val_max = max(slots.values())
    if idx_max <= 32:
        header, width, stars = f"     {val_type:<19} : count     distribution", 10, STARS
    else:
        header = f"               {val_type:<29} : count     distribution"
        width, stars = 20, STARS // 2
    lines = [header]
    for i in range(1, idx_max + 1):
        low, high = slot_range(i)
        val = slots.get(i, 0)
        lines.append(
            f"{low:>{width}} -> {high:<{width}} : {val:<8} |{_stars(val, val_max, stars):<{stars}}|"
        )
    return "\n".join(lines)


@dataclass
class OpCount:
    """Calls of one hypercall command (or privcmd request): how many, how many failed, time."""

    name: str
    subop: str | None
    calls: int = 0
    errors: int = 0
    total_ns: int = 0
    max_ns: int = 0

    @property
    def avg_us(self) -> float:
        return self.total_ns / self.calls / 1000 if self.calls else 0.0


@dataclass
class ErrorCount:
    """How often one call failed with one error."""

    name: str
    subop: str | None
    error: str
    ret: int
    count: int = 0


class Stats:
    """Accumulates OpCounts, ErrorCounts and per-name latency histograms (usecs)."""

    def __init__(self, arch: str | None = None, release: str | None = None) -> None:
        self.arch = arch
        self.release = release  #: Xen release whose tables name the map's commands
        self.ops: dict[tuple[str, str | None], OpCount] = {}
        self.errors: dict[tuple[str, str | None, int], ErrorCount] = {}
        self.hist: dict[str, dict[int, int]] = {}
        self.lost = 0

    def add(self, ev: HypercallEvent) -> None:
        """Count one decoded event."""
        self.add_count(
            ev.name, ev.subop_name, ev.ret if ev.failed else 0, 1, ev.latency_ns, ev.latency_ns
        )
        self.add_hist(ev.name, log2_slot(ev.latency_ns // 1000), 1)

    def add_count(
        self, name: str, subop: str | None, err: int, count: int, total_ns: int, max_ns: int
    ) -> None:
        cell = self.ops.setdefault((name, subop), OpCount(name, subop))
        cell.calls += count
        cell.total_ns += total_ns
        cell.max_ns = max(cell.max_ns, max_ns)
        if err < 0:
            cell.errors += count
            e = self.errors.setdefault(
                (name, subop, err), ErrorCount(name, subop, error_name(err) or str(err), err)
            )
            e.count += count

    def add_hist(self, name: str, slot: int, count: int) -> None:
        h = self.hist.setdefault(name, {})
        h[slot] = h.get(slot, 0) + count

    # -- from the BPF maps (hypercalls.bpf.c count_key_t/count_val_t, hist_key_t) --------
    def add_map_count(
        self, kind: int, op: int, subop: int, err: int, count: int, total_ns: int, max_ns: int
    ) -> None:
        op_or_none = None if op == 0xFFFFFFFF else op
        sub = None
        if subop != 0xFFFFFFFF and op_or_none is not None:
            sub = hypercall_subops.subop_name(op_or_none, subop, self.release)
        self.add_count(
            op_name(kind, op_or_none, None, self.arch), sub, err, count, total_ns, max_ns
        )

    def add_map_hist(self, kind: int, op: int, slot: int, count: int) -> None:
        self.add_hist(op_name(kind, None if op == 0xFFFFFFFF else op, None, self.arch), slot, count)

    # -- views -------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.ops.values())

    def op_rows(self) -> list[OpCount]:
        return sorted(self.ops.values(), key=lambda c: (-c.calls, c.name, c.subop or ""))

    def error_rows(self) -> list[ErrorCount]:
        return sorted(self.errors.values(), key=lambda e: (-e.count, e.name, e.subop or ""))

    def to_json(self, hist: bool = False) -> dict:
        out = {
            "calls": self.calls,
            "lost": self.lost,
            "ops": [
                {
                    "name": c.name,
                    "subop": c.subop,
                    "calls": c.calls,
                    "errors": c.errors,
                    "avg_us": round(c.avg_us, 3),
                    "max_us": round(c.max_ns / 1000, 3),
                }
                for c in self.op_rows()
            ],
            "errors": [
                {"name": e.name, "subop": e.subop, "error": e.error, "ret": e.ret, "count": e.count}
                for e in self.error_rows()
            ],
        }
        if hist:
            out["latency_usecs_log2"] = {
                name: [
                    {"low": slot_range(s)[0], "high": slot_range(s)[1], "count": n}
                    for s, n in sorted(slots.items())
                ]
                for name, slots in sorted(self.hist.items())
            }
        return out

    def render_summary(self) -> str:
        if not self.ops:
            return "no privcmd calls traced"
        rows = [
            {
                "call": c.name + (f" {c.subop}" if c.subop else ""),
                "count": c.calls,
                "errors": c.errors,
                "avg_us": c.avg_us,
                "max_us": c.max_ns / 1000,
            }
            for c in self.op_rows()
        ]
        out = [render.table(rows, ["call", "count", "errors", "avg_us", "max_us"])]
        if self.errors:
            erows = [
                {
                    "call": e.name + (f" {e.subop}" if e.subop else ""),
                    "error": describe_ret(e.ret),
                    "count": e.count,
                }
                for e in self.error_rows()
            ]
            out += ["", render.table(erows, ["call", "error", "count"])]
        return "\n".join(out)

    def render_hist(self) -> str:
        parts = []
        for name in sorted(self.hist, key=lambda n: -sum(self.hist[n].values())):
            text = format_log2_hist(self.hist[name])
            if text:
                parts.append(f"\ncall = {name}\n{text}")
        return "\n".join(parts).lstrip("\n") or "no latencies recorded"


def stats_from_maps(
    counts: Iterable[tuple[tuple, tuple]],
    hist: Iterable[tuple[tuple, int]],
    arch: str | None = None,
    release: str | None = None,
) -> Stats:
    """Stats from the BPF maps' items as plain tuples:
    ((kind, op, subop, err), (count, total_ns, max_ns)) and ((kind, op, slot), count)."""
    stats = Stats(arch, release)
    for (kind, op, subop, err), (count, total, mx) in counts:
        stats.add_map_count(kind, op, subop, err, count, total, mx)
    for (kind, op, slot), count in hist:
        stats.add_map_hist(kind, op, slot, count)
    return stats


__all__ = [
    "ErrorCount",
    "OpCount",
    "Stats",
    "format_log2_hist",
    "log2_slot",
    "slot_range",
    "stats_from_maps",
]
