"""Build small BTF blobs: synthetic kernels for tests and hostile images for fuzzing.

The real kernel's BTF is huge and fixed; tests need tiny, known layouts (and
deliberately broken ones), so this writes the format from scratch.  Records
stay editable until :meth:`BtfWriter.build`, which lets a struct refer to a
pointer to itself (declare it, make the pointer, then set its members), and
:meth:`BtfWriter.raw` lets a test write any record, valid or not.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from xenvmi.guest import btf as B


@dataclass
class _Rec:
    kind: int
    name: str | None
    vlen: int
    kind_flag: bool
    size_or_type: int
    extra: bytes = b""
    name_off: int | None = None  # force a raw name offset (hostile tests)


@dataclass
class BtfWriter:
    """Accumulates types (ids from 1, in call order) and serialises them to BTF."""

    byteorder: str = "little"
    _recs: list[_Rec] = field(default_factory=list)
    _strs: bytearray = field(default_factory=lambda: bytearray(b"\0"))
    _str_offs: dict[str, int] = field(default_factory=dict)

    @property
    def _e(self) -> str:
        return "<" if self.byteorder == "little" else ">"

    def _pack(self, fmt: str, *vals: int) -> bytes:
        return struct.pack(self._e + fmt, *vals)

    def string(self, s: str | None) -> int:
        if not s:
            return 0
        if s not in self._str_offs:
            self._str_offs[s] = len(self._strs)
            self._strs += s.encode() + b"\0"
        return self._str_offs[s]

    def raw(
        self,
        kind: int,
        name: str | None = None,
        vlen: int = 0,
        size_or_type: int = 0,
        extra: bytes = b"",
        kind_flag: bool = False,
        name_off: int | None = None,
    ) -> int:
        """Append any record as given (no checks); returns its id."""
        self._recs.append(_Rec(kind, name, vlen, kind_flag, size_or_type, extra, name_off))
        return len(self._recs)

    # -- one method per kind --------------------------------------------------------

    def ptr(self, target: int) -> int:
        return self.raw(B.PTR, None, 0, target)

    def array(self, elem: int, nelems: int, index_type: int = 0) -> int:
        return self.raw(B.ARRAY, None, 0, 0, self._pack("III", elem, index_type, nelems))

    def struct(
        self, name: str | None, size: int, members: Sequence[tuple] = (), *, union: bool = False
    ) -> int:
        """``members``: (name, type, bit_offset) or (name, type, bit_offset, bitfield_size).

        Any bitfield size makes the record use kind_flag encoding.
        """
        tid = self.raw(B.UNION if union else B.STRUCT, name, 0, size)
        self.set_members(tid, members)
        return tid

    def union(self, name: str | None, size: int, members: Sequence[tuple] = ()) -> int:
        return self.struct(name, size, members, union=True)

    def set_members(self, tid: int, members: Sequence[tuple]) -> None:
        """(Re)define the members of struct/union ``tid`` (for self-referencing types)."""
        rec = self._recs[tid - 1]
        kflag = any(len(m) > 3 and m[3] for m in members)
        out = bytearray()
        for m in members:
            name, mtype, bit_off = m[0], m[1], m[2]
            bits = m[3] if len(m) > 3 else 0
            out += self._pack(
                "III", self.string(name), mtype, (bits << 24 | bit_off) if kflag else bit_off
            )
        rec.vlen, rec.kind_flag, rec.extra = len(members), kflag, bytes(out)

    def enum(
        self, name: str | None, size: int, values: Iterable[tuple[str, int]], signed: bool = False
    ) -> int:
        values = list(values)
        lo, hi = (-(1 << 31), 1 << 31) if signed else (0, 1 << 32)
        if any(not lo <= v < hi for _, v in values):
            return self.enum64(name, size, values, signed)
        extra = b"".join(self._pack("II", self.string(n), v & 0xFFFFFFFF) for n, v in values)
        return self.raw(B.ENUM, name, len(values), size, extra, kind_flag=signed)

    def enum64(
        self, name: str | None, size: int, values: Iterable[tuple[str, int]], signed: bool = False
    ) -> int:
        values = list(values)
        extra = b"".join(
            self._pack("III", self.string(n), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF)
            for n, v in values
        )
        return self.raw(B.ENUM64, name, len(values), size, extra, kind_flag=signed)

    def fwd(self, name: str, union: bool = False) -> int:
        return self.raw(B.FWD, name, 0, 0, kind_flag=union)

    def typedef(self, name: str, target: int) -> int:
        return self.raw(B.TYPEDEF, name, 0, target)

    def const(self, target: int) -> int:
        return self.raw(B.CONST, None, 0, target)

    def volatile(self, target: int) -> int:
        return self.raw(B.VOLATILE, None, 0, target)

    def restrict(self, target: int) -> int:
        return self.raw(B.RESTRICT, None, 0, target)

    def type_tag(self, name: str, target: int) -> int:
        return self.raw(B.TYPE_TAG, name, 0, target)

    def func_proto(
        self, ret: int, params: Sequence[tuple[str | None, int]] = (), variadic: bool = False
    ) -> int:
        params = list(params) + ([(None, 0)] if variadic else [])
        extra = b"".join(self._pack("II", self.string(n), t) for n, t in params)
        return self.raw(B.FUNC_PROTO, None, len(params), ret, extra)

    def func(self, name: str, proto: int, linkage: int = 1) -> int:
        return self.raw(B.FUNC, name, linkage, proto)

    def var(self, name: str, vtype: int, linkage: int = 1) -> int:
        return self.raw(B.VAR, name, 0, vtype, self._pack("I", linkage))

    def datasec(self, name: str, size: int, entries: Sequence[tuple[int, int, int]]) -> int:
        """``entries``: (var id, offset, size)."""
        extra = b"".join(self._pack("III", *e) for e in entries)
        return self.raw(B.DATASEC, name, len(entries), size, extra)

    def decl_tag(self, name: str, target: int, component_idx: int = -1) -> int:
        return self.raw(B.DECL_TAG, name, 0, target, self._pack("i", component_idx))

    # -- output -----------------------------------------------------------------------

    def build(self, **header: int) -> bytes:
        """The BTF blob; ``header`` overrides any of magic, version, flags, hdr_len,
        type_off, type_len, str_off, str_len (to forge broken headers)."""
        types = bytearray()
        for r in self._recs:
            name_off = r.name_off if r.name_off is not None else self.string(r.name)
            info = (r.kind_flag << 31) | (r.kind & 0x1F) << 24 | (r.vlen & 0xFFFF)
            types += self._pack("III", name_off, info, r.size_or_type) + r.extra
        strs = bytes(self._strs)
        h = dict(
            magic=B.MAGIC,
            version=1,
            flags=0,
            hdr_len=B.HEADER_LEN,
            type_off=0,
            type_len=len(types),
            str_off=len(types),
            str_len=len(strs),
        )
        h.update(header)
        hdr = self._pack(
            "HBBIIIII",
            h["magic"],
            h["version"],
            h["flags"],
            h["hdr_len"],
            h["type_off"],
            h["type_len"],
            h["str_off"],
            h["str_len"],
        )
        return hdr + bytes(types) + strs

    # -- float and int: last, as in the class body these names shadow the builtins in
    # every annotation after them (int before float's ``-> int`` would too) ------------

    def float(self, name: str, size: int) -> int:
        return self.raw(B.FLOAT, name, 0, size)

    def int(
        self,
        name: str,
        size: int,
        signed: bool = False,
        *,
        char: bool = False,
        bool_: bool = False,
        bits: int | None = None,
        offset: int = 0,
    ) -> int:
        enc = (
            (B.INT_SIGNED if signed else 0)
            | (B.INT_CHAR if char else 0)
            | (B.INT_BOOL if bool_ else 0)
        )
        nbits = size * 8 if bits is None else bits
        return self.raw(B.INT, name, 0, size, self._pack("I", enc << 24 | offset << 16 | nbits))


@dataclass
class SampleKernel:
    """A tiny task-like kernel BTF and the layout tests place objects with."""

    btf: bytes
    ids: dict[str, int]
    task_size: int = 64
    offsets: dict[str, int] = field(
        default_factory=lambda: {
            "__state": 0,
            "tasks": 8,
            "pid": 24,
            "tgid": 28,
            "comm": 32,
            "mm": 48,
            "prio": 56,
        }
    )


def sample_kernel(byteorder: str = "little") -> SampleKernel:
    """``struct list_head``, ``struct task_struct`` {__state, in_execve:1, in_iowait:1 (bits
    32, 33), tasks, pid, tgid, comm[16], mm, prio}, typedefs (u32, u64, pid_t), ``enum
    pid_type`` and ``struct mm_struct`` as a forward declaration resolved later."""
    w = BtfWriter(byteorder)
    ids: dict[str, int] = {}
    ids["ulong"] = w.int("long unsigned int", 8)
    ids["int"] = w.int("int", 4, signed=True)
    ids["uint"] = w.int("unsigned int", 4)
    ids["char"] = w.int("char", 1, signed=True, char=True)
    ids["ull"] = w.int("long long unsigned int", 8)
    ids["u32"] = w.typedef("u32", ids["uint"])
    ids["u64"] = w.typedef("u64", ids["ull"])
    ids["pid_t"] = w.typedef("pid_t", ids["int"])
    ids["list_head"] = w.struct("list_head", 16)
    lp = w.ptr(ids["list_head"])
    w.set_members(ids["list_head"], [("next", lp, 0), ("prev", lp, 64)])
    ids["mm_fwd"] = w.fwd("mm_struct")
    comm = w.array(ids["char"], 16, ids["int"])
    ids["task_struct"] = w.struct(
        "task_struct",
        64,
        [
            ("__state", ids["uint"], 0),
            ("in_execve", ids["uint"], 32, 1),
            ("in_iowait", ids["uint"], 33, 1),
            ("tasks", ids["list_head"], 64),
            ("pid", ids["pid_t"], 192),
            ("tgid", ids["pid_t"], 224),
            ("comm", comm, 256),
            ("mm", w.ptr(ids["mm_fwd"]), 384),
            ("prio", ids["int"], 448),
        ],
    )
    ids["mm_struct"] = w.struct("mm_struct", 8, [("mm_users", ids["int"], 0)])
    ids["pid_type"] = w.enum(
        "pid_type",
        4,
        [
            ("PIDTYPE_PID", 0),
            ("PIDTYPE_TGID", 1),
            ("PIDTYPE_PGID", 2),
            ("PIDTYPE_SID", 3),
            ("PIDTYPE_MAX", 4),
        ],
    )
    return SampleKernel(w.build(), ids)
