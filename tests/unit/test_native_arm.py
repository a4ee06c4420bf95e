"""The native backend on an Arm Xen host, without one: Xen's arm64 vCPU context against
public/arch-arm.h, the architecture from the hypervisor's capabilities, and NativeMemory
over stand-ins of an Arm host's libraries (RAM at GUEST_RAM0_BASE).

A real Arm Xen host is another helper's; these pin the ABI and the logic until then.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import struct
from pathlib import Path

import pytest
from c_layout import c_layout

from xenvmi.backends import xenctrl, xenctrl_arm, xenforeign
from xenvmi.backends.memory import PAGE
from xenvmi.backends.native import NativeMemory
from xenvmi.backends.xenctrl import DomainInfo
from xenvmi.backends.xenctrl_arm import VcpuGuestContextArm, VcpuGuestCoreRegs
from xenvmi.errors import Unavailable
from xenvmi.guest import vmcore
from xenvmi.guest.regs_arm64 import decode_arm64
from xenvmi.vmcore_format import PR_REG

INCLUDE = Path(os.environ.get("XENVMI_XEN_INCLUDE", "/usr/include/xen"))
C_TYPES = {
    VcpuGuestCoreRegs: "struct vcpu_guest_core_regs",
    VcpuGuestContextArm: "struct vcpu_guest_context",
}
CONSTANTS = {
    "GUEST_RAM0_BASE": xenctrl_arm.GUEST_RAM0_BASE,
    "GUEST_RAM0_SIZE": xenctrl_arm.GUEST_RAM0_SIZE,
    "VGCF_online": xenctrl_arm.VGCF_online,
}


def arm_header() -> str:
    path = INCLUDE / "arch-arm.h"
    if not path.is_file():
        pytest.fail(f"{path} is missing: apt-get install libxen-dev", pytrace=False)
    return path.read_text()


def test_arm_context_layout_matches_arch_arm_h(tmp_path):
    """arch-arm.h compiled on this (x86-64) host: its types use fixed-width fields and
    explicit 8-byte alignment only, so offsets are the same as an arm64 compiler's."""
    arm_header()
    c = c_layout(
        tmp_path,
        C_TYPES,
        CONSTANTS,
        INCLUDE,
        "#define xen_mk_ullong(x) x##ULL\n#include <xen/arch-arm.h>\n",  # (xen.h's macro)
    )
    for cls, ctype in C_TYPES.items():
        assert ctypes.sizeof(cls) == c[ctype], ctype
        for name, *_ in cls._fields_:
            field = getattr(cls, name)
            assert (field.offset, field.size) == (c[f"{ctype}.{name}"], c[f"{ctype}.{name}#"])
    for name, value in CONSTANTS.items():
        assert value == c[name], name


def test_core_register_order_is_the_headers():
    text = arm_header()
    body = text[text.index("struct vcpu_guest_core_regs") :]
    body = body[: body.index("typedef struct vcpu_guest_core_regs")]
    decl = re.findall(r"__DECL_REG\((\w+),", body)
    assert [*decl, "cpsr", "spsr_el1"] == list(xenctrl_arm.CORE_REGS)
    assert re.search(r"uint64_t sp_el1, elr_el1;", body)


def packed_context(cpsr: int) -> bytes:
    """A vcpu_guest_context packed by arch-arm.h's layout with struct (not ctypes)."""
    core = struct.pack("<31Q", *(0x100 + n for n in range(31)))
    core += struct.pack("<QQQ", 0xFFFF_8000_0812_3456, cpsr, 0x3C5)  # pc64, cpsr, spsr_el1
    core += struct.pack("<4I", 0, 0, 0, 0)
    core += struct.pack("<QQQ", 0xAAAA_0000, 0xFFFF_8000_0800_3F00, 0xFFFF_8000_0800_1000)
    ctx = struct.pack("<I4x", xenctrl_arm.VGCF_online) + core
    ctx += struct.pack("<4Q", 0x30D5_198D, 0x0000_0034_B550_7510, 0x1_4321_0000, 0x2_4123_0000)
    return ctx


def test_arm64_registers_decode_and_fill_a_prstatus():
    regs = xenctrl_arm.arm64_registers(VcpuGuestContextArm.from_buffer_copy(packed_context(0x3C5)))
    assert regs["x0"] == 0x100 and regs["x30"] == 0x11E and regs["pc64"] == 0xFFFF_8000_0812_3456
    assert regs["sp"] == regs["sp_el1"] == 0xFFFF_8000_0800_3F00  # EL1h: SP_EL1
    d = decode_arm64(regs)
    assert (d.mode, d.el, d.pc, d.sp) == ("EL1h", 1, regs["pc64"], regs["sp_el1"])
    assert d.mmu_enabled and d.va_bits_ttbr1 == 48 and d.granule_ttbr1 == 4096
    assert d.ttbr1_base == 0x2_4123_0000 and d.elr_el1 == 0xFFFF_8000_0800_1000
    user = xenctrl_arm.arm64_registers(VcpuGuestContextArm.from_buffer_copy(packed_context(0)))
    assert user["sp"] == 0xAAAA_0000 and decode_arm64(user).mode == "EL0t"
    values = struct.unpack_from("<34Q", vmcore.prstatus(0, regs, "aarch64"), PR_REG)
    assert values[30:] == (0x11E, regs["sp_el1"], regs["pc64"], 0x3C5)


@pytest.mark.parametrize(
    "caps, arch",
    [
        ("xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ", "x86_64"),
        ("xen-3.0-aarch64 xen-3.0-armv7l ", "aarch64"),
    ],
)
def test_the_hypervisor_says_which_guests_it_runs(caps, arch):
    assert xenctrl_arm.guest_arch(caps) == arch


def test_a_hypervisor_of_another_architecture_is_unavailable():
    for caps in ("xen-3.0-armv7l", ""):
        with pytest.raises(Unavailable, match="not x86-64 or arm64"):
            xenctrl_arm.guest_arch(caps)


# -- NativeMemory on an Arm host's stand-ins -------------------------------------------

BASE_FRAME = xenctrl_arm.GUEST_RAM0_BASE // PAGE
RAM_FRAMES = 256


class ArmForeignLib:
    """xenforeignmemory_map over RAM at GUEST_RAM0_BASE; frames below it fail."""

    def __init__(self, ram: bytes) -> None:
        self.ram, self.live = ram, {}

    def xenforeignmemory_open(self, logger, flags):
        return 1

    def xenforeignmemory_close(self, handle):
        return 0

    def xenforeignmemory_map(self, handle, domid, prot, count, frames, errs):
        buf = ctypes.create_string_buffer(count * PAGE)
        for i in range(count):
            frame = frames[i] - BASE_FRAME
            if 0 <= frame < RAM_FRAMES:
                ctypes.memmove(ctypes.addressof(buf) + i * PAGE, self.ram[frame * PAGE :], PAGE)
                errs[i] = 0
            else:
                errs[i] = -14  # EFAULT: no RAM there
        addr = ctypes.addressof(buf)
        self.live[addr] = buf
        return addr

    def xenforeignmemory_unmap(self, handle, addr, count):
        del self.live[addr]
        return 0


class ArmCtrl:
    def __init__(self) -> None:
        self.info = DomainInfo(domain=3, tot_pages=RAM_FRAMES, max_pages=RAM_FRAMES, max_vcpu_id=1)
        self.info.flags = xenctrl.XEN_DOMINF_hvm_guest

    def capabilities(self):
        return "xen-3.0-aarch64 xen-3.0-armv7l "

    def domain_info(self, domid):
        return DomainInfo.from_buffer_copy(self.info)

    def maximum_gpfn(self, domid):
        return 0x2_0000_0000 // PAGE  # a frame in the second RAM bank region (8 GiB)

    def vcpu_context(self, domid, vcpu):
        return packed_context(0x3C5) + bytes(4096)

    def close(self):
        pass


class ArmStore:
    def domains(self):
        return [(0, "Domain-0"), (3, "arm-guest")]

    def read(self, path):
        return None


def test_native_memory_of_an_arm_guest():
    ram = random.Random(3).randbytes(RAM_FRAMES * PAGE)
    foreign = xenforeign.ForeignMemory(3, lib=ArmForeignLib(ram))
    mem = NativeMemory("arm-guest", ctrl=ArmCtrl(), foreign=foreign, store=ArmStore())
    try:
        assert (mem.arch, mem.kind, mem.vcpu_count()) == ("aarch64", "pvh", 2)
        # RAM from 1 GiB: a scan starts just above it, not at the highest mapped frame
        assert mem.ram_top == xenctrl_arm.GUEST_RAM0_BASE + (RAM_FRAMES * PAGE + (64 << 20))
        assert mem.read_physical(xenctrl_arm.GUEST_RAM0_BASE + 5, 11) == ram[5:16]
        assert not mem.page_readable(xenctrl_arm.GUEST_RAM0_BASE - PAGE)
        regs = mem.vcpu_registers(1)
        assert regs["pc64"] == 0xFFFF_8000_0812_3456 and regs["ttbr1"] == 0x2_4123_0000
    finally:
        mem.close()
