"""Per-boot cache of a guest's kallsyms and BTF, next to its discovery cache entry.

Decoding kallsyms through drgn takes ~150k tiny guest reads (15 s under TCG) and the
BTF is 4 MB of guest memory: both are fixed for a kernel's boot, so a warm run loads
them from here. Entries are named after the discovery file plus the SHA-256 of the
VMCOREINFO note: a hit needs the very same note (same boot, same KASLR slide), and the
files are checked (magic, counts, sizes) before use, like any other guest-derived data.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from drgn import Symbol, SymbolBinding, SymbolKind

MAGIC = b"XVMSYM01"
MAX_SYMBOLS = 2_000_000
_KINDS = {k.value: k for k in SymbolKind}
_BINDINGS = {b.value: b for b in SymbolBinding}


def paths(discovery, note: bytes) -> tuple[Path, Path] | None:
    """(kallsyms file, BTF file) for this discovery, or None if it is not cached."""
    if not discovery.cache_path:
        return None
    digest = hashlib.sha256(note).hexdigest()[:16]
    stem = Path(discovery.cache_path).with_suffix("")
    return (
        stem.with_name(f"{stem.name}-{digest}.kallsyms"),
        stem.with_name(f"{stem.name}-{digest}.btf"),
    )


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save_symbols(path: Path, symbols: list[Symbol]) -> None:
    addrs = array("Q", (s.address for s in symbols))
    sizes = array("Q", (s.size for s in symbols))
    kinds = bytes(s.kind.value for s in symbols)
    binds = bytes(s.binding.value for s in symbols)
    names = "\n".join(s.name for s in symbols).encode()
    _write(
        path,
        MAGIC
        + struct.pack("<II", len(symbols), len(names))
        + addrs.tobytes()
        + sizes.tobytes()
        + kinds
        + binds
        + names,
    )


class CachedSymbols:
    """A drgn symbol finder over the cached table; Symbols are made only when asked for.

    (Building 150k drgn Symbols up front costs seconds under TCG; a view asks for dozens.)
    """

    def __init__(self, names, addrs, sizes, kinds, binds) -> None:
        self.names, self.addrs, self.sizes, self.kinds, self.binds = (
            names,
            addrs,
            sizes,
            kinds,
            binds,
        )
        self._unique: dict[str, int] | None = None  # name -> its last index
        self._dups: dict[str, list[int]] = {}  # every index of the names that repeat
        self._lookups = 0
        self._scanned: dict[str, list[int]] = {}
        self._order: list[int] | None = None

    def _indexes(self, name: str) -> list[int]:
        """Indexes of ``name``. A view asks for a handful of names: those are found by a
        C-speed scan of the list; from the 16th lookup on, a dict is built once (the
        repeated names get a list of every index, the unique ones map to their own)."""
        if self._unique is None:
            found = self._scanned.get(name)
            if found is not None:  # views look up the same few names every refresh
                return found
            self._lookups += 1
            if self._lookups <= 16:
                found = self._scanned[name] = self._scan(name)
                return found
            self._unique = dict(zip(self.names, range(len(self.names))))
            if len(self._unique) != len(self.names):
                dups = {n for n, c in Counter(self.names).items() if c > 1}
                for i, n in enumerate(self.names):
                    if n in dups:
                        self._dups.setdefault(n, []).append(i)
        hits = self._dups.get(name)
        if hits is not None:
            return hits
        index = self._unique.get(name)
        return [] if index is None else [index]

    def _scan(self, name: str) -> list[int]:
        hits: list[int] = []
        start = 0
        while True:
            try:
                start = self.names.index(name, start)
            except ValueError:
                return hits
            hits.append(start)
            start += 1

    @property
    def order(self) -> list[int]:
        """Indexes sorted by address, for lookups by address (built on the first one)."""
        if self._order is None:
            self._order = sorted(range(len(self.addrs)), key=self.addrs.__getitem__)
            self.sorted_addrs = [self.addrs[i] for i in self._order]
        return self._order

    def __len__(self) -> int:
        return len(self.names)

    def symbol(self, i: int) -> Symbol:
        return Symbol(
            self.names[i],
            self.addrs[i],
            self.sizes[i],
            _BINDINGS[self.binds[i]],
            _KINDS[self.kinds[i]],
        )

    def __call__(self, prog, name, address, one) -> list[Symbol]:
        hits: Sequence[int]
        if name is not None:
            hits = self._indexes(name)
            if address is not None:
                hits = [i for i in hits if self._contains(i, address)]
        elif address is not None:
            order = self.order
            pos = bisect.bisect_right(self.sorted_addrs, address) - 1
            hits = []
            start = self.sorted_addrs[pos] if pos >= 0 else None
            while pos >= 0 and self.sorted_addrs[pos] == start:  # aliases share a start
                if self._contains(order[pos], address):
                    hits.append(order[pos])
                pos -= 1
        else:
            hits = range(len(self.names))
        if one:
            hits = list(hits)[:1]
        return [self.symbol(i) for i in hits]

    def _contains(self, i: int, address: int) -> bool:
        start = self.addrs[i]
        return start == address or start <= address < start + self.sizes[i]


def load_symbols(path: Path) -> CachedSymbols | None:
    """The cached symbols as a drgn symbol finder, or None if absent or malformed."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data[:8] != MAGIC or len(data) < 16:
        return None
    n, nlen = struct.unpack_from("<II", data, 8)
    if not 0 < n <= MAX_SYMBOLS or len(data) != 16 + 18 * n + nlen:
        return None
    pos = 16
    addrs = array("Q", data[pos : pos + 8 * n])
    sizes = array("Q", data[pos + 8 * n : pos + 16 * n])
    kinds, binds = data[pos + 16 * n : pos + 17 * n], data[pos + 17 * n : pos + 18 * n]
    names = data[pos + 18 * n :].decode("utf-8", "replace").split("\n")
    if (
        len(names) != n
        or any(k not in _KINDS for k in set(kinds))
        or any(b not in _BINDINGS for b in set(binds))
    ):
        return None
    return CachedSymbols(names, addrs, sizes, kinds, binds)


def save_btf(path: Path, btf: bytes) -> None:
    _write(path, btf)


def load_btf(path: Path, size: int) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if len(data) == size and data[:3] == b"\x9f\xeb\x01" else None


def index_path(btf_path: Path) -> Path:
    """Where the BTF's warm-start index (see ``Btf.export_index``) sits next to it."""
    return btf_path.with_suffix(".btfidx")


def save_btf_index(btf_path: Path, blob: bytes) -> None:
    _write(index_path(btf_path), blob)


def load_btf_index(btf_path: Path) -> bytes | None:
    """The index blob, or None; ``Btf`` checks it against the BTF's own bytes."""
    try:
        return index_path(btf_path).read_bytes()
    except OSError:
        return None
