"""Struct layouts from the guest's BTF, resolved once per program.

A view that reads many objects of one type (a task per process) reads each object in one
piece and unpacks every field it needs with one ``struct`` call, instead of building a
drgn Object per field: in a process view drgn's per-object work cost ten times the reads
themselves. drgn still supplies the types (from BTF), so offsets follow the guest's kernel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import drgn
from drgn import TypeKind

#: A struct's fields as :meth:`Layout.read` unpacks them: an int for a scalar, bytes for a
#: char array, None for an optional field the kernel lacks. Which one a field is comes from
#: the guest's BTF at run time (as with ``struct.unpack``), so the values are typed Any.
Fields = dict[str, Any]
#: Fields further apart than this are read separately (see :class:`Layout`).
GAP = 256
_SCALARS = (TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM, TypeKind.POINTER)
_FORMATS = {
    (1, False): "B",
    (1, True): "b",
    (2, False): "H",
    (2, True): "h",
    (4, False): "I",
    (4, True): "i",
    (8, False): "Q",
    (8, True): "q",
}


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
    """Where a struct's wanted fields are, as chunks: fields closer than :data:`GAP` bytes
    share a chunk, read in one piece (a task's fields sit in two clusters 2 KB apart: two
    small reads stay within a page where one spanning both would not). Fields the kernel
    lacks are None."""

    type_name: str
    names: tuple[str, ...]
    start: int  # of the first field
    span: int  # from the first field to the end of the last
    _chunks: tuple[tuple[int, struct.Struct, tuple[str, ...]], ...]  # (offset, fmt, names)
    _absent: dict[str, None]  # the optional fields this kernel lacks

    @classmethod
    def of(
        cls,
        prog: drgn.Program,
        type_name: str,
        fields: dict[str, tuple[str, ...]],
        optional: tuple[str, ...] = (),
    ) -> Layout:
        """The layout of ``fields`` (our name -> member paths to try, in order: renamed
        across kernel versions) in ``type_name``. A field missing from the kernel raises
        LookupError, unless it is ``optional`` (then it unpacks as None). Cached per
        program."""
        key = ("xenvmi.layout", type_name, tuple(fields.items()), optional)
        cached = prog.cache.get(key)
        if cached is not None:
            return cached
        t = prog.type(type_name)
        names = tuple(fields)
        found: list[tuple[int, str, str]] = []
        for name, paths in fields.items():
            for path in paths:
                try:
                    off, fmt = _resolve(t, path)
                except LookupError:
                    continue
                found.append((off, fmt, name))
                break
            else:
                if name not in optional:
                    raise LookupError(f"{type_name} has none of {paths}")
        found.sort()
        if not found:
            raise LookupError(f"no wanted field in {type_name}")
        # (offset, format parts, names) per chunk; the first field starts the first chunk
        pos = found[0][0]
        chunks: list[tuple[int, list[str], list[str]]] = [(pos, ["<"], [])]
        for off, f, name in found:
            if off < pos:
                raise LookupError(f"overlapping fields in {type_name}")
            if off - pos > GAP:
                chunks.append((off, ["<"], []))
            elif off > pos:
                chunks[-1][1].append(f"{off - pos}x")
            chunks[-1][1].append(f)
            chunks[-1][2].append(name)
            pos = off + struct.calcsize("<" + f)
        present = {name for _, _, name in found}
        layout = cls(
            type_name,
            names,
            found[0][0],
            pos - found[0][0],
            tuple((o, struct.Struct("".join(f)), tuple(n)) for o, f, n in chunks),
            {n: None for n in names if n not in present},
        )
        prog.cache[key] = layout
        return layout

    def unpack(self, raw: bytes) -> Fields:
        """The fields from :attr:`span` bytes read at the struct's ``start``."""
        out: Fields = {}
        for off, fmt, names in self._chunks:
            out.update(zip(names, fmt.unpack_from(raw, off - self.start)))
        if self._absent:
            out.update(self._absent)
        return out

    def read(self, read: Callable[[int, int], bytes], address: int) -> Fields:
        """Read (``read(address, size)``, e.g. ``Program.read``, one call per chunk) and
        unpack the struct at kernel ``address``; what ``read`` raises (drgn.FaultError)
        if unreadable."""
        out: Fields = {}
        for off, fmt, names in self._chunks:
            out.update(zip(names, fmt.unpack_from(read(address + off, fmt.size))))
        if self._absent:
            out.update(self._absent)
        return out
