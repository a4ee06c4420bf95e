"""Struct layouts from the guest's BTF, resolved once per program.

A view that reads many objects of one type (a task per process) reads each object in one
piece and unpacks every field it needs with one ``struct`` call, instead of building a
drgn Object per field: in a process view drgn's per-object work cost ten times the reads
themselves. drgn still supplies the types (from BTF), so offsets follow the guest's kernel.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

import drgn
from drgn import TypeKind

_SCALARS = (TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM, TypeKind.POINTER)
_FORMATS = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
            (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


def _strip(t: drgn.Type) -> drgn.Type:
    while t.kind == TypeKind.TYPEDEF:
        t = t.type
    return t.unqualified()


def _resolve(t: drgn.Type, path: str) -> tuple[int, str]:
    """Byte offset and struct format of member ``path`` ("euid.val") of struct ``t``:
    a scalar (integer, enum, pointer) or a char array (read as bytes)."""
    offset = 0
    for name in path.split("."):
        t = _strip(t)
        m = t.member(name)  # LookupError if the kernel has no such member
        if m.bit_offset % 8 or (m.bit_field_size or 0):
            raise LookupError(f"{path} is a bit field")
        offset += m.bit_offset // 8
        t = m.type
    t = _strip(t)
    if t.kind == TypeKind.ARRAY and t.length is not None:
        return offset, f"{t.length * _strip(t.type).size}s"
    if t.kind == TypeKind.ENUM:
        t = _strip(t.type)
    if t.kind not in _SCALARS:
        raise LookupError(f"{path} is a {t.kind.name.lower()}, not a scalar or array")
    signed = t.kind == TypeKind.INT and t.is_signed
    fmt = _FORMATS.get((t.size, signed))
    if fmt is None:
        raise LookupError(f"{path} has an unsupported size {t.size}")
    return offset, fmt


@dataclass(frozen=True)
class Layout:
    """Where a struct's wanted fields are: read :attr:`span` bytes at ``address +
    start`` and :meth:`unpack` them. Fields the kernel lacks are None."""

    type_name: str
    names: tuple[str, ...]
    start: int
    span: int
    _fmt: struct.Struct
    _order: tuple[str, ...]  # the name of each unpacked value, in offset order
    _absent: dict[str, None]  # the optional fields this kernel lacks

    @classmethod
    def of(cls, prog: drgn.Program, type_name: str, fields: dict[str, tuple[str, ...]],
           optional: tuple[str, ...] = ()) -> "Layout":
        """The layout of ``fields`` (our name -> member paths to try, in order: renamed
        across kernel versions) in ``type_name``. A field missing from the kernel raises
        LookupError, unless it is ``optional`` (then it unpacks as None). Cached per
        program."""
        key = ("xenvmi.layout", type_name, tuple(fields.items()), optional)
        cached = prog.cache.get(key)
        if cached is not None:
            return cached
        t = prog.type(type_name)
        found: list[tuple[int, str, int]] = []
        for i, (name, paths) in enumerate(fields.items()):
            for path in paths:
                try:
                    off, fmt = _resolve(t, path)
                except LookupError:
                    continue
                found.append((off, fmt, i))
                break
            else:
                if name not in optional:
                    raise LookupError(f"{type_name} has none of {paths}")
        found.sort()
        if not found:
            raise LookupError(f"no wanted field in {type_name}")
        start, pos, fmt = found[0][0], found[0][0], "<"
        for off, f, _ in found:
            if off < pos:
                raise LookupError(f"overlapping fields in {type_name}")
            fmt += f"{off - pos}x" * (off > pos) + f
            pos = off + struct.calcsize("<" + f)
        names = tuple(fields)
        order = tuple(names[i] for _, _, i in found)
        layout = cls(type_name, names, start, pos - start, struct.Struct(fmt), order,
                     {n: None for n in names if n not in order})
        prog.cache[key] = layout
        return layout

    def unpack(self, raw: bytes) -> dict[str, int | bytes | None]:
        """The fields from :attr:`span` bytes read at the struct's ``start``."""
        out = dict(zip(self._order, self._fmt.unpack_from(raw)))
        if self._absent:
            out.update(self._absent)
        return out

    def read(self, read: Callable[[int, int], bytes],
             address: int) -> dict[str, int | bytes | None]:
        """Read (``read(address, size)``, e.g. ``Program.read``) and unpack the struct at
        kernel ``address``; what ``read`` raises (drgn.FaultError) if unreadable."""
        out = dict(zip(self._order, self._fmt.unpack_from(read(address + self.start,
                                                               self.span))))
        if self._absent:
            out.update(self._absent)
        return out
