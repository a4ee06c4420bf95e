"""Find a kernel's kallsyms tables in its image by their structure (Linux < 6.0).

Since Linux 6.0 the VMCOREINFO note says where the kallsyms tables are; older kernels
(Debian 11's 5.10, Ubuntu's 5.4 and 5.15, RHEL's 4.18 and 5.14) do not, but the tables
are still in the image's read-only data, in the layout ``scripts/kallsyms.c`` writes:

* ``kallsyms_token_table``: 256 NUL-terminated tokens; every character a symbol name uses
  is its own token, so the digits run ``"0\\0" "1\\0" ... "9\\0"`` at tokens 0x30..0x39;
* ``kallsyms_token_index``: 256 u16 offsets of those tokens, right after the table;
* ``kallsyms_markers``: the offset in ``kallsyms_names`` of every 256th name (u32 since
  4.20, pointer-sized before), right before the token table;
* ``kallsyms_num_syms`` (u32) and ``kallsyms_names``: length-prefixed token strings
  (a length of 128 or more takes two bytes since 6.1), ending at the markers;
* the addresses: ``kallsyms_offsets`` (s32) with ``kallsyms_relative_base`` (base-relative
  or absolute-percpu, 4.6+), ``kallsyms_addresses`` (absolute), or place-relative offsets
  (7.0); before ``kallsyms_num_syms`` until 6.3, after the token index since 6.4.

Every piece is checked against the next (the index must point at the tokens exactly, the
markers at the names, the names must end at the markers) and the decoded addresses must
give the symbols VMCOREINFO does export (``_stext``, ``init_uts_ns``, ``swapper_pg_dir``,
...): a table that disagrees is refused. The result is what VMCOREINFO 6.0+ would say, as
``SYMBOL(kallsyms_*)`` lines for drgn's own kallsyms loader.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from xenvmi.errors import GuestDataError

DIGITS = b"".join(bytes((c, 0)) for c in b"0123456789")
MAX_SYMS = 2_000_000
MAX_TOKEN = 512  # KSYM_NAME_LEN (128 before 6.1)
MAX_NAME = 512
MAX_TOKEN_HITS = 32
#: Symbols VMCOREINFO exports in every version since 4.x that name a place in the image;
#: the decoded table must agree with each of them that it holds.
ANCHORS = (
    "_stext",
    "init_uts_ns",
    "swapper_pg_dir",
    "node_online_map",
    "mem_map",
    "contig_page_data",
    "init_top_pgt",
    "log_buf",
    "prb",
    "printk_rb_static",
    "vmcoreinfo_note",
    # Known without a note (:mod:`xenvmi.guest.nonote`): where the page tables map the
    # image's start.
    "_text",
)
MIN_ANCHORS = 2

Progress = Callable[[str], None]


@dataclass
class KallsymsTables:
    """Where the tables are (kernel virtual addresses) and how addresses are encoded."""

    num_syms: int
    num_syms_at: int
    names: int
    markers: int
    token_table: int
    token_index: int
    encoding: str  # base-relative, absolute-percpu, absolute, place-relative
    layout: str  # "before 6.4" or "6.4+"
    offsets: int | None = None
    relative_base: int | None = None
    addresses: int | None = None
    agreed: list[str] = field(default_factory=list)  # the anchors checked
    stext: int | None = None  # decoded; given to drgn if VMCOREINFO has none
    resolved: dict[str, int] = field(default_factory=dict)  # the ``extra`` names asked for

    def symbols(self) -> dict[str, int]:
        """The table locations as VMCOREINFO 6.0+ names them."""
        out = {
            "kallsyms_names": self.names,
            "kallsyms_num_syms": self.num_syms_at,
            "kallsyms_token_table": self.token_table,
            "kallsyms_token_index": self.token_index,
        }
        for key in ("offsets", "relative_base", "addresses"):
            value = getattr(self, key)
            if value is not None:
                out[f"kallsyms_{key}"] = value
        return out

    def vmcoreinfo_lines(self, have: dict[str, int]) -> bytes:
        """``SYMBOL(...)=...`` lines to append to the note text given to drgn."""
        wanted = dict(self.symbols())
        if "_stext" not in have and self.stext is not None:
            wanted["_stext"] = self.stext
        return b"".join(f"SYMBOL({k})={v:x}\n".encode() for k, v in wanted.items())

    def describe(self) -> str:
        return (
            f"found by structure at kallsyms_token_table {self.token_table:#x}: "
            f"{self.encoding}, layout {self.layout}, gives the known "
            f"{', '.join(self.agreed)}"
        )


class Image:
    """The kernel image's bytes from guest-physical ``pa`` (virtual ``va``), read in
    chunks as far as a search needs them, never past ``limit`` bytes."""

    CHUNK = 4 << 20

    def __init__(self, read: Callable[[int, int], bytes], pa: int, va: int, limit: int):
        self.read, self.pa, self.va, self.limit = read, pa, va, limit
        self.data = bytearray()

    def need(self, end: int) -> bool:
        """Make bytes [0, end) available; False if that is past the limit."""
        if end > self.limit:
            return False
        while len(self.data) < end:
            size = min(self.CHUNK, self.limit - len(self.data))
            chunk = self.read(self.pa + len(self.data), size)
            if not chunk:  # a reader that gives nothing must not spin this loop
                self.limit = len(self.data)
                return False
            self.data += chunk[:size]
        return True

    def u16s(self, off: int, n: int) -> tuple[int, ...] | None:
        return struct.unpack_from(f"<{n}H", self.data, off) if self.need(off + 2 * n) else None

    def word(self, off: int, width: int) -> int | None:
        if off < 0 or not self.need(off + width):
            return None
        return int.from_bytes(self.data[off : off + width], "little")


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _token_table(img: Image, hit: int) -> tuple[int, int, list[bytes]] | None:
    """(start, end, tokens) of a token table whose token 0x30 is at ``hit``."""
    data, start = img.data, hit
    for _ in range(ord("0")):
        if start < 1 or data[start - 1] != 0:
            return None
        prev = data.rfind(b"\0", max(0, start - 2 - MAX_TOKEN), start - 1)
        if prev < 0:
            return None
        start = prev + 1
    tokens, pos = [], start
    for _ in range(256):
        end = data.find(b"\0", pos, pos + MAX_TOKEN + 1)
        if end < 0 and img.need(pos + MAX_TOKEN + 1):
            end = data.find(b"\0", pos, pos + MAX_TOKEN + 1)
        if end < 0:
            return None
        token = bytes(data[pos:end])
        if any(c < 0x20 or c > 0x7E for c in token):
            return None
        tokens.append(token)
        pos = end + 1
    if any(tokens[c] != bytes((c,)) for c in b"0123456789"):
        return None
    return start, pos, tokens


def _token_index(img: Image, table_start: int, table_end: int, tokens: list[bytes]) -> int | None:
    """Offset of the u16 index that points at each token exactly, right after the table."""
    want, off = [], 0
    for token in tokens:
        want.append(off)
        off += len(token) + 1
    if off > 0xFFFF:
        return None
    for at in sorted({_align(table_end, a) for a in (2, 4, 8)}):
        if list(img.u16s(at, 256) or ()) == want:
            return at
    return None


def _markers(img: Image, before: int) -> Iterator[tuple[int, list[int]]]:
    """(start, markers) of ascending marker arrays starting with 0 and ending just before
    ``before`` (the token table, 8-aligned): u32 markers may be followed by one u32 of
    alignment padding; pointer-sized ones (before 4.20) by none."""
    for width, pads in ((4, (0, 1)), (8, (0,))):
        for pad in pads:
            pos = before // width * width - pad * width
            if pad and img.word(pos, width) != 0:
                continue
            values: list[int] = []
            while len(values) <= MAX_SYMS // 256 + 1:
                value = img.word(pos - width, width)
                if value is None or (values and value >= values[-1]):
                    break
                values.append(value)
                pos -= width
                if value == 0:
                    values.reverse()
                    yield pos, values
                    break


def _markers_anywhere(
    img: Image, table_at: int, deadline: float
) -> Iterator[tuple[int, list[int]]]:
    """Markers right before the token table, or before a ``kallsyms_seqs_of_names``
    block (6.2 and 6.3, and kernels that took it as a backport: Debian's 6.1): 3 bytes a
    symbol, 8-aligned, so the markers end ``align8(3 * N)`` bytes before the table, where
    N is the count the markers themselves imply (256 names a marker)."""
    yield from _markers(img, table_at)
    data, zero = img.data, bytes(4)
    for m in range(2, MAX_SYMS // 256 + 2):  # a kernel has thousands of symbols
        lo, hi = _align(3 * (256 * (m - 1) + 1), 8), _align(3 * 256 * m, 8)
        if hi + 4 * m + 4 > table_at or time.monotonic() > deadline:
            return
        for seqs in range(lo, hi + 1, 8):
            end = table_at - seqs
            first = end - 4 * m  # markers[0] is 0, with or without a word of padding
            if data[first : first + 4] != zero and data[first - 4 : first] != zero:
                continue
            for markers_at, markers in _markers(img, end):
                if len(markers) == m:
                    yield markers_at, markers


def _name_lengths(data: bytearray, start: int, count: int, stop: int) -> list[int] | None:
    """Offsets (from ``start``) of ``count`` length-prefixed names, plus the end's; None
    if a name runs past ``stop`` or is empty."""
    offs, pos = [], start
    for _ in range(count):
        if pos >= stop:
            return None
        offs.append(pos - start)
        n = data[pos]
        if n & 0x80:  # 6.1+: a two-byte length, low 7 bits first
            if pos + 1 >= stop:
                return None
            n = (n & 0x7F) | (data[pos + 1] << 7)
            pos += 1
        if not 0 < n <= MAX_NAME:
            return None
        pos += 1 + n
    if pos > stop:
        return None
    offs.append(pos - start)
    return offs


def _names(
    img: Image, markers_at: int, markers: list[int], deadline: float
) -> tuple[int, int, list[int]] | None:
    """(num_syms offset, count, name offsets) for the names the markers index: the u32
    count sits 8 bytes before the names (both labels are 8-aligned), the names end within
    8 bytes of the markers, and every 256th name starts where its marker says."""
    data, last = img.data, markers[-1]
    lowest = max(8, markers_at - last - 256 * (MAX_NAME + 2) - 8)
    for names_at in range((markers_at - last) // 8 * 8, lowest - 1, -8):
        if time.monotonic() > deadline:
            return None
        count = int.from_bytes(data[names_at - 8 : names_at - 4], "little")
        if (
            not 0 < count <= MAX_SYMS
            or (count + 255) // 256 != len(markers)
            or any(data[names_at - 4 : names_at])
        ):
            continue
        offs = _name_lengths(data, names_at, count, markers_at)
        if offs is None or markers_at - (names_at + offs[-1]) >= 8:
            continue
        if all(offs[i * 256] == m for i, m in enumerate(markers)):
            return names_at - 8, count, offs[:-1]
    return None


def decode_name(data: bytearray, at: int, tokens: list[bytes]) -> bytes:
    """One name (type letter first) from its compressed entry at ``at``."""
    n = data[at]
    if n & 0x80:
        n = (n & 0x7F) | (data[at + 1] << 7)
        at += 1
    return b"".join(tokens[b] for b in data[at + 1 : at + 1 + n])


def _anchor_indexes(
    data: bytearray, names_at: int, offs: list[int], tokens: list[bytes], wanted: set[bytes]
) -> dict[str, int]:
    """Index of each wanted symbol name (the first one, as the kernel's lookup finds)."""
    found: dict[str, int] = {}
    for i, off in enumerate(offs):
        name = decode_name(data, names_at + off, tokens)[1:]
        if name in wanted and name.decode() not in found:
            found[name.decode()] = i
            if len(found) == len(wanted):
                break
    return found


#: (encoding, where: offsets by name, the address of symbol i) for one table layout.
Decoder = tuple[str, dict[str, int], Callable[[int], int]]


def _decoders(img: Image, count: int, start: int, layout: str) -> list[Decoder]:
    """Candidate (encoding, where, read address i) for the address table that sits at
    ``start`` (6.4+: after the token index) or ends at ``start`` (earlier: the u32
    count follows the relative base, or the absolute addresses)."""
    out: list[Decoder] = []
    if layout == "6.4+":
        offsets = _align(start, 8)
        base_at = _align(offsets + 4 * count, 8)
        addresses = offsets
    else:
        base_at = start - 8
        offsets = base_at - _align(4 * count, 8)
        addresses = start - 8 * count
    if offsets >= 0 and img.need(base_at + 8):
        base = img.word(base_at, 8)

        def rel(i: int, o=offsets, b=base) -> int:
            return (b + int.from_bytes(img.data[o + 4 * i : o + 4 * i + 4], "little")) % (1 << 64)

        def pcpu(i: int, o=offsets, b=base) -> int:
            v = int.from_bytes(img.data[o + 4 * i : o + 4 * i + 4], "little", signed=True)
            return v if v >= 0 else (b - 1 - v) % (1 << 64)

        out.append(("base-relative", {"offsets": offsets, "relative_base": base_at}, rel))
        out.append(("absolute-percpu", {"offsets": offsets, "relative_base": base_at}, pcpu))
    if layout == "6.4+" and img.need(offsets + 4 * count):

        def prel(i: int, o=offsets) -> int:
            v = int.from_bytes(img.data[o + 4 * i : o + 4 * i + 4], "little", signed=True)
            return (img.va + o + 4 * i + v) % (1 << 64)

        out.append(("place-relative", {"offsets": offsets}, prel))
    if addresses >= 0 and img.need(addresses + 8 * count):

        def absolute(i: int, a=addresses) -> int:
            return int.from_bytes(img.data[a + 8 * i : a + 8 * i + 8], "little")

        out.append(("absolute", {"addresses": addresses}, absolute))
    return out


def find(
    read: Callable[[int, int], bytes],
    image_pa: int,
    image_va: int,
    limit: int,
    known: dict[str, int],
    *,
    timeout: float = 120.0,
    progress: Progress = lambda m: None,
    extra: tuple[str, ...] = (),
    min_anchors: int = MIN_ANCHORS,
) -> KallsymsTables:
    """The kallsyms tables of the kernel image at ``image_pa`` (virtual ``image_va``),
    searched in its first ``limit`` bytes and checked against ``known`` (VMCOREINFO's
    symbols). GuestDataError when no table passes every check. The addresses of the
    ``extra`` names the table holds come back in ``resolved`` (from the same pass), for
    the caller to check (with fewer than ``MIN_ANCHORS`` anchors it must)."""
    deadline = time.monotonic() + timeout
    img = Image(read, image_pa, image_va, limit)
    anchors = {k: v for k, v in known.items() if k in ANCHORS}
    min_anchors = max(1, min_anchors)
    if len(anchors) < min_anchors:
        raise GuestDataError(
            "VMCOREINFO names too few kernel symbols to check a kallsyms "
            f"table found by structure (has {sorted(anchors) or 'none'})"
        )
    rejected: list[str] = []
    pos, hits = 0, 0
    progress(f"searching the kernel image at {image_va:#x} for its kallsyms tables")
    while hits < MAX_TOKEN_HITS and time.monotonic() < deadline:
        hit = img.data.find(DIGITS, pos)
        if hit < 0:
            if len(img.data) >= limit:
                break
            pos = max(0, len(img.data) - len(DIGITS) + 1)
            img.need(min(limit, len(img.data) + img.CHUNK))
            continue
        pos, hits = hit + 1, hits + 1
        try:
            return _check_candidate(img, hit, anchors, deadline, extra, min_anchors)
        except _Reject as e:
            rejected.append(f"{image_va + hit:#x}: {e}")
    why = "; ".join(rejected[:3]) if rejected else "no token table (digit run) in it"
    raise GuestDataError(
        f"no kallsyms tables in the kernel image's first {limit >> 20} MiB at {image_va:#x}: {why}"
    )


class _Reject(Exception):
    pass


def _check_candidate(
    img: Image,
    hit: int,
    anchors: dict[str, int],
    deadline: float,
    extra: tuple[str, ...] = (),
    min_anchors: int = MIN_ANCHORS,
) -> KallsymsTables:
    found = _token_table(img, hit)
    if found is None:
        raise _Reject("not a token table")
    table_at, table_end, tokens = found
    index_at = _token_index(img, table_at, table_end, tokens)
    if index_at is None:
        raise _Reject("no token index after the token table")
    names, tried = None, []
    for markers_at, markers in _markers_anywhere(img, table_at, deadline):
        names = _names(img, markers_at, markers, deadline)
        if names is not None:
            break
        tried.append(str(len(markers)))
    if names is None:
        raise _Reject(
            f"no names stream for {' or '.join(tried)} markers"
            if tried
            else "no marker array before the token table"
        )
    num_at, count, offs = names
    names_at = num_at + 8
    wanted = {a.encode() for a in (*anchors, *extra)}
    both = _anchor_indexes(img.data, names_at, offs, tokens, wanted)
    where = {k: v for k, v in both.items() if k in anchors}
    if len(where) < min_anchors:
        raise _Reject(f"names hold only {sorted(where)} of VMCOREINFO's symbols")
    va = img.va
    for layout, start in (("before 6.4", num_at), ("6.4+", index_at + 512)):
        for encoding, places, decode in _decoders(img, count, start, layout):
            if all(decode(i) == anchors[name] for name, i in where.items()):
                if not _ascending(decode, count):
                    continue
                stext = decode(where["_stext"]) if "_stext" in where else None
                return KallsymsTables(
                    num_syms=count,
                    num_syms_at=va + num_at,
                    names=va + names_at,
                    markers=va + markers_at,
                    token_table=va + table_at,
                    token_index=va + index_at,
                    encoding=encoding,
                    layout=layout,
                    agreed=sorted(where),
                    stext=stext,
                    resolved={k: decode(i) for k, i in both.items() if k in extra},
                    **{k: va + v for k, v in places.items()},
                )
    raise _Reject(f"no address encoding gives VMCOREINFO's {', '.join(sorted(where))}")


def _ascending(decode: Callable[[int], int], count: int) -> bool:
    """scripts/kallsyms.c sorts the table by address: a decoding that is not sorted is
    the wrong one (or the table was tampered with)."""
    prev = 0
    for i in range(count):
        value = decode(i)
        if value < prev:
            return False
        prev = value
    return True
