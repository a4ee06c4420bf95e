"""Linux views on a guest kernel: processes, modules, kernel log, kernel facts.

Each view takes a :class:`~xenvmi.guest.program.KernelProgram` and a Budget, walks guest
structures with bounded loops (:mod:`xenvmi.guest.bounded`), and turns each entry into a
model dataclass. An entry that cannot be read becomes a warning, not an exception, so a
corrupt or changing guest gives a partial list.
"""

from __future__ import annotations

import drgn
from drgn import Object

from xenvmi.backends.memory import PAGE, PhysicalFault
from xenvmi.errors import GuestDataError
from xenvmi.guest import pagetable
from xenvmi.guest.bounded import (
    Budget,
    DeadlineExceeded,
    c_string,
    is_kernel_pointer,
    is_user_pointer,
    walk_list,
    walk_nodes,
)
from xenvmi.guest.layout import Layout
from xenvmi.guest.printk import kernel_log  # noqa: F401  (re-exported view)
from xenvmi.model.guest import KernelInfo, Module, Process

MAX_TASKS = 65_536
MAX_MODULES = 8_192
MAX_CMDLINE = 4096
TASK_COMM_LEN = 16
MAX_KTHREAD_NAME = 64  # kthread full names are kasprintf()ed; ps shows them whole
PF_WQ_WORKER = 0x20
WORKER_DESC_LEN = 24
#: What a failed entry read can raise: faults, odd types, our own data errors.
ENTRY_ERRORS = (drgn.FaultError, LookupError, ValueError, OverflowError, TypeError, GuestDataError)

# include/linux/sched.h (stable since 4.14): TASK_REPORT bits, in fs/proc/array.c order.
_STATE_CHARS = "RSDTtXZPI"
_TASK_REPORT = 0x7F
_TASK_IDLE = 0x402  # TASK_UNINTERRUPTIBLE | TASK_NOLOAD
_TASK_RTLOCK_WAIT = 0x1000
_MODULE_STATES = {0: "live", 1: "coming", 2: "going", 3: "unformed"}


def state_char(state: int, exit_state: int) -> str:
    """The ps letter for ``task->__state`` and ``exit_state`` (kernel's task_state_index)."""
    if state == _TASK_IDLE:
        return "I"
    if state == _TASK_RTLOCK_WAIT:
        state = 1
    bits = (state | exit_state) & _TASK_REPORT
    return _STATE_CHARS[bits.bit_length()] if bits.bit_length() < len(_STATE_CHARS) else "?"


def _type(prog: drgn.Program, name: str) -> drgn.Type:
    """``prog.type(name)``, kept in the program's cache: a type name given to Object() is
    parsed and looked up again on every call."""
    types = prog.cache.setdefault("xenvmi.types", {})
    found = types.get(name)
    if found is None:
        found = types[name] = prog.type(name)
    return found


#: The task_struct fields a process row needs (kernel renames: first found wins).
_TASK = {
    "pid": ("pid",),
    "state": ("__state", "state"),
    "exit_state": ("exit_state",),
    "real_parent": ("real_parent",),
    "cred": ("cred",),
    "mm": ("mm",),
    "start": ("start_boottime", "real_start_time", "start_time"),
    "comm": ("comm",),
    # a kernel thread's struct kthread: task->worker_private since 5.17, before it
    # the kernel's to_kthread() read it from task->set_child_tid
    "flags": ("flags",),
    "worker_private": ("worker_private", "set_child_tid"),
}
_TASK_OPTIONAL = ("flags", "worker_private")


class _Layouts:
    """The struct layouts a process view reads, resolved once per program."""

    def __init__(self, prog: drgn.Program) -> None:
        self.task = Layout.of(prog, "struct task_struct", _TASK, _TASK_OPTIONAL)
        self.tgid = Layout.of(prog, "struct task_struct", {"tgid": ("tgid",)})
        self.cred = Layout.of(prog, "struct cred", {"euid": ("euid.val",)})
        self.mm = Layout.of(
            prog,
            "struct mm_struct",
            {"pgd": ("pgd",), "arg_start": ("arg_start",), "arg_end": ("arg_end",)},
        )
        self.kthread = _optional(
            prog,
            "struct kthread",
            {"full_name": ("full_name",), "data": ("data",)},
            ("full_name", "data"),
        )
        self.worker = _optional(
            prog,
            "struct worker",
            {"desc": ("desc",), "current_work": ("current_work",), "pool": ("pool",)},
        )
        self.tasks_offset = prog.type("struct task_struct").member("tasks").offset


def _optional(prog: drgn.Program, type_name: str, fields: dict, optional=()) -> Layout | None:
    try:
        return Layout.of(prog, type_name, fields, optional)
    except LookupError:  # a kernel without that struct (or those fields): plain comm
        return None


def _cmdline(kp, mm: dict, mm_addr: int) -> str | None:
    """The argument strings between mm->arg_start and arg_end, through the task's pgd
    (``mm``: those fields of the mm_struct at ``mm_addr``)."""
    start, end = mm["arg_start"], mm["arg_end"]
    if not is_user_pointer(start) or not start < end <= start + (1 << 20):
        return None
    size = min(end - start, MAX_CMDLINE)
    pgd_pa = kp.kernel_pa(mm["pgd"])
    arm64 = kp.arm64_paging
    if pgd_pa is None or (arm64 is None and kp.paging_levels not in (4, 5)):
        raw = _remote_vm(kp.prog, mm, mm_addr, start, size)
    else:
        try:
            raw = pagetable.read_user(
                lambda pa, n: kp.memory.read_physical(pa, n, strict=True),
                pgd_pa,
                start,
                size,
                kp.paging_levels,
                arm64,
            )
        except PhysicalFault:  # a table entry pointing outside the guest
            return None
    if not raw:
        return None
    args = raw.rstrip(b"\x00").split(b"\x00")
    return " ".join(c_string(a, MAX_CMDLINE) for a in args)


def _remote_vm(prog: drgn.Program, mm: dict, mm_addr: int, start: int, size: int) -> bytes:
    """drgn's page-table walk, for pgds outside the verified linear maps."""
    from drgn.helpers.linux.mm import access_remote_vm

    if not is_kernel_pointer(mm["pgd"], align=PAGE):
        return b""
    obj = Object(prog, _type(prog, "struct mm_struct"), address=mm_addr)
    try:
        return access_remote_vm(obj, start, size)  # uses mm.pgd only
    except drgn.FaultError:  # argument pages swapped out or not yet touched
        return b""


def _kthread_full_name(read, kthread: dict | None, comm: str) -> str:
    """A kernel thread's untruncated name, as ``ps`` shows it since Linux 6.0
    (``struct kthread.full_name``, reached through ``task->worker_private``, or
    ``set_child_tid`` before 5.17); ``comm`` when
    the kernel has none or the guest's pointers do not hold up."""
    ptr = kthread["full_name"] if kthread else None
    if not ptr or not is_kernel_pointer(ptr, align=1):
        return comm
    try:
        full = c_string(read(ptr, MAX_KTHREAD_NAME), MAX_KTHREAD_NAME)
    except drgn.FaultError:
        return comm
    return full if full.startswith(comm) else comm


def _wq_worker_name(read, lay: _Layouts, kthread: dict | None, comm: str) -> str:
    """A workqueue worker's name as ``ps`` shows it: ``comm`` plus ``-desc`` (``+desc``
    while it runs a work item), the last workqueue it served (the kernel's
    ``wq_worker_comm()``, reached through ``kthread->data``, a ``struct worker``), only
    while the worker belongs to a pool, as the kernel checks."""
    ptr = kthread["data"] if kthread else None
    if lay.worker is None or not ptr or not is_kernel_pointer(ptr):
        return comm
    try:
        w = lay.worker.read(read, ptr)
    except drgn.FaultError:
        return comm
    desc = c_string(w["desc"], WORKER_DESC_LEN)
    if not desc or not w["pool"]:  # a rescuer between rescues has no pool: plain comm
        return comm
    return f"{comm}{'+' if w['current_work'] else '-'}{desc}"[: MAX_KTHREAD_NAME - 1]


def _process(kp, lay: _Layouts, addr: int, budget: Budget, shared: dict) -> Process:
    """One task as a Process row; ``shared`` holds, for this view, what was read at a
    parent's or cred's address (a task's tgid, a cred's euid: two kinds of objects, so
    one address is never both)."""
    read = kp.read
    t = lay.task.read(read, addr)  # one read of the fields' span of the task_struct
    pid = t["pid"]
    state = state_char(t["state"], t["exit_state"])
    parent = t["real_parent"]
    ppid = -1
    if is_kernel_pointer(parent):
        tgid = shared.get(parent)  # most tasks share a few parents (init, kthreadd)
        if tgid is None:
            tgid = shared[parent] = lay.tgid.read(read, parent)["tgid"]
        ppid = tgid
    else:
        budget.warn(f"task {pid} at {addr:#x}: bad real_parent pointer")
    cred = t["cred"]
    uid = None
    if is_kernel_pointer(cred):
        uid = shared.get(cred)  # and a few creds (every kernel thread has init_cred)
        if uid is None:
            uid = shared[cred] = lay.cred.read(read, cred)["euid"]
    mm_ptr = t["mm"]
    kthread = mm_ptr == 0
    cmdline = None
    if not kthread:
        if not is_kernel_pointer(mm_ptr):
            budget.warn(f"task {pid} at {addr:#x}: bad mm pointer {mm_ptr:#x}", partial=False)
        else:
            cmdline = _cmdline(kp, lay.mm.read(read, mm_ptr), mm_ptr)
    comm = c_string(t["comm"], TASK_COMM_LEN)
    flags = t["flags"] or 0
    if kthread and (flags & PF_WQ_WORKER or len(comm) >= TASK_COMM_LEN - 1):
        kt = None
        wp = t["worker_private"]
        if lay.kthread is not None and wp and is_kernel_pointer(wp):
            try:
                kt = lay.kthread.read(read, wp)
            except drgn.FaultError:
                kt = None
        if flags & PF_WQ_WORKER:
            comm = _wq_worker_name(read, lay, kt, comm)
        else:
            comm = _kthread_full_name(read, kt, comm)
    return Process(
        pid=pid,
        ppid=ppid,
        comm=comm,
        state=state,
        uid=uid,
        start_time=t["start"] / 1e9,
        cmdline=cmdline,
        kernel_thread=kthread,
        task=addr,
    )


def processes(kp, budget: Budget) -> list[Process]:
    """Every process (thread-group leader) on ``init_task.tasks``, like ``ps`` would list."""
    prog = kp.prog
    out: list[Process] = []
    try:
        head = prog.symbol("init_task").address
        lay = prog.cache.get("xenvmi.ps_layouts")
        if lay is None:
            lay = prog.cache["xenvmi.ps_layouts"] = _Layouts(prog)
    except LookupError as e:
        raise GuestDataError(f"cannot find init_task in the guest kernel: {e}") from None
    seen_pids: set[int] = set()
    shared: dict[int, int] = {}
    try:
        for node in walk_nodes(
            kp.read, head + lay.tasks_offset, budget, max_count=MAX_TASKS, what="task list"
        ):
            addr = node - lay.tasks_offset
            try:
                p = _process(kp, lay, addr, budget, shared)
            except DeadlineExceeded:
                raise
            except ENTRY_ERRORS as e:
                budget.warn(f"task at {addr:#x} unreadable: {e}")
                continue
            if p.pid in seen_pids:
                budget.warn(f"pid {p.pid} listed twice (task list corrupt)")
                continue
            seen_pids.add(p.pid)
            out.append(p)
    except DeadlineExceeded:
        budget.warn(f"task list: stopped at the deadline after {len(out)} processes")
    return out


def _module(prog: drgn.Program, mod: Object) -> Module:
    m = mod[0].read_()
    size = base = None
    try:
        layout = m.core_layout  # up to Linux 6.3
        size = layout.size.value_() + m.init_layout.size.value_()
        base = layout.base.value_()
    except (LookupError, AttributeError):  # drgn: AttributeError for a missing member
        try:  # Linux 6.4+: mem[MOD_TEXT...]
            size = sum(m.mem[i].size.value_() for i in range(len(m.mem)))
            base = m.mem[0].base.value_()
        except (LookupError, AttributeError, TypeError):
            pass
    try:
        refcount = m.refcnt.counter.value_() - 1  # MODULE_REF_BASE
    except (LookupError, AttributeError):
        refcount = None
    state = _MODULE_STATES.get(m.state.value_(), "?")
    return Module(
        name=c_string(m.name.string_(), 64), size=size, state=state, refcount=refcount, address=base
    )


def modules(kp, budget: Budget) -> list[Module]:
    """Loaded modules from the ``modules`` list, like ``lsmod``."""
    prog = kp.prog
    out: list[Module] = []
    try:
        head = prog["modules"]
    except (LookupError, drgn.FaultError) as e:
        raise GuestDataError(f"cannot find the module list in the guest kernel: {e}") from None
    try:
        for mod in walk_list(
            head, "struct module", "list", budget, max_count=MAX_MODULES, what="module list"
        ):
            try:
                out.append(_module(prog, mod))
            except DeadlineExceeded:
                raise
            except ENTRY_ERRORS as e:
                budget.warn(f"module at {mod.value_():#x} unreadable: {e}")
    except DeadlineExceeded:
        budget.warn(f"module list: stopped at the deadline after {len(out)} modules")
    return out


def _uts(prog: drgn.Program) -> tuple[str | None, str | None, str | None]:
    try:
        name = prog["init_uts_ns"].name.read_()
    except (LookupError, drgn.FaultError):
        return None, None, None
    release, version, nodename = (
        c_string(getattr(name, f).string_(), 65) for f in ("release", "version", "nodename")
    )
    return release, version, nodename


def kernel_info(kp, budget: Budget) -> KernelInfo:
    """Release, slide, BTF and symbol counts, and where each fact came from."""
    d = kp.discovery
    info = d.info
    release, version, hostname = _uts(kp.prog)
    if release is not None and release != info.osrelease:
        budget.warn(f"init_uts_ns says {release!r} but VMCOREINFO {info.osrelease!r}")
    sources = dict(kp.sources)
    sources.update({"version": "init_uts_ns.name.version", "hostname": "init_uts_ns.name.nodename"})
    return KernelInfo(
        domain=kp.memory.name,
        release=info.osrelease,
        version=version,
        hostname=hostname,
        build_id=info.build_id,
        kaslr_slide=info.kernel_offset,
        phys_base=info.phys_base,
        page_size=info.page_size,
        vmcoreinfo_address=d.note_address,
        btf_size=kp.btf_size,
        btf_types=kp.btf_types,
        symbols=kp.symbols,
        discovery_seconds=round(d.seconds, 3),
        discovery_cached=d.from_cache,
        sources=sources,
    )


MAX_RESOURCES = 4096
SYSTEM_RAM = "System RAM"


def ram_ranges(kp, budget: Budget) -> list[tuple[int, int]]:
    """The guest kernel's "System RAM" ranges, ``[start, end)``, from the top level of
    ``iomem_resource`` (what /proc/iomem shows and makedumpfile dumps by). Sorted and
    merged; an entry that is unreadable, inverted or cyclic ends the walk with a warning."""
    prog = kp.prog
    try:
        node = prog["iomem_resource"].child.value_()
    except (LookupError, drgn.FaultError) as e:
        raise GuestDataError(f"cannot read iomem_resource in the guest kernel: {e}") from None
    found: list[tuple[int, int]] = []
    seen: set[int] = set()
    while node:
        if budget.expired():
            budget.warn("iomem_resource: stopped at the deadline")
            break
        if not is_kernel_pointer(node) or node in seen or len(seen) >= MAX_RESOURCES:
            budget.warn(
                f"iomem_resource: entry {len(seen)} at {node:#x} is not a new kernel "
                f"address (corrupt or cyclic); the walk stops there"
            )
            break
        seen.add(node)
        try:
            r = Object(prog, "struct resource *", node)[0].read_()
            start, end = r.start.value_(), r.end.value_()
            name_ptr = r.name.value_()
            name = (
                c_string(prog.read(name_ptr, len(SYSTEM_RAM) + 1), 16)
                if is_kernel_pointer(name_ptr, 1)
                else ""
            )
            node = r.sibling.value_()
        except ENTRY_ERRORS as e:
            budget.warn(f"iomem_resource: entry at {node:#x} unreadable ({e})")
            break
        if name != SYSTEM_RAM:
            continue
        if end < start:
            budget.warn(f"iomem_resource: System RAM {start:#x}-{end:#x} is inverted; skipped")
            continue
        found.append((start, end + 1))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
