"""Bounded walks over hostile guest memory: every list ends, every view meets its deadline.

A guest controls its own memory, so a task list may loop, point into user space, or be
rewritten while we read it. Walks here stop at a maximum count, on the first repeated
node, on a non-kernel pointer, on an unreadable node and at the deadline, and say why in
a warning; the caller keeps what it got (a partial result), never hangs or crashes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import drgn
from drgn import Object

from xenvmi import safetext
from xenvmi.errors import GuestDataError  # noqa: F401  (callers catch it from here)
from xenvmi.guest.budget import MAX_WARNINGS, Budget, DeadlineExceeded  # noqa: F401

#: Lowest kernel address of any supported guest: arm64's linear map starts at
#: -(1 << VA_BITS), 0xFFF0... with 52-bit VAs; x86-64's 5-level kernel half at 0xFF00....
KERNEL_HALF = 0xFF00_0000_0000_0000
#: Top of user space: 1 << 47 on x86-64 (4-level), 1 << 48 or 1 << 52 on arm64, 1 << 56
#: with x86-64's 5-level paging.
USER_TOP = 0x0100_0000_0000_0000
_TWO_U64 = struct.Struct("<QQ")


def is_kernel_pointer(addr: int, align: int = 8) -> bool:
    """Canonical, in the kernel half and aligned: the least a kernel list pointer must be."""
    return KERNEL_HALF <= addr <= 0xFFFF_FFFF_FFFF_FFFF and addr % align == 0


def is_user_pointer(addr: int) -> bool:
    return 0 < addr < USER_TOP


def walk_list(
    head: Object,
    type_name: str,
    member: str,
    budget: Budget,
    *,
    max_count: int = 100_000,
    what: str = "list",
) -> Iterator[Object]:
    """``container_of`` each node of the ``struct list_head`` ``head`` (not the head itself).

    Stops, with a warning on ``budget``, at ``max_count`` entries, a repeated node, a
    pointer that is not a kernel address, an unreadable node or the deadline.
    """
    prog = head.prog_
    head_addr = head.address_
    if head_addr is None:
        raise ValueError("walk_list needs a list_head in memory")
    entry_type = prog.type(type_name)
    node_type = prog.pointer_type(prog.type("struct list_head"))
    for node in walk_nodes(prog.read, head_addr, budget, max_count=max_count, what=what):
        yield drgn.container_of(Object(prog, node_type, node), entry_type, member)


def walk_nodes(
    read: Callable[[int, int], bytes],
    head_addr: int,
    budget: Budget,
    *,
    max_count: int = 100_000,
    what: str = "list",
) -> Iterator[int]:
    """The address of each node of the ``struct list_head`` at ``head_addr``, with
    :func:`walk_list`'s bounds: for views that read entries without drgn Objects.
    ``read(address, size)`` reads kernel memory, raising drgn.FaultError."""
    try:
        node = _TWO_U64.unpack(read(head_addr, 16))[0]
    except drgn.FaultError as e:
        budget.warn(f"{what}: head at {head_addr:#x} unreadable ({e})")
        return
    prev, seen, count, mismatched = head_addr, set(), 0, False
    while node != head_addr:
        if budget.expired():
            budget.warn(f"{what}: stopped at the deadline after {count} entries")
            return
        if not is_kernel_pointer(node):
            budget.warn(
                f"{what}: entry {count} points to {node:#x}, not a kernel address; list cut there"
            )
            return
        if node in seen:
            budget.warn(f"{what}: loops back to {node:#x} after {count} entries; list cut there")
            return
        if count >= max_count:
            budget.warn(f"{what}: more than {max_count} entries; list cut there")
            return
        seen.add(node)
        try:
            nxt, back = _TWO_U64.unpack(read(node, 16))
        except drgn.FaultError:
            budget.warn(f"{what}: entry {count} at {node:#x} unreadable; list cut there")
            return
        if back != prev and not mismatched:
            mismatched = True  # changed while we read, or corrupt: entries may be missing
            budget.warn(
                f"{what}: back pointer of entry {count} ({node:#x}) does not match "
                "(list changed while being read, or corrupt)",
                partial=False,
            )
        yield node
        prev, node = node, nxt
        count += 1


def c_string(raw: bytes, limit: int) -> str:
    """A NUL-terminated guest string, cut at ``limit``, safe to print
    (:func:`xenvmi.safetext.decode`: non-printables and invalid UTF-8 as escapes)."""
    return safetext.decode(raw[:limit].split(b"\x00", 1)[0])
