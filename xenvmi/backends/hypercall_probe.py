"""The hypercall tracer: hypercalls.bpf.c compiled and attached with bcc (kprobe and
kretprobe on the privcmd driver's ioctl), its perf buffer polled with a timeout so a
caller can stop on a deadline, a count or a signal. The program's text, the preflight and
the decoding are pure and live in xenvmi.trace; this is the part that needs bcc, root and
a dom0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from xenvmi import xen_release
from xenvmi.errors import XenvmiError
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.trace.hypercall_decode import decode_event, host_arch
from xenvmi.trace.hypercall_filters import Filters
from xenvmi.trace.hypercall_stats import Stats, stats_from_maps
from xenvmi.trace.hypercalls import (
    PROBE_FUNCTION,
    HostFacts,
    bpf_error,
    kernel_headers,
    preflight,
    probe_in_kallsyms,
    program_text,
)

if TYPE_CHECKING:
    from bcc import BPF

#: Concurrent privcmd ioctls the kretprobe can follow (mmapbatch may sleep).
KRETPROBE_MAXACTIVE = 64


def gather_facts() -> HostFacts:
    """What the preflight check needs to know about this host."""
    try:
        import bcc  # noqa: F401

        bcc_error = None
    except ImportError as exc:
        bcc_error = str(exc)
    capeff = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    capeff = int(line.split()[1], 16)
    except OSError:
        pass
    try:
        with open("/proc/kallsyms") as f:
            probe = probe_in_kallsyms(f.read())
    except OSError:
        probe = False
    release = os.uname().release
    return HostFacts(
        bcc_error,
        capeff,
        release,
        kernel_headers(release),
        probe,
        os.path.exists("/dev/xen/privcmd"),
    )


class HypercallTracer:
    """Compile, attach, poll, detach. ``stream`` sends every call to user space (events);
    ``stats`` counts in kernel maps instead (read with ``read_stats``)."""

    def __init__(
        self,
        filters: Filters | None = None,
        *,
        stream: bool = True,
        stats: bool = False,
        arch: str | None = None,
        page_cnt: int = 64,
        release: str | None = None,
    ) -> None:
        self.filters = filters or Filters()
        self.stream, self.stats = stream, stats
        self.arch = arch or host_arch()
        #: the Xen release whose tables name the calls: the running hypervisor's by default
        self.release = release or xen_release.select()
        self.page_cnt = page_cnt
        self.bpf: BPF | None = None  # once started
        self.events = 0
        self.lost = 0
        self._callback: Callable[[HypercallEvent], None] | None = None
        self._limit: int | None = None
        self._error: BaseException | None = None

    @property
    def text(self) -> str:
        return program_text(self.filters, stream=self.stream, stats=self.stats)

    def start(self) -> HypercallTracer:
        preflight(gather_facts())
        from bcc import BPF

        try:
            self.bpf = bpf = BPF(text=self.text)
        except Exception as exc:  # bcc reports every failure as a bare Exception
            raise bpf_error(exc, "compile") from None
        try:
            bpf.attach_kprobe(event=PROBE_FUNCTION, fn_name="trace_entry")
            bpf.attach_kretprobe(
                event=PROBE_FUNCTION, fn_name="trace_return", maxactive=KRETPROBE_MAXACTIVE
            )
        except Exception as exc:
            self.close()
            raise bpf_error(exc, "load" if "load" in str(exc).lower() else "attach") from None
        if self.stream:
            bpf["events"].open_perf_buffer(
                self._on_event, page_cnt=self.page_cnt, lost_cb=self._on_lost
            )
        return self

    def _on_event(self, cpu: int, data, size: int) -> None:
        if self._error is not None or (self._limit is not None and self.events >= self._limit):
            return
        try:
            if self.bpf is None:  # only bpf's perf_buffer_poll calls this
                raise XenvmiError("trace: an event after close()")
            raw = self.bpf["events"].event(data)
            fields = {name: getattr(raw, name) for name, _ in raw._fields_}
            fields["args"] = list(fields["args"])
            fields["comm"] = bytes(fields["comm"])
            self.events += 1
            if self._callback is not None:
                self._callback(decode_event(fields, self.arch, self.release))
        except BaseException as exc:  # ctypes would print and drop it: re-raise in poll()
            self._error = exc

    def _on_lost(self, count: int) -> None:
        self.lost += count

    def poll(
        self,
        callback: Callable[[HypercallEvent], None] | None = None,
        *,
        duration: float | None = None,
        count: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        timeout_ms: int = 100,
    ) -> str:
        """Deliver events to ``callback`` until a limit; return why it stopped:
        "duration", "count" or "stopped" (``should_stop`` said so)."""
        if self.bpf is None:
            raise XenvmiError("trace: poll() before start()")
        self._callback, self._limit = callback, count
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            if should_stop():
                return "stopped"
            if count is not None and self.events >= count:
                return "count"
            wait = timeout_ms / 1000
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "duration"
                wait = min(wait, left)
            if self.stream:
                if self.bpf is None:  # closed by another thread
                    raise XenvmiError("trace: the tracer was closed while polling")
                self.bpf.perf_buffer_poll(timeout=max(1, int(wait * 1000)))
            else:
                time.sleep(wait)

    def read_stats(self) -> Stats:
        """Counts and histograms from the kernel maps (``stats=True``)."""
        if self.bpf is None or not self.stats:
            raise XenvmiError("trace: read_stats() needs a started tracer with stats=True")
        counts = [
            ((k.kind, k.op, k.subop, k.err), (v.count, v.total_ns, v.max_ns))
            for k, v in self.bpf["counts"].items()
        ]
        hist = [((k.kind, k.op, k.slot), v.value) for k, v in self.bpf["dist"].items()]
        stats = stats_from_maps(counts, hist, self.arch, self.release)
        stats.lost = self.lost
        return stats

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None

    def __enter__(self) -> HypercallTracer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
