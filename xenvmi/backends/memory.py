"""GuestMemory: one interface for a guest's physical memory and vCPU state.

Every guest view (discovery, drgn, ps, dmesg) reads through this interface, so live
domains (LibVMI), dumps and synthetic test images share all of that code.

Threading: a handle belongs to the thread that opened it. LibVMI is not thread-safe,
and a page cache shared across threads would need locks on the hot path, so each
method asserts it runs on the owner thread; open one handle per thread instead.

Caching: guest memory changes under us while the guest runs. The page cache holds one
"snapshot" of whatever pages a view touched: :meth:`GuestMemory.snapshot` (optionally
pausing the guest) starts a fresh one, so a view sees each page as of its first read.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import cast

from xenvmi.errors import GuestDataError

PAGE = 4096
PAGE_MASK = ~(PAGE - 1)
#: Reads at least this big bypass the cache (scans): caching them would evict the
#: small, hot pages (page tables, task structs) drgn re-reads.
BYPASS = 256 * 1024
#: Pages held per snapshot before the cache starts over (64 MiB).
MAX_CACHED_PAGES = 16384


class PhysicalFault(GuestDataError):
    """A guest-physical address that cannot be read (a hole, or beyond RAM)."""

    def __init__(self, address: int, what: str = "") -> None:
        super().__init__(f"cannot read guest-physical address {address:#x}{what}")
        self.address = address


class GuestMemory:
    """Base class: subclasses implement :meth:`_read_pages` and the register/pause hooks.

    ``_read_pages(addr, size)`` gets page-aligned ranges and returns ``(data, ok)``:
    ``data`` exactly ``size`` bytes (holes zero-filled) and ``ok`` a list with one bool
    per page saying whether that page was really readable.
    """

    #: Human name of the memory (domain name, dump path): used in messages.
    name: str = "guest"
    domid: int | None = None
    uuid: str | None = None
    #: Guest type ("pvh", "hvm", "pv", "dump", "image"), for messages and cache keys.
    kind: str = "image"
    #: The guest's architecture, as the memory source says (a vmcore's ELF machine, the
    #: hypervisor's capabilities): "x86_64" or "aarch64". Never the host's.
    arch: str = "x86_64"
    #: False where the source does not say (a raw image, bytes only): discovery then
    #: takes the architecture of the kernel's note it checked, and sets ``arch``.
    arch_known: bool = True

    def __init__(self) -> None:
        self._owner = threading.get_ident()
        self._pages: dict[int, bytes | None] = {}
        self.stats = {"backend_reads": 0, "backend_bytes": 0}

    # -- to implement ---------------------------------------------------------------

    @property
    def max_physical_address(self) -> int:
        raise NotImplementedError

    @property
    def ram_top(self) -> int:
        """Where RAM probably ends: scans start here (holes above it are slow to probe)."""
        return self.max_physical_address

    def _read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        raise NotImplementedError

    def check_alive(self) -> None:
        """Raise NotFoundError if the memory's domain has gone away. Reads of a destroyed
        domain fail like holes, so a long read (a dump) asks this as it goes, or it would
        finish "complete" with the rest of the guest missing. A dump file never goes."""

    def _read_page(self, addr: int) -> bytes | None:
        """The page at page-aligned ``addr``, or None if unreadable: :meth:`_read_pages`
        for one page, which a backend may override with a cheaper call."""
        data, ok = self._read_pages(addr, PAGE)
        if len(data) != PAGE or len(ok) != 1:
            raise AssertionError(f"{type(self).__name__}._read_pages returned a wrong size")
        return data if ok[0] else None

    def drop_mappings(self) -> None:
        """Give back the guest frames a live backend keeps mapped as a cache (the next
        reads map afresh). The cache's size follows what the last reads touched, so a
        count of a process's mappings beyond it is taken after this. Nothing to give
        back for a file."""

    def vcpu_count(self) -> int:
        return 0

    def vcpu_registers(self, vcpu: int = 0) -> dict[str, int]:
        raise NotImplementedError(f"{self.name}: no vCPU state in this memory source")

    def _pause(self) -> None:
        pass

    def _resume(self) -> None:
        pass

    def close(self) -> None:
        self._pages.clear()

    # -- common ---------------------------------------------------------------------

    def check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError(
                f"{type(self).__name__} for {self.name} used from a thread "
                "that does not own it (LibVMI is not thread-safe)"
            )

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_physical(self, addr: int, size: int, *, strict: bool = False) -> bytes:
        """``size`` bytes at guest-physical ``addr``.

        Unreadable pages read as zeros, or raise :class:`PhysicalFault` if ``strict``
        (what drgn wants: a fault, not plausible-looking zeros).
        """
        if threading.get_ident() != self._owner:
            self.check_thread()
        offset = addr & ~PAGE_MASK
        if 0 < size <= PAGE - offset:  # within one page: the hot path of every view
            page = addr - offset
            data = self._pages.get(page)
            if (
                data is None
                and page not in self._pages
                and 0 <= page
                and addr + size <= self.max_physical_address
            ):
                data = self._fill_page(page)
            if data is not None:
                return data[offset : offset + size]
        if size <= 0:
            return b""
        if addr < 0 or addr + size > self.max_physical_address:
            if strict:
                raise PhysicalFault(max(addr, self.max_physical_address))
            if addr >= self.max_physical_address or addr < 0:
                return bytes(size)
            return self.read_physical(addr, self.max_physical_address - addr) + bytes(
                addr + size - self.max_physical_address
            )
        first, last = addr & PAGE_MASK, (addr + size - 1) & PAGE_MASK
        if size >= BYPASS:
            data, ok = self._backend(first, last + PAGE - first)
            if strict and not all(ok):
                raise PhysicalFault(first + ok.index(False) * PAGE)
            return data[addr - first : addr - first + size]
        self._fill(first, last)
        pages = [self._pages[page] for page in range(first, last + PAGE, PAGE)]
        if None not in pages:  # every page cached: they are all bytes
            return b"".join(cast("list[bytes]", pages))[addr - first : addr - first + size]
        out = bytearray()
        for page in range(first, last + PAGE, PAGE):
            data = self._pages[page]
            if data is None:
                if strict:
                    raise PhysicalFault(page)
                data = bytes(PAGE)
            out += data
        return bytes(out[addr - first : addr - first + size])

    def page_readable(self, addr: int) -> bool:
        """Whether the page holding ``addr`` is readable (cached like any read)."""
        try:
            self.read_physical(addr & PAGE_MASK, 1, strict=True)
        except PhysicalFault:
            return False
        return True

    def _fill(self, first: int, last: int) -> None:
        """Make every page in [first, last] cached, fetching missing runs in one read each."""
        page = first
        while page <= last:
            if page in self._pages:
                page += PAGE
                continue
            run = page
            while run + PAGE <= last and run + PAGE not in self._pages:
                run += PAGE
            if run == page:  # one page: most fills, so the backend may have a quicker way
                self._fill_page(page)
                page += PAGE
                continue
            if len(self._pages) + (run - page) // PAGE + 1 > MAX_CACHED_PAGES:
                self._pages.clear()
            data, ok = self._backend(page, run + PAGE - page)
            for i, good in enumerate(ok):
                self._pages[page + i * PAGE] = data[i * PAGE : (i + 1) * PAGE] if good else None
            page = run + PAGE

    def _fill_page(self, page: int) -> bytes | None:
        """Cache the one page at ``page`` (None if unreadable) and return it."""
        if len(self._pages) >= MAX_CACHED_PAGES:
            self._pages.clear()
        self.stats["backend_reads"] += 1
        self.stats["backend_bytes"] += PAGE
        data = self._pages[page] = self._read_page(page)
        return data

    def _backend(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        self.stats["backend_reads"] += 1
        self.stats["backend_bytes"] += size
        data, ok = self._read_pages(addr, size)
        if len(data) != size or len(ok) != size // PAGE:
            raise AssertionError(f"{type(self).__name__}._read_pages returned a wrong size")
        return data, ok

    def invalidate(self) -> None:
        """Forget cached pages: the next reads see the guest as it is now."""
        self.check_thread()
        self._pages.clear()

    @contextlib.contextmanager
    def snapshot(self, pause: bool = False) -> Iterator[GuestMemory]:
        """A fresh page cache for one view; with ``pause`` the guest stands still meanwhile.

        The guest is always resumed, whatever happens inside.
        """
        self.invalidate()
        if not pause:
            yield self
            return
        with self.paused():
            yield self

    @contextlib.contextmanager
    def paused(self) -> Iterator[GuestMemory]:
        """Pause the guest for the duration of the block (keep it short); always resumes."""
        self.check_thread()
        self._pause()
        try:
            yield self
        finally:
            self._resume()


class BytesMemory(GuestMemory):
    """Guest-physical memory from a bytes-like image starting at 0 (tests, raw dumps).

    ``holes`` lists (start, end) ranges that read as unreadable, to imitate MMIO holes.
    """

    kind = "image"

    def __init__(
        self,
        image: bytes | bytearray | memoryview,
        name: str = "image",
        holes: tuple[tuple[int, int], ...] = (),
        registers: dict[int, dict[str, int]] | None = None,
        base: int = 0,
        arch: str = "x86_64",
    ) -> None:
        super().__init__()
        self.image, self.name, self.holes = image, name, holes
        self.registers = registers or {}
        #: Guest-physical address of the image's first byte: RAM of Arm guests starts at
        #: 0x40000000 (Xen's GUEST_RAM0_BASE, QEMU virt); below it reads as a hole.
        self.base, self.arch = base, arch

    @property
    def max_physical_address(self) -> int:
        return self.base + len(self.image)

    def _read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        data = bytearray(size)
        lo, hi = max(addr, self.base), min(addr + size, self.max_physical_address)
        if lo < hi:
            data[lo - addr : hi - addr] = self.image[lo - self.base : hi - self.base]
        ok = []
        for page in range(addr, addr + size, PAGE):
            bad = not self.base <= page < self.max_physical_address or any(
                s <= page < e for s, e in self.holes
            )
            if bad:
                data[page - addr : page - addr + PAGE] = bytes(PAGE)
            ok.append(not bad)
        return bytes(data), ok

    def vcpu_count(self) -> int:
        return len(self.registers)

    def vcpu_registers(self, vcpu: int = 0) -> dict[str, int]:
        try:
            return dict(self.registers[vcpu])
        except KeyError:
            raise GuestDataError(f"{self.name} has no vCPU {vcpu}") from None
