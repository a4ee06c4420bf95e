"""Hypervisor tracing: decode and summarise xentrace files (pure logic, no Xen access).

The names below load :mod:`xenvmi.trace.xentrace` on first use, so importing a sibling
module (the hypercall decoder, say) does not pay for the xentrace decoder's tables.
"""

from __future__ import annotations

import importlib

__all__ = [
    "HypercallCount",
    "TraceDecoder",
    "TraceFormatError",
    "TraceRecord",
    "TraceSummary",
    "decode",
    "summarize",
    "summarize_file",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("xenvmi.trace.xentrace"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
