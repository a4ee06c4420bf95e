"""vCPU register decoders with realistic values from Linux guests, and hostile input.

x86-64 values are those of a Debian 6.1 kernel in long mode (as Xen's hvm_hw_cpu or
QEMU's `info registers` shows them); arm64 ones are those a 6.1 kernel at EL1 sets up
(48-bit VA, 4 KiB pages: arch/arm64/mm/proc.S __cpu_setup).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from xenvmi import render
from xenvmi.guest import regs_arm64, regs_x86
from xenvmi.guest.bits import named_bits
from xenvmi.guest.regs_arm64 import Arm64Regs, decode_arm64
from xenvmi.guest.regs_x86 import X86Regs, decode_x86

LINUX_X86 = {
    "rip": 0xFFFFFFFF81E00EF0,
    "rsp": 0xFFFFC90000013E38,
    "rflags": 0x246,
    "cr0": 0x80050033,
    "cr2": 0x7F3A1C000000,
    "cr3": 0x10A0E000,
    "cr4": 0x3506F0,
    "msr_efer": 0xD01,
    "cs_sel": 0x10,
    "cs_arbytes": 0xA9B,  # Xen attr of GDT 0x00af9b000000ffff (64-bit)
    "ss_sel": 0x18,
    "ss_arbytes": 0xC93,  # ... of 0x00cf93000000ffff
    "fs_base": 0x7F3A1C4A5740,
    "gs_base": 0xFFFF88803EC00000,
    "shadow_gs": 0,
    "sysenter_cs": 0x10,
    "sysenter_esp": 0xFFFFFE0000003000,
    "sysenter_eip": 0xFFFFFFFF81E01B30,
    "msr_star": 0x0023001000000000,  # __USER32_CS 0x23, __KERNEL_CS 0x10
    "msr_lstar": 0xFFFFFFFF81E00080,
    "msr_cstar": 0xFFFFFFFF81E01C70,
    "msr_syscall_mask": 0x257FD5,  # arch/x86/kernel/cpu/common.c syscall_init
}


def test_named_bits_helper():
    table = {0: "a", 1: "b", 3: "d"}
    assert named_bits(0b1011, table) == ["a", "b", "d"]
    assert named_bits(0b11011, table, unknown=True) == ["a", "b", "d", "bit4"]
    assert named_bits(0b111, table, ignore=0b10) == ["a"]
    assert named_bits(None, table) == [] and named_bits(0, table) == []
    assert regs_arm64.named_bits is regs_x86.named_bits  # one helper, both decoders


def test_linux_x86_kernel_in_long_mode():
    r = decode_x86(LINUX_X86)
    assert r.cr0_flags == ("PE", "MP", "ET", "NE", "WP", "AM", "PG")
    assert r.cr4_flags == (
        "PSE",
        "PAE",
        "MCE",
        "PGE",
        "OSFXSR",
        "OSXMMEXCPT",
        "FSGSBASE",
        "OSXSAVE",
        "SMEP",
        "SMAP",
    )
    assert r.efer_flags == ("SCE", "LME", "LMA", "NXE")
    assert r.rflags_flags == ("PF", "ZF", "IF") and r.iopl == 0
    assert (r.paging_mode, r.cpu_mode, r.cpl, r.cpl_source) == ("4-level", "64-bit", 0, "ss.dpl")
    assert (r.page_table_base, r.pcid) == (0x10A0E000, None)
    assert (r.syscall_cs, r.syscall_ss) == (0x10, 0x18)
    assert (r.sysret_cs32, r.sysret_cs64, r.sysret_ss) == (0x23, 0x33, 0x2B)
    assert r.syscall_eip32 == 0
    assert (r.lstar, r.cstar) == (0xFFFFFFFF81E00080, 0xFFFFFFFF81E01C70)
    assert set(r.syscall_mask_flags) == {
        "CF",
        "PF",
        "AF",
        "ZF",
        "SF",
        "TF",
        "IF",
        "DF",
        "OF",
        "NT",
        "RF",
        "AC",
        "ID",
    }
    assert (r.gs_base, r.kernel_gs_base, r.fs_base) == (0xFFFF88803EC00000, 0, 0x7F3A1C4A5740)
    assert (r.rip, r.rsp, r.cr2, r.sysenter_eip) == (
        LINUX_X86["rip"],
        LINUX_X86["rsp"],
        LINUX_X86["cr2"],
        LINUX_X86["sysenter_eip"],
    )


@pytest.mark.parametrize(
    "changes,mode,base,pcid",
    [
        ({"cr4": 0x3506F0 | 1 << 17, "cr3": 0x10A0E005}, "4-level", 0x10A0E000, 5),
        ({"cr4": 0x3506F0 | 1 << 12}, "5-level", 0x10A0E000, None),
        ({"msr_efer": 0x800, "cr3": 0x1234567F}, "PAE", 0x12345660, None),
        ({"cr4": 0x10, "msr_efer": 0, "cr3": 0x1234567F}, "32-bit", 0x12345000, None),
        ({"cr0": 0x60000010}, "none", 0x10A0E000, None),
        ({"msr_efer": None}, None, 0x10A0E000, None),
    ],
)
def test_paging_modes_and_cr3(changes, mode, base, pcid):
    r = decode_x86({**LINUX_X86, **changes})
    assert (r.paging_mode, r.page_table_base, r.pcid) == (mode, base, pcid)


def test_cpl_and_cpu_mode_sources():
    user = decode_x86(
        {**LINUX_X86, "cs_sel": 0x33, "cs_arbytes": 0xAFB, "ss_sel": 0x2B, "ss_arbytes": 0xCF3}
    )
    assert (user.cpl, user.cpu_mode) == (3, "64-bit")
    compat = decode_x86({**LINUX_X86, "cs_sel": 0x23, "cs_arbytes": 0xCFB})
    assert compat.cpu_mode == "compat"
    by_rpl = decode_x86({"cr0": 0x80050033, "cs_sel": 0xE033})  # PV kernels run in ring 3
    assert (by_rpl.cpl, by_rpl.cpl_source, by_rpl.cpu_mode) == (3, "cs.rpl", "protected")
    real = decode_x86({"cr0": 0x60000010, "cs_sel": 0xF000, "rflags": 2})
    assert (real.cpl, real.cpl_source, real.cpu_mode, real.paging_mode) == (
        0,
        "real-mode",
        "real",
        "none",
    )
    v86 = decode_x86({"cr0": 0x80000011, "rflags": 0x20202, "cr4": 0, "msr_efer": 0})
    assert (v86.cpl, v86.cpu_mode, v86.rflags_flags) == (3, "v8086", ("IF", "VM"))
    assert decode_x86({**LINUX_X86, "rflags": 0x23246}).cpu_mode == "64-bit"  # VM ignored
    assert decode_x86({**LINUX_X86, "rflags": 0x3246}).iopl == 3


def test_missing_registers_give_none():
    r = decode_x86({})
    for f in dataclasses.fields(X86Regs):
        value = getattr(r, f.name)
        assert value is None or value == (), f.name


@pytest.mark.parametrize(
    "regs",
    [
        None,
        42,
        "rip",
        [("rip", 1)],
        {"rip": "zzz", "cr0": object(), "cr4": -1, "msr_efer": True, None: 5, 3: 4},
        {"rip": 1 << 70 | 5, "rsp": -8, "cr0": 1.5},
    ],
)
def test_hostile_input_never_raises(regs):
    r = decode_x86(regs)
    assert isinstance(r, X86Regs)
    for f in dataclasses.fields(X86Regs):
        value = getattr(r, f.name)
        assert value is None or isinstance(value, (str, tuple)) or 0 <= value < 1 << 64


def test_values_masked_and_names_case_insensitive():
    r = decode_x86(
        {"RIP": 1 << 70 | 5, "RSP": -8, "CR4": -1, "MSR_EFER": "0xd01", "Cr0": "0x80050033"}
    )
    assert (r.rip, r.rsp) == (5, (1 << 64) - 8)
    assert "bit63" in r.cr4_flags and "LA57" in r.cr4_flags
    assert r.efer_flags == ("SCE", "LME", "LMA", "NXE") and r.paging_mode == "5-level"
    assert decode_x86({"efer": 0xD01, "kernel_gs_base": 7}).kernel_gs_base == 7


def test_x86_json_shape():
    data = json.loads(render.dumps(decode_x86(LINUX_X86)))
    assert data["cr0_flags"][-1] == "PG" and data["paging_mode"] == "4-level"
    assert set(data) == {f.name for f in dataclasses.fields(X86Regs)}


# -- arm64 --------------------------------------------------------------------------------

LINUX_ARM64 = {
    "pc64": 0xFFFF800008F20C1C,
    "cpsr": 0x600003C5,  # Xen vcpu_guest_core_regs names
    "sp_el0": 0xFFFF000002A8C000,
    "sp_el1": 0xFFFF80000A003E80,
    "sctlr": 0x30D0199D,
    "ttbcr": 0x000000B5B5503510,
    "ttbr0": 0x0000000042001001,
    "ttbr1": 0x0005000041AD0000,
    "vbar_el1": 0xFFFF800008010800,
    "esr_el1": 0x96000045,
    "far_el1": 0x10,
}


def test_linux_arm64_kernel_at_el1():
    r = decode_arm64(LINUX_ARM64)
    assert (r.execution_state, r.el, r.mode, r.sp_select) == ("aarch64", 1, "EL1h", "SP_ELx")
    assert r.sp == LINUX_ARM64["sp_el1"] and r.pc == LINUX_ARM64["pc64"]
    assert r.nzcv == ("Z", "C") and r.daif == ("D", "A", "I", "F")
    assert r.sctlr_flags == (
        "M",
        "C",
        "SA",
        "SA0",
        "ITD",
        "SED",
        "EOS",
        "I",
        "TSCXT",
        "EIS",
        "SPAN",
        "nTLSMD",
        "LSMAOE",
    )
    assert r.mmu_enabled is True and "WXN" not in r.sctlr_flags and "EE" not in r.sctlr_flags
    assert (r.t0sz, r.t1sz, r.va_bits_ttbr0, r.va_bits_ttbr1) == (16, 16, 48, 48)
    assert (r.granule_ttbr0, r.granule_ttbr1, r.ips, r.pa_bits) == (4096, 4096, 5, 48)
    assert r.tcr_flags == ("A1", "AS", "TBI0", "HA")
    assert (r.ttbr0_base, r.ttbr0_asid) == (0x42001000, 0)
    assert (r.ttbr1_base, r.ttbr1_asid, r.asid) == (0x41AD0000, 5, 5)  # TCR.A1: TTBR1's
    assert r.vbar == 0xFFFF800008010800
    assert (r.esr_ec, r.far_el1) == (0x25, 0x10)  # data abort from the current EL


def test_arm64_modes():
    user = decode_arm64({"pstate": 0x80000000, "sp_el0": 0xFFFFD1E2F3A0, "sp_el1": 1})
    assert (user.el, user.mode, user.sp, user.nzcv, user.daif) == (
        0,
        "EL0t",
        0xFFFFD1E2F3A0,
        ("N",),
        (),
    )
    el1t = decode_arm64({"pstate": 0x4, "sp_el0": 9, "sp_el1": 1})
    assert (el1t.mode, el1t.sp_select, el1t.sp) == ("EL1t", "SP_EL0", 9)
    a32 = decode_arm64({"cpsr": 0x1D3})  # Xen's PSR_GUEST32_INIT without Z
    assert (a32.execution_state, a32.mode, a32.el, a32.daif, a32.sp) == (
        "aarch32",
        "svc",
        1,
        ("A", "I", "F"),
        None,
    )
    assert decode_arm64({"cpsr": 0x1F}).mode == "sys"
    assert decode_arm64({"pstate": 0x6}).mode == "illegal0x6"


def test_arm64_asid_width_and_52_bit_tables():
    regs = {"tcr_el1": 0x0000000000000000, "ttbr0_el1": 0x12AB_0000_4000_0000}
    assert decode_arm64(regs).asid == 0xAB  # TCR.AS = 0: 8-bit ASIDs from TTBR0
    wide = {"tcr_el1": 6 << 32 | 1 << 14, "ttbr0_el1": 0x0000_0000_4000_0000 | 0b1010 << 2}
    r = decode_arm64(wide)
    assert (r.pa_bits, r.granule_ttbr0) == (52, 65536)
    assert r.ttbr0_base == 0xA_0000_4000_0000


def test_arm64_missing_and_hostile():
    r = decode_arm64({})
    for f in dataclasses.fields(Arm64Regs):
        assert getattr(r, f.name) in (None, ()), f.name
    for regs in (
        None,
        7,
        {"tcr": -1, "ttbr0": -1, "cpsr": "junk", "sctlr": 2**80, "vbar": -1, "pc": 1.0},
    ):
        r = decode_arm64(regs)
        assert isinstance(r, Arm64Regs)
    r = decode_arm64({"tcr": -1, "vbar": -1})
    assert (r.t0sz, r.granule_ttbr0, r.granule_ttbr1, r.pa_bits) == (63, None, 65536, 56)
    assert r.vbar == (1 << 64) - 0x800
    json.loads(render.dumps(r))
