"""Kernel images holding kallsyms tables as scripts/kallsyms.c lays them out, for tests.

Written from the format's description (the kernel's scripts/kallsyms.c and
kernel/kallsyms.c): one layout before 6.4 (addresses, relative base, count, names,
markers, token table, token index) and one from 6.4 (count, names, markers, token table,
token index, addresses, relative base); every address encoding; one- and two-byte name
lengths; u32 or pointer-sized markers; 6.2's kallsyms_seqs_of_names between the markers
and the token table. Tokens: every used character as itself, then the
commonest pairs in the free codes, as the kernel's compressor ends up with.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

TEXT_VA = 0xFFFF_FFFF_8100_0000
IMAGE_PA = 0x100_0000
PERCPU_END = 0x40000


def align(value: int, to: int = 8) -> int:
    return (value + to - 1) // to * to


def symbols(
    count: int = 1500, long_names: bool = False, percpu: bool = True, text_va: int = TEXT_VA
) -> list[tuple[str, str, int]]:
    """(type, name, address) sorted by address: x86-64's percpu symbols (near 0, kept
    absolute by the absolute-percpu encoding) first, then the image."""
    out = (
        [
            ("A", "fixed_percpu_data", 0),
            ("D", "irq_stack_backing_store", 0x4000),
            ("D", "cpu_number", 0x1A000),
        ]
        if percpu
        else []
    )
    out += [("T", "_text", text_va), ("T", "_stext", text_va + 0x1000)]
    addr = text_va + 0x1000
    for i in range(count):
        addr += 0x10 + (i % 7) * 0x20
        kind = "Tt"[i % 2]
        name = f"func_{i}_{'abcdefgh'[i % 8]}do_work"
        if long_names and i % 100 == 3:
            name = "long_" + "".join(chr(ord("a") + (i * k) % 26) + str(k % 10) for k in range(160))
        out.append((kind, name, addr))
    out.append(("D", "init_uts_ns", addr + 0x20_0000))
    out.append(("D", "node_online_map", addr + 0x20_1000))
    out.append(("B", "init_top_pgt", addr + 0x40_0000))
    return sorted(out, key=lambda s: s[2])


def build_tokens(names: list[bytes]) -> list[bytes]:
    used = sorted({c for n in names for c in n})
    tokens: list[bytes | None] = [None] * 256
    for c in used:
        tokens[c] = bytes((c,))
    pairs = Counter(n[i : i + 2] for n in names for i in range(len(n) - 1))
    free = [c for c in range(256) if tokens[c] is None]
    for code, (pair, _) in zip(free, pairs.most_common(len(free))):
        tokens[code] = pair
    return [t if t is not None else b"~" for t in tokens]


def compress(name: bytes, tokens: list[bytes]) -> bytes:
    """Greedy longest-token encoding (any encoding the tokens decode is valid)."""
    by_token = {}
    for code, tok in enumerate(tokens):
        by_token.setdefault(tok, code)
    out, i = bytearray(), 0
    while i < len(name):
        for size in (2, 1):
            code = by_token.get(name[i : i + size])
            if code is not None and len(name[i : i + size]) == size:
                out.append(code)
                i += size
                break
    return bytes(out)


@dataclass
class Tables:
    image: bytes  # from TEXT_VA
    at: dict[str, int]  # table name -> virtual address
    syms: list[tuple[str, str, int]]

    def known(self) -> dict[str, int]:
        """What VMCOREINFO would export of these symbols."""
        by_name = {name: addr for _, name, addr in self.syms}
        return {
            "_stext": by_name["_stext"],
            "init_uts_ns": by_name["init_uts_ns"],
            "node_online_map": by_name["node_online_map"],
            "swapper_pg_dir": by_name["init_top_pgt"],
        }


def build(
    syms=None,
    layout: str = "before 6.4",
    encoding: str = "absolute-percpu",
    marker_width: int = 4,
    lead: bytes = b"",
    rodata_at: int = 0x80_0000,
    seqs: bool = False,
    text_va: int = TEXT_VA,
) -> Tables:
    syms = syms or symbols()
    names = [(t + n).encode() for t, n, _ in syms]
    tokens = build_tokens(names)
    stream, markers = bytearray(), []
    for i, name in enumerate(names):
        if i % 256 == 0:
            markers.append(len(stream))
        entry = compress(name, tokens)
        n = len(entry)
        stream += bytes((n,)) if n < 0x80 else bytes((0x80 | (n & 0x7F), n >> 7))
        stream += entry
    token_table = b"".join(t + b"\0" for t in tokens)
    offs, o = [], 0
    for t in tokens:
        offs.append(o)
        o += len(t) + 1
    count = len(syms)
    body = bytearray(rodata_at)
    body[0x100 : 0x100 + len(lead)] = lead
    at: dict[str, int] = {}

    def label(name: str) -> int:
        while len(body) % 8:
            body.append(0)
        at[name] = text_va + len(body)
        return len(body)

    def addresses() -> None:
        if encoding == "absolute":
            label("kallsyms_addresses")
            for _, _, a in syms:
                body.extend(struct.pack("<Q", a))
            return
        start = label("kallsyms_offsets")
        base = min(a for _, _, a in syms if a >= text_va)
        for i, (_, _, a) in enumerate(syms):
            if encoding == "base-relative":
                v = (a - base) & 0xFFFFFFFF
            elif encoding == "absolute-percpu":
                v = a if a < PERCPU_END else base - a - 1
            else:  # place-relative
                v = a - (text_va + start + 4 * i)
            body.extend(struct.pack("<I", v & 0xFFFFFFFF))
        if encoding != "place-relative":
            label("kallsyms_relative_base")
            body.extend(struct.pack("<Q", base))

    if layout == "before 6.4":
        addresses()
    label("kallsyms_num_syms")
    body.extend(struct.pack("<I", count))
    label("kallsyms_names")
    body += stream
    label("kallsyms_markers")
    for m in markers:
        body.extend(m.to_bytes(marker_width, "little"))
    if seqs:  # 6.2-6.3 (and backports): name order, 3 bytes a symbol
        label("kallsyms_seqs_of_names")
        for i in sorted(range(count), key=lambda i: names[i][1:]):
            body.extend(i.to_bytes(3, "big"))
    label("kallsyms_token_table")
    body += token_table
    label("kallsyms_token_index")
    body.extend(struct.pack("<256H", *offs))
    if layout == "6.4+":
        addresses()
    body += bytes(0x1000)
    return Tables(bytes(body), at, syms)


def memory_image(tables: Tables, size: int = 64 << 20) -> bytearray:
    img = bytearray(size)
    img[IMAGE_PA : IMAGE_PA + len(tables.image)] = tables.image
    return img
