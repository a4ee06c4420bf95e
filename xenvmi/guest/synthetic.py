"""A tiny synthetic Linux kernel in bytes: tests and benchmarks run the real views on it.

:class:`SyntheticKernel` writes BTF for the handful of structs the views read (task,
cred, module, printk ring buffer), places objects in a flat "kernel memory" image, and
gives a drgn Program over it with a kallsyms-like symbol table, so hostile layouts
(looping lists, wild pointers, bogus ring indexes, garbage strings) are one line each.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import drgn
from drgn import Object, Program, Symbol, SymbolBinding, SymbolKind

from xenvmi.guest import btf as B
from xenvmi.guest.bounded import Budget
from xenvmi.guest.btf_drgn import attach_btf
from xenvmi.guest.btf_writer import BtfWriter
from xenvmi.guest.program import PLATFORM

BASE = 0xFFFF_8880_0100_0000  # a direct-map address, like real kernel heap objects

# Layouts (byte offsets) the writer below and the helpers agree on.
TASK = {
    "__state": 0,
    "exit_state": 4,
    "tasks": 8,
    "pid": 24,
    "tgid": 28,
    "comm": 32,
    "real_parent": 48,
    "cred": 56,
    "mm": 64,
    "start_time": 72,
    "start_boottime": 80,
    "worker_private": 88,
    "flags": 96,
}
TASK_SIZE = 104
PF_WQ_WORKER = 0x20
CRED = {"uid": 4, "euid": 8}
MODULE = {"state": 0, "list": 8, "name": 24, "refcnt": 80, "core_layout": 88, "init_layout": 104}
MODULE_SIZE = 120


def _btf(before_5_17: bool = False, module_mem: bool = False, printk_log: bool = False) -> bytes:
    """``before_5_17``: the task_struct member names of older kernels (``state`` before
    5.14's ``__state``; the kthread pointer in ``set_child_tid`` before 5.17's
    ``worker_private``), at the same offsets: views must find them by name.
    ``module_mem``: 6.4's ``struct module.mem[]`` (struct module_memory) in place of
    ``core_layout`` and ``init_layout``, over the same bytes. ``printk_log``: Linux
    3.5-5.9's ``struct printk_log`` (with ``caller_id``: CONFIG_PRINTK_CALLER, packed)."""
    w = BtfWriter()
    state_name = "state" if before_5_17 else "__state"
    kthread_name = "set_child_tid" if before_5_17 else "worker_private"
    ulong = w.int("long unsigned int", 8)
    long_ = w.int("long int", 8, signed=True)
    int_ = w.int("int", 4, signed=True)
    uint = w.int("unsigned int", 4)
    char = w.int("char", 1, signed=True, char=True)
    u8 = w.typedef("u8", w.int("unsigned char", 1))
    u16 = w.typedef("u16", w.int("short unsigned int", 2))
    u32 = w.typedef("u32", uint)
    u64 = w.typedef("u64", w.int("long long unsigned int", 8))
    pid_t = w.typedef("pid_t", int_)
    lh = w.struct("list_head", 16)
    w.set_members(lh, [("next", w.ptr(lh), 0), ("prev", w.ptr(lh), 64)])
    atomic = w.typedef("atomic_t", w.struct(None, 4, [("counter", int_, 0)]))
    atomic_long = w.typedef("atomic_long_t", w.struct(None, 8, [("counter", long_, 0)]))
    kuid = w.typedef("kuid_t", w.struct(None, 4, [("val", uint, 0)]))
    cred = w.struct("cred", 16, [("usage", atomic, 0), ("uid", kuid, 32), ("euid", kuid, 64)])
    mm = w.struct(
        "mm_struct",
        32,
        [("pgd", w.ptr(ulong), 0), ("arg_start", ulong, 64), ("arg_end", ulong, 128)],
    )
    task = w.struct("task_struct", TASK_SIZE)
    tp = w.ptr(task)
    w.set_members(
        task,
        [
            (state_name, uint, 0),
            ("exit_state", int_, 32),
            ("tasks", lh, 64),
            ("pid", pid_t, 192),
            ("tgid", pid_t, 224),
            ("comm", w.array(char, 16, int_), 256),
            ("real_parent", tp, 384),
            ("cred", w.ptr(w.const(cred)), 448),
            ("mm", w.ptr(mm), 512),
            ("start_time", u64, 576),
            ("start_boottime", u64, 640),
            (kthread_name, w.ptr(0), 704),
            ("flags", uint, 768),
        ],
    )
    w.struct("kthread", 16, [("full_name", w.ptr(char), 0), ("data", w.ptr(0), 64)])
    work = w.struct("work_struct", 8, [("data", atomic_long, 0)])
    w.struct(
        "worker",
        40,
        [
            ("current_work", w.ptr(work), 0),
            ("pool", w.ptr(0), 64),
            ("desc", w.array(char, 24, int_), 128),
        ],
    )
    layout = w.struct("module_layout", 16, [("base", w.ptr(0), 0), ("size", uint, 64)])
    state = w.enum(
        "module_state",
        4,
        [
            ("MODULE_STATE_LIVE", 0),
            ("MODULE_STATE_COMING", 1),
            ("MODULE_STATE_GOING", 2),
            ("MODULE_STATE_UNFORMED", 3),
        ],
    )
    if module_mem:
        memory = w.struct("module_memory", 16, [("base", w.ptr(0), 0), ("size", uint, 64)])
        parts = [("mem", w.array(memory, 2, int_), 704)]
    else:
        parts = [("core_layout", layout, 704), ("init_layout", layout, 832)]
    w.struct(
        "module",
        MODULE_SIZE,
        [
            ("state", state, 0),
            ("list", lh, 64),
            ("name", w.array(char, 56, int_), 192),
            ("refcnt", atomic, 640),
            *parts,
        ],
    )
    lpos = w.struct("prb_data_blk_lpos", 16, [("begin", ulong, 0), ("next", ulong, 64)])
    desc = w.struct("prb_desc", 24, [("state_var", atomic_long, 0), ("text_blk_lpos", lpos, 64)])
    info = w.struct(
        "printk_info",
        32,
        [
            ("seq", u64, 0),
            ("ts_nsec", u64, 64),
            ("text_len", u16, 128),
            ("facility", u8, 144),
            ("flags", u8, 152, 5),
            ("level", u8, 157, 3),
            ("caller_id", u32, 160),
        ],
    )
    dring = w.struct(
        "prb_desc_ring",
        40,
        [
            ("count_bits", uint, 0),
            ("descs", w.ptr(desc), 64),
            ("infos", w.ptr(info), 128),
            ("head_id", atomic_long, 192),
            ("tail_id", atomic_long, 256),
        ],
    )
    tring = w.struct(
        "prb_data_ring",
        32,
        [
            ("size_bits", uint, 0),
            ("data", w.ptr(char), 64),
            ("head_lpos", atomic_long, 128),
            ("tail_lpos", atomic_long, 192),
        ],
    )
    w.struct(
        "printk_ringbuffer",
        80,
        [("desc_ring", dring, 0), ("text_data_ring", tring, 320), ("fail", atomic_long, 576)],
    )
    if printk_log:
        w.struct(
            "printk_log",
            20,
            [
                ("ts_nsec", u64, 0),
                ("len", u16, 64),
                ("text_len", u16, 80),
                ("dict_len", u16, 96),
                ("facility", u8, 112),
                ("flags", u8, 120, 5),
                ("level", u8, 125, 3),
                ("caller_id", u32, 128),
            ],
        )
    res = w.struct("resource", 64)
    rp = w.ptr(res)
    w.set_members(
        res,
        [
            ("start", u64, 0),
            ("end", u64, 64),
            ("name", w.ptr(w.const(char)), 128),
            ("flags", ulong, 192),
            ("desc", ulong, 256),
            ("parent", rp, 320),
            ("sibling", rp, 384),
            ("child", rp, 448),
        ],
    )
    del ulong, u32, u64  # (named for readability above)
    return w.build()


@dataclass
class SyntheticKernel:
    """A kernel-memory image at BASE with bump allocation and a symbol table."""

    size: int = 1 << 20
    before_5_17: bool = False  # older member names (see _btf)
    module_mem: bool = False  # 6.4's struct module.mem[] (see _btf)
    #: Linux 3.5-5.9's kernel log: "btf" (struct printk_log in the types, with caller_id)
    #: or "vmcoreinfo" (described only there, as the kernel writes it for crash tools);
    #: no ``prb``. None: 5.10's printk ring buffer.
    legacy_log: str | None = None
    mem: bytearray = field(default_factory=bytearray)
    symbols: dict[str, int] = field(default_factory=dict)
    _next: int = 0

    def __post_init__(self) -> None:
        self.mem = bytearray(self.size)
        self.btf = _btf(self.before_5_17, self.module_mem, self.legacy_log == "btf")
        self.init_task = self.alloc(TASK_SIZE, "init_task")
        self.modules = self.alloc(16, "modules")
        self.prb = self.alloc(8, None if self.legacy_log else "prb")
        self.root_cred = self.alloc(16)
        self.set_list_empty(self.init_task + TASK["tasks"])
        self.set_list_empty(self.modules)
        self._task(self.init_task, 0, 0, self.init_task, b"swapper/0")
        self._last_task = self.init_task + TASK["tasks"]

    # -- raw memory -------------------------------------------------------------------

    def alloc(self, size: int, symbol: str | None = None) -> int:
        addr = BASE + self._next
        self._next += (size + 15) & ~15
        if self._next > self.size:
            raise MemoryError("synthetic kernel image full")
        if symbol:
            self.symbols[symbol] = addr
        return addr

    def put(self, addr: int, fmt: str, *values) -> None:
        struct.pack_into("<" + fmt, self.mem, addr - BASE, *values)

    def read_q(self, addr: int) -> int:
        return struct.unpack_from("<Q", self.mem, addr - BASE)[0]

    def put_bytes(self, addr: int, data: bytes) -> None:
        self.mem[addr - BASE : addr - BASE + len(data)] = data

    def set_list_empty(self, head: int) -> None:
        self.put(head, "QQ", head, head)

    def list_append(self, head: int, node: int) -> None:
        """Insert ``node`` before ``head`` (list_add_tail)."""
        prev = struct.unpack_from("<Q", self.mem, head + 8 - BASE)[0]
        self.put(node, "QQ", head, prev)
        self.put(prev, "Q", node)
        self.put(head + 8, "Q", node)

    # -- objects ----------------------------------------------------------------------

    def _task(
        self,
        addr: int,
        pid: int,
        state: int,
        parent: int,
        comm: bytes,
        uid: int = 0,
        start_ns: int = 0,
    ) -> None:
        cred = self.alloc(16)
        self.put(cred + CRED["uid"], "II", uid, uid)
        self.put(addr + TASK["__state"], "Ii", state, 0)
        self.put(addr + TASK["pid"], "ii", pid, pid)
        self.put_bytes(addr + TASK["comm"], comm[:15].ljust(16, b"\x00"))  # strscpy: NUL-ended
        self.put(addr + TASK["real_parent"], "QQQQQ", parent, cred, 0, start_ns, start_ns)

    def add_task(
        self,
        pid: int,
        comm: bytes,
        parent: int | None = None,
        state: int = 1,
        uid: int = 0,
        start_ns: int = 0,
    ) -> int:
        addr = self.alloc(TASK_SIZE)
        self._task(addr, pid, state, parent or self.init_task, comm, uid, start_ns)
        self.list_append(self.init_task + TASK["tasks"], addr + TASK["tasks"])
        return addr

    def set_kthread_name(self, task: int, full_name: bytes) -> None:
        """Give a kernel thread a ``struct kthread`` whose full_name is ``full_name``."""
        kthread, text = self.alloc(8), self.alloc(len(full_name) + 1)
        self.put_bytes(text, full_name + b"\x00")
        self.put(kthread, "Q", text)
        self.put(task + TASK["worker_private"], "Q", kthread)

    def set_wq_worker(
        self, task: int, desc: bytes, busy: bool = False, rescuer: bool = False
    ) -> None:
        """Make a kernel thread a workqueue worker whose last work item was ``desc``
        (a detached rescuer has no pool)."""
        kthread, worker = self.alloc(16), self.alloc(40)
        self.put(kthread + 8, "Q", worker)
        self.put(worker, "QQ", self.alloc(8) if busy else 0, 0 if rescuer else self.alloc(8))
        self.put_bytes(worker + 16, desc[:23].ljust(24, b"\x00"))
        self.put(task + TASK["worker_private"], "Q", kthread)
        self.put(task + TASK["flags"], "I", PF_WQ_WORKER)

    def add_module(self, name: bytes, size: int = 0x4000, refs: int = 0, state: int = 0) -> int:
        addr = self.alloc(MODULE_SIZE)
        self.put(addr + MODULE["state"], "i", state)
        self.put_bytes(addr + MODULE["name"], name[:56].ljust(56, b"\x00"))
        self.put(addr + MODULE["refcnt"], "i", refs + 1)
        self.put(addr + MODULE["core_layout"], "QI", 0xFFFF_FFFF_C000_0000, size)
        self.list_append(self.modules, addr + MODULE["list"])
        return addr

    def set_log(
        self, records: list[tuple[int, bytes]], count_bits: int = 4, size_bits: int = 12
    ) -> dict[str, int]:
        """A printk ring buffer holding ``records`` ((ts_ns, text)) with ids 0..n-1."""
        n, size = 1 << count_bits, 1 << size_bits
        descs, infos, data = self.alloc(24 * n), self.alloc(32 * n), self.alloc(size)
        rb = self.alloc(80, "printk_rb_static")
        lpos = 0
        for rid, (ts, text) in enumerate(records):
            idx = rid & (n - 1)
            blk = 8 + ((len(text) + 7) & ~7)
            if (lpos & (size - 1)) + blk > size:  # wrap: the block restarts at 0
                lpos = (lpos | (size - 1)) + 1
            self.put(data + (lpos & (size - 1)), "Q", rid)
            self.put_bytes(data + (lpos & (size - 1)) + 8, text)
            self.put(descs + 24 * idx, "QQQ", (2 << 62) | rid, lpos, lpos + blk)
            self.put(infos + 32 * idx, "QQHBBI", rid, ts, len(text), 0, 6 << 5, rid + 100)
            lpos += blk
        last = len(records) - 1
        self.put(rb, "I4xQQqq", count_bits, descs, infos, last, max(0, last - n + 1))
        self.put(rb + 40, "I4xQqq", size_bits, data, lpos, 0)
        self.put(self.prb, "Q", rb)
        return {"rb": rb, "descs": descs, "infos": infos, "data": data}

    def set_legacy_log(
        self,
        records: list[tuple[int, bytes]],
        buf_len: int = 1024,
        level: int = 6,
        facility: int = 0,
    ) -> dict[str, int]:
        """A Linux 3.5-5.9 ``log_buf`` after storing ``records`` ((ts_ns, text)) with the
        kernel's own log_make_free_space() and log_store(): the oldest records make room,
        and a zeroed header at the end sends the reader back to the start. Returns the
        buffer's address and its index and sequence variables' (to corrupt them)."""
        head = 20 if self.legacy_log == "btf" else 16
        buf = self.alloc(buf_len)
        var = {
            name: self.alloc(8, name)
            for name in (
                "log_buf",
                "log_buf_len",
                "log_first_idx",
                "log_next_idx",
                "log_first_seq",
                "log_next_seq",
            )
        }
        first_idx = next_idx = first_seq = next_seq = 0

        def length_at(idx: int) -> int:
            return struct.unpack_from("<H", self.mem, buf - BASE + idx + 8)[0]

        def has_space(size: int, empty: bool) -> bool:
            if next_idx > first_idx or empty:
                free = max(buf_len - next_idx, first_idx)
            else:
                free = first_idx - next_idx
            return free >= size + head

        for ts, text in records:
            size = (head + len(text) + 3) & ~3
            while first_seq < next_seq and not has_space(size, False):
                n = length_at(first_idx)
                first_idx = length_at(0) if n == 0 else first_idx + n
                first_seq += 1
            if next_idx + size + head > buf_len:
                self.put_bytes(buf + next_idx, bytes(head))
                next_idx = 0
            rec = struct.pack("<QHHHBB", ts, size, len(text), 0, facility, level << 5)
            if head == 20:
                rec += struct.pack("<I", 0x80000000 | 1)  # caller: CPU 1
            self.put_bytes(buf + next_idx, rec + text)
            next_idx += size
            next_seq += 1
        values = {
            "log_buf": buf,
            "log_buf_len": buf_len,
            "log_first_idx": first_idx,
            "log_next_idx": next_idx,
            "log_first_seq": first_seq,
            "log_next_seq": next_seq,
        }
        for name, value in values.items():
            self.put(var[name], "Q", value)
        return {"buf": buf, **{f"&{n}": a for n, a in var.items()}, **values}

    def legacy_vmcoreinfo(self) -> dict[str, str]:
        """VMCOREINFO's fields for log_buf, as Linux 3.5-5.9 writes them (without
        CONFIG_PRINTK_CALLER)."""
        return {
            "SIZE(printk_log)": "16",
            "OFFSET(printk_log.ts_nsec)": "0",
            "OFFSET(printk_log.len)": "8",
            "OFFSET(printk_log.text_len)": "10",
            "OFFSET(printk_log.dict_len)": "12",
        }

    def set_iomem(self, entries: list[tuple[int, int, bytes]]) -> list[int]:
        """``iomem_resource`` with top-level children (start, end inclusive, name), in
        order; returns their addresses (to corrupt them)."""
        root = self.alloc(64, "iomem_resource")
        self.put(root, "QQ", 0, (1 << 64) - 1)
        addrs = [self.alloc(64) for _ in entries]
        for i, (addr, (start, end, name)) in enumerate(zip(addrs, entries)):
            text = self.alloc(len(name) + 1)
            self.put_bytes(text, name + b"\x00")
            sibling = addrs[i + 1] if i + 1 < len(addrs) else 0
            self.put(addr, "QQQQQQQQ", start, end, text, 0x200, 0, root, sibling, 0)
        self.put(root + 56, "Q", addrs[0] if addrs else 0)
        return addrs

    # -- drgn ---------------------------------------------------------------------------

    def program(self) -> Program:
        prog = Program(PLATFORM)
        mem = self.mem
        prog.add_memory_segment(BASE, len(mem), lambda a, n, off, phys: bytes(mem[off : off + n]))
        syms = dict(self.symbols)

        def finder(prog, name, address, one):
            out = [
                Symbol(n, a, 8, SymbolBinding.GLOBAL, SymbolKind.OBJECT)
                for n, a in syms.items()
                if (name is None or n == name) and (address is None or a == address)
            ]
            return out[:1] if one else out

        prog.register_symbol_finder("synthetic", finder, enable_index=0)
        attach_btf(prog, self.btf)
        return prog

    def kernel_program(self):
        """A stand-in for program.KernelProgram (the views only use .prog)."""
        return _KP(self.program())


@dataclass
class _KP:
    prog: Program
    budget: Budget = field(default_factory=Budget)
    warnings: list[str] = field(default_factory=list)
    paging_levels: int = 4
    vmcoreinfo: object = None  # a guest.vmcoreinfo.VmcoreInfo, when a test gives one

    def kernel_pa(self, va: int) -> None:
        return None  # no linear maps: reads go through drgn

    def read(self, va: int, size: int) -> bytes:
        return self.prog.read(va, size)

    def view(self, seconds: float | None) -> Budget:
        self.budget = Budget(seconds)
        return self.budget


def task_object(prog: Program, addr: int) -> Object:
    return Object(prog, "struct task_struct *", addr)


__all__ = ["SyntheticKernel", "BASE", "TASK", "MODULE", "task_object", "B", "drgn"]
