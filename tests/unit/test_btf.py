"""BTF parser and drgn finders: the host's real kernel BTF, synthetic kernels, hostile blobs."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess

import pytest

drgn = pytest.importorskip("drgn")
from drgn import (  # noqa: E402
    Architecture,
    FindObjectFlags,
    Object,
    Platform,
    PlatformFlags,
    PrimitiveType,
    Program,
    Symbol,
    SymbolBinding,
    SymbolKind,
    TypeKind,
)
from drgn.helpers.linux.list import list_for_each_entry  # noqa: E402

from xenvmi.errors import GuestDataError  # noqa: E402
from xenvmi.guest import btf as B  # noqa: E402
from xenvmi.guest.btf_drgn import DEFAULT_GLOBALS, MAX_DEPTH, attach_btf  # noqa: E402
from xenvmi.guest.btf_writer import BtfWriter, sample_kernel  # noqa: E402

HOST_BTF = "/sys/kernel/btf/vmlinux"
BASE = 0xFFFF_8880_0100_0000  # where synthetic guest memory lives (a direct-map address)
pytestmark = pytest.mark.timeout(120)


# -- helpers -----------------------------------------------------------------------------


def new_prog() -> Program:
    return Program(
        Platform(Architecture.X86_64, PlatformFlags.IS_64_BIT | PlatformFlags.IS_LITTLE_ENDIAN)
    )


def add_memory(prog: Program, buf: bytearray, base: int = BASE) -> None:
    prog.add_memory_segment(
        base, len(buf), lambda addr, count, off, phys: bytes(buf[off : off + count])
    )


def add_symbols(
    prog: Program, symbols: dict[str, int], kinds: dict[str, SymbolKind] | None = None
) -> None:
    """A stand-in for the kallsyms symbol finder the real attach path registers."""
    kinds = kinds or {}

    def finder(prog, name, address, one):
        out = [
            Symbol(n, a, 8, SymbolBinding.GLOBAL, kinds.get(n, SymbolKind.OBJECT))
            for n, a in symbols.items()
            if (name is None or n == name) and (address is None or a <= address < a + 8)
        ]
        return out[:1] if one else out

    prog.register_symbol_finder("test-kallsyms", finder, enable_index=0)


@pytest.fixture(scope="module")
def host_btf() -> bytes:
    if not os.path.exists(HOST_BTF):
        pytest.skip("this machine's kernel exposes no BTF")
    with open(HOST_BTF, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def host(host_btf):
    prog = new_prog()
    return prog, attach_btf(prog, host_btf)


def struct_id(btf: B.Btf, name: str) -> int:
    return next(i for i in btf.ids_by_name(name) if btf.kind(i) == B.STRUCT)


# -- (a) the host's real kernel BTF ------------------------------------------------------


def test_host_parse_sanity(host_btf):
    btf = B.Btf(host_btf)
    assert btf.count > 10_000
    t = btf.get(struct_id(btf, "task_struct"))
    assert 1_000 < t.size < 64_000
    members = {m.name: m for m in btf.members(t)}
    assert {"pid", "comm", "tasks"} <= members.keys()
    offs = [members[n].bit_offset for n in ("tasks", "pid", "comm")]
    assert all(0 < o < t.size * 8 and o % 8 == 0 for o in offs)
    comm = btf.get(members["comm"].type)
    assert comm.kind == B.ARRAY
    elem, _, nelems = btf.array_info(comm)
    assert nelems == 16 and btf.get(elem).name == "char"
    assert btf.get(struct_id(btf, "list_head")).size == 16


def test_index_gives_a_warm_start_identical_to_a_scan(host_btf):
    cold = B.Btf(host_btf)
    assert not cold.from_index
    blob = cold.export_index()
    warm = B.Btf(host_btf, blob)
    assert warm.from_index and warm.count == cold.count
    for name in ("task_struct", "init_task", "list_head", "pid_type"):
        assert warm.ids_by_name(name) == cold.ids_by_name(name)
    assert warm.enumerator("PIDTYPE_PID") == cold.enumerator("PIDTYPE_PID") is not None
    tid = struct_id(warm, "task_struct")
    assert warm.members(warm.get(tid)) == cold.members(cold.get(tid))
    assert warm.ids_by_name("no_such_type_anywhere") == []
    again = B.Btf(host_btf, blob)  # every name, by lookup and as the whole index
    for name in cold.names()[::97]:
        assert again.ids_by_name(name) == cold.ids_by_name(name), name
    assert again.names() == cold.names()
    assert again.enumerator_index() == cold.enumerator_index()


def test_an_index_naming_a_type_id_out_of_range_is_ignored():
    import marshal
    from array import array

    kernel = sample_kernel()
    fmt, digest, offs, hashes, ids, enums = marshal.loads(B.Btf(kernel.btf).export_index())
    bad = array("I", ids)
    bad[0] = 1 << 30
    btf = B.Btf(kernel.btf, marshal.dumps((fmt, digest, offs, hashes, bad.tobytes(), enums)))
    assert not btf.from_index
    assert btf.ids_by_name("task_struct")


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-7],  # truncated
        lambda b: b"\x00" + b[1:],  # not marshal any more
        lambda b: b.replace(B.INDEX_FORMAT.encode(), B.INDEX_FORMAT.encode()[:-1] + b"9"),
        lambda b: b"",
    ],
)
def test_a_damaged_index_is_ignored_and_the_blob_scanned(damage):
    kernel = sample_kernel()
    blob = B.Btf(kernel.btf).export_index()
    btf = B.Btf(kernel.btf, damage(blob))
    assert not btf.from_index
    assert btf.ids_by_name("task_struct")


def test_an_index_of_other_bytes_is_ignored():
    """The index is tied to the exact BTF: a blob one byte different is scanned again, so
    a malformed BTF is still refused even with an index made for a good one."""
    kernel = sample_kernel()
    blob = B.Btf(kernel.btf).export_index()
    bad = bytearray(kernel.btf)
    bad[2] = 7  # unsupported version
    with pytest.raises(GuestDataError, match="version"):
        B.Btf(bytes(bad), blob)


def _bpftool_raw() -> str:
    tool = shutil.which("bpftool")
    if not tool:
        pytest.skip("bpftool is not installed")
    out = subprocess.run(
        [tool, "btf", "dump", "file", HOST_BTF, "format", "raw"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode:
        pytest.skip(f"bpftool failed: {out.stderr.strip()[:200]}")
    return out.stdout


def test_host_matches_bpftool(host_btf):
    """Every type's kind and name, and every struct/union member, as bpftool reads them."""
    raw = _bpftool_raw()
    btf = B.Btf(host_btf)
    head = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'")
    member = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?$")
    seen = cur = 0
    for line in raw.splitlines():
        m = head.match(line)
        if m:
            tid, kind, name = int(m[1]), m[2], m[3]
            t = btf.get(tid)
            assert B.KIND_NAMES[t.kind] == kind, line
            assert (t.name or "(anon)") == name, line
            cur, idx, seen = t, 0, seen + 1
            continue
        m = member.match(line)
        if m and cur and cur.kind in (B.STRUCT, B.UNION):
            got = btf.members(cur)[idx]
            assert ((got.name or "(anon)"), got.type, got.bit_offset, got.bitfield_size) == (
                m[1],
                int(m[2]),
                int(m[3]),
                int(m[4] or 0),
            ), line
            idx += 1
    assert seen == btf.count - 1


def test_host_matches_pahole(host):
    prog, _ = host
    tool = shutil.which("pahole")
    if not tool:
        pytest.skip("pahole is not installed")
    out = subprocess.run(
        [tool, "-C", "task_struct", HOST_BTF], capture_output=True, text=True, timeout=60
    ).stdout
    found = dict(re.findall(r"\s(tasks|pid|comm)(?:\[16\])?;\s+/\*\s+(\d+)", out))
    if len(found) != 3:
        pytest.skip("pahole could not lay out task_struct from this BTF")
    t = prog.type("struct task_struct")
    for name, off in found.items():
        assert drgn.offsetof(t, name) == int(off)


def test_host_drgn_types(host):
    prog, finder = host
    btf = finder.btf
    t = prog.type("struct task_struct")
    assert t.kind == TypeKind.STRUCT and t.size == btf.get(struct_id(btf, "task_struct")).size
    for m in btf.members(btf.get(struct_id(btf, "task_struct"))):
        if m.name in ("pid", "comm", "tasks"):
            assert t.member(m.name).bit_offset == m.bit_offset
    comm = t.member("comm").type
    assert comm.kind == TypeKind.ARRAY and comm.length == 16
    assert comm.type.primitive == PrimitiveType.C_CHAR
    assert prog.type("struct list_head").size == 16
    u64 = prog.type("u64")
    assert u64.kind == TypeKind.TYPEDEF and drgn.sizeof(u64) == 8
    base = u64
    while base.kind == TypeKind.TYPEDEF:
        base = base.type
    assert base.kind == TypeKind.INT and not base.is_signed
    pid_type = prog.type("enum pid_type")
    assert dict((e.name, e.value) for e in pid_type.enumerators)["PIDTYPE_PID"] == 0
    assert (
        prog.type("unsigned long").size == 8 and prog.type("char").primitive == PrimitiveType.C_CHAR
    )
    # anonymous unions/structs inside struct page are searched through by member()
    page = prog.type("struct page")
    assert page.has_member("flags") and drgn.offsetof(page, "flags") == 0
    assert any(m.name is None for m in page.members)
    # function pointers
    read = prog.type("struct file_operations").member("read").type
    assert read.kind == TypeKind.POINTER and read.type.kind == TypeKind.FUNCTION
    assert prog.type("struct task_struct *").type.tag == "task_struct"


def test_host_every_type_converts(host):
    prog, finder = host
    btf = finder.btf
    for tid in range(btf.count):
        kind = btf.kind(tid)
        if kind in (B.DATASEC, B.DECL_TAG):
            continue
        t = finder.type(tid)
        if kind in (B.STRUCT, B.UNION):
            for m in t.members:
                m.type
        elif kind == B.FUNC_PROTO:
            for p in t.parameters:
                p.type


CORE_GLOBALS = [
    "init_task",
    "modules",
    "prb",
    "init_pid_ns",
    "init_uts_ns",
    "init_mm",
    "linux_banner",
    "vmcoreinfo_data",
    "saved_command_line",
    "jiffies_64",
    "mem_section",
    "__per_cpu_offset",
    "__cpu_online_mask",
    "runqueues",
]


def test_host_declared_globals_resolve(host):
    prog, _ = host
    missing = []
    for name, spec in DEFAULT_GLOBALS.items():
        try:
            spec(prog) if callable(spec) else prog.type(spec)
        except LookupError:
            missing.append(name)
    assert not set(CORE_GLOBALS) & set(missing), missing
    assert len(missing) < 12, missing  # version-specific ones (tk_core, pcpu_hot...) only


def test_host_objects_from_memory(host_btf):
    prog = new_prog()
    attach_btf(prog, host_btf)
    t = prog.type("struct task_struct")
    o = {n: drgn.offsetof(t, n) for n in ("pid", "comm", "tasks")}
    buf = bytearray(2 * t.size + 256)
    a, b = BASE, BASE + t.size
    for addr, pid, comm, nxt in ((a, 0, b"swapper/0", b), (b, 1, b"systemd", a)):
        off = addr - BASE
        struct.pack_into("<i", buf, off + o["pid"], pid)
        buf[off + o["comm"] : off + o["comm"] + len(comm)] = comm
        struct.pack_into("<QQ", buf, off + o["tasks"], nxt + o["tasks"], nxt + o["tasks"])
    banner = BASE + 2 * t.size
    buf[banner - BASE : banner - BASE + 12] = b"Linux versi\0"
    add_memory(prog, buf)
    add_symbols(prog, {"init_task": a, "linux_banner": banner, "runqueues": 0x2C000})
    init = prog["init_task"]
    assert init.type_.tag == "task_struct" and init.address_ == a  # drgn Type == is identity
    assert init.comm.string_() == b"swapper/0"
    tasks = list(list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks"))
    assert [(x.pid.value_(), x.comm.string_()) for x in tasks] == [(1, b"systemd")]
    assert prog["linux_banner"].string_() == b"Linux versi"
    assert prog["runqueues"].type_.tag == "rq"  # a per-CPU BTF VAR
    assert prog["PIDTYPE_PID"].value_() == 0
    with pytest.raises(KeyError):
        prog["modules"]  # declared, but no such symbol here


def test_benchmark_numbers(host_btf, capsys):
    import time

    t0 = time.perf_counter()
    btf = B.Btf(host_btf)
    t1 = time.perf_counter()
    prog = new_prog()
    attach_btf(prog, host_btf)
    t2 = time.perf_counter()
    ts = prog.type("struct task_struct")
    for m in ts.members:
        m.type
    t3 = time.perf_counter()
    with capsys.disabled():
        print(
            f"\nBTF: {btf.count} types; parse {t1 - t0:.3f}s; attach {t2 - t1:.3f}s; "
            f"task_struct with all member types {t3 - t2:.3f}s"
        )


# -- (b, c) synthetic kernels --------------------------------------------------------------


@pytest.fixture
def sample():
    sk = sample_kernel()
    prog = new_prog()
    attach_btf(prog, sk.btf)
    return prog, sk


def test_sample_types(sample):
    prog, sk = sample
    t = prog.type("struct task_struct")
    assert t.size == sk.task_size
    for name, off in sk.offsets.items():
        assert drgn.offsetof(t, name) == off
    bit = t.member("in_iowait")
    assert (bit.bit_offset, bit.bit_field_size) == (33, 1)
    mm = t.member("mm").type
    assert mm.type.is_complete() and mm.type.member("mm_users")  # FWD resolved
    assert prog.type("u64").type.size == 8
    assert [e.name for e in prog.type("enum pid_type").enumerators][0] == "PIDTYPE_PID"
    assert prog.type("struct list_head").member("next").type.type.tag == "list_head"


def test_sample_objects(sample):
    prog, sk = sample
    off = sk.offsets
    buf = bytearray(3 * 64)
    tasks = [(BASE, 0, b"swapper/0"), (BASE + 64, 1, b"init"), (BASE + 128, 42, b"bash")]
    for i, (addr, pid, comm) in enumerate(tasks):
        p = addr - BASE
        nxt = tasks[(i + 1) % 3][0] + off["tasks"]
        prv = tasks[(i - 1) % 3][0] + off["tasks"]
        struct.pack_into("<IIQQii", buf, p, 0x402, 0b10, nxt, prv, pid, pid)
        buf[p + off["comm"] : p + off["comm"] + len(comm)] = comm
    add_memory(prog, buf)
    add_symbols(prog, {"init_task": BASE})
    init = prog["init_task"]
    assert init.in_iowait.value_() == 1 and init.in_execve.value_() == 0
    assert init.__state.value_() == 0x402
    got = [
        (t.pid.value_(), t.comm.string_())
        for t in list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks")
    ]
    assert got == [(1, b"init"), (42, b"bash")]
    assert prog["PIDTYPE_TGID"].value_() == 1
    assert prog.object("PIDTYPE_SID", FindObjectFlags.CONSTANT).type_.tag == "pid_type"


def test_big_endian_blob_parses_the_same():
    le, be = sample_kernel("little"), sample_kernel("big")
    a, b = B.Btf(le.btf), B.Btf(be.btf)
    assert b.byteorder == "big" and a.count == b.count
    for tid in range(1, a.count):
        ta, tb = a.get(tid), b.get(tid)
        assert ta == tb
        if ta.kind in (B.STRUCT, B.UNION):
            assert a.members(ta) == b.members(tb)
        if ta.kind == B.ENUM:
            assert a.enumerators(ta) == b.enumerators(tb)


def all_kinds():
    w = BtfWriter()
    i = {}
    i["int"] = w.int("int", 4, signed=True)
    i["uint"] = w.int("unsigned int", 4)
    i["char"] = w.int("char", 1, signed=True, char=True)
    i["bool"] = w.int("_Bool", 1, bool_=True)
    i["double"] = w.float("double", 8)
    i["bits3"] = w.int("unsigned int", 4, bits=3)  # old-style (kind_flag 0) bitfield int
    i["vint"] = w.volatile(i["int"])
    i["cchar"] = w.const(i["char"])
    i["ccharp"] = w.ptr(i["cchar"])
    i["rp"] = w.restrict(w.ptr(i["int"]))
    i["tagged"] = w.type_tag("user", i["int"])
    i["cvoidp"] = w.ptr(w.const(0))
    i["proto"] = w.func_proto(i["int"], [("fmt", i["ccharp"])], variadic=True)
    i["fnptr"] = w.ptr(i["proto"])
    i["printk"] = w.func("_printk", i["proto"])
    i["sev"] = w.enum("sev", 4, [("NEG", -5), ("POS", 7)], signed=True)
    i["big"] = w.enum64("big", 8, [("HUGE", 1 << 63), ("ONE", 1)])
    i["flex"] = w.array(i["int"], 0)
    anon = w.union(None, 4, [("as_int", i["int"], 0), ("as_uint", i["uint"], 0)])
    i["old_bits"] = w.struct("old_bits", 4, [("lo", i["bits3"], 0), ("hi", i["bits3"], 3)])
    i["thing"] = w.struct(
        "thing",
        40,
        [
            ("v", i["vint"], 0),
            (None, anon, 32),
            ("ok", i["bool"], 64),
            ("d", i["double"], 128),
            ("cb", i["fnptr"], 192),
            ("name", i["ccharp"], 256),
            ("data", i["flex"], 320),
        ],
    )
    i["ufwd"] = w.fwd("opaque", union=True)
    i["ufwdp"] = w.ptr(i["ufwd"])
    i["cfg"] = w.var("cfg", i["thing"])
    i["sec"] = w.datasec(".data..percpu", 40, [(i["cfg"], 0, 40)])
    i["tag"] = w.decl_tag("noinline", i["printk"], -1)
    return w.build(), i


def test_all_kinds():
    blob, i = all_kinds()
    prog = new_prog()
    f = attach_btf(prog, blob)
    thing = prog.type("struct thing")
    assert thing.member("v").type.qualifiers == drgn.Qualifiers.VOLATILE
    assert thing.member("as_uint").bit_offset == 32  # through the anonymous union
    assert thing.member("ok").type.kind == TypeKind.BOOL
    assert thing.member("d").type.kind == TypeKind.FLOAT
    fn = thing.member("cb").type.type
    assert fn.kind == TypeKind.FUNCTION and fn.is_variadic and fn.parameters[0].name == "fmt"
    assert fn.parameters[0].type.type.qualifiers == drgn.Qualifiers.CONST
    data = thing.member("data").type
    assert data.kind == TypeKind.ARRAY and data.length is None  # flexible array
    old = prog.type("struct old_bits")
    assert [(m.bit_offset, m.bit_field_size) for m in old.members] == [(0, 3), (3, 3)]
    assert {e.name: e.value for e in prog.type("enum sev").enumerators} == {"NEG": -5, "POS": 7}
    assert prog.type("enum sev").type.is_signed
    assert prog.type("enum big").enumerators[0].value == 1 << 63
    assert not prog.type("union opaque").is_complete()
    assert f.type(i["rp"]).qualifiers == drgn.Qualifiers.RESTRICT
    assert f.type(i["tagged"]).primitive == PrimitiveType.C_INT
    assert f.type(i["cvoidp"]).type.kind == TypeKind.VOID
    with pytest.raises(GuestDataError):
        f.type(i["sec"])
    assert f.btf.secinfos(f.btf.get(i["sec"])) == [B.SecInfo(i["cfg"], 0, 40)]
    assert f.btf.decl_tag_component(f.btf.get(i["tag"])) == -1
    # objects: a BTF VAR, a BTF FUNC, a function known only to kallsyms, bitfields in memory
    buf = bytearray(64)
    struct.pack_into("<I", buf, 0, 0b101_011)
    add_memory(prog, buf)
    add_symbols(
        prog,
        {"cfg": BASE, "_printk": BASE + 40, "early_init": BASE + 48, "old": BASE},
        {"_printk": SymbolKind.FUNC, "early_init": SymbolKind.FUNC},
    )
    assert prog["cfg"].type_.tag == "thing"
    assert prog["_printk"].type_.kind == TypeKind.FUNCTION and prog["_printk"].address_ == BASE + 40
    assert prog.function("early_init").address_ == BASE + 48
    o = Object(prog, old, address=BASE)
    assert (o.lo.value_(), o.hi.value_()) == (0b011, 0b101)
    with pytest.raises(KeyError):
        prog["old"]  # a symbol, but neither declared nor in BTF


def test_declared_globals_and_attach_order():
    """Object finder goes after drgn's "linux" finder whichever is set up first."""
    sk = sample_kernel()
    vmcoreinfo = (
        b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nKERNELOFFSET=0\n"
        b"SYMBOL(swapper_pg_dir)=ffffffff82a0a000\n"
    )
    for btf_first in (True, False):
        prog = new_prog()
        if btf_first:
            attach_btf(
                prog,
                sk.btf,
                {"init_task": "struct task_struct", "jiffies_64": "u64", "gone": "struct nosuch"},
            )
        prog.set_linux_kernel_custom(vmcoreinfo, True)
        if not btf_first:
            attach_btf(
                prog,
                sk.btf,
                {"init_task": "struct task_struct", "jiffies_64": "u64", "gone": "struct nosuch"},
            )
        buf = bytearray(128)
        struct.pack_into("<Q", buf, 64, 4_294_967_296 + 5)
        add_memory(prog, buf)  # after set_linux_kernel_custom: overrides its page-table reader
        add_symbols(prog, {"init_task": BASE, "jiffies_64": BASE + 64, "gone": BASE})
        assert prog["UTS_RELEASE"].string_() == b"6.1.0-test"
        assert prog["init_task"].type_.tag == "task_struct"
        assert prog["jiffies"].value_() == 4_294_967_296 + 5  # drgn's alias of jiffies_64
        with pytest.raises(KeyError):
            prog["gone"]  # declared with a type this kernel does not have


# -- (d) hostile BTF -------------------------------------------------------------------------


def assert_bad(blob: bytes) -> None:
    with pytest.raises(GuestDataError):
        B.Btf(blob)


@pytest.mark.timeout(10)
def test_bad_headers():
    good = sample_kernel().btf
    assert_bad(b"")
    assert_bad(good[:23])
    assert_bad(b"\x00\x00" + good[2:])
    w = BtfWriter()
    w.int("int", 4, signed=True)
    assert_bad(w.build(version=2))
    assert_bad(w.build(hdr_len=10_000))
    assert_bad(w.build(hdr_len=8))
    assert_bad(w.build(type_len=10_000))
    assert_bad(w.build(str_off=2**32 - 1))
    assert_bad(w.build(str_len=0))
    assert_bad(w.build(type_len=6))
    blob = w.build()
    assert_bad(blob[:-1])  # string section cut: no longer NUL-terminated
    assert_bad(blob[:-1] + b"x")
    for n in range(len(good)):
        assert_bad(good[:n])


@pytest.mark.timeout(10)
def test_bad_records():
    w = BtfWriter()
    w.raw(B.STRUCT, "s", vlen=0xFFFF, size_or_type=8)  # huge vlen, no member data
    assert_bad(w.build())
    w = BtfWriter()
    w.raw(31, "weird")
    assert_bad(w.build())
    w = BtfWriter()
    w.raw(B.INT, "int", 0, 4, struct.pack("<I", 32))
    w.raw(B.TYPEDEF, name_off=10**6, size_or_type=1)
    assert_bad(w.build())


@pytest.mark.timeout(10)
def test_skip_modifiers_stops_on_a_typedef_loop():
    w = BtfWriter()
    w.raw(B.INT, "int", 0, 4, struct.pack("<I", 32))
    w.typedef("A", 3)
    w.typedef("B", 2)  # A -> B -> A
    w.raw(B.CONST, size_or_type=1)
    btf = B.Btf(w.build())
    assert btf.skip_modifiers(4) == 1
    assert btf.skip_modifiers(1) == 1
    with pytest.raises(GuestDataError, match="deeper than 16"):
        btf.skip_modifiers(2, 16)


def attach_bad(build) -> tuple[Program, object]:
    w = BtfWriter()
    build(w)
    prog = new_prog()
    return prog, attach_btf(prog, w.build())


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "case",
    [
        "self_typedef",
        "mutual_typedef",
        "ptr_cycle",
        "const_cycle",
        "long_chain",
        "ptr_past_end",
        "array_past_end",
        "func_not_proto",
        "int_size",
        "int_bits",
        "enum_size",
        "struct_size",
        "member_past_struct",
        "string_too_long",
    ],
)
def test_hostile_types(case):
    def build(w: BtfWriter) -> None:
        if case == "self_typedef":
            w.typedef("T", 1)
        elif case == "mutual_typedef":
            w.typedef("T", 2), w.typedef("U", 1)
        elif case == "ptr_cycle":
            w.ptr(2), w.ptr(1), w.typedef("T", 1)
        elif case == "const_cycle":
            w.const(2), w.volatile(1), w.typedef("T", 1)
        elif case == "long_chain":
            for n in range(1, 1000):
                w.ptr(n + 1)
            w.int("int", 4)
            w.typedef("T", 1)
        elif case == "ptr_past_end":
            w.ptr(99), w.typedef("T", 1)
        elif case == "array_past_end":
            w.array(77, 4), w.typedef("T", 1)
        elif case == "func_not_proto":
            w.int("int", 4), w.func("f", 1), w.typedef("T", 2)
        elif case == "int_size":
            w.int("int", 3), w.typedef("T", 1)
        elif case == "int_bits":
            w.int("int", 4, bits=200), w.typedef("T", 1)
        elif case == "enum_size":
            w.enum("e", 3, [("A", 1)]), w.typedef("T", 1)
        elif case == "struct_size":
            w.struct("big", 2**31), w.typedef("T", 1)
        elif case == "member_past_struct":
            w.int("int", 4), w.struct("s", 4, [("x", 1, 4096)]), w.typedef("T", 2)
        elif case == "string_too_long":
            w.typedef("x" * (B.MAX_NAME_LEN + 10), 0), w.typedef("T", 1)

    prog, f = attach_bad(build)
    with pytest.raises(GuestDataError):
        prog.type("T")
        for tid in range(1, f.btf.count):
            f.type(tid)


@pytest.mark.timeout(10)
def test_hostile_members_fail_cleanly():
    def build(w):
        i = w.int("int", 4)
        w.struct("s", 8, [("ok", i, 0), ("bad", 500, 32)])  # member id checked eagerly
        w.typedef("loop", 3)
        w.struct("t", 16, [("ok", i, 0), ("bad", w.ptr(3), 64)])  # broken, found lazily

    prog, f = attach_bad(build)
    with pytest.raises(GuestDataError):
        prog.type("struct s")
    with pytest.raises(GuestDataError):
        f.btf.members(f.btf.get(2))
    t = prog.type("struct t")
    assert t.members[0].type.size == 4
    with pytest.raises(GuestDataError):
        t.members[1].type
    with pytest.raises(GuestDataError):
        str(t)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shape", ["self", "mutual", "via_array"])
def test_struct_containing_itself_never_recurses(shape):
    def build(w):
        if shape == "self":
            w.struct("A", 8, [("a", 1, 0)])
        elif shape == "mutual":
            w.struct("A", 8, [("b", 2, 0)]), w.struct("B", 8, [("a", 1, 0)])
        else:
            w.struct("A", 8, [("arr", 2, 0)]), w.array(1, 1)

    prog, _ = attach_bad(build)
    buf = bytearray(8)
    add_memory(prog, buf)
    with pytest.raises(GuestDataError):
        prog.type("struct A")
    with pytest.raises(GuestDataError):
        str(Object(prog, "struct A", address=BASE))


@pytest.mark.timeout(10)
def test_bitfield_on_a_struct_is_rejected():
    def build(w):
        inner = w.struct("in", 4, [])
        w.struct("s", 8, [("x", inner, 0, 3)])

    prog, _ = attach_bad(build)
    with pytest.raises(GuestDataError):
        prog.type("struct s").members[0].type


@pytest.mark.timeout(60)
def test_fuzzed_blobs_fail_only_with_guest_data_error():
    """Random byte corruption of a valid blob: parse and convert everything, or fail cleanly."""
    good, _ = all_kinds()
    rng = random.Random(1234)
    outcomes = {"ok": 0, "bad": 0}
    for _ in range(400):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(blob))
            blob[pos] = rng.choice(
                [0, 0xFF, rng.randrange(256), blob[pos] ^ (1 << rng.randrange(8))]
            )
        try:
            prog = new_prog()
            f = attach_btf(prog, bytes(blob))
            for tid in range(f.btf.count):
                try:
                    t = f.type(tid)
                except GuestDataError:
                    continue
                if t.kind in (TypeKind.STRUCT, TypeKind.UNION) and t.is_complete():
                    for m in t.members:
                        try:
                            m.type
                        except GuestDataError:
                            pass
            outcomes["ok"] += 1
        except GuestDataError:
            outcomes["bad"] += 1
    assert outcomes["ok"] and outcomes["bad"]


def test_max_depth_is_generous_for_real_kernels():
    assert MAX_DEPTH >= 32


# -- finding the vmlinux blob without __start_BTF --------------------------------------


def test_vmlinux_btf_is_found_in_an_image_past_look_alikes():
    blob = sample_kernel().btf
    module_like = BtfWriter()
    module_like.int("int", 4, signed=True)
    image = bytearray(os.urandom(1 << 16))
    image += B.VMLINUX_HEADER + struct.pack("<IIII", 0, 8, 8, 1 << 30)  # sections too big
    image += module_like.build()  # a blob that names no task_struct
    named = BtfWriter()  # names task_struct, but as an int: not the kernel's types
    named.int("task_struct", 4)
    image += named.build()
    at = len(image)
    image += blob + os.urandom(4096)
    assert B.find_vmlinux_btf(image) == (at, len(blob))
    assert B.Btf(image[at : at + len(blob)]).count > 1


def test_no_vmlinux_btf_is_a_clear_error():
    image = bytearray(os.urandom(1 << 16)) + B.VMLINUX_HEADER * 100
    with pytest.raises(GuestDataError, match="no BTF blob naming task_struct"):
        B.find_vmlinux_btf(image)
