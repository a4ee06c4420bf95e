"""A tiny x86-64 Linux memory image volatility3 can analyse with xenvmi's ISF alone.

Physical memory holds what volatility3's Linux stacker and ``linux.pslist`` read: the
kernel's VMCOREINFO note (KASLR slide and page tables), 4-level page tables mapping the
kernel image with 2 MiB pages, ``linux_banner``, and a task list whose structs use the
layouts of a BTF written here (with an anonymous struct around pid/tgid, a typedef'd
anonymous kuid_t and a bitfield: the shapes a real kernel's BTF has). The symbols are
"kallsyms" addresses (slid), as xenvmi reads them from a live guest.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from dataclasses import dataclass, field

from xenvmi.guest.btf_writer import BtfWriter

Sym = namedtuple("Sym", "name address size")
MiB = 1 << 20
KERNEL_MAP = 0xFFFF_FFFF_8000_0000
RELEASE = "6.1.0-99-amd64"
BANNER = (
    f"Linux version {RELEASE} (debian-kernel@lists.debian.org) (gcc-12 (Debian "
    "12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.99-1 (2026-11-01)\n\0"
).encode()
PML4, PDPT, PD = 0x1000, 0x2000, 0x3000
NOTE_AT = 0x20000
OBJECTS = 20 * MiB  # physical start of the kernel objects below
SIZE = 24 * MiB
TASK = {
    "__state": 0,
    "in_execve": 4,
    "tasks": 8,
    "pid": 24,
    "tgid": 28,
    "comm": 32,
    "real_parent": 48,
    "parent": 56,
    "cred": 64,
    "mm": 72,
    "active_mm": 80,
    "start_time": 88,
}
TASK_SIZE = 96
#: Types volatility3's LinuxKernelIntermedSymbols insists exist (it gives them classes).
VOL3_REQUIRED = (
    "file",
    "hlist_head",
    "super_block",
    "vm_area_struct",
    "qstr",
    "dentry",
    "fs_struct",
    "files_struct",
    "kobject",
    "inode",
    "idr",
    "address_space",
    "page",
    "vfsmount",
    "net",
    "socket",
    "sock",
    "inet_sock",
    "unix_sock",
)


def btf() -> bytes:
    w = BtfWriter()
    ulong = w.int("long unsigned int", 8)
    int_ = w.int("int", 4, signed=True)
    uint = w.int("unsigned int", 4)
    char = w.int("char", 1, signed=True, char=True)
    u64 = w.typedef("u64", w.int("long long unsigned int", 8))
    pid_t = w.typedef("pid_t", int_)
    lh = w.struct("list_head", 16)
    w.set_members(lh, [("next", w.ptr(lh), 0), ("prev", w.ptr(lh), 64)])
    kuid = w.typedef("kuid_t", w.struct(None, 4, [("val", uint, 0)]))
    kgid = w.typedef("kgid_t", w.struct(None, 4, [("val", uint, 0)]))
    cred = w.struct(
        "cred",
        24,
        [
            ("usage", int_, 0),
            ("uid", kuid, 32),
            ("gid", kgid, 64),
            ("euid", kuid, 96),
            ("egid", kgid, 128),
        ],
    )
    mm = w.struct("mm_struct", 64, [("pgd", w.ptr(ulong), 0), ("mm_users", int_, 64)])
    task = w.struct("task_struct", TASK_SIZE)
    tp = w.ptr(task)
    ids = w.struct(None, 8, [("pid", pid_t, 0), ("tgid", pid_t, 32)])
    w.set_members(
        task,
        [
            ("__state", uint, 0),
            ("in_execve", uint, 32, 1),
            ("tasks", lh, 64),
            (None, ids, 192),
            ("comm", w.array(char, 16, int_), 256),
            ("real_parent", tp, 384),
            ("parent", tp, 448),
            ("cred", w.ptr(w.const(cred)), 512),
            ("mm", w.ptr(mm), 576),
            ("active_mm", w.ptr(mm), 640),
            ("start_time", u64, 704),
        ],
    )
    for name in VOL3_REQUIRED:
        w.struct(name, 8, [("stub", ulong, 0)])
    return w.build()


@dataclass
class Vol3Image:
    """Physical memory plus the kernel's "kallsyms" (slid addresses) and its BTF."""

    slide: int = 4 * MiB  # KASLR moves the kernel by 2 MiB multiples
    phys_base: int = 0  # < 0 on the lab's KASLR HVM guest: image VA - KERNEL_MAP > its PA
    mem: bytearray = field(default_factory=lambda: bytearray(SIZE))
    symbols: dict[str, int] = field(default_factory=dict)
    _next: int = OBJECTS

    def __post_init__(self) -> None:
        self.btf = btf()
        self._page_tables()
        self.put_pa(NOTE_AT, self._note())
        self.put(self.alloc(len(BANNER), "linux_banner"), BANNER)
        self.init_mm = self.alloc(64, "init_mm")
        self.init_task = self.alloc(TASK_SIZE, "init_task")
        self.alloc(8, "init_files")
        self._task(self.init_task, 0, b"swapper/0", self.init_task, mm=0)
        self._link(self.init_task, self.init_task)

    # -- memory ------------------------------------------------------------------------

    def va(self, pa: int) -> int:
        return KERNEL_MAP + pa - self.phys_base  # the kernel image mapping (__pa_symbol)

    def pa(self, va: int) -> int:
        return va - KERNEL_MAP + self.phys_base

    def put_pa(self, pa: int, data: bytes) -> None:
        self.mem[pa : pa + len(data)] = data

    def put(self, va: int, data: bytes) -> None:
        self.put_pa(self.pa(va), data)

    def read(self, va: int, n: int) -> bytes:
        return bytes(self.mem[self.pa(va) : self.pa(va) + n])

    def alloc(self, size: int, symbol: str | None = None) -> int:
        pa, self._next = self._next, self._next + (size + 63) // 64 * 64
        if symbol:
            self.symbols[symbol] = self.va(pa)
        return self.va(pa)

    def _page_tables(self) -> None:
        self.put_pa(PML4 + 8 * 511, struct.pack("<Q", PDPT | 0x3))
        self.put_pa(PDPT + 8 * 510, struct.pack("<Q", PD | 0x3))
        for i in range(512):  # 2 MiB pages: KERNEL_MAP + x -> x + phys_base
            if (i << 21) + self.phys_base >= 0:
                self.put_pa(PD + 8 * i, struct.pack("<Q", ((i << 21) + self.phys_base) | 0x83))

    def _note(self) -> bytes:
        text = (
            f"OSRELEASE={RELEASE}\nPAGESIZE=4096\n"
            f"SYMBOL(swapper_pg_dir)={self.va(PML4):x}\nNUMBER(phys_base)={self.phys_base}\n"
            f"KERNELOFFSET={self.slide:x}\n"
        ).encode()
        return struct.pack("<III", 11, len(text), 0) + b"VMCOREINFO\x00\x00" + text

    # -- tasks -------------------------------------------------------------------------

    def _task(self, addr: int, pid: int, comm: bytes, parent: int, mm: int, uid: int = 0) -> None:
        cred = self.alloc(24)
        self.put(cred, struct.pack("<iIIII", 1, uid, uid, uid, uid))
        t = bytearray(TASK_SIZE)
        struct.pack_into("<ii", t, TASK["pid"], pid, pid)
        t[TASK["comm"] : TASK["comm"] + 16] = comm[:15].ljust(16, b"\0")
        struct.pack_into("<QQQQQ", t, TASK["real_parent"], parent, parent, cred, mm, mm)
        self.put(addr, bytes(t))
        self.put(addr + TASK["tasks"], struct.pack("<QQ", addr + 8, addr + 8))

    def _link(self, head: int, task: int) -> None:
        """list_add_tail(&task->tasks, &head->tasks)."""
        h, node = head + TASK["tasks"], task + TASK["tasks"]
        prev = struct.unpack_from("<Q", self.read(h + 8, 8))[0]
        self.put(node, struct.pack("<QQ", h, prev))
        self.put(prev, struct.pack("<Q", node))
        self.put(h + 8, struct.pack("<Q", node))

    def add_task(
        self, pid: int, comm: bytes, parent: int | None = None, user: bool = False, uid: int = 0
    ) -> int:
        addr = self.alloc(TASK_SIZE)
        mm = 0
        if user:
            mm = self.alloc(64)
            self.put(mm, struct.pack("<Qi", self.va(PML4), 1))
        self._task(addr, pid, comm, parent or self.init_task, mm, uid)
        self._link(self.init_task, addr)
        return addr

    def kallsyms(self) -> list[Sym]:
        """The symbols as the running kernel has them: where the slid image is mapped
        (link-time address + slide), as xenvmi reads them from a live guest."""
        return [Sym(n, a, 8) for n, a in self.symbols.items()]
