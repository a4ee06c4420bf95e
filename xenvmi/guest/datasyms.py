"""Kernel data symbols a kallsyms of functions only lacks, found in the guest's memory.

Debian's arm64 kernels are built without CONFIG_KALLSYMS_ALL: their kallsyms names
functions only, so ``init_task``, ``modules``, ``prb`` and ``init_uts_ns`` have no address
there. VMCOREINFO names some (``prb``, ``init_uts_ns``, ``vmap_area_list``...); the two
the process and module views start from are found by structure in the kernel's .data,
which lies around ``init_uts_ns``:

- ``init_task``: the task named "swapper/0" (the boot CPU's idle task) whose pid is 0,
  whose ``real_parent`` is itself and whose task list is consistent both ways;
- ``linux_banner``: "Linux version RELEASE (" in the image, followed by init_uts_ns's
  version string;
- ``iomem_resource`` (the RAM map a dump reads by): the ``struct resource`` spanning all
  addresses (start 0, end ~0) named "PCI mem", whose children name it their parent;
- ``init_pid_ns`` (where drgn's task and pid helpers start): init_task's pid's level-0
  namespace (``thread_pid->numbers[0].ns``), a namespace of level 0 in the image whose
  inode is PROC_PID_INIT_INO, read from init_task once that is found;
- ``init_net`` (the network views' start): init_task's ``nsproxy->net_ns``, where that
  nsproxy (init_nsproxy, in the image) also names VMCOREINFO's ``init_uts_ns``;
- ``modules``: the list head whose entries lie in vmalloc space outside the kernel image
  (arm64 loads modules in its module area, or with KASLR in a randomized 2 GiB window
  below the image), each one a ``struct module`` whose ``list`` links back, whose state
  is a module state and whose ``mkobj.mod`` points to itself.

Offsets come from the kernel's BTF, so nothing here knows a layout. The search reads a
bounded window of the image, and everything it accepts passes checks a planted copy in
user memory cannot (the window is kernel image, not user memory).
"""

from __future__ import annotations

import struct
from array import array

import drgn
from drgn import Symbol, SymbolBinding, SymbolKind

from xenvmi.backends.memory import PhysicalFault
from xenvmi.guest.discover import utsname_offset
from xenvmi.guest.vmcoreinfo import KALLSYMS_KEYS, POINTER_SYMBOLS

#: How far from init_uts_ns (in .data) the search reads each way: .data of a distribution
#: kernel is 2-4 MiB, init_task and modules sit in it.
WINDOW = 6 << 20
MAX_CANDIDATES = 4096
IDLE_COMM = b"swapper/0\x00"
#: include/linux/proc_ns.h: the initial pid namespace's fixed inode number.
PROC_PID_INIT_INO = 0xEFFFFFFC


def _u64(kp, va: int) -> int:
    return struct.unpack("<Q", kp.read(va, 8))[0]


def _window(kp) -> tuple[int, bytes] | None:
    """(virtual start, bytes) of the image around init_uts_ns, read physically."""
    info = kp.discovery.info
    uts = info.symbols.get("init_uts_ns")
    if uts is None:
        return None
    lo, hi = info.image_window()
    start = max(lo, (uts - WINDOW) & ~0xFFF)
    end = min(hi, uts + WINDOW)
    try:
        return start, kp.memory.read_physical(info.kernel_image_pa(start), end - start)
    except PhysicalFault:
        return None


def _first_valid(data: bytes, pattern: bytes, candidate, valid) -> int | None:
    """The first object ``candidate(offset)`` at one of the first MAX_CANDIDATES places
    ``pattern`` occurs in ``data`` that ``valid`` accepts; one whose memory faults is not."""
    at, seen = data.find(pattern), 0
    while at >= 0 and seen < MAX_CANDIDATES:
        seen += 1
        obj = candidate(at)
        try:
            ok = valid(obj)
        except drgn.FaultError:
            ok = False
        if ok:
            return obj
        at = data.find(pattern, at + 1)
    return None


def find_init_task(kp, start: int, data: bytes) -> int | None:
    """init_task's address in the window ``data`` at virtual ``start``, or None."""
    t = kp.prog.type("struct task_struct")
    comm, tasks = t.member("comm").offset, t.member("tasks").offset
    pid, parent = t.member("pid").offset, t.member("real_parent").offset

    def valid(task: int) -> bool:
        return (
            task % 8 == 0
            and struct.unpack("<i", kp.read(task + pid, 4))[0] == 0
            and _u64(kp, task + parent) == task
            and _u64(kp, _u64(kp, task + tasks) + 8) == task + tasks
            and _u64(kp, _u64(kp, task + tasks + 8)) == task + tasks
        )

    return _first_valid(data, IDLE_COMM, lambda at: start + at - comm, valid)


def _module_name(raw: bytes) -> bool:
    """A module name: printable, non-empty, NUL-terminated within MODULE_NAME_LEN."""
    name, nul, _ = raw.partition(b"\0")
    return bool(name and nul) and all(0x21 <= c < 0x7F for c in name)


def find_modules(kp, start: int, data: bytes) -> int | None:
    """The ``modules`` list head's address in the window, or None (no module area in
    VMCOREINFO, or no module loaded: the head then points to itself like any empty list)."""
    info = kp.discovery.info
    # VMCOREINFO names the module and vmalloc areas since Linux 5.12
    if "MODULES_VADDR" in info.numbers and "VMALLOC_END" in info.numbers:
        lo, hi = info.numbers["MODULES_VADDR"], info.numbers["VMALLOC_END"]
    else:
        lo, hi = info.vmalloc_area
    if not lo < hi:
        return None
    image_lo, image_hi = info.image_window()
    image_hi = min(image_hi, start + len(data) + WINDOW)

    def vmalloc(p: int) -> bool:
        return lo <= p < hi and not image_lo <= p < image_hi and p % 8 == 0

    t = kp.prog.type("struct module")
    list_off, state_off = t.member("list").offset, t.member("state").offset
    name_off, name_len = t.member("name").offset, 56  # MODULE_NAME_LEN
    try:
        mkobj_mod = (
            t.member("mkobj").offset + kp.prog.type("struct module_kobject").member("mod").offset
        )
    except LookupError:
        mkobj_mod = None
    words = array("Q", data[: len(data) // 8 * 8])
    tried = 0
    for i in range(len(words) - 1):
        nxt = words[i]
        if not lo <= nxt < hi or not vmalloc(nxt) or not vmalloc(words[i + 1]):
            continue
        head = start + i * 8
        if vmalloc(head):  # a node in module memory (a module's own list entry)
            continue
        tried += 1
        if tried > MAX_CANDIDATES:
            break
        mod = nxt - list_off
        try:
            ok = (
                _u64(kp, nxt + 8) == head
                and struct.unpack("<i", kp.read(mod + state_off, 4))[0] in (0, 1, 2, 3)
                and _module_name(kp.read(mod + name_off, name_len))
                and (mkobj_mod is None or _u64(kp, mod + mkobj_mod) == mod)
            )
        except drgn.FaultError:
            ok = False
        if ok:
            return head
    return None


def find_banner(kp) -> int | None:
    """linux_banner's address: in the image's read-only data, "Linux version RELEASE ("
    whose line holds the kernel's own utsname version (VMCOREINFO's init_uts_ns)."""
    info, image = kp.discovery.info, kp.image
    uts = info.symbols.get("init_uts_ns")
    if image is None or uts is None:
        return None
    name_off = info.fields.get("OFFSET(uts_namespace.name)")
    if name_off is None or not name_off.isdigit():  # before 5.13: after a kref
        found = utsname_offset(kp.memory, info.kernel_image_pa(uts), info.osrelease)
        name_off = "0" if found is None else str(found)
    try:
        version = kp.read(uts + int(name_off) + 3 * 65, 65).split(b"\0", 1)[0]
    except drgn.FaultError:
        return None
    want = f"Linux version {info.osrelease} (".encode()
    start, size = image
    chunk = 4 << 20
    for off in range(0, size, chunk):
        base = info.kernel_image_pa(start + off)
        data = kp.memory.read_physical(base, min(chunk + 1024, size - off))
        at = data.find(want)
        while 0 <= at < chunk:
            line = data[at : at + 512].split(b"\0", 1)[0]
            if version and version in line:
                return start + off + at
            at = data.find(want, at + 1)
    return None


def find_iomem(kp, start: int, data: bytes) -> int | None:
    """iomem_resource's address in the window, or None."""
    t = kp.prog.type("struct resource")
    off = {n: t.member(n).offset for n in ("start", "end", "name", "parent", "child")}
    pattern = struct.pack("<QQ", 0, (1 << 64) - 1)

    def valid(res: int) -> bool:
        name = kp.read(_u64(kp, res + off["name"]), 8)
        child = _u64(kp, res + off["child"])
        return (
            res % 8 == 0
            and name == b"PCI mem\0"
            and _u64(kp, res + off["parent"]) == 0
            and (child == 0 or _u64(kp, child + off["parent"]) == res)
        )

    return _first_valid(data, pattern, lambda at: start + at - off["start"], valid)


def find_init_pid_ns(kp, init_task: int) -> int | None:
    """init_pid_ns's address from init_task (Linux 4.19+'s ``thread_pid``), or None: the
    idle task's pid is init_struct_pid (level 0, number 0) whose namespace is the initial
    one, a level-0 ``struct pid_namespace`` in the kernel image."""
    prog, info = kp.prog, kp.discovery.info
    pid_t, upid_t = prog.type("struct pid"), prog.type("struct upid")
    numbers = pid_t.member("numbers").offset
    level, nr, ns = (
        pid_t.member("level").offset,
        upid_t.member("nr").offset,
        upid_t.member("ns").offset,
    )
    pid_ns_t = prog.type("struct pid_namespace")
    ns_level = pid_ns_t.member("level").offset
    ns_inum = pid_ns_t.member("ns").offset + prog.type("struct ns_common").member("inum").offset
    try:
        pid = _u64(kp, init_task + prog.type("struct task_struct").member("thread_pid").offset)
        found = _u64(kp, pid + numbers + ns)
        ok = (
            info.in_image(pid)
            and info.in_image(found)
            and found % 8 == 0
            and struct.unpack("<I", kp.read(pid + level, 4))[0] == 0
            and struct.unpack("<i", kp.read(pid + numbers + nr, 4))[0] == 0
            and struct.unpack("<I", kp.read(found + ns_level, 4))[0] == 0
            and struct.unpack("<I", kp.read(found + ns_inum, 4))[0] == PROC_PID_INIT_INO
        )
    except drgn.FaultError:
        return None
    return found if ok else None


def find_init_net(kp, init_task: int) -> int | None:
    """init_net's address from init_task's nsproxy, or None: that nsproxy is init_nsproxy
    (in the image, naming VMCOREINFO's init_uts_ns), whose net_ns is in the image too and
    is a list node its neighbours link back to (net_namespace_list's)."""
    prog, info = kp.prog, kp.discovery.info
    nsproxy_t = prog.type("struct nsproxy")
    uts_off, net_off = nsproxy_t.member("uts_ns").offset, nsproxy_t.member("net_ns").offset
    list_off = prog.type("struct net").member("list").offset
    uts = info.symbols.get("init_uts_ns")
    try:
        nsproxy = _u64(kp, init_task + prog.type("struct task_struct").member("nsproxy").offset)
        if uts is None or not info.in_image(nsproxy) or _u64(kp, nsproxy + uts_off) != uts:
            return None
        net = _u64(kp, nsproxy + net_off)
        node = net + list_off
        ok = (
            info.in_image(net)
            and net % 8 == 0
            and _u64(kp, _u64(kp, node) + 8) == node
            and _u64(kp, _u64(kp, node + 8)) == node
        )
    except drgn.FaultError:
        return None
    return net if ok else None


def supplement(kp) -> dict[str, int]:
    """Give drgn the data symbols kallsyms lacks (nothing when it has ``init_task``):
    VMCOREINFO's and the ones found here. Returns what was added."""
    prog = kp.prog
    try:
        prog.symbol("init_task")
        return {}
    except LookupError:
        pass
    info = kp.discovery.info
    table = {
        n: a for n, a in info.symbols.items() if n not in POINTER_SYMBOLS and n not in KALLSYMS_KEYS
    }
    window = _window(kp)
    how = []
    banner = find_banner(kp)
    if banner is not None:
        table["linux_banner"] = banner
        how.append(f"linux_banner at {banner:#x}")
    if window is not None:
        finders = (
            ("init_task", find_init_task),
            ("modules", find_modules),
            ("iomem_resource", find_iomem),
        )
        for name, find in finders:
            try:
                addr = find(kp, *window)
            except LookupError:  # BTF without the type
                addr = None
            if addr is None:
                kp.warnings.append(f"{name} is not in kallsyms and was not found in .data")
            else:
                table[name] = addr
                how.append(f"{name} at {addr:#x}")
    derived = (("init_pid_ns", find_init_pid_ns, "pid's"), ("init_net", find_init_net, "nsproxy's"))
    for name, find_from, whose in derived if "init_task" in table else ():
        try:
            addr = find_from(kp, table["init_task"])
        except LookupError:  # BTF without the types (or a kernel before thread_pid)
            addr = None
        if addr is None:
            kp.warnings.append(f"{name} is not in kallsyms and init_task's {whose} is not it")
        else:
            table[name] = addr
            how.append(f"{name} at {addr:#x} (init_task's {whose})")
    symbols = {
        n: Symbol(n, a, 0, SymbolBinding.GLOBAL, SymbolKind.OBJECT) for n, a in table.items()
    }

    def finder(prog, name, address, one):
        if name is not None:
            sym = symbols.get(name)
            return [sym] if sym is not None and address in (None, sym.address) else []
        if address is not None:
            return [s for s in symbols.values() if s.address == address][: 1 if one else None]
        return list(symbols.values())

    prog.register_symbol_finder("vmcoreinfo-data", finder, enable_index=-1)
    found = f"; found by structure: {', '.join(how)}" if how else ""
    kp.sources["data symbols"] = (
        f"kallsyms has functions only (no KALLSYMS_ALL): {len(table)} data symbols from "
        f"VMCOREINFO{found}"
    )
    return table
