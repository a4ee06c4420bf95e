"""The native memory backend (libxenctrl + libxenforeignmemory through ctypes), without Xen.

- Layouts: every ctypes structure in xenvmi.backends.xenctrl against Xen's public headers
  (/usr/include/xen from libxen-dev, or $XENVMI_XEN_INCLUDE's parent): a C program
  compiled here prints each field's offset and size, and the headers' own text gives
  hvm_hw_cpu's register order.
- Registers: records packed here by the headers' layout (with struct, not ctypes) become
  LibVMI-named dicts that decode as LibVMI's do.
- NativeMemory on stand-ins for the libraries: holes, refused calls, pause counting, PV.

The real libraries are compared with LibVMI in the lab: tests/lab/test_native_backend.py.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import re
import struct
from pathlib import Path

import pytest
from c_layout import c_layout as compile_layout

from xenvmi.backends import xenctrl, xenforeign
from xenvmi.backends.memory import PAGE, BytesMemory, PhysicalFault
from xenvmi.backends.native import NativeMemory
from xenvmi.backends.xenctrl import (
    ArchDomainConfig,
    CpuUserRegs,
    DomainInfo,
    HvmHwCpu,
    TrapInfo,
    VcpuGuestContextX8664,
)
from xenvmi.errors import NotFoundError, PermissionDenied, Unavailable, UsageError
from xenvmi.guest.regs_x86 import decode_x86

INCLUDE = Path(os.environ.get("XENVMI_XEN_INCLUDE", "/usr/include/xen"))

#: ctypes structure -> the C type it copies.
C_TYPES = {
    DomainInfo: "struct xen_domctl_getdomaininfo",
    ArchDomainConfig: "struct xen_arch_domainconfig",
    HvmHwCpu: "struct hvm_hw_cpu",
    CpuUserRegs: "struct cpu_user_regs",
    TrapInfo: "struct trap_info",
    VcpuGuestContextX8664: "struct vcpu_guest_context",
}
CONSTANTS = {
    "HVM_SAVE_CODE(CPU)": xenctrl.HVM_SAVE_CODE_CPU,
    "HVM_SAVE_LENGTH(CPU)": ctypes.sizeof(HvmHwCpu),
    "XEN_DOMINF_hvm_guest": xenctrl.XEN_DOMINF_hvm_guest,
    "XEN_DOMINF_paused": xenctrl.XEN_DOMINF_paused,
    "XEN_X86_EMU_LAPIC": xenctrl.XEN_X86_EMU_LAPIC,
    "XEN_X86_EMU_PIC": xenctrl.XEN_X86_EMU_PIC,
    "VGCF_in_kernel": xenctrl.VGCF_in_kernel,
    "sizeof(vcpu_guest_context_x86_64_t)": ctypes.sizeof(VcpuGuestContextX8664),
}


def header(rel: str) -> str:
    path = INCLUDE / rel
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: install Xen's public headers ('apt-get install "
            "libxen-dev' on Debian) or set XENVMI_XEN_INCLUDE",
            pytrace=False,
        )
    return path.read_text()


def c_layout(tmp_path: Path) -> dict[str, int]:
    """offsetof/sizeof of every field of C_TYPES and the CONSTANTS, from the C compiler."""
    return compile_layout(
        tmp_path,
        C_TYPES,
        CONSTANTS,
        INCLUDE,
        "#include <xen/xen.h>\n#include <xen/domctl.h>\n#include <xen/hvm/save.h>\n"
        "#include <xen/foreign/x86_64.h>\n",
    )


def test_struct_layouts_match_the_headers(tmp_path):
    c = c_layout(tmp_path)
    for cls, ctype in C_TYPES.items():
        assert ctypes.sizeof(cls) == c[ctype], ctype
        for name, *_ in cls._fields_:
            field = getattr(cls, name)
            assert (field.offset, field.size) == (c[f"{ctype}.{name}"], c[f"{ctype}.{name}#"]), (
                f"{ctype}.{name}"
            )
    for name, value in CONSTANTS.items():
        assert value == c[name], name


def test_hvm_register_order_is_the_headers():
    """hvm_hw_cpu's members between fpu_regs and the pending event, read from save.h's
    text: HVM_REGISTERS must list exactly those, in that order, with their widths."""
    text = header("arch-x86/hvm/save.h")
    body = text[text.index("struct hvm_hw_cpu {") :]
    body = body[body.index("fpu_regs[512];") : body.index("/* pending event")]
    members = re.findall(r"^\s*uint(32|64)_t\s+(\w+);", body, re.M)
    assert [n for _, n in members] == list(xenctrl.HVM_REGISTERS)
    assert {n for w, n in members if w == "32"} == xenctrl._HVM_U32


def test_library_names_match_the_installed_soname():
    """Debian 12's libxenctrl is libxenctrl.so.4.17 (its -dev package adds the bare
    name); the first name tried must be the runtime package's."""
    lib = Path("/usr/lib/x86_64-linux-gnu")
    if not (lib / "libxenctrl.so").exists():
        pytest.skip("no libxenctrl on this machine")
    assert (lib / xenctrl.LIBRARIES[0]).exists()
    assert not hasattr(xenctrl.load_library(), "xc_domain_getinfo_single")  # 4.18+ only


# -- registers from records packed by the headers' layout ----------------------------------

LINUX = {  # a Debian 6.1 kernel in long mode, as Xen's hvm_hw_cpu holds it
    "rax": 1, "rbx": 2, "rcx": 3, "rdx": 4, "rbp": 5, "rsi": 6, "rdi": 7,
    "rsp": 0xFFFFC90000013E38, "r8": 8, "r9": 9, "r10": 10, "r11": 11, "r12": 12, "r13": 13,
    "r14": 14, "r15": 15, "rip": 0xFFFFFFFF81E00EF0, "rflags": 0x246, "cr0": 0x80050033,
    "cr2": 0x7F3A1C000000, "cr3": 0x10A0E000, "cr4": 0x3506F0, "dr7": 0x400,
    "cs_sel": 0x10, "ss_sel": 0x18, "cs_arbytes": 0xA9B, "ss_arbytes": 0xC93,
    "fs_base": 0x7F3A1C4A5740, "gs_base": 0xFFFF88803EC00000, "shadow_gs": 0x7F00,
    "sysenter_cs": 0x10, "sysenter_esp": 0xFFFFFE0000003000, "sysenter_eip": 0xFFFFFFFF81E01B30,
    "msr_lstar": 0xFFFFFFFF81E00080, "msr_star": 0x0023001000000000,
    "msr_cstar": 0xFFFFFFFF81E01C70, "msr_syscall_mask": 0x257FD5, "msr_efer": 0xD01,
    "msr_tsc_aux": 0,
}  # fmt: skip


def packed_hvm_cpu(values: dict[str, int]) -> bytes:
    """hvm_hw_cpu as save.h lays it out, written out by hand (not from HVM_REGISTERS)."""
    v = lambda *names: [values.get(n, 0) for n in names]  # noqa: E731
    segs = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldtr")
    return b"".join([
        b"\xaa" * 512,  # fpu_regs
        struct.pack("<16Q", *v("rax", "rbx", "rcx", "rdx", "rbp", "rsi", "rdi", "rsp", "r8",
                               "r9", "r10", "r11", "r12", "r13", "r14", "r15")),
        struct.pack("<12Q", *v("rip", "rflags", "cr0", "cr2", "cr3", "cr4", "dr0", "dr1",
                               "dr2", "dr3", "dr6", "dr7")),
        struct.pack("<8I", *v(*(f"{s}_sel" for s in segs))),
        struct.pack("<10I", *v(*(f"{s}_limit" for s in (*segs, "idtr", "gdtr")))),
        struct.pack("<10Q", *v(*(f"{s}_base" for s in (*segs, "idtr", "gdtr")))),
        struct.pack("<8I", *v(*(f"{s}_arbytes" for s in segs))),
        struct.pack("<4Q", *v("sysenter_cs", "sysenter_esp", "sysenter_eip", "shadow_gs")),
        struct.pack("<8Q", 0xDEAD, *v("msr_lstar", "msr_star", "msr_cstar",
                                      "msr_syscall_mask", "msr_efer", "msr_tsc_aux"), 12345),
        struct.pack("<4I", 0, 0, 1, 0),  # pending_event, error_code, flags, pad0
    ])  # fmt: skip


def test_hvm_registers_from_a_packed_record():
    raw = packed_hvm_cpu(LINUX)
    assert len(raw) == ctypes.sizeof(HvmHwCpu) == 1032
    regs = xenctrl.hvm_registers(HvmHwCpu.from_buffer_copy(raw))
    assert {k: regs[k] for k in LINUX} == LINUX
    assert "msr_flags" not in regs and "tsc" not in regs and "fpu_regs" not in regs
    d = decode_x86(regs)
    assert (d.cpu_mode, d.cpl, d.cpl_source, d.paging_mode) == ("64-bit", 0, "ss.dpl", "4-level")
    assert d.kernel_gs_base == 0x7F00 and d.lstar == LINUX["msr_lstar"]
    # LibVMI's dict for the same vCPU lacks some keys; what both have decodes the same
    libvmi_keys = ("rip", "rflags", "cr0", "cr3", "cr4", "msr_efer", "cs_arbytes", "msr_star")
    assert decode_x86({k: regs[k] for k in libvmi_keys}).paging_mode == d.paging_mode


def packed_pv_context(flags: int, ctrlreg3: int) -> bytes:
    """vcpu_guest_context (x86_64) as arch-x86/xen.h and xen-x86_64.h lay it out."""
    user = b"".join(
        [
            struct.pack("<15Q", *range(115, 100, -1)),  # r15=115 ... rdi=101
            struct.pack("<II", 0, 0),  # error_code, entry_vector
            struct.pack("<QHHB3x", 0xFFFFFFFF81001000, 0xE033, 0, 0),  # rip, cs, pad, mask
            struct.pack("<QQ", 0x1202, 0xFFFFC90000003F00),  # rflags, rsp
            struct.pack("<H6x", 0xE02B) * 5,  # ss, es, ds, fs, gs
        ]
    )
    return b"".join([
        b"\x00" * 512, struct.pack("<Q", flags), user,
        b"\x00" * (256 * 16),  # trap_ctxt
        struct.pack("<2Q", 0, 0), struct.pack("<17Q", *([0] * 17)),  # ldt, gdt frames + ents
        struct.pack("<2Q", 0xE02B, 0xFFFFC90000004000),  # kernel_ss, kernel_sp
        struct.pack("<8Q", 0x80050033, 0, 0x61A3F0, ctrlreg3, 0x2660, 0, 0, 0),
        struct.pack("<8Q", 1, 2, 3, 4, 0, 0, 0xFFFF0FF0, 0x400),
        struct.pack("<4Q", 0, 0, 0, 0),  # callbacks, vm_assist
        struct.pack("<3Q", 0x7F0000001000, 0xFFFF888007C00000, 0x7F0000002000),
    ])  # fmt: skip


def test_pv_registers_from_a_packed_context():
    raw = packed_pv_context(xenctrl.VGCF_in_kernel | xenctrl.VGCF_online, 0x597E1000 | 0x7)
    assert len(raw) == ctypes.sizeof(VcpuGuestContextX8664)
    regs = xenctrl.pv_registers(VcpuGuestContextX8664.from_buffer_copy(raw))
    assert (regs["r15"], regs["rax"], regs["rdi"]) == (115, 105, 101)
    assert (regs["rip"], regs["rsp"], regs["rflags"]) == (
        0xFFFFFFFF81001000,
        0xFFFFC90000003F00,
        0x1202,
    )
    assert (regs["cr0"], regs["cr2"], regs["cr4"]) == (0x80050033, 0x61A3F0, 0x2660)
    assert regs["cr3"] == 0x597E1000  # as LibVMI: the frame, low bits dropped
    assert (regs["dr0"], regs["dr3"], regs["dr6"], regs["dr7"]) == (1, 4, 0xFFFF0FF0, 0x400)
    assert (regs["fs_base"], regs["gs_base"], regs["shadow_gs"]) == (
        0x7F0000001000,
        0xFFFF888007C00000,
        0x7F0000002000,
    )
    assert not any(k.endswith(("_sel", "_arbytes")) for k in regs)  # no CPL-3 kernel
    user = xenctrl.pv_registers(
        VcpuGuestContextX8664.from_buffer_copy(packed_pv_context(xenctrl.VGCF_online, 0x1000))
    )
    assert (user["gs_base"], user["shadow_gs"]) == (0x7F0000002000, 0xFFFF888007C00000)
    assert decode_x86(regs).paging_mode is None  # PV contexts carry no EFER (nor LibVMI's)


def test_domain_type_and_uuid():
    info = DomainInfo()
    assert xenctrl.domain_type(info) == "pv"
    info.flags = xenctrl.XEN_DOMINF_hvm_guest
    info.arch_config.emulation_flags = xenctrl.XEN_X86_EMU_LAPIC
    assert xenctrl.domain_type(info) == "pvh"
    info.arch_config.emulation_flags = 0x3FF  # XEN_X86_EMU_ALL less VPCI, as libxl sets
    assert xenctrl.domain_type(info) == "hvm"
    info.handle[:] = list(range(16))
    assert xenctrl.domain_uuid(info) == "00010203-0405-0607-0809-0a0b0c0d0e0f"


def test_every_hvm_container_is_pvh_on_arm():
    """Arm's arch_config holds no x86 emulation flags: whatever its bytes, xl's name, pvh
    (the arch is the hypervisor's, as the native backend reads it)."""
    info = DomainInfo()
    info.flags = xenctrl.XEN_DOMINF_hvm_guest
    info.arch_config.emulation_flags = 0x3FF
    assert xenctrl.domain_type(info, "aarch64") == "pvh"
    assert xenctrl.domain_type(info) == "hvm"


def test_dom0_on_arm_is_pvh(monkeypatch, tmp_path):
    from xenvmi import domains

    real_open = open
    guest_type = tmp_path / "guest_type"

    def fake_open(path, *a, **k):
        return real_open(guest_type if path == "/sys/hypervisor/guest_type" else path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    guest_type.write_text("HVM\n")
    monkeypatch.setattr(domains.platform, "machine", lambda: "aarch64")
    assert domains.own_guest_type() == "pvh"
    monkeypatch.setattr(domains.platform, "machine", lambda: "x86_64")
    assert domains.own_guest_type() == "hvm"
    guest_type.write_text("PV\n")
    assert domains.own_guest_type() == "pv"


# -- NativeMemory on stand-ins ---------------------------------------------------------------

FRAMES = 600
HOLES = {5, 6, 300, 599}


class FakeForeignLib:
    """xenforeignmemory_* over an image: holes refused per frame, as Xen does; with
    ``refuse`` set, whole calls touching those frames fail with that errno."""

    def __init__(self, image: bytes, refuse: dict[int, int] | None = None):
        self.image, self.refuse, self.live, self.calls = image, refuse or {}, {}, []

    def xenforeignmemory_open(self, logger, flags):
        return 0x1234

    def xenforeignmemory_close(self, handle):
        pass

    def xenforeignmemory_map(self, handle, domid, prot, count, frames, err):
        wanted = [frames[i] for i in range(count)]
        self.calls.append(count)
        for f in wanted:
            if f in self.refuse:
                ctypes.set_errno(self.refuse[f])
                return None
        buf = ctypes.create_string_buffer(count * PAGE)
        for i, f in enumerate(wanted):
            bad = f in HOLES or f >= FRAMES
            err[i] = -errno.EINVAL if bad else 0
            buf[i * PAGE : (i + 1) * PAGE] = (
                b"\xee" * PAGE if bad else self.image[f * PAGE : (f + 1) * PAGE]
            )
        self.live[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def xenforeignmemory_unmap(self, handle, addr, count):
        del self.live[addr]
        return 0


class FakeCtrl:
    def __init__(self, kind: str = "hvm", vcpus: int = 2):
        self.info = DomainInfo(
            domain=7, tot_pages=FRAMES - len(HOLES), max_pages=0xFFFFFFFF, max_vcpu_id=vcpus - 1
        )
        if kind != "pv":
            self.info.flags = xenctrl.XEN_DOMINF_hvm_guest
            self.info.arch_config.emulation_flags = 0x3FF if kind == "hvm" else 1
        self.pauses, self.closed, self.width = 0, False, 8

    def domain_info(self, domid):
        assert domid == 7
        info = DomainInfo.from_buffer_copy(self.info)
        if self.pauses:
            info.flags |= xenctrl.XEN_DOMINF_paused
        return info

    def maximum_gpfn(self, domid):
        return FRAMES - 1

    def guest_width(self, domid):
        return self.width

    def capabilities(self):
        return "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 "

    def pause(self, domid):
        self.pauses += 1

    def unpause(self, domid):
        self.pauses -= 1

    def hvm_cpu(self, domid, vcpu):
        return HvmHwCpu.from_buffer_copy(packed_hvm_cpu({**LINUX, "rax": vcpu}))

    def pv_context(self, domid, vcpu):
        return VcpuGuestContextX8664.from_buffer_copy(
            packed_pv_context(xenctrl.VGCF_in_kernel, 0x5000)
        )

    def close(self):
        self.closed = True


class FakeStore:
    def domains(self):
        return [(0, "Domain-0"), (7, "g")]

    def read(self, path):
        return {"/local/domain/7/vm": "/vm/11111111-2222-3333-4444-555555555555"}.get(path)


@pytest.fixture
def image():
    return random.Random(7).randbytes(FRAMES * PAGE)


def native(image, kind="hvm", refuse=None, **kw):
    lib = FakeForeignLib(image, refuse)
    ctrl = FakeCtrl(kind, **kw)
    foreign = xenforeign.ForeignMemory(7, lib=lib) if kind != "pv" else None
    mem = NativeMemory("g", ctrl=ctrl, foreign=foreign, store=FakeStore())
    return mem, ctrl, lib


def test_native_opens_like_libvmi(image):
    mem, ctrl, _ = native(image)
    assert (mem.name, mem.domid, mem.kind) == ("g", 7, "hvm")
    assert mem.uuid == "11111111-2222-3333-4444-555555555555"
    assert mem.max_physical_address == FRAMES * PAGE  # (highest frame + 1) pages
    assert mem.memsize == (FRAMES - len(HOLES)) * PAGE
    assert mem.vcpu_count() == 2
    mem.close()
    assert ctrl.closed
    with pytest.raises(NotFoundError, match="dom0 itself"):
        NativeMemory("Domain-0", ctrl=FakeCtrl(), foreign=None, store=FakeStore())


def test_holes_read_as_bytesmemory_reads_them(image):
    """Every read path of the interface gives what an image with the same holes gives:
    bytes with zeros in holes plus one readable flag per page, strict reads fault."""
    mem, _, lib = native(image)
    ref = BytesMemory(image, holes=tuple((f * PAGE, (f + 1) * PAGE) for f in HOLES))
    for addr, size in (
        (0, 16 * PAGE),
        (4 * PAGE, 3 * PAGE),
        (0, FRAMES * PAGE),
        (290 * PAGE, 20 * PAGE),
        (598 * PAGE, 2 * PAGE),
    ):
        assert mem._read_pages(addr, size) == ref._read_pages(addr, size), hex(addr)
    assert max(lib.calls) == xenforeign.BATCH  # large reads are batched
    for frame in (0, 5, 299, 300, 599):
        assert mem._read_page(frame * PAGE) == ref._read_page(frame * PAGE)
    assert mem.read_physical(5 * PAGE - 10, 20) == image[5 * PAGE - 10 : 5 * PAGE] + bytes(10)
    with pytest.raises(PhysicalFault):
        mem.read_physical(300 * PAGE + 1, 4, strict=True)
    assert mem.read_physical(FRAMES * PAGE + 10, 4) == bytes(4)  # past the top: zeros
    assert mem.read_physical(0, 300 * 1024) == ref.read_physical(0, 300 * 1024)  # bypass


def test_a_refused_call_is_bisected_to_the_frames_xen_refuses(image):
    mem, _, lib = native(image, refuse={40: errno.EFAULT, 41: errno.EFAULT})
    data, ok = mem._read_pages(0, 64 * PAGE)
    assert ok == [f not in (5, 6, 40, 41) for f in range(64)]
    assert data[39 * PAGE : 42 * PAGE] == image[39 * PAGE : 40 * PAGE] + bytes(2 * PAGE)
    assert mem._read_page(40 * PAGE) is None and mem._read_page(39 * PAGE) is not None
    assert len(lib.calls) < 40  # halves, not a call per page


@pytest.mark.parametrize(
    "code,exc", [(errno.ESRCH, NotFoundError), (errno.EPERM, PermissionDenied)]
)
def test_a_gone_domain_or_no_rights_is_an_error_not_a_hole(image, code, exc):
    mem, _, _ = native(image, refuse={3: code})
    with pytest.raises(exc):
        mem._read_pages(0, 8 * PAGE)
    with pytest.raises(exc):
        mem._read_page(3 * PAGE)


def test_reads_are_bounded(image):
    mem, _, _ = native(image)
    with pytest.raises(UsageError, match="at most"):
        mem._read_pages(0, 1 << 30)


def test_registers(image):
    mem, _, _ = native(image)
    regs = mem.vcpu_registers(1)
    assert regs["rax"] == 1 and regs["msr_efer"] == 0xD01 and regs["cs_arbytes"] == 0xA9B
    with pytest.raises(NotFoundError, match="no vCPU 2"):
        mem.vcpu_registers(2)
    pv, ctrl, _ = native(image, kind="pv")
    assert pv.kind == "pv" and pv.vcpu_registers(0)["cr3"] == 0x5000
    assert pv.max_physical_address == 1 << 44  # as LibVMI: through PV's maximum
    with pytest.raises(Unavailable, match="PV guest"):
        pv.read_physical(0, 16)
    ctrl.width = 4
    with pytest.raises(Unavailable, match="32-bit"):
        pv.vcpu_registers(0)


def test_pauses_are_counted_and_undone(image):
    """Xen counts the toolstack's pauses: each of ours is undone by one unpause, nested
    or not, and close() undoes any a failed view left behind."""
    mem, ctrl, _ = native(image)
    ctrl.pauses = 1  # someone else (xl pause) paused it first
    with mem.paused():
        with mem.snapshot(pause=True):
            assert ctrl.pauses == 3 and mem.paused_now()
    assert ctrl.pauses == 1
    mem._pause()
    mem.close()
    assert ctrl.pauses == 1  # theirs stays


def test_single_pages_keep_their_mappings(image):
    """The first page read in an aligned block of BLOCK frames maps that frame, a second
    one the whole block; mappings are kept (the guest's live memory, not a copy), so a
    page read again costs no call; the oldest is unmapped past MAX_BLOCKS; a hole in a
    kept block is asked again; close unmaps all."""
    mem, _, lib = native(image)
    block = xenforeign.BLOCK
    assert mem._read_page(3 * PAGE) == image[3 * PAGE : 4 * PAGE] and lib.calls == [1]
    assert mem._read_page(3 * PAGE) == image[3 * PAGE : 4 * PAGE] and lib.calls == [1]
    assert [mem._read_page(i * PAGE) for i in range(block)] == [
        None if i in HOLES else image[i * PAGE : (i + 1) * PAGE] for i in range(block)
    ]
    assert lib.calls == [1, block, 1, 1]  # the block once; holes 5 and 6 asked alone
    assert len(lib.live) == 1  # the single frame's mapping was replaced by the block's
    assert mem._read_page(5 * PAGE) is None and lib.calls == [1, block, 1, 1, 1]
    mem.drop_mappings()  # the backend's own way to empty its cache of mappings
    assert not lib.live
    assert mem._read_page(3 * PAGE) == image[3 * PAGE : 4 * PAGE] and len(lib.live) == 1
    mem._foreign.drop_mappings()
    assert not lib.live
    orig, xenforeign.MAX_BLOCKS = xenforeign.MAX_BLOCKS, 3
    try:
        for key in range(5):
            assert mem._read_page((key * block + 2) * PAGE) is not None
        assert sorted(mem._foreign._blocks) == [2, 3, 4] and len(lib.live) == 3
    finally:
        xenforeign.MAX_BLOCKS = orig
    mem.close()
    assert not lib.live


def test_kept_mappings_age(image, monkeypatch):
    """A kept mapping is used for MAX_AGE seconds, then made again (a guest may give a
    frame back or have another put in its place)."""
    now = [1000.0]
    monkeypatch.setattr(xenforeign.time, "monotonic", lambda: now[0])
    mem, _, lib = native(image)
    mem._read_page(2 * PAGE)
    mem._read_page(2 * PAGE)
    assert lib.calls == [1]
    now[0] += xenforeign.MAX_AGE + 1
    assert mem._read_page(2 * PAGE) == image[2 * PAGE : 3 * PAGE]
    assert lib.calls == [1, 1] and len(lib.live) == 1  # the old one unmapped


def test_check_alive(image):
    """A domain Xen no longer has, one dying, or another under the same id is gone."""
    mem, ctrl, _ = native(image)
    mem.check_alive()
    ctrl.info.flags |= xenctrl.XEN_DOMINF_dying
    with pytest.raises(NotFoundError, match="went away"):
        mem.check_alive()
    ctrl.info.flags &= ~xenctrl.XEN_DOMINF_dying
    ctrl.info.handle[0] = 0x42  # a new domain reusing the id
    with pytest.raises(NotFoundError, match="went away"):
        mem.check_alive()
    ctrl.domain_info = lambda domid: (_ for _ in ()).throw(NotFoundError("no domain"))
    with pytest.raises(NotFoundError, match="went away"):
        mem.check_alive()
