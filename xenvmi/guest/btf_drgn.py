"""Give drgn its types and well-known globals from a guest kernel's own BTF.

drgn 0.3.0 only reads DWARF, and Debian guests have none, so this module turns
BTF (parsed by :mod:`xenvmi.guest.btf`) into drgn types on demand: a type
finder that converts a BTF id when drgn first asks for it (struct members and
function parameters stay lazy, so resolving ``struct task_struct`` does not
drag in the whole kernel), and an object finder that gives globals their
types.  Kernel BTF only describes per-CPU variables, so the globals that
drgn's Linux helpers need (``init_task``, ``modules``, ``prb``...) are typed
from a declared table and placed at their kallsyms address.

Conversion is guarded against hostile BTF: reference chains are depth-capped
and cycles are detected, both failing with ``GuestDataError``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import drgn
from drgn import FindObjectFlags, Language, Object, Program, Qualifiers, Type, TypeKind

from xenvmi.errors import GuestDataError
from xenvmi.guest import btf as B

MAX_DEPTH = 64  # longest non-lazy reference chain we follow (real kernels need < 10)

#: A declared global's type: a C type name drgn can parse, or a callable making the Type.
TypeSpec = str | Callable[[Program], Type]


def _tk_core_type(prog: Program) -> Type:
    """tk_core is ``static struct { seqcount...; struct timekeeper timekeeper; }``: find it."""
    finder = prog.cache.get("xenvmi_btf")
    if finder is None:
        raise LookupError("no BTF attached")
    return finder.anonymous_struct_with(*B.ANONYMOUS_GLOBALS["tk_core"])


#: Globals drgn's Linux helpers (tasks, pids, modules, printk, mm, cpus, uts,
#: cmdline, irq, block, bpf, cgroup) read.  A BTF VAR of the same name wins.
DEFAULT_GLOBALS: Mapping[str, TypeSpec] = {
    # tasks, pids, namespaces
    "init_task": "struct task_struct",
    "init_pid_ns": "struct pid_namespace",
    "init_uts_ns": "struct uts_namespace",
    "init_ipc_ns": "struct ipc_namespace",
    "init_net": "struct net",
    "init_mm": "struct mm_struct",
    "init_fs": "struct fs_struct",
    "init_nsproxy": "struct nsproxy",
    "init_cred": "struct cred",
    "init_user_ns": "struct user_namespace",
    "init_files": "struct files_struct",
    "init_time_ns": "struct time_namespace",
    "init_cgroup_ns": "struct cgroup_namespace",
    "pid_hash": "struct hlist_head *",
    "pidhash_shift": "unsigned int",
    "pid_max": "int",
    "task_state_array": "const char *const []",
    "runqueues": "struct rq",
    "root_task_group": "struct task_group",
    "avenrun": "unsigned long [3]",
    "nr_threads": "int",
    "total_forks": "unsigned long",
    "uidhash_table": "struct hlist_head []",
    "pcpu_hot": "struct pcpu_hot",
    "current_task": "struct task_struct *",
    "cpu_number": "int",
    "this_cpu_off": "unsigned long",
    "net_namespace_list": "struct list_head",
    "cgrp_dfl_root": "struct cgroup_root",
    "cgroup_roots": "struct list_head",
    # modules
    "modules": "struct list_head",
    "mod_tree": "struct mod_tree_root",
    "module_ktype": "struct kobj_type",
    # printk / dmesg
    "prb": "struct printk_ringbuffer *",
    "printk_rb_static": "struct printk_ringbuffer",
    "printk_rb_dynamic": "struct printk_ringbuffer",
    "log_buf": "char *",
    "log_buf_len": "u32",
    "log_first_idx": "u32",
    "log_next_idx": "u32",
    "log_first_seq": "u64",
    "log_next_seq": "u64",
    # version, command line, vmcoreinfo, taint, panic
    "linux_banner": "const char []",
    "linux_proc_banner": "const char []",
    "saved_command_line": "char *",
    "boot_command_line": "char []",
    "saved_command_line_len": "unsigned int",
    "vmcoreinfo_data": "unsigned char *",
    "vmcoreinfo_size": "size_t",
    "vmcoreinfo_note": "u32 *",
    "tainted_mask": "unsigned long",
    "panic_cpu": "atomic_t",
    "crashing_cpu": "int",
    "oops_in_progress": "int",
    "kernel_config_data": "char []",
    "system_state": "enum system_states",
    # time
    "jiffies_64": "u64",
    "jiffies": "volatile unsigned long",
    "tk_core": _tk_core_type,
    "timekeeper_data": "struct tk_data []",
    "hrtimer_bases": "struct hrtimer_cpu_base",
    "timer_bases": "struct timer_base []",
    # memory
    "mem_section": "struct mem_section **",
    "mem_map": "struct page *",
    "vmemmap_base": "unsigned long",
    "page_offset_base": "unsigned long",
    "vmalloc_base": "unsigned long",
    "phys_base": "unsigned long",
    "high_memory": "void *",
    "max_pfn": "unsigned long",
    "min_low_pfn": "unsigned long",
    "max_low_pfn": "unsigned long",
    "max_mapnr": "unsigned long",
    "contig_page_data": "struct pglist_data",
    "node_data": "struct pglist_data *[]",
    "node_states": "nodemask_t []",
    "nr_node_ids": "unsigned int",
    "memblock": "struct memblock",
    "_totalram_pages": "atomic_long_t",
    "totalreserve_pages": "unsigned long",
    "vm_zone_stat": "atomic_long_t []",
    "vm_node_stat": "atomic_long_t []",
    "vm_numa_stat": "atomic_long_t []",
    "vm_numa_event": "atomic_long_t []",
    "vm_event_states": "struct vm_event_state",
    "vm_committed_as": "struct percpu_counter",
    "sysctl_overcommit_ratio": "int",
    "sysctl_overcommit_kbytes": "unsigned long",
    "sysctl_overcommit_memory": "int",
    "total_swap_pages": "long",
    "nr_swap_pages": "atomic_long_t",
    "nr_swapfiles": "unsigned int",
    "swap_info": "struct swap_info_struct *[]",
    "slab_caches": "struct list_head",
    "vmap_area_list": "struct list_head",
    "vmap_area_root": "struct rb_root",
    "vmap_nodes": "struct vmap_node *",
    "nr_vmap_nodes": "unsigned int",
    "vmap_zone_size": "unsigned int",
    "task_struct_cachep": "struct kmem_cache *",
    "memory_subsys": "struct bus_type",
    # cpus, irqs
    "__cpu_online_mask": "struct cpumask",
    "__cpu_possible_mask": "struct cpumask",
    "__cpu_present_mask": "struct cpumask",
    "__cpu_active_mask": "struct cpumask",
    "nr_cpu_ids": "unsigned int",
    "__per_cpu_offset": "unsigned long []",
    "nr_irqs": "int",
    "irq_desc_tree": "struct radix_tree_root",
    "sparse_irqs": "struct maple_tree",
    "softirq_vec": "struct softirq_action []",
    "idt_table": "gate_desc []",
    "hardirq_stack_ptr": "struct irq_stack *",
    # devices, files, resources, bpf
    "block_class": "struct class",
    "blockdev_superblock": "struct super_block *",
    "super_blocks": "struct list_head",
    "chrdevs": "struct char_device_struct *[]",
    "major_names": "struct blk_major_name *[]",
    "cdev_map": "struct kobj_map *",
    "sysfs_root_kn": "struct kernfs_node *",
    "sysfs_root": "struct kernfs_root *",
    "ioport_resource": "struct resource",
    "iomem_resource": "struct resource",
    "prog_idr": "struct idr",
    "map_idr": "struct idr",
    "link_idr": "struct idr",
    "btf_idr": "struct idr",
}

_NAMESPACE = {
    TypeKind.STRUCT: "struct",
    TypeKind.UNION: "union",
    TypeKind.ENUM: "enum",
    TypeKind.TYPEDEF: "typedef",
    TypeKind.INT: "int",
    TypeKind.BOOL: "bool",
    TypeKind.FLOAT: "float",
}
_QUALS = {
    B.CONST: Qualifiers.CONST,
    B.VOLATILE: Qualifiers.VOLATILE,
    B.RESTRICT: Qualifiers.RESTRICT,
}
_ENUM_COMPAT = {
    (1, True): "signed char",
    (1, False): "unsigned char",
    (2, True): "short",
    (2, False): "unsigned short",
    (4, True): "int",
    (4, False): "unsigned int",
    (8, True): "long",
    (8, False): "unsigned long",
}


class BtfTypeFinder:
    """drgn type finder over one parsed BTF; also the converter the object finder uses."""

    def __init__(self, prog: Program, btf: B.Btf) -> None:
        self.prog, self.btf = prog, btf
        self._cache: dict[int, Type] = {}
        self._busy: set[int] = set()
        self._depth = 0

    # -- name lookup --------------------------------------------------------------

    def _namespace(self, tid: int) -> str | None:
        t = self.btf.get(tid)
        k = t.kind
        if k == B.INT:
            return "bool" if self.btf.int_info(t)[0] & B.INT_BOOL else "int"
        return {
            B.STRUCT: "struct",
            B.UNION: "union",
            B.ENUM: "enum",
            B.ENUM64: "enum",
            B.TYPEDEF: "typedef",
            B.FLOAT: "float",
            B.FWD: "union" if t.kind_flag else "struct",
        }.get(k)

    def _is_complete(self, tid: int) -> bool:
        t = self.btf.get(tid)
        return t.kind != B.FWD and not (t.kind in (B.ENUM, B.ENUM64) and t.vlen == 0)

    def find_id(self, namespace: str, name: str) -> int | None:
        """Best id for ``struct name`` etc.: a complete definition over a forward one."""
        fallback = None
        for tid in self.btf.ids_by_name(name):
            if self._namespace(tid) == namespace:
                if self._is_complete(tid):
                    return tid
                fallback = fallback or tid
        return fallback

    def __call__(
        self, prog: Program, kinds: drgn.TypeKindSet, name: str, filename: str | None
    ) -> Type | None:
        # BTF carries no file names, so ``filename`` cannot narrow anything: ignore it.
        for kind in kinds:
            ns = _NAMESPACE.get(kind)
            tid = self.find_id(ns, name) if ns else None
            if tid is not None:
                return self.type(tid)
        return None

    # -- conversion ---------------------------------------------------------------

    def type(self, tid: int) -> Type:
        """The drgn Type for BTF id ``tid`` (cached); GuestDataError on bad BTF."""
        t = self._cache.get(tid)
        if t is not None:
            return t
        if tid in self._busy:
            raise GuestDataError(f"malformed BTF: type {tid} refers to itself")
        if self._depth >= MAX_DEPTH:
            raise GuestDataError(
                f"malformed BTF: type reference chain deeper than {MAX_DEPTH} at {tid}"
            )
        self._busy.add(tid)
        self._depth += 1
        try:
            t = self._build(self.btf.get(tid))
        except (ValueError, TypeError, OverflowError) as e:  # drgn rejecting what BTF said
            raise GuestDataError(f"malformed BTF: type {tid}: {e}") from None
        finally:
            self._depth -= 1
            self._busy.discard(tid)
        self._cache[tid] = t
        return t

    def _build(self, t: B.BtfType) -> Type:
        prog, k, C = self.prog, t.kind, Language.C
        if t.id == 0:
            return prog.void_type(language=C)
        if k == B.INT:
            enc, _, _ = self.btf.int_info(t)
            if t.size not in (1, 2, 4, 8, 16):
                raise GuestDataError(f"malformed BTF: INT {t.id} has size {t.size}")
            name = t.name or f"__int{t.size * 8}"
            if enc & B.INT_BOOL:
                return prog.bool_type(name, t.size, language=C)
            return prog.int_type(name, t.size, bool(enc & B.INT_SIGNED), language=C)
        if k == B.FLOAT:
            if t.size not in (2, 4, 8, 10, 12, 16):
                raise GuestDataError(f"malformed BTF: FLOAT {t.id} has size {t.size}")
            return prog.float_type(t.name or f"__float{t.size * 8}", t.size, language=C)
        if k == B.PTR:
            return prog.pointer_type(self.type(t.type), language=C)
        if k in _QUALS:
            target = self.type(t.type)
            return target.qualified(target.qualifiers | _QUALS[k])
        if k == B.TYPE_TAG:
            return self.type(t.type)
        if k == B.TYPEDEF:
            if not t.name:
                raise GuestDataError(f"malformed BTF: TYPEDEF {t.id} has no name")
            return prog.typedef_type(t.name, self.type(t.type), language=C)
        if k == B.ARRAY:
            elem, _, nelems = self.btf.array_info(t)
            # BTF writes both `x[]` and `x[0]` as 0 elements; drgn's flexible array is length None.
            return prog.array_type(self.type(elem), nelems or None, language=C)
        if k in (B.STRUCT, B.UNION):
            make = prog.struct_type if k == B.STRUCT else prog.union_type
            members = [self._member(t, m) for m in self.btf.members(t)]
            self._check_containment(t)
            return make(t.name, t.size, members, language=C)
        if k == B.FWD:
            full = self.find_id("union" if t.kind_flag else "struct", t.name) if t.name else None
            if full is not None and full != t.id and self._is_complete(full):
                return self.type(full)
            make = prog.union_type if t.kind_flag else prog.struct_type
            return make(t.name, language=C)
        if k in (B.ENUM, B.ENUM64):
            return self._enum(t)
        if k == B.FUNC_PROTO:
            params = self.btf.params(t)
            variadic = bool(params) and params[-1].type == 0 and params[-1].name is None
            if variadic:
                params = params[:-1]
            tps = [
                drgn.TypeParameter(functools.partial(self._lazy_param, p.type, t.id), p.name)
                for p in params
            ]
            return prog.function_type(self.type(t.type), tps, variadic, language=C)
        if k in (B.FUNC, B.VAR):
            if k == B.FUNC and self.btf.kind(t.type) != B.FUNC_PROTO:
                raise GuestDataError(f"malformed BTF: FUNC {t.id} does not point to a FUNC_PROTO")
            return self.type(t.type)
        raise GuestDataError(f"malformed BTF: {B.KIND_NAMES.get(k, k)} {t.id} is not a type")

    def _enum(self, t: B.BtfType) -> Type:
        prog = self.prog
        if t.size not in (1, 2, 4, 8):
            raise GuestDataError(f"malformed BTF: enum {t.id} has size {t.size}")
        if t.vlen == 0:  # forward declaration
            full = self.find_id("enum", t.name) if t.name else None
            if full is not None and full != t.id and self._is_complete(full):
                return self.type(full)
            return prog.enum_type(t.name, language=Language.C)
        values = self.btf.enumerators(t)
        signed = t.kind_flag or any(v < 0 for _, v in values)
        compat = prog.int_type(_ENUM_COMPAT[t.size, signed], t.size, signed, language=Language.C)
        return prog.enum_type(
            t.name, compat, [drgn.TypeEnumerator(n, v) for n, v in values], language=Language.C
        )

    def _member(self, owner: B.BtfType, m: B.Member) -> drgn.TypeMember:
        bit_offset, bits = m.bit_offset, m.bitfield_size
        if not owner.kind_flag:
            # Old-style bitfields: the member's INT type carries the width and an extra offset.
            base = self.btf.skip_modifiers(m.type, MAX_DEPTH)
            bt = self.btf.get(base)
            if bt.kind == B.INT:
                _, ioff, ibits = self.btf.int_info(bt)
                if ioff or ibits != bt.size * 8:
                    bit_offset, bits = bit_offset + ioff, ibits
        lazy = functools.partial(self._lazy_member, m.type, bits, owner.id)
        return drgn.TypeMember(lazy, m.name, bit_offset)

    def _check_containment(self, t: B.BtfType) -> None:
        """Refuse a struct that holds itself by value: drgn's printer would recurse forever.

        Such a cycle can only run through by-value members exactly as big as ``t``,
        so only those are followed.
        """
        seen, stack = {t.id}, [t.id]
        while stack:
            for m in self.btf.members(self.btf.get(stack.pop())):
                inner = self._by_value_aggregate(m.type)
                if inner is None or self.btf.get(inner).size != t.size:
                    continue
                if inner == t.id:
                    raise GuestDataError(f"malformed BTF: type {t.id} contains itself by value")
                if inner not in seen:
                    if len(seen) >= 4 * MAX_DEPTH:
                        raise GuestDataError(f"malformed BTF: type {t.id} nests too deeply")
                    seen.add(inner)
                    stack.append(inner)

    def _by_value_aggregate(self, tid: int) -> int | None:
        """The struct/union a member of type ``tid`` embeds whole (through 1-element arrays)."""
        for _ in range(MAX_DEPTH):
            tid = self.btf.skip_modifiers(tid, MAX_DEPTH)
            t = self.btf.get(tid)
            if t.kind in (B.STRUCT, B.UNION):
                return tid
            if t.kind != B.ARRAY or self.btf.array_info(t)[2] != 1:
                return None
            tid = self.btf.array_info(t)[0]
        raise GuestDataError(f"malformed BTF: array chain deeper than {MAX_DEPTH} at {tid}")

    def _lazy_member(self, tid: int, bits: int, owner: int) -> Type | Object:
        typ = self._fresh(tid)
        if not bits:
            return typ
        try:
            return Object(self.prog, typ, bit_field_size=bits)
        except (ValueError, TypeError, OverflowError) as e:
            raise GuestDataError(f"malformed BTF: bitfield in type {owner}: {e}") from None

    def _lazy_param(self, tid: int, owner: int) -> Type:
        return self._fresh(tid)

    def _fresh(self, tid: int) -> Type:
        """Convert from a lazy callback: a new root, with its own depth and cycle tracking."""
        saved = self._busy, self._depth
        self._busy, self._depth = set(), 0
        try:
            return self.type(tid)
        finally:
            self._busy, self._depth = saved

    def anonymous_struct_with(self, *member_names: str) -> Type:
        """The first anonymous struct whose members include all of ``member_names``."""
        want = set(member_names)
        for tid in self.btf.ids_of_kind(B.STRUCT):
            t = self.btf.get(tid)
            if t.name is None and want <= {m.name for m in self.btf.members(t)}:
                return self.type(tid)
        raise LookupError(f"no anonymous struct with members {sorted(want)}")


class BtfObjectFinder:
    """Globals, functions and enum constants, at kallsyms addresses, typed from BTF."""

    def __init__(self, types: BtfTypeFinder, declared: Mapping[str, TypeSpec]) -> None:
        self.types, self.btf, self.declared = types, types.btf, dict(declared)

    def _first_id(self, name: str, kind: int) -> int | None:
        for tid in self.btf.ids_by_name(name):
            if self.btf.kind(tid) == kind:
                return tid
        return None

    def _variable_type(self, prog: Program, name: str) -> Type | None:
        tid = self._first_id(name, B.VAR)
        if tid is not None:
            return self.types.type(tid)
        spec = self.declared.get(name)
        if spec is None:
            return None
        try:
            return spec(prog) if callable(spec) else prog.type(spec)
        except LookupError:  # this kernel lacks that type (older or newer layout)
            return None

    def __call__(
        self, prog: Program, name: str, flags: FindObjectFlags, filename: str | None
    ) -> Object | None:
        if flags & FindObjectFlags.CONSTANT:
            hit = self.btf.enumerator(name)
            if hit is not None:
                return Object(prog, self.types.type(hit[0]), hit[1])
        if not flags & (FindObjectFlags.VARIABLE | FindObjectFlags.FUNCTION):
            return None
        try:
            sym = prog.symbol(name)
        except LookupError:
            return None
        if flags & FindObjectFlags.VARIABLE:
            typ = self._variable_type(prog, name)
            if typ is not None:
                return Object(prog, typ, address=sym.address)
        if flags & FindObjectFlags.FUNCTION:
            tid = self._first_id(name, B.FUNC)
            if tid is not None:
                return Object(prog, self.types.type(tid), address=sym.address)
            if sym.kind == drgn.SymbolKind.FUNC:  # not in BTF (inlined elsewhere, __init...)
                return Object(prog, prog.function_type(prog.void_type(), ()), address=sym.address)
        return None


def attach_btf(
    prog: Program,
    btf_bytes: bytes,
    declared_globals: Mapping[str, TypeSpec] = DEFAULT_GLOBALS,
    index: bytes | None = None,
) -> BtfTypeFinder:
    """Parse ``btf_bytes`` and register type and object finders named "btf" on ``prog``.

    The type finder goes first (index 0); the object finder goes last so drgn's
    own "linux" finder (PAGE_SIZE, jiffies, vmemmap...) keeps precedence.
    Raises GuestDataError if the BTF is malformed. ``index``: see :class:`btf.Btf`.
    """
    btf = B.Btf(btf_bytes, index)
    types = BtfTypeFinder(prog, btf)
    objects = BtfObjectFinder(types, declared_globals)
    prog.register_type_finder("btf", types, enable_index=0)
    prog.register_object_finder("btf", objects, enable_index=-1)
    prog.cache["xenvmi_btf"] = types
    return types
