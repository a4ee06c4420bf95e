"""A real guest's memory, corrupted cheaply: a copy-on-write overlay over a dump file, and
where the kernel's structures the views walk are in it.

The fuzzer in test_fuzz_real_guest.py patches a few pages per case: :class:`OverlayMemory`
reads the 256 MiB ELF core through a read-only mmap and lays a dict of patched pages
over it, so no case copies or rewrites the file. :func:`locate` finds, with drgn on the
clean capture (xenvmi's own KernelProgram), the fields a hostile guest would plant
values in: the task list links, a task's comm and mm and its argument pointers, the
module list, the printk ring's indexes and descriptors, init_uts_ns's strings, the
iomem resource tree, and (for discovery) the VMCOREINFO note, kallsyms tables and BTF.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass

import drgn
from drgn import Object

from xenvmi.backends.dumpfile import DumpMemory
from xenvmi.backends.memory import PAGE, GuestMemory
from xenvmi.guest import pagetable


class OverlayMemory(GuestMemory):
    """A dump file's memory (a read-only mmap) with patched pages laid over it."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.base = DumpMemory(path)  # the ELF parsing, registers and RAM segments
        self.name, self.kind, self.arch = self.base.name, self.base.kind, self.base.arch
        self.vmcoreinfo: bytes | None = self.base.vmcoreinfo  # a lying ELF note goes here
        self.vmcoreinfo_address = self.base.vmcoreinfo_address
        self.cache_key = self.base.cache_key
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._segments = self.base._segments
        self.patches: dict[int, bytearray] = {}

    @property
    def max_physical_address(self) -> int:
        return self.base.max_physical_address

    def ranges(self) -> list[tuple[int, int]]:
        return self.base.ranges()

    def vcpu_count(self) -> int:
        return self.base.vcpu_count()

    def vcpu_registers(self, vcpu: int = 0) -> dict[str, int]:
        return self.base.vcpu_registers(vcpu)

    def _clean(self, addr: int, size: int) -> tuple[bytearray, list[bool]]:
        out, ok = bytearray(size), [False] * (size // PAGE)
        end = addr + size
        for start, stop, offset, filesz in self._segments:
            lo, hi = max(start, addr), min(stop, end)
            if lo >= hi:
                continue
            file_hi = min(hi, start + filesz)
            if file_hi > lo:
                at = offset + lo - start
                out[lo - addr : file_hi - addr] = self._map[at : at + file_hi - lo]
            for page in range((lo - addr) // PAGE, (hi - 1 - addr) // PAGE + 1):
                ok[page] = True
        return out, ok

    def _read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        out, ok = self._clean(addr, size)
        for i in range(size // PAGE):
            patched = self.patches.get(addr + i * PAGE)
            if patched is not None and ok[i]:  # a hole stays a hole
                out[i * PAGE : (i + 1) * PAGE] = patched
        return bytes(out), ok

    def patch(self, pa: int, data: bytes) -> None:
        """Write ``data`` at guest-physical ``pa`` (in the overlay only)."""
        while data:
            page, off = pa & ~(PAGE - 1), pa & (PAGE - 1)
            n = min(len(data), PAGE - off)
            if page not in self.patches:
                self.patches[page] = self._clean(page, PAGE)[0]
            self.patches[page][off : off + n] = data[:n]
            pa, data = pa + n, data[n:]

    def reset(self) -> None:
        """Back to the clean capture."""
        self.patches.clear()
        self.vmcoreinfo = self.base.vmcoreinfo
        self.invalidate()

    def close(self) -> None:
        super().close()
        self._map.close()
        self.base.close()


@dataclass(frozen=True)
class Field:
    """A place a hostile guest writes: ``kind`` is "ptr", "count", "str" (a fixed char
    array), "text" (where text lies: a log record's, a command line's), "pte" (a page
    table descriptor: ``va`` is then the physical address of its table), "note" or "blob"."""

    name: str
    va: int
    pa: int
    size: int
    kind: str


class Locator:
    """Kernel virtual to guest-physical, through xenvmi's verified linear maps, else a
    walk of the kernel's own tables (swapper_pg_dir; x86's init_top_pgt): vmalloc, modules.
    x86-64 walks 4-level tables (the captures' CPU has no LA57), arm64 the kernel's regime."""

    def __init__(self, kp) -> None:
        self.kp = kp
        info = kp.discovery.info
        self.paging = kp.arm64_paging
        self.x86 = self.paging is None
        swapper = info.symbols.get("swapper_pg_dir", info.symbols.get("init_top_pgt"))
        self.swapper = kp.kernel_pa(swapper) if swapper is not None else None

    def read(self, pa: int, n: int) -> bytes:
        return self.kp.memory.read_physical(pa, n, strict=True)

    def _walk(self, table: int, va: int) -> int | None:
        if self.x86:
            return pagetable.translate(self.read, table, va)
        assert self.paging is not None
        low = va & ((1 << self.paging.va_bits) - 1)
        return pagetable.translate_aarch64(self.read, table, low, self.paging)

    def pa(self, va: int) -> int | None:
        pa = self.kp.kernel_pa(va)
        if pa is not None or self.swapper is None:
            return pa
        return self._walk(self.swapper, va)

    def user_pa(self, pgd_va: int, va: int) -> int | None:
        pgd = self.kp.kernel_pa(pgd_va)
        return None if pgd is None else self._walk(pgd, va)

    def descriptors(self, table_pa: int | None, va: int) -> list[tuple[int, int]]:
        """(physical address, table it points to or 0) of each descriptor the walk of
        ``va`` reads, as :func:`pagetable.translate` (x86) or
        :func:`pagetable.translate_aarch64` (its low VA bits) walks."""
        out: list[tuple[int, int]] = []
        if table_pa is None:
            return out
        if self.x86:
            table = table_pa
            for shift in (39, 30, 21, 12):
                at = table + ((va >> shift) & 511) * 8
                desc = int.from_bytes(self.read(at, 8), "little")
                out.append((at, table))
                if not desc & pagetable.PRESENT or shift == 12:
                    break
                if shift in (30, 21) and desc & pagetable.HUGE:
                    break
                table = desc & pagetable.ADDR_MASK
            return out
        p = self.paging
        assert p is not None
        va &= (1 << p.va_bits) - 1
        per, table = p.shift - 3, table_pa
        for level in range(p.levels):
            shift = p.shift + per * (p.levels - 1 - level)
            at = table + ((va >> shift) & ((1 << per) - 1)) * 8
            desc = int.from_bytes(self.read(at, 8), "little")
            out.append((at, table))
            if desc & 3 != 3 or level == p.levels - 1:
                break
            table = p.output(desc)
        return out


def _add(out: list[Field], loc: Locator, name: str, obj: Object, kind: str) -> None:
    try:
        va, size = obj.address_, drgn.sizeof(obj)
    except (LookupError, TypeError, ValueError):
        return
    pa = loc.pa(va) if va is not None else None
    if pa is not None:
        out.append(Field(name, va, pa, size, kind))


def _members(out, loc, prefix: str, obj: Object, spec: dict[str, str]) -> None:
    for path, kind in spec.items():
        try:
            member = obj.subobject_(path)
        except (LookupError, drgn.FaultError):
            continue
        _add(out, loc, f"{prefix}.{path}", member, kind)


TASK = {
    "tasks.next": "ptr",
    "tasks.prev": "ptr",
    "comm": "str",
    "pid": "count",
    "tgid": "count",
    "real_parent": "ptr",
    "parent": "ptr",
    "mm": "ptr",
    "children.next": "ptr",
    "sibling.next": "ptr",
    "real_cred": "ptr",
    "cred": "ptr",
    "__state": "count",
    "state": "count",
    "flags": "count",
    "start_time": "count",
    "worker_private": "ptr",
    "set_child_tid": "ptr",
}
MM = {"arg_start": "ptr", "arg_end": "ptr", "pgd": "ptr", "env_start": "ptr"}
MODULE = {
    "list.next": "ptr",
    "list.prev": "ptr",
    "name": "str",
    "state": "count",
    "refcnt.counter": "count",
    "core_layout.size": "count",
    "core_layout.base": "ptr",
    "mem[0].size": "count",
    "mem[0].base": "ptr",
}
PRB = {
    "desc_ring.count_bits": "count",
    "desc_ring.descs": "ptr",
    "desc_ring.infos": "ptr",
    "desc_ring.head_id.counter": "count",
    "desc_ring.tail_id.counter": "count",
    "text_data_ring.size_bits": "count",
    "text_data_ring.data": "ptr",
    "text_data_ring.head_lpos.counter": "count",
    "text_data_ring.tail_lpos.counter": "count",
}
DESC = {"state_var.counter": "count", "text_blk_lpos.begin": "count", "text_blk_lpos.next": "count"}
INFO = {"seq": "count", "ts_nsec": "count", "text_len": "count", "caller_id": "count"}
RESOURCE = {"start": "count", "end": "count", "name": "ptr", "child": "ptr", "sibling": "ptr"}


def locate(kp, processes, tasks_max: int = 12) -> list[Field]:
    """The fields of a clean capture the structure fuzzer edits (sorted, so a fixed seed
    gives the same cases every run). ``processes``: the clean ps rows."""
    prog, loc, out = kp.prog, Locator(kp), []
    picked = sorted(processes, key=lambda p: (p.kernel_thread, p.pid))[:tasks_max]
    try:
        picked_tasks = [Object(prog, "struct task_struct", address=prog["init_task"].address_)]
    except (LookupError, drgn.FaultError):
        picked_tasks = []
    picked_tasks += [Object(prog, "struct task_struct", address=p.task) for p in picked]
    for task in picked_tasks:
        pid = int(task.pid)
        _members(out, loc, f"task[{pid}]", task, TASK)
        try:
            mm = task.mm.read_()
            if not mm:
                continue
            _members(out, loc, f"mm[{pid}]", mm[0], MM)
            start, end = int(mm.arg_start), int(mm.arg_end)
            pa = loc.user_pa(int(mm.pgd), start)
        except (LookupError, drgn.FaultError):
            continue
        if pa is not None:
            out.append(Field(f"args[{pid}]", start, pa, max(1, end - start), "text"))
            walk = loc.descriptors(loc.kp.kernel_pa(int(mm.pgd)), start)
            for level, (at, table) in enumerate(walk):
                out.append(Field(f"pte[{pid}] level {level}", table, at, 8, "pte"))
    _modules(prog, loc, out)
    _printk(prog, loc, out)
    for what in ("init_uts_ns",):
        try:
            uts = prog[what].name
        except (LookupError, drgn.FaultError):
            continue
        for part in ("release", "nodename", "version", "machine"):
            _add(out, loc, f"{what}.{part}", getattr(uts, part), "str")
    try:
        res = prog["iomem_resource"]
        _members(out, loc, "iomem_resource", res, RESOURCE)
        child = res.child.read_()
        for i in range(3):
            if not child:
                break
            _members(out, loc, f"iomem[{i}]", child[0], RESOURCE)
            child = child.sibling.read_()
    except (LookupError, drgn.FaultError):
        pass
    return sorted(set(out), key=lambda f: (f.pa, f.name))


def _modules(prog, loc: Locator, out: list[Field]) -> None:
    try:
        head = prog["modules"]
        _members(out, loc, "modules", head, {"next": "ptr", "prev": "ptr"})
        node, seen = head.next.read_(), 0
        while node.value_() != head.address_ and seen < 8:
            mod = drgn.container_of(node, "struct module", "list")
            _members(out, loc, f"module[{seen}]", mod[0], MODULE)
            if loc.kp.kernel_pa(mod.value_()) is None:  # vmalloc: swapper's tables map it
                for level, (at, table) in enumerate(loc.descriptors(loc.swapper, mod.value_())):
                    out.append(Field(f"module[{seen}] pte level {level}", table, at, 8, "pte"))
            node, seen = mod.list.next.read_(), seen + 1
    except (LookupError, drgn.FaultError):
        pass


LEGACY_LOG = {
    "log_buf": "ptr",
    "log_buf_len": "count",
    "log_first_idx": "count",
    "log_next_idx": "count",
    "log_first_seq": "count",
}


def _legacy_printk(prog, loc: Locator, out: list[Field]) -> None:
    """Before 5.10: log_buf, its length and indexes, and the text it holds."""
    for name, kind in LEGACY_LOG.items():
        try:
            _add(out, loc, name, prog[name], kind)
        except (LookupError, drgn.FaultError):
            continue
    try:
        buf, first = prog["log_buf"].value_(), prog["log_first_idx"].value_()
    except (LookupError, drgn.FaultError):
        return
    for name, va in (("log text", buf + first + 16), ("log ring", buf)):
        pa = loc.pa(va)
        if pa is not None:
            out.append(Field(name, va, pa, 64, "text"))


def _printk(prog, loc: Locator, out: list[Field]) -> None:
    try:
        prog["prb"]
    except LookupError:
        _legacy_printk(prog, loc, out)
        return
    try:
        rb = prog["prb"].read_()[0]
        _members(out, loc, "prb", rb, PRB)
        descs, infos = rb.desc_ring.descs, rb.desc_ring.infos
        count = 1 << int(rb.desc_ring.count_bits)
        head = int(rb.desc_ring.head_id.counter) % count
        for i in sorted({0, 1, head, (head - 1) % count, (head - 2) % count}):
            _members(out, loc, f"desc[{i}]", descs[i], DESC)
            _members(out, loc, f"info[{i}]", infos[i], INFO)
        data, size = rb.text_data_ring.data.value_(), 1 << int(rb.text_data_ring.size_bits)
        begin = int(descs[head].text_blk_lpos.begin) % size
        for name, va in (("log text", data + begin), ("log ring", data)):
            pa = loc.pa(va)
            if pa is not None:
                out.append(Field(name, va, pa, 64, "text"))
    except (LookupError, drgn.FaultError, ValueError):
        pass


def discovery_fields(kp) -> list[Field]:
    """What discovery and the Program build read: the VMCOREINFO note in memory, the
    kallsyms tables (VMCOREINFO's, else the ones found by structure) and the BTF blob."""
    loc, info, out = Locator(kp), kp.discovery.info, []
    note = kp.discovery.note_address
    if note is not None:
        out.append(Field("vmcoreinfo note", 0, note, len(info.raw), "note"))
    names = ("kallsyms_num_syms", "kallsyms_names", "kallsyms_markers", "kallsyms_token_table")
    names += ("kallsyms_token_index", "kallsyms_offsets", "kallsyms_relative_base")
    names += ("kallsyms_seqs_of_names",)
    for name in names:
        va = info.symbols.get(name)
        pa = loc.pa(va) if va is not None else None
        if pa is not None:
            out.append(Field(name, va, pa, 4096, "blob"))
    found = re.search(r"kallsyms_token_table (0x[0-9a-f]+)", kp.sources.get("symbols", ""))
    if found and "kallsyms_token_table" not in info.symbols:
        va = int(found.group(1), 16)
        pa = loc.pa(va)
        if pa is not None:
            out.append(Field("kallsyms_token_table (by structure)", va, pa, 1024, "blob"))
    # "guest BTF at __start_BTF 0x... (N bytes)" (kallsyms has it) or "... at 0x... (N bytes)"
    found = re.search(r"(0x[0-9a-f]+) \((\d+) bytes\)", kp.sources.get("types", ""))
    if found:
        va = int(found.group(1), 16)
        pa = loc.pa(va)
        if pa is not None:
            out.append(Field("btf", va, pa, int(found.group(2)), "blob"))
    return out
