"""Pure-Python reader of BTF (the kernel's BPF Type Format) found in guest memory.

Debian kernels ship no usable debug info, but every modern kernel carries its
own BTF between ``__start_BTF`` and ``__stop_BTF``.  That blob comes from a
guest we do not trust, so this parser treats it as hostile: every offset,
count and type id is checked before use, sizes are capped, and any
malformation raises :class:`~xenvmi.errors.GuestDataError` with a one-line
message.  Parsing is split in two: one linear pass validates the framing of
every type record (so later indexing is safe and cheap), and the kind-specific
payloads (members, enumerators, ...) are decoded on demand.
"""

from __future__ import annotations

import bisect
import hashlib
import marshal
import struct
import zlib
from array import array
from typing import NamedTuple

from xenvmi.errors import GuestDataError

MAGIC = 0xEB9F
HEADER_LEN = 24
MAX_BTF_SIZE = 256 << 20  # the kernel's own limit (MAX_BTF_SIZE is 16 MiB; be generous)
MAX_TYPES = 0xFFFFF  # BTF_MAX_TYPE
MAX_NAME_LEN = 4096
MAX_TYPE_SIZE = 1 << 30  # no C type in a kernel is anywhere near a GiB
#: Tag of :meth:`Btf.export_index` blobs; bump it when their layout changes.
INDEX_FORMAT = "xenvmi-btf-index/2"

# Kinds (include/uapi/linux/btf.h).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19

KIND_NAMES = {
    INT: "INT",
    PTR: "PTR",
    ARRAY: "ARRAY",
    STRUCT: "STRUCT",
    UNION: "UNION",
    ENUM: "ENUM",
    FWD: "FWD",
    TYPEDEF: "TYPEDEF",
    VOLATILE: "VOLATILE",
    CONST: "CONST",
    RESTRICT: "RESTRICT",
    FUNC: "FUNC",
    FUNC_PROTO: "FUNC_PROTO",
    VAR: "VAR",
    DATASEC: "DATASEC",
    FLOAT: "FLOAT",
    DECL_TAG: "DECL_TAG",
    TYPE_TAG: "TYPE_TAG",
    ENUM64: "ENUM64",
}

# INT encoding bits.
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4

# Bytes of kind-specific data after the 12-byte common header: (fixed, per vlen).
_EXTRA = {
    INT: (4, 0),
    ARRAY: (12, 0),
    STRUCT: (0, 12),
    UNION: (0, 12),
    ENUM: (0, 8),
    FUNC_PROTO: (0, 8),
    VAR: (4, 0),
    DATASEC: (0, 12),
    DECL_TAG: (4, 0),
    ENUM64: (0, 12),
}
# Kinds whose ``size_or_type`` field is a type id (the rest hold a size or nothing).
_REF_KINDS = frozenset(
    {PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DECL_TAG, TYPE_TAG}
)
#: Kernel globals whose type is an anonymous struct (kernel BTF has no VARs to name it):
#: the members that identify that struct. Used by the drgn object finder and the ISF writer.
ANONYMOUS_GLOBALS = {"tk_core": ("seq", "timekeeper")}

# Kinds that only rename or qualify another type.
MODIFIER_KINDS = frozenset({TYPEDEF, CONST, VOLATILE, RESTRICT, TYPE_TAG})
# Kinds whose name goes into the name index.
_NAMED_KINDS = frozenset({INT, STRUCT, UNION, ENUM, FWD, TYPEDEF, FUNC, VAR, FLOAT, ENUM64})


class BtfType(NamedTuple):
    """The common header of one type record, decoded."""

    id: int
    kind: int
    name: str | None  # None for anonymous
    vlen: int
    kind_flag: bool
    size: int  # for sized kinds (INT, STRUCT, UNION, ENUM*, DATASEC, FLOAT), else 0
    type: int  # referenced type id for _REF_KINDS, else 0


class Member(NamedTuple):
    name: str | None
    type: int
    bit_offset: int
    bitfield_size: int  # 0 when the member is not (known to be) a bitfield


class Param(NamedTuple):
    name: str | None
    type: int  # 0 with no name on the last parameter means "..."


class SecInfo(NamedTuple):
    type: int
    offset: int
    size: int


#: The start of a little-endian vmlinux BTF header: magic, version 1, flags 0, hdr_len 24.
VMLINUX_HEADER = struct.pack("<HBBI", MAGIC, 1, 0, HEADER_LEN)
MAX_BTF_HITS = 64


def find_vmlinux_btf(data: bytes | bytearray, want: bytes = b"task_struct") -> tuple[int, int]:
    """(offset, size) of the kernel's own BTF blob in ``data`` (its image), for a kernel
    whose kallsyms has no ``__start_BTF``: a header whose sections fit (types first, then
    strings, as pahole writes vmlinux BTF) whose types define struct ``want``. Module BTF
    and stray bytes that look like a header are passed over; GuestDataError if none fits."""
    pos, seen = 0, 0
    while seen < MAX_BTF_HITS:
        at = data.find(VMLINUX_HEADER, pos)
        if at < 0 or at + HEADER_LEN > len(data):
            break
        pos, seen = at + 1, seen + 1
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, at + 8)
        size = HEADER_LEN + str_off + str_len
        if (
            type_off != 0
            or str_off != type_len
            or type_len % 4
            or not 0 < str_len <= 0xFFFFFF
            or at + size > len(data)
            or size > MAX_BTF_SIZE
        ):
            continue
        strings = data[at + HEADER_LEN + str_off : at + size]
        if strings[:1] == b"\0" and strings[-1:] == b"\0" and b"\0" + want + b"\0" in strings:
            if _defines_struct(data[at : at + size], want.decode()):
                return at, size
    raise _bad(
        f"no BTF blob naming {want.decode()} in {len(data)} bytes of the kernel image "
        f"({seen} header look-alikes)"
    )


def _defines_struct(blob: bytes | bytearray, name: str) -> bool:
    """Whether ``blob`` parses as BTF with a struct ``name`` (a string table that only
    names it, as a look-alike or a module's BTF may, is not enough)."""
    try:
        btf = Btf(blob)
        return any(btf.kind(tid) == STRUCT for tid in btf.ids_by_name(name))
    except GuestDataError:
        return False


def _name_hash(name: str | None) -> int:
    """A name's key in an index (CRC-32: the same in every process, unlike hash())."""
    return zlib.crc32((name or "").encode("utf-8", "surrogatepass"))


def _bad(msg: str) -> GuestDataError:
    return GuestDataError(f"malformed BTF: {msg}")


class Btf:
    """A validated, lazily decoded BTF blob (base BTF only; ids start at 1, 0 is void)."""

    def __init__(self, data: bytes | bytearray | memoryview, index: bytes | None = None) -> None:
        """``index``: a blob from :meth:`export_index` on these same bytes (a warm start);
        one that does not match them is ignored and the blob is scanned as usual."""
        data = bytes(data)
        if len(data) > MAX_BTF_SIZE:
            raise _bad(f"{len(data)} bytes is larger than the {MAX_BTF_SIZE}-byte cap")
        if len(data) < HEADER_LEN:
            raise _bad(f"{len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
        magic = struct.unpack_from("<H", data)[0]
        if magic == MAGIC:
            self.byteorder = "little"
        elif magic == 0x9FEB:
            self.byteorder = "big"
        else:
            raise _bad(f"bad magic {magic:#06x} (want {MAGIC:#06x})")
        e = "<" if self.byteorder == "little" else ">"
        self._e = e
        self._u32 = struct.Struct(e + "I")
        self._s32 = struct.Struct(e + "i")
        self._hdr = struct.Struct(e + "III")
        _, version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            e + "HBBIIIII", data
        )
        if version != 1:
            raise _bad(f"unsupported version {version}")
        if hdr_len < HEADER_LEN or hdr_len > len(data):
            raise _bad(f"header length {hdr_len} out of range")
        body = len(data) - hdr_len
        for what, off, ln in (("type", type_off, type_len), ("string", str_off, str_len)):
            if off > body or ln > body - off:
                raise _bad(f"{what} section [{off}, +{ln}) past the end ({body} bytes)")
        if type_off % 4 or type_len % 4:
            raise _bad("type section is not 4-byte aligned")
        if str_len == 0 or str_len > 0xFFFFFF:
            raise _bad(f"string section length {str_len} out of range")
        self._types = data[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strs = data[hdr_len + str_off : hdr_len + str_off + str_len]
        if self._strs[0] != 0 or self._strs[-1] != 0:
            raise _bad("string section must start and end with NUL")
        self._str_cache: dict[int, str | None] = {0: None}
        self._offs = array("I", [0])  # _offs[id] = offset of that type's header
        self._named: list[tuple[int, int]] = []  # (name_off, id)
        self._by_name: dict[str, list[int]] | None = None
        self._enums: dict[str, tuple[int, int]] | None = None
        self._hashes: array | None = None  # from an index: name CRC-32s, sorted
        self._hashed_ids: array = array("I")  # the type id of each
        self._enums_blob: bytes | None = None  # from an index, until an enumerator is asked
        self._data = data
        self.from_index = index is not None and self._adopt(index)
        if not self.from_index:
            self._scan()

    # -- framing -----------------------------------------------------------------

    def _scan(self) -> None:
        """Walk every record once, checking kinds and that each fits in the section."""
        types, hdr, offs, named = self._types, self._hdr, self._offs, self._named
        end, pos, tid, str_len = len(types), 0, 0, len(self._strs)
        while pos < end:
            tid += 1
            if tid > MAX_TYPES:
                raise _bad(f"more than {MAX_TYPES} types")
            if end - pos < 12:
                raise _bad(f"type {tid} header truncated at offset {pos}")
            name_off, info, _ = hdr.unpack_from(types, pos)
            kind = (info >> 24) & 0x1F
            extra = _EXTRA.get(kind)
            if extra is None:
                if kind not in KIND_NAMES:
                    raise _bad(f"type {tid} has unknown kind {kind}")
                extra = (0, 0)
            size = 12 + extra[0] + extra[1] * (info & 0xFFFF)
            if size > end - pos:
                raise _bad(
                    f"type {tid} ({KIND_NAMES[kind]}, vlen {info & 0xFFFF}) "
                    f"runs past the end of the type section"
                )
            if name_off >= str_len:
                raise _bad(f"type {tid} name offset {name_off} past the end ({str_len} bytes)")
            offs.append(pos)
            if name_off and kind in _NAMED_KINDS:
                named.append((name_off, tid))
            pos += size

    # -- warm start -------------------------------------------------------------------

    def export_index(self) -> bytes:
        """The scan's results and the name indexes, tied to these bytes by their SHA-256.

        Scanning and indexing a 5 MB kernel BTF costs ~0.4 s of pure Python; a warm run
        (the BTF cached per guest boot) loads this instead. Names are indexed as arrays
        (ids sorted by their name's CRC-32) that load as one copy each: a dict of 55k
        names took 90 ms to unmarshal, most of a warm `xenvmi ps`. The enumerators'
        dict is decoded only when one is looked up."""
        pairs = sorted(
            (_name_hash(name), tid) for name, tids in self._name_index().items() for tid in tids
        )
        return marshal.dumps(
            (
                INDEX_FORMAT,
                hashlib.sha256(self._data).digest(),
                self._offs.tobytes(),
                array("I", [h for h, _ in pairs]).tobytes(),
                array("I", [t for _, t in pairs]).tobytes(),
                marshal.dumps(self.enumerator_index()),
            )
        )

    def _adopt(self, blob: bytes) -> bool:
        """Take an :meth:`export_index` blob if it was made from exactly these bytes."""
        try:
            fmt, digest, offs, hashes, ids, enums = marshal.loads(blob)
        except (ValueError, EOFError, TypeError):
            return False
        if (
            fmt != INDEX_FORMAT
            or digest != hashlib.sha256(self._data).digest()
            or not all(isinstance(b, bytes) and not len(b) % 4 for b in (offs, hashes, ids))
            or len(hashes) != len(ids)
            or not isinstance(enums, bytes)
        ):
            return False
        table, by_hash, hashed = array("I"), array("I"), array("I")
        table.frombytes(offs)
        by_hash.frombytes(hashes)
        hashed.frombytes(ids)
        if not 1 <= len(table) <= MAX_TYPES + 1 or table[0] != 0:
            return False
        if hashed and not (min(hashed) > 0 and max(hashed) < len(table)):
            return False
        self._offs, self._hashes, self._hashed_ids = table, by_hash, hashed
        self._enums_blob = enums
        return True

    @property
    def count(self) -> int:
        """Number of type ids, including void (id 0)."""
        return len(self._offs)

    def check_id(self, tid: int, what: str = "type id") -> int:
        if not 0 <= tid < len(self._offs):
            raise _bad(f"{what} {tid} out of range (have {len(self._offs) - 1} types)")
        return tid

    def string(self, off: int) -> str | None:
        """The NUL-terminated string at ``off`` in the string section; None for offset 0."""
        try:
            return self._str_cache[off]
        except KeyError:
            pass
        if not 0 <= off < len(self._strs):
            raise _bad(f"string offset {off} past the end ({len(self._strs)} bytes)")
        nul = self._strs.find(b"\0", off, off + MAX_NAME_LEN + 1)
        if nul < 0:
            raise _bad(f"string at offset {off} is longer than {MAX_NAME_LEN} bytes")
        s = self._strs[off:nul].decode("utf-8", "backslashreplace") or None
        self._str_cache[off] = s
        return s

    # -- records -------------------------------------------------------------------

    def get(self, tid: int) -> BtfType:
        """The common header of type ``tid`` (0 is void and has no record)."""
        if tid == 0:
            return BtfType(0, 0, "void", 0, False, 0, 0)
        self.check_id(tid)
        name_off, info, st = self._hdr.unpack_from(self._types, self._offs[tid])
        kind = (info >> 24) & 0x1F
        ref = st if kind in _REF_KINDS else 0
        if ref:
            self.check_id(ref, f"type {tid} refers to type id")
        size = st if kind in (INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT) else 0
        if size > MAX_TYPE_SIZE:
            raise _bad(f"type {tid} has absurd size {size}")
        return BtfType(tid, kind, self.string(name_off), info & 0xFFFF, bool(info >> 31), size, ref)

    def kind(self, tid: int) -> int:
        if tid == 0:
            return 0
        return (
            self._u32.unpack_from(self._types, self._offs[self.check_id(tid)] + 4)[0] >> 24
        ) & 0x1F

    def _payload(self, t: BtfType, kind: int | tuple[int, ...]) -> int:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if t.kind not in kinds:
            raise _bad(
                f"type {t.id} is {KIND_NAMES.get(t.kind, t.kind)}, "
                f"not {'/'.join(KIND_NAMES[k] for k in kinds)}"
            )
        return self._offs[t.id] + 12

    def int_info(self, t: BtfType) -> tuple[int, int, int]:
        """(encoding, bit offset, bit count) of an INT."""
        v = self._u32.unpack_from(self._types, self._payload(t, INT))[0]
        enc, off, bits = (v >> 24) & 0x0F, (v >> 16) & 0xFF, v & 0xFF
        if bits == 0 or bits > 128 or off + bits > t.size * 8:
            raise _bad(f"INT {t.id} has {bits} bits at offset {off} in {t.size} bytes")
        return enc, off, bits

    def array_info(self, t: BtfType) -> tuple[int, int, int]:
        """(element type, index type, element count) of an ARRAY."""
        elem, index, nelems = self._hdr.unpack_from(self._types, self._payload(t, ARRAY))
        self.check_id(elem, f"array {t.id} element type id")
        self.check_id(index, f"array {t.id} index type id")
        return elem, index, nelems

    def members(self, t: BtfType) -> list[Member]:
        """Members of a STRUCT/UNION; with kind_flag, bitfield sizes come from the offset."""
        pos = self._payload(t, (STRUCT, UNION))
        out = []
        for i in range(t.vlen):
            name_off, mtype, off = self._hdr.unpack_from(self._types, pos + 12 * i)
            self.check_id(mtype, f"member {i} of type {t.id} has type id")
            bits = 0
            if t.kind_flag:
                bits, off = off >> 24, off & 0xFFFFFF
            if off > t.size * 8:
                raise _bad(f"member {i} of type {t.id} at bit {off} is past its size {t.size}")
            out.append(Member(self.string(name_off), mtype, off, bits))
        return out

    def enumerators(self, t: BtfType) -> list[tuple[str, int]]:
        """(name, value) pairs of an ENUM/ENUM64, signed if kind_flag says so."""
        pos = self._payload(t, (ENUM, ENUM64))
        out = []
        if t.kind == ENUM:
            fmt = self._s32 if t.kind_flag else self._u32
            for i in range(t.vlen):
                name_off = self._u32.unpack_from(self._types, pos + 8 * i)[0]
                value = fmt.unpack_from(self._types, pos + 8 * i + 4)[0]
                out.append((self._enum_name(t, name_off), value))
        else:
            for i in range(t.vlen):
                name_off, lo, hi = self._hdr.unpack_from(self._types, pos + 12 * i)
                v = (hi << 32) | lo
                if t.kind_flag and v >= 1 << 63:
                    v -= 1 << 64
                out.append((self._enum_name(t, name_off), v))
        return out

    def _enum_name(self, t: BtfType, name_off: int) -> str:
        name = self.string(name_off)
        if name is None:
            raise _bad(f"enum {t.id} has an unnamed enumerator")
        return name

    def params(self, t: BtfType) -> list[Param]:
        pos = self._payload(t, FUNC_PROTO)
        out = []
        for i in range(t.vlen):
            name_off, ptype = struct.unpack_from(self._e + "II", self._types, pos + 8 * i)
            self.check_id(ptype, f"parameter {i} of type {t.id} has type id")
            out.append(Param(self.string(name_off), ptype))
        return out

    def var_linkage(self, t: BtfType) -> int:
        return self._u32.unpack_from(self._types, self._payload(t, VAR))[0]

    def secinfos(self, t: BtfType) -> list[SecInfo]:
        pos = self._payload(t, DATASEC)
        out = []
        for i in range(t.vlen):
            vtype, off, size = self._hdr.unpack_from(self._types, pos + 12 * i)
            self.check_id(vtype, f"entry {i} of DATASEC {t.id} has type id")
            out.append(SecInfo(vtype, off, size))
        return out

    def decl_tag_component(self, t: BtfType) -> int:
        return self._s32.unpack_from(self._types, self._payload(t, DECL_TAG))[0]

    def skip_modifiers(self, tid: int, max_depth: int = 64) -> int:
        """The type under ``tid``'s typedefs and qualifiers. A chain longer than
        ``max_depth`` (a loop, in hostile BTF) raises GuestDataError."""
        for _ in range(max_depth):
            t = self.get(tid)
            if t.kind not in MODIFIER_KINDS:
                return tid
            tid = t.type
        raise _bad(f"typedef/qualifier chain deeper than {max_depth} at {tid}")

    # -- names ----------------------------------------------------------------------

    def ids_by_name(self, name: str) -> list[int]:
        """Ids of named INT/FLOAT/STRUCT/UNION/ENUM*/FWD/TYPEDEF/FUNC/VAR types called ``name``."""
        if self._by_name is None and self._hashes is not None:
            h = _name_hash(name)
            lo = bisect.bisect_left(self._hashes, h)
            hi = bisect.bisect_right(self._hashes, h, lo)
            return [tid for tid in self._hashed_ids[lo:hi] if self._name_of(tid) == name]
        return self._name_index().get(name, [])

    def _name_of(self, tid: int) -> str | None:
        return self.string(self._hdr.unpack_from(self._types, self._offs[tid])[0])

    def _name_index(self) -> dict[str, list[int]]:
        if self._by_name is None:
            index: dict[str, list[int]] = {}
            string = self.string
            if self._hashes is not None:  # from an index: its ids, in id order per name
                unpack, types, offs = self._hdr.unpack_from, self._types, self._offs
                named = [(unpack(types, offs[t])[0], t) for t in sorted(self._hashed_ids)]
            else:
                named = self._named
            for name_off, tid in named:
                index.setdefault(string(name_off), []).append(tid)  # type: ignore[arg-type]
            self._by_name = index
        return self._by_name

    def names(self) -> list[str]:
        return list(self._name_index())

    def enumerator(self, name: str) -> tuple[int, int] | None:
        """(enum type id, value) of the first enumerator called ``name``, or None."""
        return self.enumerator_index().get(name)

    def enumerator_index(self) -> dict[str, tuple[int, int]]:
        if self._enums is None and self._enums_blob is not None:
            try:
                enums = marshal.loads(self._enums_blob)
            except (ValueError, EOFError, TypeError):
                enums = None
            self._enums_blob = None
            if isinstance(enums, dict):
                self._enums = enums
        if self._enums is None:
            index: dict[str, tuple[int, int]] = {}
            for tid in self.ids_of_kind(ENUM, ENUM64):
                for n, v in self.enumerators(self.get(tid)):
                    index.setdefault(n, (tid, v))
            self._enums = index
        return self._enums

    def ids_of_kind(self, *kinds: int) -> list[int]:
        """All ids of the given kinds, in id order (a full scan: for indexes built once)."""
        want = set(kinds)
        u32, types, offs = self._u32, self._types, self._offs
        return [
            tid
            for tid in range(1, len(offs))
            if (u32.unpack_from(types, offs[tid] + 4)[0] >> 24) & 0x1F in want
        ]
