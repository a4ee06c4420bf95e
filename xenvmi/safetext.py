"""Text a guest or xenstore controls, made safe to print and kept whole.

Process names, command lines, module names, kernel log lines and xenstore values are
chosen by whoever controls the guest. Every character that is not printable (C0 and C1
controls such as ESC, line and tab breaks that could forge another output line, Unicode
format characters such as the right-to-left override, unpaired surrogates) is shown as a
``\\xNN`` or ``\\uNNNN`` escape, as the kernel's /dev/kmsg escapes control characters:
nothing reaches a terminal raw, nothing is dropped, and the JSON stays valid UTF-8.
"""

from __future__ import annotations


def _escape(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every non-printable character escaped (printable text unchanged)."""
    if text.isprintable():  # nearly always: skip the per-character pass
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def decode(raw: bytes) -> str:
    """Guest bytes as safe text: UTF-8 where valid, ``\\xNN`` for bytes that are not."""
    return escape(raw.decode("utf-8", "backslashreplace"))
