"""The batch-mapping reader, on a stand-in for libxenforeignmemory that maps from bytes
(the real library is tested against LibVMI's reads in the lab: test_guest_views)."""

from __future__ import annotations

import ctypes
import random

import pytest

from xenvmi.backends import xenforeign
from xenvmi.backends.memory import PAGE
from xenvmi.errors import Unavailable

FRAMES = 600
HOLES = {5, 6, 300, 599}


class FakeLib:
    """xenforeignmemory_* over an image: holes are refused per frame, as Xen does."""

    def __init__(self, image: bytes, refuse_calls: bool = False):
        self.image, self.refuse_calls = image, refuse_calls
        self.maps, self.live, self.closed = [], {}, False

    def xenforeignmemory_open(self, logger, flags):
        return 0x1234

    def xenforeignmemory_close(self, handle):
        self.closed = True

    def xenforeignmemory_map(self, handle, domid, prot, count, frames, err):
        if self.refuse_calls:
            return None
        self.maps.append(count)
        buf = ctypes.create_string_buffer(count * PAGE)
        for i in range(count):
            f = frames[i]
            if f in HOLES or f >= FRAMES:
                err[i] = -22
                buf[i * PAGE : (i + 1) * PAGE] = b"\xee" * PAGE  # never to be copied
            else:
                err[i] = 0
                buf[i * PAGE : (i + 1) * PAGE] = self.image[f * PAGE : (f + 1) * PAGE]
        addr = ctypes.addressof(buf)
        self.live[addr] = buf
        return addr

    def xenforeignmemory_unmap(self, handle, addr, count):
        del self.live[addr]
        return 0


@pytest.fixture
def image():
    return random.Random(5).randbytes(FRAMES * PAGE)


def expected(image: bytes, first: int, count: int) -> bytes:
    return b"".join(
        bytes(PAGE) if f in HOLES or f >= FRAMES else image[f * PAGE : (f + 1) * PAGE]
        for f in range(first, first + count)
    )


def test_batches_holes_and_unmapping(image):
    lib = FakeLib(image)
    fm = xenforeign.ForeignMemory(7, lib=lib)
    data, ok = fm.read_pages(2 * PAGE, 598 * PAGE)  # past the end: refused frames
    assert data == expected(image, 2, 598)
    assert [i + 2 for i, good in enumerate(ok) if not good] == sorted(HOLES)
    assert lib.maps == [256, 256, 86] and lib.live == {}  # every mapping undone
    fm.close()
    assert lib.closed


def test_a_refused_call_is_an_oserror_and_unaligned_reads_are_refused(image):
    fm = xenforeign.ForeignMemory(7, lib=FakeLib(image, refuse_calls=True))
    with pytest.raises(OSError):
        fm.read_pages(0, 16 * PAGE)
    with pytest.raises(ValueError):
        fm.read_pages(100, PAGE)


def test_missing_library_is_unavailable():
    with pytest.raises(Unavailable, match="libxenforeignmemory1"):
        xenforeign.load_library("libxenforeignmemory-not-here.so.9")
