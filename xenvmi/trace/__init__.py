"""Hypervisor tracing: decode and summarise xentrace files (pure logic, no Xen access)."""

from xenvmi.trace.xentrace import (
    HypercallCount,
    TraceDecoder,
    TraceFormatError,
    TraceRecord,
    TraceSummary,
    decode,
    summarize,
    summarize_file,
)

__all__ = ["HypercallCount", "TraceDecoder", "TraceFormatError", "TraceRecord",
           "TraceSummary", "decode", "summarize", "summarize_file"]
