"""Write a guest's memory to a file: an ELF vmcore (kdump's layout) or a flat raw image.

Why kdump's layout: ``drgn -c``, crash and volatility3 all open it. One PT_NOTE holds an
NT_PRSTATUS note per vCPU (``pr_pid`` = CPU + 1, as QEMU's dump-guest-memory does and drgn
expects of a dump taken while the kernel ran), the kernel's own VMCOREINFO note, and two
xenvmi notes (where VMCOREINFO was in guest memory; each vCPU's full register set, which
NT_PRSTATUS has no room for). Then one PT_LOAD per RAM range: ``p_paddr`` is the guest-
physical start (what drgn, volatility3 and our dumpfile backend read by) and ``p_vaddr``
its address in the kernel's direct map, as kdump writes it. drgn maps each PT_LOAD at both
addresses, so ``p_vaddr`` must be the guest's real ``page_offset_base`` (KASLR randomizes
it): :func:`direct_map_base` finds it in the guest's page tables.

One pass, streaming: Xen does not tell LibVMI where RAM is, so memory is read in 4 MiB
chunks whose per-page ``ok`` list shows the holes; a chunk whose ends are unreadable is
bisected with single-page probes instead of being read page by page (LibVMI pays a
hypercall per unreadable page), and skipped when its ends and middle are all holes. The
guest kernel's own "System RAM" ranges, when known, are read whole, so RAM islands in
such a chunk are kept; they only add to what probing finds, so a guest that hides RAM
from its own resource tree does not hide it from the dump. Program headers get a fixed
reserve before the data and are written last. The file appears under its name only when complete.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xenvmi.backends.memory import PAGE, GuestMemory, PhysicalFault
from xenvmi.errors import GuestDataError, NotFoundError, PermissionDenied, UsageError, XenvmiError
from xenvmi.guest import vmcoreinfo as V
from xenvmi.vmcore_format import (
    ARM64_PRSTATUS_SIZE,
    ARM64_USER_REGS,
    EHDR,
    ET_CORE,
    MACHINES,
    MAX_REGISTERS,
    NT_PRSTATUS,
    NT_XENVMI_REGISTERS,
    NT_XENVMI_VMCOREINFO_ADDRESS,
    PHDR,
    PR_REG,
    PRSTATUS_SIZE,
    PT_LOAD,
    PT_NOTE,
    U64,
    USER_REGS,
    XENVMI_NOTE,
)

CHUNK = 4 << 20
MIN_SPLIT = 64 << 10  # below this a chunk is read whole, holes and all
#: Seconds between checks that a live domain still exists while it is dumped.
ALIVE_EVERY = 2.0
MAX_LOADS = 1024  # PT_LOAD slots reserved; past them holes are written as zeros
DIRECT_MAP = 0xFFFF_8880_0000_0000  # x86-64 __PAGE_OFFSET_BASE_L4 (no KASLR)
REGION_END = 0xFFFF_FE00_0000_0000  # CPU_ENTRY_AREA_BASE: KASLR'd regions lie below
#: Where each pr_reg slot comes from in xenvmi's register names (LibVMI's), first wins.
_SOURCES = {
    "eflags": ("rflags", "eflags"),
    "cs": ("cs_sel", "cs"),
    "ss": ("ss_sel", "ss"),
    "ds": ("ds_sel", "ds"),
    "es": ("es_sel", "es"),
    "fs": ("fs_sel", "fs"),
    "gs": ("gs_sel", "gs"),
    "orig_rax": (),
    # arm64: Xen's vcpu_guest_core_regs names (pc64, cpsr) and the SP of EL1, the
    # kernel's, when only the banked SPs are known
    "pc": ("pc", "pc64"),
    "pstate": ("pstate", "cpsr"),
    "sp": ("sp", "sp_el1"),
}

Progress = Callable[[int, int], None]


class DumpTimeout(XenvmiError):
    """The copy did not finish before the deadline (the partial file is removed)."""


@dataclass
class DumpSummary:
    """What a dump wrote: for the CLI's summary and --json."""

    path: str
    format: str
    bytes: int
    ranges: list[tuple[int, int]]
    vcpus: int
    seconds: float
    vmcoreinfo: bool
    direct_map: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ram_bytes(self) -> int:
        return sum(end - start for start, end in self.ranges)

    @property
    def mb_per_s(self) -> float:
        return self.ram_bytes / 1e6 / max(self.seconds, 1e-6)


# -- notes -----------------------------------------------------------------------------


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    """One ELF note: name (NUL included) and desc each padded to 4 bytes."""
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def prstatus(vcpu: int, regs: dict[str, int], arch: str = "x86_64") -> bytes:
    """``struct elf_prstatus`` for one vCPU: x86-64's (336 bytes, user_regs_struct) or
    arm64's (392 bytes, user_pt_regs: x0-x30, sp, pc, pstate); missing registers are 0."""
    slots, size = (
        (ARM64_USER_REGS, ARM64_PRSTATUS_SIZE)
        if arch == "aarch64"
        else (
            USER_REGS,
            PRSTATUS_SIZE,
        )
    )
    values = []
    for slot in slots:
        names = _SOURCES.get(slot, (slot,))
        values.append(next((regs[n] & U64 for n in names if n in regs), 0))
    out = bytearray(size)
    struct.pack_into("<i", out, 32, vcpu + 1)  # pr_pid
    struct.pack_into(f"<{len(slots)}Q", out, PR_REG, *values)
    return bytes(out)


def registers_note(vcpu: int, regs: dict[str, int]) -> bytes:
    lines = [f"vcpu={vcpu}"] + [
        f"{k}={v & U64:#x}"
        for k, v in sorted(regs.items())
        if isinstance(v, int) and k.isidentifier() and len(k) <= 32
    ]
    return note(
        XENVMI_NOTE, NT_XENVMI_REGISTERS, "\n".join(lines[: MAX_REGISTERS + 1]).encode() + b"\n"
    )


def _vcpu_notes(mem: GuestMemory, warnings: list[str]) -> tuple[bytes, int]:
    """NT_PRSTATUS (+ full registers) per vCPU whose state can be read; others skipped."""
    out, done = b"", 0
    try:
        count = mem.vcpu_count()
    except (XenvmiError, NotImplementedError):
        count = 0
    for n in range(min(count, 4096)):
        try:
            regs = mem.vcpu_registers(n)
        except (XenvmiError, NotImplementedError) as e:
            warnings.append(f"vCPU {n}: no registers in the dump ({e})")
            continue
        out += note(b"CORE\x00", NT_PRSTATUS, prstatus(n, regs, mem.arch))
        out += registers_note(n, regs)
        done += 1
    return out, done


# -- the direct map --------------------------------------------------------------------


def direct_map_base(mem: GuestMemory, info: V.VmcoreInfo) -> int | None:
    """The guest's ``page_offset_base``: where the kernel maps physical memory 1:1.

    Walks the kernel's top-level page table (``swapper_pg_dir`` from VMCOREINFO) over the
    region memory KASLR places the direct map in (it starts there, at some 1 GiB step,
    and is the first region; the kernel image mapping lies above the region). The first
    1 GiB slot whose first mapped page sits at the same offset physically (page 0 itself
    may be unmapped) is the base. None when not found (5-level paging, unreadable or
    hostile tables): the caller falls back to the fixed base.
    """
    pgd_va = info.symbols.get("swapper_pg_dir", info.symbols.get("init_top_pgt"))
    if pgd_va is None or info.numbers.get("pgtable_l5_enabled"):
        return None
    addr_mask, reads = 0x000F_FFFF_FFFF_F000, [0]

    def table(entry: int) -> tuple[int, ...]:
        reads[0] += 1
        if reads[0] > 2048:
            raise PhysicalFault(entry & addr_mask, " (page-table walk bound)")
        return struct.unpack("<512Q", mem.read_physical(entry & addr_mask, PAGE, strict=True))

    def first_page(pud_entry: int) -> tuple[int, int] | None:
        """(offset in the 1 GiB slot, physical address) of its first mapped page."""
        if pud_entry & 0x80:  # a 1 GiB page
            return 0, pud_entry & 0x000F_FFFF_C000_0000
        for k, pmd in enumerate(table(pud_entry)):
            if not pmd & 1:
                continue
            if pmd & 0x80:  # a 2 MiB page
                return k << 21, pmd & 0x000F_FFFF_FFE0_0000
            for n, pte in enumerate(table(pmd)):
                if pte & 1:
                    return k << 21 | n << 12, pte & addr_mask
        return None

    try:
        pgd = table(info.kernel_image_pa(pgd_va))
        for i in range((DIRECT_MAP >> 39) & 511, (REGION_END >> 39) & 511):
            if not pgd[i] & 1:
                continue
            for j, pud in enumerate(table(pgd[i])):
                first = first_page(pud) if pud & 1 else None
                if first is not None and first[0] == first[1]:
                    return 0xFFFF_0000_0000_0000 | i << 39 | j << 30
    except PhysicalFault:
        return None
    return None


# -- copying ---------------------------------------------------------------------------


class _Copier:
    """Reads guest memory once, in chunks, writing readable runs to ``out``."""

    def __init__(
        self,
        mem: GuestMemory,
        out,
        fmt: str,
        data_start: int,
        deadline: float,
        progress: Progress | None,
        ram: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.mem, self.out, self.fmt = mem, out, fmt
        #: RAM the guest kernel declares, page-aligned outwards, [start, end) sorted.
        self.ram = [(s // PAGE * PAGE, -(-e // PAGE) * PAGE) for s, e in ram]
        self.deadline, self.progress = deadline, progress
        self.ranges: list[list[int]] = []  # [paddr start, paddr end, file offset]
        self.offset = data_start
        self._probes: dict[int, bool] = {}

    def run(self) -> None:
        top = -(-self.mem.ram_top // PAGE) * PAGE
        pos, checked = 0, time.monotonic()
        while pos < top:
            if time.monotonic() > self.deadline:
                raise DumpTimeout(
                    f"dump of {self.mem.name} did not finish before its "
                    f"deadline ({pos >> 20} of {top >> 20} MiB copied)"
                )
            end = min(pos + CHUNK, top)
            self._probes.clear()
            self._visit(pos, end)
            pos = end
            if time.monotonic() - checked > ALIVE_EVERY:
                self.mem.check_alive()  # a destroyed domain's pages read as holes
                checked = time.monotonic()
            if self.progress:
                self.progress(pos, top)
        self.mem.check_alive()

    def _ok(self, page: int) -> bool:
        if page not in self._probes:
            self._probes[page] = self.mem._backend(page, PAGE)[1][0]
        return self._probes[page]

    def _visit(self, lo: int, hi: int) -> None:
        """Copy [lo, hi): whole if it is declared RAM, if its ends are readable or if it is
        small, else bisect."""
        inside = any(s <= lo and hi <= e for s, e in self.ram)
        if inside or hi - lo <= MIN_SPLIT or (self._ok(lo) and self._ok(hi - PAGE)):
            data, ok = self.mem._backend(lo, hi - lo)
            self._store(lo, data, ok)
            return
        mid = lo + (hi - lo) // 2 // PAGE * PAGE
        declared = any(s < hi and lo < e for s, e in self.ram)
        if not (declared or self._ok(lo) or self._ok(hi - PAGE) or self._ok(mid)):
            return  # both ends and the middle are holes, and no declared RAM: one hole
        self._visit(lo, mid)
        self._visit(mid, hi)

    def _store(self, addr: int, data: bytes, ok: list[bool]) -> None:
        view, i = memoryview(data), 0
        while i < len(ok):
            if not ok[i]:
                i += 1
                continue
            j = i
            while j < len(ok) and ok[j]:
                j += 1
            self._write(addr + i * PAGE, view[i * PAGE : j * PAGE])
            i = j

    def _write(self, paddr: int, piece: memoryview) -> None:
        if self.fmt == "raw":
            self.out.seek(paddr)
            self.out.write(piece)
            self._extend(paddr, len(piece))
            return
        last = self.ranges[-1] if self.ranges else None
        if last and last[1] != paddr and len(self.ranges) >= MAX_LOADS:
            gap = paddr - last[1]  # out of PT_LOAD slots: this hole is written as zeros
            for n in range(0, gap, CHUNK):
                self.out.write(bytes(min(CHUNK, gap - n)))
            last[1] = paddr
            self.offset += gap
        self.out.write(piece)
        self._extend(paddr, len(piece))

    def _extend(self, paddr: int, size: int) -> None:
        last = self.ranges[-1] if self.ranges else None
        if last and last[1] == paddr:
            last[1] += size
        else:
            self.ranges.append([paddr, paddr + size, self.offset])
        self.offset += size


# -- the file --------------------------------------------------------------------------


def _ehdr(phnum: int, arch: str = "x86_64") -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, SysV
    return ident + struct.pack(
        "<HHIQQQIHHHHHH", ET_CORE, MACHINES[arch], 1, 0, EHDR, 0, 0, EHDR, PHDR, phnum, 0, 0, 0
    )


def _phdr(
    ptype: int, offset: int, vaddr: int, paddr: int, size: int, flags: int = 0, align: int = 0
) -> bytes:
    return struct.pack("<IIQQQQQQ", ptype, flags, offset, vaddr, paddr, size, size, align)


def check_target(target: Path, force: bool) -> None:
    """Refuse a directory, a missing directory, or (without ``force``) an existing file."""
    if target.is_dir():
        raise UsageError(f"{target} is a directory: give a file name")
    if not target.parent.is_dir():
        raise NotFoundError(f"no directory {target.parent} to write {target.name} in")
    if (target.exists() or target.is_symlink()) and not force:
        raise UsageError(f"{target} exists: give --force to overwrite it")


def _publish(tmp: Path, target: Path, force: bool) -> None:
    """Give the finished file its name; without ``force`` never replace one that appeared."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise UsageError(f"{target} appeared while dumping: give --force to overwrite it") from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise UsageError(f"{target} exists: give --force to overwrite it") from None
        os.rename(tmp, target)
        return
    tmp.unlink()


def _notes(mem: GuestMemory, discovery, warnings: list[str]) -> tuple[bytes, int]:
    out, vcpus = _vcpu_notes(mem, warnings)
    if discovery is not None:
        out += note(V.NOTE_NAME, 0, discovery.info.raw)
        out += note(
            XENVMI_NOTE,
            NT_XENVMI_VMCOREINFO_ADDRESS,
            struct.pack("<Q", discovery.note_address & U64),
        )
    return out, vcpus


def dump(
    mem: GuestMemory,
    path: str | os.PathLike,
    *,
    fmt: str = "elf",
    discovery=None,
    pause: bool = False,
    timeout: float | None = 1800.0,
    progress: Progress | None = None,
    force: bool = False,
    ram_ranges: Sequence[tuple[int, int]] = (),
) -> DumpSummary:
    """Write ``mem`` to ``path`` as an ELF vmcore (``fmt="elf"``) or a flat image ("raw").

    ``discovery`` (a :class:`xenvmi.guest.discover.Discovery`) supplies the VMCOREINFO
    note; without it the vmcore has none (drgn then does not see a kernel). With ``pause``
    the guest stands still while its registers and memory are copied, and is always
    resumed. The file is written under a hidden temporary name (mode 0600: it holds the
    guest's secrets) and renamed when complete; on any error or Ctrl-C it is removed.
    ``ram_ranges`` (``[start, end)``, the guest kernel's "System RAM") are read whole.
    """
    if fmt not in ("elf", "raw"):
        raise UsageError(f"unknown dump format {fmt!r} (elf or raw)")
    target = Path(path)
    check_target(target, force)
    t0 = time.monotonic()
    deadline = float("inf") if timeout is None else t0 + timeout
    warnings: list[str] = []
    base = None
    if fmt == "elf" and discovery is not None and mem.arch != "aarch64":
        base = direct_map_base(mem, discovery.info)
        if base is None:
            warnings.append(
                f"the direct map was not found in the guest's page tables: "
                f"PT_LOAD virtual addresses assume {DIRECT_MAP:#x}"
            )
    tmp = target.with_name(f".{target.name}.xenvmi-partial-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except PermissionError:
        raise PermissionDenied(f"cannot create a file in {target.parent}") from None
    except OSError as e:
        raise XenvmiError(f"cannot create {tmp}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            summary = _write(
                mem,
                out,
                fmt,
                discovery,
                pause,
                deadline,
                progress,
                base,
                warnings,
                list(ram_ranges),
            )
            out.flush()
        _publish(tmp, target, force)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise XenvmiError(f"cannot write {target}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary.path, summary.seconds = str(target), time.monotonic() - t0
    return summary


def _vaddr(mem: GuestMemory, discovery, base: int | None, paddr: int) -> int:
    """A PT_LOAD's p_vaddr: ``paddr`` in the kernel's direct map, or on arm64 in its
    linear map (VMCOREINFO's PHYS_OFFSET and VA_BITS); an arm64 dump without a kernel
    gives the physical address, as QEMU's dump-guest-memory does."""
    if mem.arch == "aarch64":
        return paddr if discovery is None else discovery.info.linear_va(paddr)
    return (DIRECT_MAP if base is None else base) + paddr


def _write(mem, out, fmt, discovery, pause, deadline, progress, base, warnings, ram) -> DumpSummary:
    notes, vcpus, data_start = b"", 0, 0
    note_off = EHDR + PHDR * (1 + MAX_LOADS)
    with mem.paused() if pause else contextlib.nullcontext():
        if fmt == "elf":
            notes, vcpus = _notes(mem, discovery, warnings)
            data_start = -(-(note_off + len(notes)) // PAGE) * PAGE
            out.seek(note_off)
            out.write(notes)
            out.seek(data_start)
        copier = _Copier(mem, out, fmt, data_start, deadline, progress, ram)
        copier.run()
    if not copier.ranges:
        raise GuestDataError(f"no readable memory in {mem.name}: nothing to dump")
    if fmt == "elf":
        heads = [_phdr(PT_NOTE, note_off, 0, 0, len(notes), align=4)]
        heads += [
            _phdr(PT_LOAD, off, _vaddr(mem, discovery, base, start), start, end - start, flags=7)
            for start, end, off in copier.ranges
        ]
        out.seek(0)
        out.write(_ehdr(len(heads), mem.arch) + b"".join(heads))
        size = copier.offset
    else:
        size = copier.ranges[-1][1]
        out.truncate(size)
    return DumpSummary(
        "",
        fmt,
        size,
        [(s, e) for s, e, _ in copier.ranges],
        vcpus,
        0.0,
        discovery is not None,
        base,
        warnings,
    )
