"""The JSON Schema of a plugin's output: the one shape every run prints with ``--json``.

``xenvmi ps --json`` and ``xenvmi run ps --json`` print the same object; its ``rows`` are the
row dataclass's fields (``render.to_jsonable``). The schema is derived from the dataclass's
type hints, so it cannot drift from what is printed; docs/views.md describes it and
``xenvmi plugins --schema NAME`` prints it.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xenvmi.plugins.base import Plugin

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean"}


def type_schema(hint: Any) -> dict:
    """The JSON Schema of one field type (as ``render.to_jsonable`` writes it)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is type(None):
        return {"type": "null"}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin in (typing.Union, types.UnionType):
        options = [type_schema(a) for a in args]
        if all(set(o) == {"type"} for o in options):
            merged: list[str] = []
            for o in options:
                for t in o["type"] if isinstance(o["type"], list) else [o["type"]]:
                    if t not in merged:
                        merged.append(t)
            return {"type": merged}
        return {"anyOf": options}
    if origin in (list, tuple, set, frozenset):
        item = args[0] if args else Any
        return {"type": "array", "items": type_schema(item)}
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": type_schema(value)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [m.name.lower() for m in hint]}
    if isinstance(hint, type) and hint is bytes:
        return {"type": "string", "description": "hex"}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a class, as hints are
        return row_schema(hint)
    return {}


def row_schema(row: type) -> dict:
    """A row dataclass's fields as a JSON object schema (every field always present)."""
    hints = typing.get_type_hints(row)
    fields = [f.name for f in dataclasses.fields(row)]
    return {
        "type": "object",
        "title": row.__name__,
        "properties": {name: type_schema(hints[name]) for name in fields},
        "required": fields,
        "additionalProperties": False,
    }


def result_schema(
    plugin: type[Plugin], legacy_key: str | None = None, legacy_single: bool = False
) -> dict:
    """The schema of ``--json`` for one plugin: who ran, on what, the rows, and whether
    they are complete. ``legacy_key``: a view command's pre-0.2 key for its rows (a list,
    or with ``legacy_single`` the one row), kept for one release."""
    rows: dict[str, Any] = {"type": "array", "items": row_schema(plugin.row)}
    properties: dict[str, dict[str, Any]] = {
        "plugin": {"const": plugin.name},
        "version": {"type": "string"},
        "domain": {"type": ["string", "integer", "null"]},
        "rows": rows,
        "complete": {"type": "boolean"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "error": {"type": ["string", "null"]},
        "seconds": {"type": "number", "minimum": 0},
    }
    if legacy_key:
        properties[legacy_key] = {"deprecated": True, **(rows["items"] if legacy_single else rows)}
    return {
        "$schema": DRAFT,
        "title": f"xenvmi {plugin.name} --json",
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k != legacy_key],
        "additionalProperties": False,
    }
