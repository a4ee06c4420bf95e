"""Turn what a user typed ("13", "-0xd", "0xfffffff3", "EACCES") into a number or a name.

Shared by every ABI table so that all lookups accept the same spellings.
"""

from __future__ import annotations

import re

from xenvmi.errors import UsageError

_INT_RE = re.compile(r"^([+-]?)(0x[0-9a-f]+|0b[01]+|0o[0-7]+|[0-9]+)$", re.IGNORECASE)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_int(text: str) -> int | None:
    """The integer ``text`` spells (decimal, 0x, 0o, 0b, optional sign), or None."""
    m = _INT_RE.match(text.strip())
    if not m:
        return None
    value = int(m.group(2), 0) if not m.group(2).isdigit() else int(m.group(2), 10)
    return -value if m.group(1) == "-" else value


def split_input(value: object, what: str) -> tuple[int | None, str | None]:
    """Classify ``value`` as (number, None) or (None, identifier); raise UsageError otherwise.

    ``what`` names the kind of thing in the error message ("errno", "hypercall").
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"{what}: expected a number or a name, got {type(value).__name__}")
    if isinstance(value, int):
        return value, None
    text = value.strip()
    number = parse_int(text)
    if number is not None:
        return number, None
    if _NAME_RE.match(text):
        return None, text
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise UsageError(f"{what}: {shown!r} is neither a number nor a name")
