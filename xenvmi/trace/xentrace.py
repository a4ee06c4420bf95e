"""Streaming decoder for files written by Xen's ``xentrace`` (Xen 4.17 format).

The file has no header: it is a sequence of per-CPU windows, each a 12-byte cpu_change
record (0x2001f003, cpu, window size; tools/xentrace/xentrace.c write_buffer) followed by
that many bytes of ``struct t_rec`` (public/trace.h): a u32 header (event id bits 0-27,
extra-word count bits 28-30, bit 31 = a u64 TSC follows), the optional TSC, the extra
words. Words are in the tracing host's byte order; Xen hosts (x86, arm64) are little endian.

Records carry no domain id, so the decoder follows the scheduler records per physical CPU
(as xenalyze does) to say which domain/vCPU each record ran under. Files are treated as
hostile: every length is checked, progress is always made, and errors carry the offset.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from xenvmi.errors import XenvmiError
from xenvmi.trace import trc_events as T

#: Windows are at most one per-CPU buffer: t_info.tbuf_size is a u16 page count.
MAX_WINDOW = 0xFFFF * 4096
#: A cpu id beyond this in a window header is garbage, not a real host.
MAX_CPU = 0xFFFF
MAX_ERRORS = 100
_CHUNK_WORDS = 1 << 14  # words unpacked (and records batched) at a time
_WINDOW_HEADER = 12
_NEEDS_SWAP = sys.byteorder != "little"


class TraceFormatError(XenvmiError):
    """The trace file is corrupt or truncated at ``offset``; ``records`` were decoded first."""

    exit_code = 7  # same family as GuestDataError: data we were handed was not as expected

    def __init__(self, message: str, offset: int, records: int = 0) -> None:
        super().__init__(f"{message} at byte offset {offset} (after {records} records)")
        self.offset = offset
        self.records = records


@dataclass(frozen=True)
class TraceRecord:
    """One decoded t_rec. ``domid``/``vcpu`` come from scheduler tracking (None: unknown).

    ``fields`` holds the decoded extra words (see trc_events.FIELD_DECODERS); being a
    dict, it makes records unhashable. Treat it as read-only.
    """

    offset: int
    cpu: int
    tsc: int | None
    event: int
    class_name: str
    name: str
    extra: tuple[int, ...]
    fields: dict[str, Any] = field(default_factory=dict)
    domid: int | None = None
    vcpu: int | None = None


# TraceRecords are built as object.__new__ + one __dict__ assignment: 3x faster than the
# frozen __init__ (ten object.__setattr__ calls) and the result is an ordinary instance.
_new = object.__new__
_set = object.__setattr__


_SCHED_TRACKED = frozenset(
    ev
    for ev in T.FIELD_DECODERS
    if ev & 0xFFFFF00F in (T.TRC_SCHED_RUNSTATE_CHANGE, T.TRC_SCHED_CONTINUE_RUNNING)
) | {T.TRC_SCHED_SWITCH, T.TRC_SCHED_SWITCH_INFCONT, T.TRC_LOST_RECORDS}


def _track(ev: int, x: tuple, cur):
    """The (domid, vcpu) running on this pCPU after scheduler record ``ev``."""
    if ev == T.TRC_SCHED_SWITCH:
        return (x[2], x[3]) if len(x) >= 4 else None
    if ev == T.TRC_SCHED_SWITCH_INFCONT:
        return (x[0], x[1]) if len(x) >= 2 else cur
    if ev == T.TRC_LOST_RECORDS:  # Xen logs it as the vCPU then running (xenalyze does too)
        return (x[1] & 0xFFFF, x[1] >> 16) if len(x) >= 2 else None
    if not x:
        return cur
    who = (x[0] >> 16, x[0] & 0xFFFF)
    if ev == T.TRC_SCHED_CONTINUE_RUNNING or (ev >> 4) & 3 == 0:  # -> running here
        return who
    if (ev >> 8) & 3 == 0 and cur == who:  # the running vCPU left this pCPU
        return None
    return cur


class _Input:
    """Buffered reads from a binary stream: exact unless at end of file, a short step back,
    and a forward search; all linear in the input, whatever it holds."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.buf, self.pos, self.base = stream, b"", 0, 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _fill(self, n: int) -> int:
        """Try to have ``n`` bytes buffered past pos; return how many there are."""
        avail = len(self.buf) - self.pos
        if avail >= n:
            return avail
        parts = [self.buf[self.pos :]]
        self.base += self.pos
        self.pos = 0
        while avail < n:
            chunk = self.stream.read(max(n - avail, 1 << 16))
            if not chunk:
                break
            parts.append(chunk)
            avail += len(chunk)
        self.buf = b"".join(parts)
        return avail

    def read(self, n: int) -> bytes:
        self._fill(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def back(self, n: int) -> None:
        """Step back over bytes just read (they are still buffered)."""
        self.pos -= n

    def find_aligned(self, needle: bytes) -> bool:
        """Move to the next 4-byte-aligned occurrence of ``needle``; False at end of file."""
        while True:
            idx = self.buf.find(needle, self.pos)
            while idx >= 0 and (self.base + idx) & 3:
                idx = self.buf.find(needle, idx + 1)
            if idx >= 0:
                self.pos = idx
                return True
            self.pos = max(self.pos, len(self.buf) - len(needle) + 1)  # may straddle chunks
            kept = len(self.buf) - self.pos
            if self._fill(kept + (1 << 16)) <= kept:
                self.pos = len(self.buf)
                return False


class TraceDecoder:
    """Iterate a xentrace stream as TraceRecords, window by window.

    strict=True raises TraceFormatError at the first problem (records before it have been
    yielded). strict=False records problems in ``errors``, skips the damaged window (or
    scans forward to the next window header) and goes on; a truncated tail ends decoding.
    ``batches()`` is the same walk without building TraceRecords (3x faster, for summaries).
    ``release`` picks the Xen release whose trace.h names the events (4.17 for None).
    """

    def __init__(
        self, stream: BinaryIO, *, strict: bool = True, release: str | None = None
    ) -> None:
        self.input = _Input(stream)
        self.strict = strict
        self.release = release
        T.event_names(release)  # an unknown release fails here, before any record
        self.records = 0
        self.windows = 0
        self.errors: list[TraceFormatError] = []
        self.error_count = 0
        self.running: dict[int, tuple[int, int] | None] = {}

    def __iter__(self) -> Iterator[TraceRecord]:
        names: dict[int, tuple[str, str]] = {}
        decoders, new, setd, release = T.FIELD_DECODERS, _new, _set, self.release
        for batch in self.batches():
            for offset, cpu, tsc, ev, extra, domid, vcpu in batch:
                nm = names.get(ev)
                if nm is None:
                    nm = names[ev] = (T.class_name(ev), T.event_name(ev, release))
                dec = decoders.get(ev)
                rec = new(TraceRecord)  # see _new above: this loop is the hot path
                setd(
                    rec,
                    "__dict__",
                    {
                        "offset": offset,
                        "cpu": cpu,
                        "tsc": tsc,
                        "event": ev,
                        "class_name": nm[0],
                        "name": nm[1],
                        "extra": extra,
                        "fields": dec(ev, extra) if dec is not None else {},
                        "domid": domid,
                        "vcpu": vcpu,
                    },
                )
                yield rec

    def batches(self) -> Iterator[list[tuple]]:
        """Lists of (offset, cpu, tsc, event, extra, domid, vcpu), in file order."""
        inp = self.input
        while True:
            start = inp.offset
            head = inp.read(_WINDOW_HEADER)
            if not head:
                return
            if len(head) < _WINDOW_HEADER:
                self._fail("truncated window header", start)
                return
            hdr, cpu, size = struct.unpack("<III", head)
            if hdr != T.CPU_CHANGE_HEADER or cpu > MAX_CPU or size > MAX_WINDOW or size & 3:
                what = (
                    f"expected a cpu_change window header (0x{T.CPU_CHANGE_HEADER:08x}),"
                    f" found 0x{hdr:08x} cpu {cpu} size {size}"
                )
                self._fail(what, start)
                inp.back(_WINDOW_HEADER - 4)
                if not self._resync():
                    return
                continue
            self.windows += 1
            cur = self.running.get(cpu) or (None, None)
            yield [(start, cpu, None, T.TRC_TRACE_CPU_CHANGE, (cpu, size), *cur)]
            data = inp.read(size)
            base = start + _WINDOW_HEADER
            done = yield from self._window(data, base, cpu)
            if len(data) < size:
                self._fail(
                    f"file ends inside a window ({len(data)} of {size} bytes read)", base + done
                )
                return
            if done < size:
                hdr = int.from_bytes(data[done : done + 4], "little")
                self._fail(f"record 0x{hdr:08x} runs past the end of its window", base + done)
                self.running[cpu] = None  # the rest of this window is lost

    def _fail(self, message: str, offset: int) -> None:
        err = TraceFormatError(message, offset, self.records)
        if self.strict:
            raise err
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:  # a hostile file can hold an error every 4 bytes
            self.errors.append(err)

    def _resync(self) -> bool:
        """Skip to the next window header (records are word-sized, so 4-aligned)."""
        self.running.clear()  # lost track of every pCPU's schedule
        return self.input.find_aligned(struct.pack("<I", T.CPU_CHANGE_HEADER))

    def _window(self, data: bytes, base: int, cpu: int):
        """Yield batches of one window's records; return how many bytes they covered.

        Words are unpacked a chunk at a time, so a huge window costs no more memory
        than its bytes.
        """
        tracked, lost = _SCHED_TRACKED, T.TRC_LOST_RECORDS
        cur = self.running.get(cpu)
        domid, vcpu = cur or (None, None)
        total = len(data) >> 2
        done = 0  # words of the window decoded so far
        while done < total:
            raw = array("I")
            raw.frombytes(data[done * 4 : min(total, done + _CHUNK_WORDS) * 4])
            if _NEEDS_SWAP:
                raw.byteswap()
            words = tuple(raw)  # slicing a tuple gives the extra-words tuple in one step
            n, last = len(words), done + len(words) >= total
            at = base + 4 * done
            batch: list[tuple] = []
            append = batch.append
            i = 0
            while i < n:
                h = words[i]
                if h & 0x80000000:
                    end = i + 3 + ((h >> 28) & 7)
                    if end > n:
                        break
                    tsc = words[i + 1] | (words[i + 2] << 32)
                    extra = words[i + 3 : end]
                else:
                    end = i + 1 + ((h >> 28) & 7)
                    if end > n:
                        break
                    tsc = None
                    extra = words[i + 1 : end]
                ev = h & 0x0FFFFFFF
                if ev in tracked:  # scheduler records move the attribution after themselves,
                    cur = _track(ev, extra, cur)
                    if ev == lost:  # except lost_records, logged by the vCPU it names
                        domid, vcpu = cur or (None, None)
                    append((at + 4 * i, cpu, tsc, ev, extra, domid, vcpu))
                    domid, vcpu = cur or (None, None)
                else:
                    append((at + 4 * i, cpu, tsc, ev, extra, domid, vcpu))
                i = end
            done += i
            self.records += len(batch)
            self.running[cpu] = cur
            if batch:
                yield batch
            if last or i == 0:  # the rest is one cut or corrupt record
                break
        return 4 * done  # bytes decoded; Xen never splits a record across windows


def open_source(source: Any):
    """A binary stream from a path, bytes-like object or already-open binary stream."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb")
    return source


def decode(
    source: Any, *, strict: bool = True, release: str | None = None
) -> Iterator[TraceRecord]:
    """Decode a path, bytes or binary stream; see TraceDecoder for ``strict`` and ``release``."""
    stream = open_source(source)
    try:
        yield from TraceDecoder(stream, strict=strict, release=release)
    finally:
        if stream is not source:
            stream.close()


# -- summary ----------------------------------------------------------------------------

_HYPERCALL_SOURCES = {
    T.TRC_PV_HYPERCALL: "pv",
    T.TRC_PV_HYPERCALL | T.TRC_64_FLAG: "pv",
    T.TRC_PV_HYPERCALL_V2: "pv",
    T.TRC_PV_HYPERCALL_SUBCALL: "multicall",
    T.TRC_HVM_VMMCALL: "hvm",
}


def domain_label(domid: int | None) -> str:
    """``d3``; ``idle`` for the idle domain; ``?`` when the schedule was not traced."""
    if domid is None:
        return "?"
    return "idle" if domid == T.DOMID_IDLE else f"d{domid}"


@dataclass(frozen=True)
class HypercallCount:
    """How often one domain made one hypercall (source: pv, multicall sub-call or hvm)."""

    domain: str
    domid: int | None
    source: str
    number: int
    name: str
    count: int


@dataclass(frozen=True)
class TraceSummary:
    """Totals for a trace file; ``hypercalls`` sorted by domain then count (descending)."""

    windows: int
    records: int
    cpus: tuple[int, ...]
    first_tsc: int | None
    last_tsc: int | None
    lost_records: int
    events_by_class: dict[str, int]
    hypercalls: tuple[HypercallCount, ...]
    unattributed: int
    errors: tuple[str, ...] = ()


class _Tally:
    """Accumulates a TraceSummary from raw record fields (shared by both summary paths)."""

    def __init__(self) -> None:
        self.windows = self.records = self.lost = self.unattributed = 0
        self.cpus: set[int] = set()
        self.classes: dict[int, int] = {}
        self.calls: dict[tuple, int] = {}
        self.first: int | None = None
        self.last: int | None = None

    def add(self, batch: Iterable[tuple]) -> None:
        """Count (offset, cpu, tsc, event, extra, domid, vcpu) tuples."""
        classes, calls, sources = self.classes, self.calls, _HYPERCALL_SOURCES
        first, last, records = self.first, self.last, self.records
        change, vmmcall, lost = T.TRC_TRACE_CPU_CHANGE, T.TRC_HVM_VMMCALL, T.TRC_LOST_RECORDS
        for _, cpu, tsc, ev, extra, domid, _ in batch:
            if ev == change:
                self.windows += 1
                self.cpus.add(cpu)
                continue
            records += 1
            main = ev >> 16
            classes[main] = classes.get(main, 0) + 1
            if tsc is not None:
                if first is None or tsc < first:
                    first = tsc
                if last is None or tsc > last:
                    last = tsc
            source = sources.get(ev)
            if source is not None and extra:
                if ev == vmmcall:
                    op = extra[0]
                elif ev & ~T.TRC_64_FLAG == T.TRC_PV_HYPERCALL:  # v1: eax is the last word
                    op = extra[-1]
                else:
                    op = extra[0] & 0xFFFFF
                key = (domid, source, op)
                calls[key] = calls.get(key, 0) + 1
                if domid is None:
                    self.unattributed += 1
            elif ev == lost and len(extra) >= 4:
                self.lost += extra[0]
        self.first, self.last, self.records = first, last, records

    def summary(self, errors: Iterable[Any] = ()) -> TraceSummary:
        rows = [
            HypercallCount(domain_label(d), d, src, op, T.hypercall_name(op), n)
            for (d, src, op), n in self.calls.items()
        ]
        rows.sort(key=lambda r: (r.domid is None, r.domid or 0, -r.count, r.source, r.number))
        classes: dict[str, int] = {}
        for main, n in self.classes.items():
            name = T.class_name(main << 16)
            classes[name] = classes.get(name, 0) + n
        return TraceSummary(
            self.windows,
            self.records,
            tuple(sorted(self.cpus)),
            self.first,
            self.last,
            self.lost,
            dict(sorted(classes.items())),
            tuple(rows),
            self.unattributed,
            tuple(str(e) for e in errors),
        )


def summarize(records: Iterable[TraceRecord], errors: Iterable[Any] = ()) -> TraceSummary:
    """Per-domain hypercall counts and file totals from decoded records."""
    tally = _Tally()
    tally.add((r.offset, r.cpu, r.tsc, r.event, r.extra, r.domid, r.vcpu) for r in records)
    return tally.summary(errors)


def summarize_file(source: Any, *, strict: bool = False) -> TraceSummary:
    """Decode and summarise without building TraceRecords; with strict=False decoding
    problems are reported in ``errors`` rather than raised."""
    stream = open_source(source)
    try:
        decoder = TraceDecoder(stream, strict=strict)
        tally = _Tally()
        for batch in decoder.batches():
            tally.add(batch)
        errors = [str(e) for e in decoder.errors]
        if decoder.error_count > len(errors):
            errors.append(f"... and {decoder.error_count - len(errors)} more errors")
        return tally.summary(errors)
    finally:
        if stream is not source:
            stream.close()
