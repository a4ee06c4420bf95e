"""Render lists of dataclasses as a text table, JSON or JSON lines.

Collectors return dataclasses; every front end (CLI, plugins) renders them here, so the
JSON shape of a row is simply its fields (``dataclasses.asdict``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, enums, bytes and containers to JSON-compatible values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def dumps(value: Any) -> str:
    import json  # here: a text table (`xenvmi list`) needs none of it

    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


def json_line(value: Any) -> str:
    import json

    return json.dumps(to_jsonable(value), separators=(",", ":"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    return str(value)


def table(
    rows: Sequence[Any], columns: Sequence[str] | None = None, headers: Sequence[str] | None = None
) -> str:
    """A left-aligned text table; numbers right-aligned. ``columns`` picks fields."""
    if columns is None:
        if not rows:
            return ""
        columns = [f.name for f in dataclasses.fields(rows[0])]
    heads = [h.upper() for h in (headers or columns)]
    cells = [
        [_cell(getattr(r, c) if not isinstance(r, dict) else r.get(c)) for c in columns]
        for r in rows
    ]
    numeric = [
        all(_is_number(getattr(r, c) if not isinstance(r, dict) else r.get(c)) for r in rows)
        and rows
        for c in columns
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]

    def fmt(values: Iterable[str], header: bool = False) -> str:
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if numeric[i] and not header else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(heads, header=True)] + [fmt(row) for row in cells]
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def column_table(rows: Sequence[Any], columns: Sequence[Any]) -> str:
    """A text table of ``columns`` (``xenvmi.plugins.Column``: ``title``, ``text(row)``,
    ``right_aligned(rows)``), the way every view's rows print in a terminal."""
    heads = [c.title.upper() for c in columns]
    right = [c.right_aligned(rows) for c in columns]
    cells = [[c.text(r) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]

    def fmt(values: Sequence[str], header: bool = False) -> str:
        return "  ".join(
            v.rjust(widths[i]) if right[i] and not header else v.ljust(widths[i])
            for i, v in enumerate(values)
        ).rstrip()

    return "\n".join([fmt(heads, header=True)] + [fmt(row) for row in cells])
