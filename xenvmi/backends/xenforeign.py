"""Bulk reads of a Xen guest's memory through Xen's own libxenforeignmemory.

LibVMI maps a guest page at a time (a privcmd ioctl, a page-table update in dom0 and an
unmap per page), which is what a large read costs: 1.6 MB/s in the lab's emulated dom0.
``xenforeignmemory_map`` maps a whole batch of frames with one call; the same reads ran at
~15 MB/s there, byte for byte identical. Large reads (the kernel scan, the BTF blob, dumps)
come here; small ones stay with LibVMI. HVM and PVH guests only: a PV guest's "physical"
frames are not guest frames (its memory is refused before this is reached).

A frame Xen refuses is reported per page in ``err`` and left unmapped; only the frames it
mapped are touched (touching an unmapped one would be SIGBUS).
"""

from __future__ import annotations

import ctypes
import mmap
import time
from collections import OrderedDict

from xenvmi.backends.memory import PAGE
from xenvmi.errors import Unavailable

LIBRARY = "libxenforeignmemory.so.1"
#: Frames per mapping call: 1 MiB measured fastest in the lab (256: 15 MB/s; 1024: 8-12).
BATCH = 256
#: Frames per mapping kept for single-page reads (read_page), and how many are kept:
#: 8 frames cost 1.6 ms a call in the lab's emulated dom0 against 0.9 ms for one, and
#: 1024 blocks are 32 MiB of dom0's address space (no memory: they map the guest's).
BLOCK = 8
MAX_BLOCKS = 1024
#: Seconds a kept mapping is used: it shows the frame Xen mapped then, and a guest may
#: give a frame back (ballooning) or have another put there; LibVMI's cache ages too.
MAX_AGE = 5.0
#: One page of mapped memory: ``.raw`` copies it to bytes in about half string_at's time
#: (measured in the lab's dom0), on the path of every single-page read.
_Page = ctypes.c_char * PAGE


def load_library(name: str = LIBRARY):
    """The C library with its signatures set; Unavailable if Xen's tools are not here."""
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise Unavailable(
            f"{name} cannot be loaded ({e}): Debian's libxenforeignmemory1 "
            "package (part of the Xen tools) provides it"
        ) from None
    lib.xenforeignmemory_open.restype = ctypes.c_void_p
    lib.xenforeignmemory_open.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.xenforeignmemory_close.argtypes = [ctypes.c_void_p]
    lib.xenforeignmemory_map.restype = ctypes.c_void_p
    lib.xenforeignmemory_map.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.xenforeignmemory_unmap.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return lib


class ForeignMemory:
    """Read-only batch mappings of one domain's frames (one handle, one owner thread)."""

    def __init__(self, domid: int, lib=None) -> None:
        self.domid = domid
        self._lib = lib if lib is not None else load_library()
        self._arrays: dict[int, tuple] = {}  # frame and error arrays by size, reused
        self._blocks: OrderedDict[int, tuple[int, int, list[bool], float]] = OrderedDict()
        self._handle = self._lib.xenforeignmemory_open(None, 0)
        if not self._handle:
            raise Unavailable(
                f"xenforeignmemory_open failed (errno {ctypes.get_errno()}): "
                "is /dev/xen/privcmd there, and are we root in dom0?"
            )

    def read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        """Page-aligned ``[addr, addr + size)``: the bytes (zeros where unreadable) and
        one readable flag per page. Raises OSError if Xen refuses the mapping call as a
        whole (the caller then reads another way)."""
        if addr % PAGE or size % PAGE:
            raise ValueError("foreign reads are whole pages")
        out, ok = bytearray(), []
        first = addr // PAGE
        for start in range(0, size // PAGE, BATCH):
            count = min(BATCH, size // PAGE - start)
            data, good = self._batch(first + start, count)
            out += data
            ok += good
        return bytes(out), ok

    def _batch(self, frame: int, count: int) -> tuple[bytes, list[bool]]:
        lib = self._lib
        frames = (ctypes.c_ulong * count)(*range(frame, frame + count))
        err = (ctypes.c_int * count)()
        base = lib.xenforeignmemory_map(
            self._handle, self.domid, mmap.PROT_READ, count, frames, err
        )
        if not base:
            code = ctypes.get_errno()
            raise OSError(code, f"xenforeignmemory_map of {count} frames at {frame:#x} failed")
        out, ok = bytearray(), [e == 0 for e in err]
        try:
            i = 0
            while i < count:
                if not ok[i]:
                    out += bytes(PAGE)
                    i += 1
                    continue
                j = i
                while j < count and ok[j]:
                    j += 1
                out += ctypes.string_at(base + i * PAGE, (j - i) * PAGE)
                i = j
        finally:
            lib.xenforeignmemory_unmap(self._handle, base, count)
        return bytes(out), ok

    def read_page(self, addr: int) -> bytes | None:
        """The one page at page-aligned ``addr``, or None where Xen maps no frame: the
        hot path of a view's page-cache fills.

        A mapping shows the guest's memory as it is now, not a copy, so mappings are kept
        (up to MAX_BLOCKS, the oldest unmapped first, each for MAX_AGE seconds), as LibVMI
        keeps its single-page ones: a page read again costs a copy, no system call. The
        first page read in an aligned block of BLOCK frames is mapped alone (an isolated
        page costs one frame's call); a second page of the block maps the whole block,
        since one call for 8 frames costs little more than for one and kernel data
        clusters. A frame Xen refused is asked again on its next read (a hole is not
        remembered). Raises OSError if Xen refuses the call itself (EPERM, ESRCH, ...)."""
        frame = addr // PAGE
        key = frame // BLOCK
        entry = self._blocks.get(key)
        if entry is not None:
            base, first, ok, since = entry
            index = frame - first
            fresh = time.monotonic() - since < MAX_AGE
            if fresh and 0 <= index < len(ok):
                self._blocks.move_to_end(key)
                return (
                    _Page.from_address(base + index * PAGE).raw
                    if ok[index]
                    else self._read_one(frame)
                )
            # another frame of a block mapped for one (map it all), or too old (again)
            del self._blocks[key]
            self._lib.xenforeignmemory_unmap(self._handle, base, len(ok))
            single = not fresh and len(ok) == 1 and first == frame
            entry = (
                self._map_kept(key, frame, 1) if single else self._map_kept(key, key * BLOCK, BLOCK)
            )
        else:
            entry = self._map_kept(key, frame, 1)
        if entry is None:
            return self._read_one(frame)  # the call was refused: say why (OSError)
        base, first, ok, _ = entry
        return _Page.from_address(base + (frame - first) * PAGE).raw if ok[frame - first] else None

    def _map_kept(self, key: int, first: int, count: int):
        """Map ``count`` frames from ``first`` and keep the mapping under ``key``:
        (address, first frame, readable flags, when), or None if Xen refused the call."""
        arrays = self._arrays.get(count)
        if arrays is None:  # made once per size: ctypes arrays cost more than the copy
            arrays = self._arrays[count] = ((ctypes.c_ulong * count)(), (ctypes.c_int * count)())
        frames, err = arrays
        for i in range(count):
            frames[i], err[i] = first + i, 0
        base = self._lib.xenforeignmemory_map(
            self._handle, self.domid, mmap.PROT_READ, count, frames, err
        )
        if not base:
            return None
        if len(self._blocks) >= MAX_BLOCKS:
            _, (old, _, old_ok, _) = self._blocks.popitem(last=False)
            self._lib.xenforeignmemory_unmap(self._handle, old, len(old_ok))
        ok = [err[i] == 0 for i in range(count)]
        entry = self._blocks[key] = (base, first, ok, time.monotonic())
        return entry

    def _read_one(self, frame: int) -> bytes | None:
        """One frame, mapped for this read only (frame and error arrays reused)."""
        frames, err = self._arrays.get(1) or self._arrays.setdefault(
            1, ((ctypes.c_ulong * 1)(), (ctypes.c_int * 1)())
        )
        frames[0], err[0] = frame, 0
        lib = self._lib
        base = lib.xenforeignmemory_map(self._handle, self.domid, mmap.PROT_READ, 1, frames, err)
        if not base:
            code = ctypes.get_errno()
            raise OSError(code, f"xenforeignmemory_map of frame {frame:#x} failed")
        try:
            return _Page.from_address(base).raw if err[0] == 0 else None
        finally:
            lib.xenforeignmemory_unmap(self._handle, base, 1)

    def drop_mappings(self) -> None:
        """Unmap every kept block (the next single-page reads map afresh)."""
        while self._blocks:
            _, (base, _, ok, _) = self._blocks.popitem()
            self._lib.xenforeignmemory_unmap(self._handle, base, len(ok))

    def close(self) -> None:
        if self._handle:
            self.drop_mappings()
        handle, self._handle = self._handle, None
        if handle:
            self._lib.xenforeignmemory_close(handle)
