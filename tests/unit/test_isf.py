"""Volatility3 ISF from BTF + kallsyms: schema-valid, loaded by volatility3 as written,
hostile BTF skipped and counted (never a crash), the host kernel's real BTF end to end."""

from __future__ import annotations

import json
import os
import random
from collections import namedtuple
from pathlib import Path

import pytest

from xenvmi.errors import GuestDataError
from xenvmi.guest import btf as B
from xenvmi.guest import isf
from xenvmi.guest.btf_writer import BtfWriter, sample_kernel

Sym = namedtuple("Sym", "name address size")
SLIDE = 0x1E00000
LINK = 0xFFFF_FFFF_8200_0000  # a link-time kernel-image address
BANNER = b"Linux version 6.1.0-99-amd64 (debian-kernel@lists.debian.org) (gcc 12) #1 SMP\n\0"
HOST_BTF = "/sys/kernel/btf/vmlinux"
pytestmark = [
    pytest.mark.timeout(300),  # volatility3's schemas name no known metaschema:
    pytest.mark.filterwarnings("ignore:The metaschema:DeprecationWarning"),
]


@pytest.fixture
def vol3(tmp_path_factory, monkeypatch):
    """volatility3, its validation cache kept out of the user's ~/.cache."""
    pytest.importorskip(
        "volatility3",
        reason="volatility3 not installed (pip install volatility3, or the test extra)",
    )
    from volatility3 import schemas

    cache = tmp_path_factory.mktemp("vol3") / "valid.cache"
    monkeypatch.setattr(schemas, "cached_validation_filepath", str(cache))
    monkeypatch.setattr(schemas, "cached_validations", set())
    return schemas


def schema_validate(doc: dict) -> None:
    """Validate against the schema volatility3 ships for the document's format."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed")
    from volatility3 import schemas

    path = Path(schemas.__file__).parent / f"schema-{doc['metadata']['format']}.json"
    jsonschema.Draft202012Validator(json.loads(path.read_text())).validate(doc)


def load(path: Path, name: str = "k", linux: bool = False, validate: bool = True):
    """A volatility3 context with the ISF at ``path`` loaded as table ``name``."""
    from volatility3.framework import contexts
    from volatility3.framework.symbols import intermed

    ctx = contexts.Context()
    if linux:
        import volatility3.framework.symbols.linux.extensions.network  # noqa: F401
        from volatility3.framework.symbols import linux as vlinux

        cls = vlinux.LinuxKernelIntermedSymbols
    else:
        cls = intermed.IntermediateSymbolTable
    ctx.symbol_space.append(cls(ctx, "cfg", name, path.as_uri(), validate=validate))
    return ctx


def sample_doc(**kw):
    k = sample_kernel()
    syms = [
        Sym("init_task", LINK + SLIDE + 0x1000, 64),
        Sym("linux_banner", LINK + SLIDE + 0x2000, len(BANNER)),
        Sym("runqueues", 0x2C000, 0x1000),  # per-CPU: an absolute offset, no slide
        Sym("_text", LINK + SLIDE, 0),
    ]
    return (k, *isf.build_isf(B.Btf(k.btf), syms, kaslr_slide=SLIDE, banner=BANNER, **kw))


# -- the sample kernel, through volatility3 ------------------------------------------------


def test_sample_kernel_loads_as_written(vol3, tmp_path):
    k, doc, summary = sample_doc()
    schema_validate(doc)
    assert vol3.validate(doc, use_cache=False)
    (tmp_path / "linux").mkdir()
    path = isf.write_isf(doc, tmp_path / "linux" / "k.json")
    ctx = load(path)
    task = ctx.symbol_space.get_type("k!task_struct")
    assert task.size == k.task_size
    for name, off in k.offsets.items():
        assert task.relative_child_offset(name) == off, name
    iowait = task.vol.members["in_iowait"][1]
    assert task.relative_child_offset("in_iowait") == 4
    assert (iowait.vol.start_bit, iowait.vol.end_bit) == (1, 2)
    init = ctx.symbol_space.get_symbol("k!init_task")
    assert init.address == LINK + 0x1000  # link-time: volatility3 adds the slide itself
    assert init.type.vol.type_name == "k!task_struct"
    assert ctx.symbol_space.get_symbol("k!runqueues").address == 0x2C000
    banner = ctx.symbol_space.get_symbol("k!linux_banner")
    assert banner.constant_data == BANNER and banner.type.vol.count == len(BANNER)
    assert ctx.symbol_space.get_enumeration("k!pid_type").choices["PIDTYPE_SID"] == 3
    assert summary.bitfields == 2 and summary.symbols == 4 and summary.kaslr_slide == SLIDE
    assert summary.banner == BANNER[:-2].decode()
    assert doc["metadata"]["producer"]["name"] == "xenvmi"


def test_same_kernel_same_isf_at_any_slide():
    """Link-time addresses and no boot-specific metadata: one file per kernel build."""
    k = sample_kernel()

    def doc(slide):
        syms = [
            Sym("init_task", LINK + slide + 0x1000, 64),
            Sym("runqueues", 0x2C000, 64),
            Sym("linux_banner", LINK + slide + 0x2000, len(BANNER)),
        ]
        return isf.build_isf(B.Btf(k.btf), syms, kaslr_slide=slide, banner=BANNER)[0]

    assert json.dumps(doc(0)) == json.dumps(doc(SLIDE))


def test_xz_and_names(vol3, tmp_path):
    _, doc, _ = sample_doc()
    path = isf.write_isf(doc, tmp_path / "k.json", xz=True)
    assert path.name == "k.json.xz" and not (tmp_path / "k.json").exists()
    assert load(path).symbol_space.get_type("k!list_head").size == 16
    with pytest.raises(ValueError, match=r"\*\.json"):
        isf.write_isf(doc, tmp_path / "k.isf")
    assert sorted(os.listdir(tmp_path)) == ["k.json.xz"]  # no temporary left behind


def test_volatility3_symbol_cache_matches_banner(vol3, tmp_path, monkeypatch):
    """What `vol -s DIR` does: every *.json under DIR (any depth) is indexed by banner."""
    import volatility3.symbols
    from volatility3.framework.automagic import symbol_cache

    _, doc, _ = sample_doc()
    (tmp_path / "syms" / "linux").mkdir(parents=True)
    path = isf.write_isf(doc, tmp_path / "syms" / "linux" / "guest.json", xz=True)
    monkeypatch.setattr(volatility3.symbols, "__path__", [str(tmp_path / "syms")])
    cache = symbol_cache.SqliteCache(str(tmp_path / "identifiers.cache"))
    cache.update()
    assert cache.get_identifier_dictionary(operating_system="linux") == {BANNER: path.as_uri()}


# -- hostile and odd BTF ---------------------------------------------------------------------


def odd_btf() -> bytes:
    w = BtfWriter()
    int_ = w.int("int", 4, signed=True)
    uint = w.int("unsigned int", 4)
    w.int("pointer", 8)  # a name volatility3 reserves
    union = w.union(None, 4, [("a", int_, 0), ("b", uint, 0)])
    inner = w.struct(None, 8, [("x", int_, 0), (None, union, 32)])
    proto = w.func_proto(int_, [("p", int_)])
    point = w.struct("point", 4, [("v", int_, 0)])
    w.struct(
        "outer",
        32,
        [
            ("head", int_, 0),
            (None, inner, 32),
            ("cb", w.ptr(proto), 128),
            ("flags", uint, 192, 3),
            ("bad_bf", point, 195, 2),
            ("odd", int_, 201),
            ("fn", proto, 224),
        ],
    )
    w.typedef("atomic_t", w.struct(None, 4, [("counter", int_, 0)]))
    cyc = w.struct(None, 8)
    w.set_members(cyc, [(None, cyc, 0)])  # anonymous, containing itself anonymously
    w.struct("host", 8, [(None, cyc, 0)])
    nxt = len(w._recs) + 1
    w.raw(B.PTR, None, 0, nxt + 1)
    w.raw(B.CONST, None, 0, nxt)  # a pointer/const reference cycle
    deep = int_
    for i in range(40):
        deep = w.typedef(f"deep{i}", deep)
    w.struct("chains", 16, [("loop", nxt, 0), ("deep", deep, 64)])
    w.struct("dup", 4, [("a", int_, 0)])
    w.struct("dup", 8, [("a", int_, 0), ("b", int_, 32)])
    w.struct("broken", 4, [("x", 9999, 0)])  # member type id out of range
    w.enum64("big", 8, [("NEG", -5), ("HUGE", 1 << 40)], signed=True)
    w.enum(None, 4, [("ANON_A", 1)])
    w.enum("fwd_only", 4, [])
    w.enum("weird_size", 3, [("W", 1)])
    w.struct("oldbits", 4, [("lo", w.int("unsigned int", 4, bits=3), 0)])
    return w.build()


def test_hostile_btf_skipped_and_counted(vol3, tmp_path):
    syms = [Sym("a", LINK, 8), Sym("a", LINK + 8, 8), Sym("", LINK, 0), Sym("neg", -5, 0)]
    doc, summary = isf.build_isf(B.Btf(odd_btf()), syms)
    schema_validate(doc)
    ut, skipped = doc["user_types"], summary.skipped
    assert skipped["bitfields ISF cannot express"] == 1  # bad_bf: a bitfield of a struct
    assert skipped["members off a byte boundary"] == 1  # odd
    assert skipped["anonymous members volatility3 cannot flatten"] >= 1
    assert skipped["type chains too deep or cyclic"] >= 1
    assert skipped["malformed BTF types"] == 1 and ut["broken"]["fields"] == {}
    assert skipped["duplicate type names (renamed)"] == 1
    assert ut["dup"]["size"] == 4 and any(n.startswith("dup__btf") for n in ut)
    assert skipped["duplicate or unnamed symbols"] == 2
    assert skipped["symbols with impossible addresses"] == 1
    assert skipped["enums of an impossible size"] == 1
    assert "pointer" not in {n for n, b in doc["base_types"].items() if b["size"] == 4}
    assert doc["base_types"]["pointer"]["size"] == 8
    assert ut["atomic_t"]["fields"]["counter"]["offset"] == 0  # typedef names its struct
    assert ut["outer"]["fields"]["fn"]["type"] == {"kind": "function"}
    assert "deep" not in ut["chains"]["fields"]
    assert ut["chains"]["fields"]["loop"]["type"]["kind"] == "pointer"
    assert doc["enums"]["big"] == {
        "size": 8,
        "base": "__btf_s64",  # no signed 8-byte int
        "constants": {"NEG": -5, "HUGE": 1 << 40},
    }
    assert doc["base_types"]["__btf_s64"] == {
        "size": 8,
        "signed": True,
        "kind": "int",
        "endian": "little",
    }
    assert doc["enums"]["fwd_only"]["constants"] == {}
    assert doc["enums"][[n for n in doc["enums"] if n.startswith("unnamed_")][0]]["constants"] == {
        "ANON_A": 1
    }
    assert ut["oldbits"]["fields"]["lo"]["type"]["bit_length"] == 3

    path = isf.write_isf(doc, tmp_path / "odd.json")
    ctx = load(path)
    outer = ctx.symbol_space.get_type("k!outer")  # anonymous struct + union, flattened
    assert {n: outer.relative_child_offset(n) for n in ("head", "x", "a", "b", "cb")} == {
        "head": 0,
        "x": 4,
        "a": 8,
        "b": 8,
        "cb": 16,
    }
    flags = outer.vol.members["flags"][1]
    assert outer.relative_child_offset("flags") == 24
    assert (flags.vol.start_bit, flags.vol.end_bit) == (0, 3)
    host = ctx.symbol_space.get_type("k!host")  # the cycle is a plain member, not a hang
    assert list(host.members) == ["unnamed_field_0"]
    big = ctx.symbol_space.get_enumeration("k!big")
    assert big.choices["HUGE"] == 1 << 40


def test_random_corruption_never_crashes(vol3):
    """Flip bytes of a valid BTF: a schema-valid ISF is built, or a GuestDataError says why."""
    good = bytearray(odd_btf())
    rng = random.Random(10)
    built = 0
    syms = [Sym("x", LINK, 0), Sym("tk_core", LINK + 64, 24), Sym("avenrun", LINK + 128, 24)]
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(B.HEADER_LEN, len(data))] = rng.randrange(256)
        try:
            doc, _ = isf.build_isf(B.Btf(bytes(data)), syms, banner=BANNER)
        except GuestDataError:
            continue
        if built % 10 == 0:
            schema_validate(doc)
        json.dumps(doc)
        built += 1
    assert built > 100


# -- declared globals, banner --------------------------------------------------------------


def test_globals_get_declared_types():
    w = BtfWriter()
    ulong = w.int("long unsigned int", 8)
    w.int("char", 1, signed=True, char=True)
    w.struct("timekeeper", 16, [("xtime_sec", ulong, 0)])
    tk = w.struct(None, 24, [("seq", ulong, 0), ("timekeeper", w.struct("tkx", 16), 64)])
    rq = w.struct("rq", 64, [("nr_running", ulong, 0)])
    w.var("runqueues", rq)
    w.typedef("u32", w.int("unsigned int", 4))
    syms = [
        Sym("avenrun", LINK, 24),
        Sym("tk_core", LINK + 64, 24),
        Sym("runqueues", 0x3000, 64),
        Sym("task_state_array", LINK + 128, 80),
        Sym("log_buf_len", LINK + 256, 4),
        Sym("init_task", LINK + 512, 4096),
        Sym("start_kernel", LINK + 8192, 100),
        Sym("jiffies", LINK + 300, 8),
    ]
    doc, summary = isf.build_isf(B.Btf(w.build()), syms)
    s = doc["symbols"]
    base = lambda n: {"kind": "base", "name": n}  # noqa: E731
    assert s["avenrun"]["type"] == {
        "kind": "array",
        "count": 3,
        "subtype": base("long unsigned int"),
    }
    assert s["tk_core"]["type"] == {"kind": "struct", "name": f"unnamed_{tk:x}"}
    assert s["runqueues"]["type"] == {"kind": "struct", "name": "rq"}  # the BTF VAR
    assert s["task_state_array"]["type"] == {
        "kind": "array",
        "count": 10,
        "subtype": {"kind": "pointer", "subtype": base("char")},
    }  # `[]`: from the symbol's size
    assert s["log_buf_len"]["type"] == base("unsigned int")  # u32, typedef resolved
    assert s["jiffies"]["type"] == base("long unsigned int")  # volatile unsigned long
    assert s["init_task"]["type"] == isf.VOID  # no struct task_struct in this BTF
    assert s["start_kernel"]["type"] == isf.VOID
    assert summary.typed_symbols == 6
    assert summary.skipped["declared globals whose type this BTF lacks"] == 1
    assert "linux_banner" in summary.warnings[0]


def test_read_banner_bounded():
    mem = {0x1000: BANNER}

    def read(addr, n):
        return (mem[0x1000] + b"\xff" * 4096)[addr - 0x1000 : addr - 0x1000 + n]

    assert isf.read_banner(read, 0x1000) == BANNER
    with pytest.raises(GuestDataError, match="within 1024"):
        isf.read_banner(lambda a, n: b"L" * n, 0)
    with pytest.raises(GuestDataError, match="not a kernel banner"):
        isf.read_banner(lambda a, n: b"Linux version \x01\x02\0".ljust(n, b"x"), 0)
    with pytest.raises(GuestDataError, match="not a kernel banner"):
        isf.read_banner(lambda a, n: b"hello\0".ljust(n, b"\0"), 0)


def test_from_kernel_program(vol3, tmp_path):
    pytest.importorskip("drgn")
    from tests.unit.isf_fakes import fake_kernel_program

    kp = fake_kernel_program(BANNER)
    doc, summary = isf.from_kernel_program(kp)
    schema_validate(doc)
    assert summary.banner.startswith("Linux version 6.1.0-99-amd64")
    assert doc["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    assert doc["symbols"]["linux_banner"]["type"]["count"] == len(BANNER)
    assert not summary.warnings


# -- the host's real kernel BTF --------------------------------------------------------------


def test_host_kernel_btf_matches_drgn(vol3, tmp_path):
    """Every member volatility3 sees in key kernel structs sits where drgn (xenvmi's own
    BTF finder) puts it, anonymous unions flattened, on this machine's real kernel BTF."""
    if not os.path.exists(HOST_BTF):
        pytest.skip("this machine's kernel exposes no BTF")
    drgn = pytest.importorskip("drgn")
    from xenvmi.guest.btf_drgn import attach_btf
    from xenvmi.guest.program import PLATFORM

    data = Path(HOST_BTF).read_bytes()
    names = [
        "task_struct",
        "mm_struct",
        "cred",
        "list_head",
        "module",
        "page",
        "inode",
        "file",
        "dentry",
        "vm_area_struct",
    ]
    syms = [Sym(n, LINK + 4096 * i, 0) for i, n in enumerate(["init_task", "init_mm"])]
    doc, summary = isf.build_isf(B.Btf(data), syms, banner=BANNER)
    assert summary.user_types > 1000 and summary.symbols == 2
    path = isf.write_isf(doc, tmp_path / "host.json.xz")
    ctx = load(path, linux=True, validate=False)  # (full validation: a minute of jsonschema)
    prog = drgn.Program(PLATFORM)
    attach_btf(prog, data)
    for name in names:
        vt = ctx.symbol_space.get_type(f"k!{name}")
        dt = prog.type(f"struct {name}")
        assert vt.size == dt.size, name
        for member in vt.members:
            if member.startswith("unnamed_field_"):
                continue
            assert vt.relative_child_offset(member) == dt.member(member).bit_offset // 8, (
                f"{name}.{member}"
            )
    init = ctx.symbol_space.get_symbol("k!init_task")
    assert init.type.vol.type_name == "k!task_struct" and init.address == LINK
