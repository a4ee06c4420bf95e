"""BTF -> Volatility3 ISF types: base_types, user_types, enums and type descriptors.

The half of :mod:`xenvmi.guest.isf` that knows BTF, in dwarf2json's conventions (so
volatility3 reads the result like any other Linux ISF): typedefs and qualifiers resolve
away, an anonymous struct named by a typedef takes its name, other anonymous types are
``unnamed_<id>``, anonymous members ``unnamed_field_<n>`` with ``anonymous: true``, and
bitfields sit at the byte holding their first bit. The BTF is hostile: type chains are
depth-capped and cycles detected, the output is bounded by a node budget, and what ISF
cannot express is skipped and counted in :class:`IsfSummary`, never a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from xenvmi.errors import GuestDataError
from xenvmi.guest import btf as B

MAX_DEPTH = 16  # pointer/array/typedef/qualifier nesting of one type (kernels need < 8)
MAX_NODES = 40_000_000  # type-descriptor nodes in the whole document (a kernel: ~2M)
#: Names volatility3 gives its own meaning in a base-type table.
RESERVED = frozenset(
    {"void", "pointer", "array", "enum", "bitfield", "string", "bytes", "function"}
)
VOID = {"kind": "base", "name": "void"}
FUNCTION = {"kind": "function"}
_C_NAMES = {
    "unsigned long": "long unsigned int",
    "long": "long int",
    "unsigned long long": "long long unsigned int",
    "long long": "long long int",
    "unsigned short": "short unsigned int",
    "short": "short int",
    "unsigned": "unsigned int",
    "signed": "int",
    "bool": "_Bool",
}
_CHAR_NAMES = frozenset({"char", "signed char", "unsigned char"})
_TOKEN = re.compile(r"\s*(\*|\[\s*\d*\s*\]|[A-Za-z_][A-Za-z_0-9]*)")


@dataclass
class IsfSummary:
    """What went into the ISF, and what could not (counts by reason)."""

    base_types: int = 0
    user_types: int = 0
    enums: int = 0
    symbols: int = 0
    typed_symbols: int = 0
    bitfields: int = 0
    anonymous_types: int = 0
    kaslr_slide: int = 0
    banner: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


class IsfTypes:
    """BTF -> ISF base_types, user_types, enums and type descriptors (memoized)."""

    def __init__(self, btf: B.Btf, summary: IsfSummary, pointer_size: int = 8) -> None:
        self.btf, self.sum = btf, summary
        self.endian = btf.byteorder
        self.base: dict[str, dict] = {
            "void": {"size": 0, "signed": False, "kind": "void", "endian": self.endian},
            "pointer": {
                "size": pointer_size,
                "signed": False,
                "kind": "int",
                "endian": self.endian,
            },
        }
        self.base_name: dict[int, str] = {}
        self.user_name: dict[int, str] = {}  # STRUCT/UNION id -> ISF name
        self.enum_name: dict[int, str] = {}
        self._memo: dict[int, tuple[dict | None, int]] = {}
        self._busy: set[int] = set()
        self.nodes = 0
        self._name_bases()
        self._name_aggregates()

    # -- names -------------------------------------------------------------------------

    def _get(self, tid: int) -> B.BtfType | None:
        """The type's header, or None (counted) if the record is malformed."""
        try:
            return self.btf.get(tid)
        except GuestDataError:
            self.sum.skip("malformed BTF types")
            return None

    def _name_bases(self) -> None:
        for tid in self.btf.ids_of_kind(B.INT, B.FLOAT):
            t = self._get(tid)
            if t is None:
                continue
            if t.kind == B.INT:
                try:
                    enc, off, bits = self.btf.int_info(t)
                except GuestDataError:
                    self.sum.skip("malformed BTF types")
                    continue
                signed = bool(enc & B.INT_SIGNED)
                kind = (
                    "bool"
                    if enc & B.INT_BOOL
                    else "char"
                    if enc & B.INT_CHAR or t.name in _CHAR_NAMES
                    else "int"
                )
            else:
                signed, kind = True, "float"
            props = {"size": t.size, "signed": signed, "kind": kind, "endian": self.endian}
            name = t.name or f"__btf_{kind}{t.size * 8}"
            if name in RESERVED or self.base.get(name, props) != props:
                name = f"__btf_base_{tid}"
            self.base.setdefault(name, props)
            self.base_name[tid] = name

    def _name_aggregates(self) -> None:
        taken: set[str] = set()
        anonymous: dict[int, None] = {}  # ordered set
        for tid in self.btf.ids_of_kind(B.STRUCT, B.UNION):
            t = self._get(tid)
            if t is None:
                continue
            if t.name is None:
                anonymous[tid] = None
            elif t.name in taken:  # a second, different layout under the same name
                self.sum.skip("duplicate type names (renamed)")
                self.user_name[tid] = self._fresh(f"{t.name}__btf{tid}", taken)
            else:
                taken.add(t.name)
                self.user_name[tid] = t.name
        for tid in self.btf.ids_of_kind(B.TYPEDEF):  # typedef struct {...} name_t;
            t = self._get(tid)
            if t is None:
                continue
            target = t.type
            if (
                target in anonymous
                and target not in self.user_name
                and t.name
                and t.name not in taken
            ):
                taken.add(t.name)
                self.user_name[target] = t.name
        for tid in anonymous:
            if tid not in self.user_name:
                self.user_name[tid] = self._fresh(f"unnamed_{tid:x}", taken)
        self._user_sizes = {n: self.btf.get(tid).size for tid, n in self.user_name.items()}
        self.sum.anonymous_types = len(anonymous)
        enums: set[str] = set()
        self._enum_sizes: dict[str, int] = {}
        for tid in self.btf.ids_of_kind(B.ENUM, B.ENUM64):
            t = self._get(tid)
            if t is None:
                continue
            if t.size not in (1, 2, 4, 8):
                self.sum.skip("enums of an impossible size")
            elif t.name is None:
                self.enum_name[tid] = self._fresh(f"unnamed_{tid:x}", enums)
            elif t.vlen == 0:  # a forward declaration: the definition's name, if any
                self.enum_name[tid] = t.name
            elif t.name in enums:
                self.sum.skip("duplicate enum names (renamed)")
                self.enum_name[tid] = self._fresh(f"{t.name}__btf{tid}", enums)
            else:
                enums.add(t.name)
                self.enum_name[tid] = t.name
            if t.vlen and tid in self.enum_name:
                self._enum_sizes.setdefault(self.enum_name[tid], t.size)

    @staticmethod
    def _fresh(name: str, taken: set[str]) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    # -- descriptors -------------------------------------------------------------------

    def desc(self, tid: int) -> dict | None:
        """The ISF type descriptor of BTF id ``tid``; None if ISF cannot express it."""
        d, n = self._desc(tid, 0)
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise GuestDataError(
                f"BTF would give an ISF of more than {MAX_NODES} type nodes: not a plausible kernel"
            )
        return d

    def _desc(self, tid: int, depth: int) -> tuple[dict | None, int]:
        hit = self._memo.get(tid)
        if hit is not None:
            return hit
        if tid in self._busy or depth > MAX_DEPTH:
            self.sum.skip("type chains too deep or cyclic")
            return None, 0
        self._busy.add(tid)
        try:
            out = self._build(self.btf.get(tid), depth)
        except GuestDataError:  # a bad reference, array or record: this type only
            self.sum.skip("malformed BTF types")
            out = None, 0
        finally:
            self._busy.discard(tid)
        self._memo[tid] = out
        return out

    def _build(self, t: B.BtfType, depth: int) -> tuple[dict | None, int]:
        k = t.kind
        if t.id == 0:
            return VOID, 1
        if k in (B.INT, B.FLOAT):
            name = self.base_name.get(t.id)
            return ({"kind": "base", "name": name}, 1) if name else (None, 0)
        if k in (B.STRUCT, B.UNION):
            return {"kind": "struct" if k == B.STRUCT else "union", "name": self.user_name[t.id]}, 1
        if k == B.FWD:
            kind = B.UNION if t.kind_flag else B.STRUCT
            full = next(
                (i for i in self.btf.ids_by_name(t.name or "") if self.btf.kind(i) == kind), None
            )
            # the definition's name (maybe renamed)
            name = t.name if full is None else self.user_name.get(full, t.name)
            if not name:
                return None, 0
            return {"kind": "union" if t.kind_flag else "struct", "name": name}, 1
        if k in (B.ENUM, B.ENUM64):
            name = self.enum_name.get(t.id)
            return ({"kind": "enum", "name": name}, 1) if name else (None, 0)
        if k == B.PTR:
            sub, n = self._desc(t.type, depth + 1)
            return {"kind": "pointer", "subtype": sub or VOID}, n + 1
        if k == B.ARRAY:
            elem, _, count = self.btf.array_info(t)
            sub, n = self._desc(elem, depth + 1)
            return ({"kind": "array", "count": count, "subtype": sub}, n + 1) if sub else (None, 0)
        if k in (B.TYPEDEF, B.CONST, B.VOLATILE, B.RESTRICT, B.TYPE_TAG):
            return self._desc(t.type, depth + 1)
        if k in (B.FUNC_PROTO, B.FUNC):
            return FUNCTION, 1
        return None, 0  # VAR, DATASEC, DECL_TAG: not types

    def sizeof(self, d: dict) -> int | None:
        """Bytes of a descriptor's type (None: unknown, e.g. a forward-declared struct)."""
        kind = d["kind"]
        if kind == "base":
            return self.base.get(d["name"], {}).get("size")
        if kind == "pointer":
            return self.base["pointer"]["size"]
        if kind == "array":
            sub = self.sizeof(d["subtype"])
            return None if sub is None else sub * d["count"]
        if kind == "enum":
            return self._enum_sizes.get(d["name"])
        if kind in ("struct", "union"):
            return self._user_sizes.get(d["name"])
        return None

    # -- tables ------------------------------------------------------------------------

    def user_types(self) -> dict[str, dict]:
        """Every struct and union; one with malformed members keeps its size, no fields
        (volatility3 looks anonymous members' types up by name: none may be missing)."""
        out = {}
        for tid, name in self.user_name.items():
            t = self.btf.get(tid)
            try:
                fields = self._fields(t)
            except GuestDataError:
                self.sum.skip("malformed BTF types")
                fields = {}
            out[name] = {
                "kind": "struct" if t.kind == B.STRUCT else "union",
                "size": t.size,
                "fields": fields,
            }
        return out

    def _fields(self, owner: B.BtfType) -> dict[str, dict]:
        fields: dict[str, dict] = {}
        anon = 0
        for m in self.btf.members(owner):
            bit_offset, bits = m.bit_offset, m.bitfield_size
            if not owner.kind_flag:  # old-style bitfield: the INT carries width and offset
                base = self.btf.get(self._under_modifiers(m.type))
                if base.kind == B.INT:
                    _, ioff, ibits = self.btf.int_info(base)
                    if ioff or ibits != base.size * 8:
                        bit_offset, bits = bit_offset + ioff, ibits
            name = m.name
            if name is None:
                name, anon = f"unnamed_field_{anon:x}", anon + 1
            d = self.desc(m.type)
            if bits:
                size = (
                    self.sizeof(d)
                    if d and d["kind"] == "base"
                    else self._enum_sizes.get(d["name"])
                    if d and d["kind"] == "enum"
                    else None
                )
                if size is None or bit_offset % 8 + bits > size * 8:
                    self.sum.skip("bitfields ISF cannot express")
                    continue
                self.sum.bitfields += 1
                fields[name] = {
                    "type": {
                        "kind": "bitfield",
                        "bit_position": bit_offset % 8,
                        "bit_length": bits,
                        "type": d,
                    },
                    "offset": bit_offset // 8,
                }
                continue
            if d is None:
                self.sum.skip("members of types ISF cannot express")
                continue
            if bit_offset % 8:
                self.sum.skip("members off a byte boundary")
                continue
            f = {"type": d, "offset": bit_offset // 8}
            if m.name is None and d["kind"] in ("struct", "union"):
                if self._anon_ok(self._under_modifiers(m.type), {owner.id}):
                    f["anonymous"] = True
                else:
                    self.sum.skip("anonymous members volatility3 cannot flatten")
            fields[name] = f
        return fields

    def _under_modifiers(self, tid: int) -> int:
        """``Btf.skip_modifiers``, but a chain too deep gives ``tid`` back: desc() then
        skips just that member ("type chains too deep or cyclic"), not the whole struct."""
        try:
            return self.btf.skip_modifiers(tid, MAX_DEPTH)
        except GuestDataError:
            return tid

    def _anon_ok(self, tid: int, path: set[int]) -> bool:
        """volatility3 flattens anonymous members recursively: allow no cycle, no FWD."""
        t = self.btf.get(tid)
        if t.kind not in (B.STRUCT, B.UNION) or tid in path or len(path) > MAX_DEPTH:
            return False
        for m in self.btf.members(t):  # (a malformed record: the caller's GuestDataError)
            if m.name is None:
                inner = self._under_modifiers(m.type)
                if self.btf.kind(inner) in (B.STRUCT, B.UNION) and not self._anon_ok(
                    inner, path | {tid}
                ):
                    return False
        return True

    def enums(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        order = sorted(self.enum_name.items(), key=lambda i: not self.btf.get(i[0]).vlen)
        for tid, name in order:  # definitions first: a forward declaration only if alone
            t = self.btf.get(tid)
            try:
                values = dict(reversed(self.btf.enumerators(t)))  # first duplicate wins
            except GuestDataError:
                self.sum.skip("malformed BTF types")
                continue
            signed = t.kind_flag or any(v < 0 for v in values.values())
            out.setdefault(
                name, {"size": t.size, "base": self._enum_base(t.size, signed), "constants": values}
            )
        return out

    def _enum_base(self, size: int, signed: bool) -> str:
        for name in sorted(self.base):  # dwarf2json's rule: the first matching int, by name
            b = self.base[name]
            if (
                b["kind"] == "int"
                and name != "pointer"
                and b["size"] == size
                and b["signed"] == signed
            ):
                return name
        name = f"__btf_{'s' if signed else 'u'}{size * 8}"
        self.base[name] = {"size": size, "signed": signed, "kind": "int", "endian": self.endian}
        return name

    # -- declared C types ----------------------------------------------------------------

    def parse(self, spec: str) -> tuple[dict | None, list[int | None]]:
        """A descriptor for a C type like ``const char *const []`` (dims: None for ``[]``)."""
        toks = _TOKEN.findall(spec)
        words = [w for w in toks if w[0] not in "*[" and w not in ("const", "volatile")]
        stars = toks.count("*")
        dims = [int(d[1:-1]) if d[1:-1].strip() else None for d in toks if d[0] == "["]
        if not words:
            return None, dims
        if words[0] in ("struct", "union", "enum") and len(words) == 2:
            tid = self.named(
                words[1],
                {"struct": (B.STRUCT,), "union": (B.UNION,), "enum": (B.ENUM, B.ENUM64)}[words[0]],
            )
        elif words == ["void"]:
            tid = 0
        else:
            name = " ".join(words)
            tid = self.named(_C_NAMES.get(name, name), (B.INT, B.FLOAT, B.TYPEDEF))
        if tid is None:
            return None, dims
        d = self.desc(tid)
        for _ in range(stars):
            d = {"kind": "pointer", "subtype": d or VOID}
        return d, dims

    def named(self, name: str, kinds: tuple[int, ...]) -> int | None:
        ids = [i for i in self.btf.ids_by_name(name) if self.btf.kind(i) in kinds]
        full = [
            i for i in ids if self.btf.get(i).vlen or self.btf.kind(i) not in (B.ENUM, B.ENUM64)
        ]
        found = full or ids
        return found[0] if found else None

    def anonymous_with(self, members: tuple[str, ...]) -> dict | None:
        want = set(members)
        for tid in self.btf.ids_of_kind(B.STRUCT):
            t = self.btf.get(tid)
            if t.name is None and want <= {m.name for m in self.btf.members(t)}:
                return self.desc(tid)
        return None
