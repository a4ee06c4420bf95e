"""Build a drgn Program over any GuestMemory, from the guest's own kallsyms and BTF.

Nothing comes from files: the VMCOREINFO note (:mod:`xenvmi.guest.discover`) gives the
page tables and kallsyms locations, drgn's kallsyms loader gives symbols, and the BTF
between ``__start_BTF`` and ``__stop_BTF`` gives types (:mod:`xenvmi.guest.btf_drgn`).
All reads go through the GuestMemory page cache, and every read checks the deadline of
the current view, so even drgn's own loops over hostile data end in time.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import drgn
from drgn import Architecture, Platform, PlatformFlags, Program, ProgramFlags, SymbolKind

from xenvmi.backends.memory import PAGE, GuestMemory, PhysicalFault
from xenvmi.errors import GuestDataError, NotFoundError
from xenvmi.guest import arm64, datasyms, kallsyms_tables, pagetable, symcache
from xenvmi.guest import btf as B
from xenvmi.guest.bounded import Budget, DeadlineExceeded, is_kernel_pointer
from xenvmi.guest.btf_drgn import attach_btf
from xenvmi.guest.discover import Discovery
from xenvmi.guest.vmcoreinfo import (
    KALLSYMS_KEYS,
    X86_64_TEXT_BASE,
    VmcoreInfo,
)

MAX_KALLSYMS = 2_000_000  # Debian's 6.1 kernel has ~150k; refuse absurd counts early
MAX_BTF = 64 << 20
MAX_KALLSYMS_SPAN = 64 << 20  # the tables of a 150k-symbol kernel span 1.8 MB
#: Bounds of how much of the kernel image a search for kallsyms or BTF reads.
MIN_IMAGE_SEARCH, MAX_IMAGE_SEARCH = 32 << 20, 128 << 20
DIRECT_MAP = 0xFFFF_8880_0000_0000  # x86-64 __PAGE_OFFSET_BASE_L4
#: What a kallsyms table found by structure in an arm64 image must place after _stext,
#: in this order (its only VMCOREINFO anchor when kallsyms names functions only).
ARM64_TEXT_BOUNDS = ("_etext", "_sinittext", "_einittext")
_LE64 = PlatformFlags.IS_64_BIT | PlatformFlags.IS_LITTLE_ENDIAN
PLATFORM = Platform(Architecture.X86_64, _LE64)
#: drgn's platform for each GuestMemory.arch: drgn walks that architecture's page tables.
PLATFORMS = {"x86_64": PLATFORM, "aarch64": Platform(Architecture.AARCH64, _LE64)}


@dataclass
class KernelProgram:
    """A drgn Program on a guest kernel, with where its pieces came from."""

    prog: Program
    memory: GuestMemory
    discovery: Discovery
    budget: Budget  # the current view's; replace it per view (see :meth:`view`)
    btf_size: int = 0
    btf_types: int = 0
    symbols: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Linear maps checked against the page tables: (virtual start, virtual end,
    #: virtual - physical).
    linear: list[tuple[int, int, int]] = field(default_factory=list)
    #: arm64: (start, size) of the kernel image's known part (:func:`arm64.image`).
    image: tuple[int, int] | None = None

    @property
    def vmcoreinfo(self):
        """The kernel's VMCOREINFO (guest.vmcoreinfo.VmcoreInfo): its fields describe
        structures for crash tools where the kernel's own types may not."""
        return self.discovery.info

    @property
    def paging_levels(self) -> int:
        return 5 if self.discovery.info.numbers.get("pgtable_l5_enabled") else 4

    @property
    def arm64_paging(self) -> pagetable.Aarch64Paging | None:
        """An arm64 guest's user translation regime, from VMCOREINFO (PAGESIZE, the VA
        size TCR_EL1_T1SZ gives, which Linux also sets T0SZ to, else VA_BITS, and
        MAX_PHYSMEM_BITS); None for x86-64 or numbers no AArch64 regime has."""
        if self.memory.arch != "aarch64":
            return None
        return arm64.user_paging(self.discovery.info)

    def kernel_pa(self, va: int) -> int | None:
        """Guest-physical address of kernel address ``va`` in a verified linear map
        (direct map, kernel image), or None: then only drgn's page-table walk knows."""
        for start, end, delta in self.linear:
            if start <= va < end:
                return va - delta
        return None

    def read(self, va: int, size: int) -> bytes:
        """Kernel memory at ``va``, like ``prog.read``: straight from guest-physical memory
        inside the verified linear maps (no drgn object, no callback), else through drgn's
        page-table walk. drgn.FaultError if unreadable."""
        for start, end, delta in self.linear:
            if start <= va and va + size <= end:
                try:
                    return self.memory.read_physical(va - delta, size, strict=True)
                except PhysicalFault as e:
                    raise drgn.FaultError(
                        "guest-physical address not readable", e.address
                    ) from None
        return self.prog.read(va, size)

    def view(self, seconds: float | None) -> Budget:
        """Start a view: a fresh deadline and warning list, and a fresh page snapshot."""
        self.budget = Budget(seconds)
        self.memory.invalidate()
        return self.budget


def _reader(
    kp_ref: list, mem: GuestMemory, base: int | None = None
) -> Callable[[int, int, int, bool], bytes]:
    """drgn's read callback: guest-physical ``address``, or for a linear map of physical
    memory at ``base``, ``base`` plus the offset into the segment."""

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        kp = kp_ref[0]
        if kp is not None and kp.budget.expired():
            raise DeadlineExceeded(f"deadline of {kp.budget.seconds:.0f}s exceeded")
        try:
            return mem.read_physical(address if base is None else base + offset, count, strict=True)
        except PhysicalFault as e:
            raise drgn.FaultError("guest-physical address not readable", e.address) from None

    return read


def _load_kallsyms(kp: KernelProgram, cache: Path | None) -> None:
    prog, info = kp.prog, kp.discovery.info
    cached = symcache.load_symbols(cache) if cache else None
    if cached is not None:
        prog.register_symbol_finder("kallsyms", cached, enable_index=0)
        kp.symbols = len(cached)
        kp.sources["symbols"] = f"guest kallsyms tables ({len(cached)} symbols), from {cache}"
        return
    if not info.has_kallsyms():
        raise GuestDataError(
            f"{kp.memory.name}: no kallsyms tables (Linux "
            f"{info.osrelease}): neither VMCOREINFO nor a search found them"
        )
    num = prog.read_u32(info.symbols["kallsyms_num_syms"])
    if not 0 < num <= MAX_KALLSYMS:
        raise GuestDataError(f"kallsyms_num_syms is {num}: not a kernel symbol count")
    if prog.flags & ProgramFlags.IS_LOCAL:  # would read dom0's own /proc/kallsyms
        raise AssertionError("guest Program must not be flagged local")
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    _stage_kallsyms(kp)
    try:
        index = load_vmlinux_kallsyms(prog)
    except (
        ValueError,
        LookupError,
        drgn.FaultError,
        drgn.BadDataError,  # tables that decode to no _stext (found by fuzzing a real dump)
        OverflowError,
        MemoryError,
    ) as e:
        raise GuestDataError(
            f"{kp.memory.name}: the kernel's kallsyms tables are unreadable: {e}"
        ) from None
    prog.register_symbol_finder("kallsyms", index, enable_index=0)
    kp.symbols = num
    if cache:
        try:
            symcache.save_symbols(cache, prog.symbols())
        except OSError as e:
            kp.warnings.append(f"could not cache the kernel's symbols in {cache}: {e}")
    for name in ("start_kernel", "schedule"):
        try:
            sym = prog.symbol(name)
        except LookupError:
            continue
        if sym.kind != SymbolKind.FUNC:  # the BTF object finder relies on this
            kp.warnings.append(f"kallsyms gives {name} kind {sym.kind.name}, not FUNC")
        break
    found = "found by structure in the image" if kp.discovery.method != "note" else ""
    how = kp.sources.pop("kallsyms tables", found or "via VMCOREINFO")
    kp.sources["symbols"] = f"guest kallsyms tables ({num} symbols, {how})"


def _image_span(info: VmcoreInfo) -> tuple[int, int]:
    """(virtual start, bytes) of the kernel image part a search reads: from _stext to the
    last image symbol VMCOREINFO names (read-only data, kallsyms and BTF included, comes
    before .data's init_uts_ns), within MIN/MAX_IMAGE_SEARCH."""
    start = info.symbols.get("_stext", X86_64_TEXT_BASE + info.kernel_offset)
    in_image = [a for a in info.symbols.values() if info.in_image(a) and a > start]
    span = max(in_image, default=start) - start
    return start, min(MAX_IMAGE_SEARCH, max(MIN_IMAGE_SEARCH, span))


def _find_kallsyms(
    mem: GuestMemory, info: VmcoreInfo, progress: Callable[[str], None]
) -> tuple[bytes, str]:
    """For a kernel whose VMCOREINFO does not name its kallsyms tables (Linux < 6.0):
    find them in the image (:mod:`xenvmi.guest.kallsyms_tables`), record them in
    ``info.symbols`` as 6.0 would, and return the note lines for drgn and how."""
    start, limit = _image_span(info)
    progress(
        f"looking for {mem.name}'s kallsyms tables in its kernel image (Linux "
        f"{info.osrelease}'s VMCOREINFO does not say where they are)"
    )
    # arm64 kallsyms without KALLSYMS_ALL names no data symbol: _stext is its only anchor
    # in VMCOREINFO, so the text section's bounds the table gives must also line up
    arm64 = info.arch == "aarch64"
    tables = kallsyms_tables.find(
        lambda pa, n: mem.read_physical(pa, n),
        info.kernel_image_pa(start),
        start,
        limit,
        info.symbols,
        progress=progress,
        extra=ARM64_TEXT_BOUNDS if arm64 else (),
        min_anchors=1 if arm64 else kallsyms_tables.MIN_ANCHORS,
    )
    if arm64:
        bounds = [tables.resolved.get(n, 0) for n in ARM64_TEXT_BOUNDS]
        stext = info.symbols.get("_stext", 0)
        if not stext < bounds[0] <= bounds[1] < bounds[2] < stext + (1 << 30):
            raise GuestDataError(
                f"{mem.name}: a kallsyms table found by structure gives _etext, _sinittext, "
                f"_einittext {bounds}: not the text of the kernel whose _stext is {stext:#x}"
            )
    lines = tables.vmcoreinfo_lines(info.symbols)
    info.symbols.update(tables.symbols())
    return lines, tables.describe()


def _stage_kallsyms(kp: KernelProgram) -> None:
    """Read the kallsyms tables in one bulk read and give drgn a segment over those bytes.

    drgn's loader reads them in about four small pieces per symbol (376k reads for 94k
    symbols), each through our read callback and a page-table walk; over a bytes segment
    each read is a slice. The tables are read-only data in the kernel image, which is
    physically contiguous: VMCOREINFO gives where each table starts (the last, the token
    index, is 256 u16). The kernel image's linear map, added later, supersedes this."""
    info = kp.discovery.info
    found = [info.symbols[k] for k in KALLSYMS_KEYS if k in info.symbols]
    if not found or not all(is_kernel_pointer(a, align=1) for a in found):
        return
    start = min(found) & ~(PAGE - 1)
    end = (max(found) + 512 + PAGE - 1) & ~(PAGE - 1)
    if end - start > MAX_KALLSYMS_SPAN:
        kp.warnings.append(f"kallsyms tables spread over {end - start} bytes: read in pieces")
        return
    try:
        data = kp.memory.read_physical(info.kernel_image_pa(start), end - start, strict=True)
    except PhysicalFault:
        return  # drgn reads them through the page tables, as before

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        return data[offset : offset + count]

    kp.prog.add_memory_segment(start, len(data), read, physical=False)


def _page_offset_base(prog: Program) -> int:
    """Where the guest's direct map starts (drgn.FaultError if unreadable): x86-64."""
    try:
        return prog.read_u64(prog.symbol("page_offset_base").address)
    except LookupError:  # no CONFIG_RANDOMIZE_MEMORY: the direct map is fixed
        return DIRECT_MAP


def _check_note_owner(kp: KernelProgram) -> None:
    """The note we used must be the one the kernel's ``vmcoreinfo_note`` points to."""
    prog, d = kp.prog, kp.discovery
    if d.method != "note":
        return  # no note was used: nothing to check
    try:
        address = prog.symbol("vmcoreinfo_note").address
    except LookupError:
        if kp.memory.arch == "aarch64":  # kallsyms of functions only (Debian's arm64)
            kp.sources["vmcoreinfo"] += "; vmcoreinfo_note not in kallsyms (not cross-checked)"
            return
        address = None
    try:
        if address is None:
            raise LookupError("vmcoreinfo_note")
        va = prog.read_u64(address)
        if kp.memory.arch == "aarch64":
            pa = d.info.linear_pa(va)
        else:
            pa = va - _page_offset_base(prog)
    except (LookupError, drgn.FaultError):
        kp.warnings.append("could not cross-check the VMCOREINFO note with vmcoreinfo_note")
        return
    if pa == d.note_address:
        kp.sources["vmcoreinfo"] += "; is the kernel's own vmcoreinfo_note"
        return
    ours = d.info.raw
    try:
        theirs = kp.memory.read_physical(pa + 24, len(ours), strict=True)
    except PhysicalFault:
        theirs = b""
    if theirs != ours:
        raise GuestDataError(
            f"{kp.memory.name}: the VMCOREINFO note at {d.note_address:#x} "
            f"is not the kernel's (vmcoreinfo_note points to {pa:#x}): "
            "planted or stale; run again with --no-cache"
        )
    kp.warnings.append(
        f"used a copy of VMCOREINFO at {d.note_address:#x}; the kernel's is at {pa:#x} (identical)"
    )


def _load_btf(kp: KernelProgram, cache: Path | None) -> None:
    prog, info = kp.prog, kp.discovery.info
    try:
        start = prog.symbol("__start_BTF").address
        stop = prog.symbol("__stop_BTF").address
        where = f"guest BTF at __start_BTF {start:#x} ({stop - start} bytes)"
    except LookupError:
        start, stop = _search_btf(kp)
        where = f"guest BTF found in the kernel image at {start:#x} ({stop - start} bytes)"
    size = stop - start
    if not B.HEADER_LEN < size <= MAX_BTF:
        raise GuestDataError(f"__start_BTF..__stop_BTF is {size} bytes: not plausible BTF")
    cached = symcache.load_btf(cache, size) if cache else None
    index = None
    if cache and cached is not None:
        where += f", from {cache}"
        data = cached
        index = symcache.load_btf_index(cache)
    else:
        # The kernel image is physically contiguous: one bulk read, not ~1000 pages.
        data = kp.memory.read_physical(info.kernel_image_pa(start), size, strict=True)
        if data[:3] != b"\x9f\xeb\x01":
            raise GuestDataError(f"no BTF magic at __start_BTF ({start:#x}): {data[:4].hex()}")
    finder = attach_btf(prog, data, index=index)
    kp.btf_size, kp.btf_types = size, finder.btf.count
    kp.sources["types"] = where
    if cache:
        try:
            if cached is None:
                symcache.save_btf(cache, data)
            if not finder.btf.from_index:
                symcache.save_btf_index(cache, finder.btf.export_index())
        except OSError as e:
            kp.warnings.append(f"could not cache the kernel's BTF in {cache}: {e}")


def _search_btf(kp: KernelProgram) -> tuple[int, int]:
    """(start, stop) of the vmlinux BTF blob, searched for in the image when kallsyms has
    no __start_BTF (a kernel built without KALLSYMS_ALL)."""
    info = kp.discovery.info
    start, limit = kp.image or _image_span(info)
    data = kp.memory.read_physical(info.kernel_image_pa(start), limit)
    try:
        at, size = B.find_vmlinux_btf(data)
    except GuestDataError as e:
        raise GuestDataError(
            f"{kp.memory.name}: the kernel has no BTF (__start_BTF is not "
            f"in kallsyms, and {e}): built without CONFIG_DEBUG_INFO_BTF? "
            "Give its types with --vmlinux FILE, the kernel's vmlinux with DWARF "
            f"(Debian: linux-image-{info.osrelease}-dbg's /usr/lib/debug/boot/"
            f"vmlinux-{info.osrelease})"
        ) from None
    return start + at, start + at + size


@contextlib.contextmanager
def _drgn_plugins_disabled(disable: bool):
    """DRGN_DISABLE_PLUGINS=* while drgn reads it (unless the user set it), then restored."""
    if not disable or "DRGN_DISABLE_PLUGINS" in os.environ:
        yield
        return
    os.environ["DRGN_DISABLE_PLUGINS"] = "*"
    try:
        yield
    finally:
        del os.environ["DRGN_DISABLE_PLUGINS"]


def build(
    mem: GuestMemory,
    discovery: Discovery,
    *,
    timeout: float | None = 300.0,
    use_cache: bool = True,
    progress: Callable[[str], None] = lambda m: None,
    drgn_plugins: bool = True,
    vmlinux: str | None = None,
) -> KernelProgram:
    """A drgn Program for the guest kernel: memory, page tables, kallsyms, BTF.

    ``drgn_plugins=False`` keeps drgn from loading its plugins (entry points in the group
    ``drgn.plugins``: its shell commands) when the Program becomes a Linux kernel. drgn
    loads them once per process, so this choice holds for the process. ``vmlinux``: a
    file with the kernel's DWARF, for its types in place of BTF.
    """
    ref: list = [None]
    prog = Program(PLATFORMS[mem.arch])
    prog.add_memory_segment(0, mem.max_physical_address, _reader(ref, mem), physical=True)
    text = discovery.info.raw.split(b"\x00", 1)[0]
    kp = KernelProgram(prog, mem, discovery, Budget(timeout))
    kp.sources.update(discovery.sources)
    kp.warnings += discovery.warnings
    ref[0] = kp
    t = time.monotonic()
    caches = symcache.paths(discovery, discovery.info.raw) if use_cache else None
    cold = not (caches and caches[0].exists())
    if cold and not discovery.info.has_kallsyms():
        lines, how = _find_kallsyms(mem, discovery.info, progress)
        text = text.rstrip(b"\n") + b"\n" + lines
        kp.sources["kallsyms tables"] = how
        kp.timings["kallsyms search"] = time.monotonic() - t
    try:
        with _drgn_plugins_disabled(not drgn_plugins):
            prog.set_linux_kernel_custom(text, True)
    except (ValueError, drgn.BadDataError) as e:  # a note without PAGESIZE (fuzzing found)
        raise GuestDataError(f"drgn rejected the guest's VMCOREINFO: {e}") from None
    if cold:
        progress(f"loading {mem.name}'s kernel symbols (kallsyms)")
    _load_kallsyms(kp, caches[0] if caches else None)
    kp.timings["kallsyms"] = time.monotonic() - t
    try:
        _check_note_owner(kp)
    except GuestDataError:
        extra = (symcache.index_path(caches[1]),) if caches else ()
        for path in (*(caches or ()), *extra, discovery.cache_path):
            if path:
                Path(path).unlink(missing_ok=True)  # never reuse what a planted note gave
        raise
    _linear_maps(kp, ref)
    t = time.monotonic()
    if vmlinux is not None:
        _load_vmlinux(kp, vmlinux)
        kp.timings["dwarf"] = time.monotonic() - t
    else:
        _load_btf(kp, caches[1] if caches else None)
        kp.timings["btf"] = time.monotonic() - t
    t = time.monotonic()
    if datasyms.supplement(kp):
        kp.timings["data symbols"] = time.monotonic() - t
    return kp


#: Kernel objects whose address a vmlinux's DWARF must give as kallsyms does, to be sure
#: the file is this kernel's (a kernel without a BUILD-ID in VMCOREINFO, as before 5.9 or
#: with no note, gives drgn nothing else to check it by).
VMLINUX_CHECKS = ("linux_banner", "init_task", "init_uts_ns")


def _load_vmlinux(kp: KernelProgram, path: str) -> None:
    """Types (and objects) from a vmlinux with DWARF, through drgn's own loader, for a
    kernel with no BTF. drgn checks the file's build ID against the kernel's (VMCOREINFO
    BUILD-ID, or the image's notes) and applies the KASLR slide; the file must also place
    a kernel object where the guest's kallsyms does."""
    prog, name = kp.prog, kp.memory.name
    if not os.path.isfile(path):
        raise NotFoundError(f"--vmlinux {path}: no such file")
    try:
        module = prog.main_module("kernel", create=True)
        build_id = kp.discovery.info.build_id
        if build_id and module.build_id is None:  # drgn then refuses another build's file
            module.build_id = bytes.fromhex(build_id)
        module.try_file(path)
    except (ValueError, OSError, LookupError) as e:
        raise GuestDataError(f"--vmlinux {path}: drgn cannot read it: {e}") from None
    if module.debug_file_path is None:
        raise GuestDataError(
            f"--vmlinux {path} is not {name}'s kernel with debug info (drgn took no DWARF "
            f"from it: a stripped file, or another build than {kp.discovery.info.osrelease})"
        )
    for sym in VMLINUX_CHECKS:
        try:
            theirs = prog.object(sym).address_
            ours = prog.symbol(sym).address
        except (LookupError, drgn.FaultError):
            continue
        if theirs != ours:
            raise GuestDataError(
                f"--vmlinux {path} is another kernel: it puts {sym} at {theirs:#x}, "
                f"{name}'s kallsyms at {ours:#x}"
            )
        break
    else:
        raise GuestDataError(
            f"--vmlinux {path}: none of {', '.join(VMLINUX_CHECKS)} in its DWARF and "
            f"{name}'s kallsyms, so it cannot be checked against the kernel"
        )
    kp.sources["types"] = f"DWARF from {path} (via drgn; {sym} agrees with kallsyms)"


def _linear_maps(kp: KernelProgram, ref: list) -> None:
    """Reads in the direct map and the kernel image go straight to guest-physical memory
    (both map it linearly) instead of drgn walking four page-table levels per page through
    our Python callback: that walk was half of a process view. Each map is first checked
    against the guest's page tables on a page that must be mapped (the VMCOREINFO note,
    the kernel's first page); a map that disagrees is not used, and drgn walks the tables
    as before. Kernel pages the guest unmapped from the direct map read as memory."""
    prog, mem, d = kp.prog, kp.memory, kp.discovery
    maps = []
    if mem.arch == "aarch64":
        maps += arm64.linear_maps(kp)
    else:
        try:
            pob = _page_offset_base(prog)
        except drgn.FaultError:
            pob = None
        if pob is not None and is_kernel_pointer(pob, 1 << 30) and pob + mem.ram_top < 1 << 64:
            maps.append(("direct map", pob, mem.ram_top, 0, d.note_address))
        try:
            text, end = prog.symbol("_text").address, prog.symbol("_end").address
        except LookupError:
            text = end = 0
        if is_kernel_pointer(text, align=PAGE) and text < end <= text + (1 << 30):
            maps.append(("kernel image", text, end - text, d.info.kernel_image_pa(text), 0))
    for name, va, size, pa, probe in maps:
        try:
            agree = prog.read(va + probe, 64) == mem.read_physical(pa + probe, 64, strict=True)
        except (drgn.FaultError, PhysicalFault):
            agree = False
        if not agree:
            kp.warnings.append(
                f"the guest's {name} at {va:#x} does not match its page "
                "tables: reads there walk the page tables (slower)"
            )
            continue
        prog.add_memory_segment(va, size, _reader(ref, mem, pa), physical=False)
        kp.linear.append((va, va + size, va - pa))
        kp.sources[name] = (
            f"{va:#x}+{size:#x} read at physical {pa:#x} (agrees with the page tables)"
        )
