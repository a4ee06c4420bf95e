"""JSON fixtures back into model dataclasses (``render.to_jsonable`` is the other way).

Recordings are plain JSON so they can be written by hand, by the synthetic generator or
from a live host; this turns them back into the frozen dataclasses the views render,
following the type hints (nested dataclasses, tuples, lists, dicts, optionals).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from xenvmi.errors import GuestDataError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) > 1 and isinstance(value, dict):  # several dataclasses: the fitting one
            options = [
                o
                for o in options
                if dataclasses.is_dataclass(o)
                and set(value) <= {f.name for f in dataclasses.fields(o)}
            ][:1]
        return _convert(options[0], value) if len(options) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a class, as hints are
        return from_jsonable(tp, value)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_convert(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, vt = typing.get_args(tp) or (Any, Any)
        return {k: _convert(vt, v) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_jsonable(cls: type[T], data: Any) -> T:
    """``cls`` built from a dict of its fields; missing optional fields take defaults.
    A malformed fixture raises GuestDataError naming the class and the problem."""
    if not isinstance(data, dict):
        raise GuestDataError(
            f"recording: expected an object for {cls.__name__}, got {type(data).__name__}"
        )
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data and f.init:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise GuestDataError(f"recording: bad {cls.__name__}: {exc}") from None


def list_of(cls: type[T], data: Any) -> list[T]:
    if not isinstance(data, list):
        raise GuestDataError(f"recording: expected a list of {cls.__name__}")
    return [from_jsonable(cls, d) for d in data]
