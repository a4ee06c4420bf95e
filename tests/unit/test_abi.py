"""Compare every static ABI table in xenvmi.abi with Xen's installed public headers.

The tables are hand-written data (a dom0 in the field may lack libxen-dev); these tests keep
them honest against Debian's libxen-dev (Xen 4.17) under /usr/include/xen, or the directory
named by $XENVMI_XEN_INCLUDE. Every comparison is both ways: nothing missing, nothing extra,
same values. A missing header is a failure, not a skip: CI installs libxen-dev.
"""

from __future__ import annotations

import errno as os_errno
import os
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from xenvmi.abi import domctl, hvm_op, hypercalls, memory_op, subops, sysctl
from xenvmi.abi import errno as xerrno

INCLUDE = Path(os.environ.get("XENVMI_XEN_INCLUDE", "/usr/include/xen"))


def header(rel: str) -> str:
    """Text of one header, or a clear failure saying how to get it."""
    path = INCLUDE / rel
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: install Xen 4.17's public headers "
            "('apt-get install libxen-dev' on Debian bookworm) or set "
            "XENVMI_XEN_INCLUDE to their directory",
            pytrace=False,
        )
    return path.read_text()


class Define(NamedTuple):
    name: str
    value: str
    conds: tuple[str, ...]  #: enclosing #if/#ifdef lines, innermost last
    commented: bool  #: inside a comment ("/* #define X 6 Removed */")


_DEFINE = re.compile(r"^#define\s+(\w+)\s+(\S+)")
_COMMENTED = re.compile(r"^\s*(?:/\*+|\*)\s*#define\s+(\w+)\s+([^\s*]+)")


def walk(text: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Yield each line with the preprocessor conditions around it."""
    stack: list[str] = []
    for line in text.splitlines():
        if line.startswith("#if"):
            stack.append(line.strip())
        elif line.startswith(("#else", "#elif")):
            stack[-1] = f"{stack[-1]} / {line.strip()}"
        elif line.startswith("#endif"):
            stack.pop()
        yield line, tuple(stack)


def defines(text: str, prefix: str) -> list[Define]:
    """Every real and commented-out ``#define <prefix>name value`` in ``text``."""
    out = []
    for line, conds in walk(text):
        for regex, commented in ((_DEFINE, False), (_COMMENTED, True)):
            m = regex.match(line)
            if m and m.group(1).startswith(prefix):
                out.append(Define(m.group(1)[len(prefix) :], m.group(2), conds, commented))
    return out


def numeric(defs: list[Define]) -> list[Define]:
    return [d for d in defs if re.fullmatch(r"\d+|0[xX][0-9a-fA-F]+", d.value)]


def as_dict(pairs) -> dict[str, int]:
    return {name: int(value, 0) for name, value in pairs}


def ops_dict(ops, *statuses: str) -> dict[str, int]:
    return {op.name: op.number for op in ops if op.status in statuses}


def block(text: str, start: str, end: str) -> str:
    """The text from the regex ``start`` to the next occurrence of ``end``."""
    m = re.search(start, text)
    assert m, f"no {start!r} in the header"
    return text[m.start() : text.index(end, m.end())]


def is_xen_only(conds: tuple[str, ...]) -> bool:
    return any(re.match(r"#ifdef\s+__XEN__\b", c) for c in conds)


# ---------------------------------------------------------------------------- errno


def header_errnos() -> list[tuple[str, int, bool]]:
    out = []
    for line, conds in walk(header("errno.h")):
        m = re.match(r"^XEN_ERRNO\((\w+),\s*(\d+)\)", line)
        if m:
            out.append((m.group(1), int(m.group(2)), is_xen_only(conds)))
    return out


def test_errno_table_matches_header_exactly():
    found = header_errnos()
    assert len(found) == 51, f"errno.h has {len(found)} XEN_ERRNO entries (4.17 has 51)"
    assert [(e.name, e.value, e.internal) for e in xerrno.ERRNOS] == found


def test_errno_internal_entries_are_eintr_and_erestart():
    internal = {name: value for name, value, xen_only in header_errnos() if xen_only}
    assert internal == {"EINTR": 4, "ERESTART": 85}
    assert {e.name: e.value for e in xerrno.ERRNOS if e.internal} == internal


def test_errno_aliases_are_the_header_aliases():
    text = header("errno.h")
    aliases = dict(re.findall(r"^XEN_ERRNO\((\w+),.*Aliases (\w+)", text, re.MULTILINE))
    assert aliases == {"EWOULDBLOCK": "EAGAIN", "EDEADLOCK": "EDEADLK"}
    assert {e.name: e.alias_of for e in xerrno.ERRNOS if e.alias_of} == aliases
    for alias, target in aliases.items():
        assert xerrno.BY_NAME[alias].value == xerrno.BY_NAME[target].value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="values are Linux's")
def test_errno_values_equal_linux():
    for e in xerrno.ERRNOS:
        assert getattr(os_errno, e.name) == e.value, e.name


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="messages are glibc's strerror")
def test_errno_messages_are_strerror_text():
    for e in xerrno.ERRNOS:
        assert os.strerror(e.value) == e.message, e.name


# ------------------------------------------------------------------------ hypercalls


def test_hypercall_numbers_match_xen_h_exactly():
    found = as_dict(
        (d.name, d.value)
        for d in numeric(defines(header("xen.h"), "__HYPERVISOR_"))
        if not d.commented
    )
    assert len(found) == 50, f"xen.h defines {len(found)} hypercall numbers (4.17 has 50)"
    assert {h.name: h.number for h in hypercalls.HYPERCALLS} == found


def test_hypercall_aliases_come_from_headers():
    text = header("xen.h") + header("arch-x86/xen-mca.h")
    pairs = dict(re.findall(r"^#define __HYPERVISOR_(\w+)\s+__HYPERVISOR_(\w+)", text, re.M))
    assert pairs["mca"] == "arch_0" == hypercalls.ALIASES["mca"]
    assert pairs["dom0_op"] == "platform_op" == hypercalls.ALIASES["dom0_op"]
    # paging_domctl_cont is Xen-internal (xen/arch/x86/include/asm/hypercall.h), not public.
    assert hypercalls.ALIASES["paging_domctl_cont"] == "arch_1"
    assert set(hypercalls.ALIASES) - set(pairs) == {"paging_domctl_cont"}


def test_hypercall_table_shape():
    for h in hypercalls.HYPERCALLS:
        for arch in hypercalls.ARCHES:
            assert h.availability(arch) in hypercalls.STATES, (h.name, arch)
        if hypercalls.OPTIONAL in (h.pv64, h.hvm64, h.arm):
            assert h.kconfig, f"{h.name}: optional needs the build option named"
    assert set(hypercalls.CALLING_CONVENTIONS) == set(hypercalls.ARCHES)


def test_x86_64_calling_convention_matches_header_comment():
    text = header("arch-x86/xen-x86_64.h")
    args = re.search(r"Input:\s*(.*?)\s*\(arguments 1-5\)", text).group(1)
    regs = tuple(r.strip().lstrip("%") for r in args.split(","))
    ret = re.search(r"Output:\s*%(\w+)", text).group(1)
    for arch in ("x86_64-pv", "x86_64-hvm"):
        cc = hypercalls.CALLING_CONVENTIONS[arch]
        assert cc.argument_registers == regs == ("rdi", "rsi", "rdx", "r10", "r8")
        assert cc.return_register == ret == "rax"
        assert cc.number_register == "rax"


def test_arm_calling_convention_matches_header():
    text = header("arch-arm.h")
    tag = re.search(r"#define XEN_HYPERCALL_TAG\s+(0[xX][0-9a-fA-F]+)", text).group(1)
    assert int(tag, 16) == 0xEA1
    assert "passed in r12 (arm) or x16 (arm64)" in text
    assert "The return value is in x0/r0" in text
    a64, a32 = hypercalls.CALLING_CONVENTIONS["arm64"], hypercalls.CALLING_CONVENTIONS["arm32"]
    assert a64.instruction == a32.instruction == f"hvc #{int(tag, 16):#X}".replace("0X", "0x")
    assert (a64.number_register, a64.return_register) == ("x16", "x0")
    assert (a32.number_register, a32.return_register) == ("r12", "r0")
    assert a64.argument_registers == tuple(f"x{i}" for i in range(5))
    assert a32.argument_registers == tuple(f"r{i}" for i in range(5))


# ------------------------------------------------------------------- domctl / sysctl


def cmd_defines(rel: str, struct: str, prefix: str) -> list[Define]:
    """The command numbers listed in ``struct <struct> { uint32_t cmd; ... }``."""
    text = block(
        header(rel), rf"struct {struct} \{{\s*uint32_t cmd;", "uint32_t interface_version;"
    )
    return numeric(defines(text, prefix))


@pytest.mark.parametrize(
    "mod, rel, struct, prefix, count",
    [
        (domctl, "domctl.h", "xen_domctl", "XEN_DOMCTL_", 74),
        (sysctl, "sysctl.h", "xen_sysctl", "XEN_SYSCTL_", 26),
    ],
)
def test_cmd_table_matches_header_exactly(mod, rel, struct, prefix, count):
    defs = cmd_defines(rel, struct, prefix)
    live = [d for d in defs if not d.commented]
    active = as_dict((d.name, d.value) for d in live if not is_xen_only(d.conds))
    internal = as_dict((d.name, d.value) for d in live if is_xen_only(d.conds))
    removed = as_dict((d.name, d.value) for d in defs if d.commented)
    assert len(active) == count, f"{rel}: {len(active)} {prefix}* commands (4.17 has {count})"
    assert ops_dict(mod.OPS, subops.ACTIVE) == active
    assert ops_dict(mod.OPS, subops.INTERNAL) == internal
    assert ops_dict(mod.OPS, subops.REMOVED) == removed
    assert len(mod.OPS) == len(defs)


@pytest.mark.parametrize(
    "mod, rel, name",
    [
        (domctl, "domctl.h", "XEN_DOMCTL_INTERFACE_VERSION"),
        (sysctl, "sysctl.h", "XEN_SYSCTL_INTERFACE_VERSION"),
    ],
)
def test_interface_version_matches_header(mod, rel, name):
    m = re.search(rf"^#define {name}\s+(0x[0-9a-fA-F]+)", header(rel), re.MULTILINE)
    assert m, f"{rel} has no {name}"
    assert int(m.group(1), 16) == mod.INTERFACE_VERSION == 0x15, "headers are not Xen 4.17's"
    assert mod.TABLE.interface_version == mod.INTERFACE_VERSION


def test_hypercall_reports_interface_versions():
    assert hypercalls.lookup("domctl").interface_version == domctl.INTERFACE_VERSION
    assert hypercalls.lookup("sysctl").interface_version == sysctl.INTERFACE_VERSION
    assert hypercalls.lookup("memory_op").interface_version is None


# ------------------------------------------------------------------ memory_op / hvm_op

NESTED_XENMEM = ("paging_op_", "access_op_", "sharing_op_", "resource_")


def test_memory_op_table_matches_header_exactly():
    defs = [
        d
        for d in numeric(defines(header("memory.h"), "XENMEM_"))
        if d.name[0].islower() and not d.name.startswith(NESTED_XENMEM)
    ]
    assert ops_dict(memory_op.OPS, subops.ACTIVE) == as_dict(
        (d.name, d.value) for d in defs if not d.commented
    )
    assert ops_dict(memory_op.OPS, subops.REMOVED) == as_dict(
        (d.name, d.value) for d in defs if d.commented
    )
    assert len(memory_op.OPS) == len(defs)


@pytest.mark.parametrize(
    "nested, ops",
    [
        ("paging_op_", memory_op.PAGING_OPS),
        ("access_op_", memory_op.ACCESS_OPS),
        ("sharing_op_", memory_op.SHARING_OPS),
    ],
)
def test_memory_op_nested_tables_match_header(nested, ops):
    defs = numeric(defines(header("memory.h"), "XENMEM_" + nested))
    assert ops_dict(ops, subops.ACTIVE) == as_dict(
        (d.name, d.value) for d in defs if not d.commented
    )
    assert ops_dict(ops, subops.REMOVED) == as_dict((d.name, d.value) for d in defs if d.commented)


def test_memory_op_alias_and_cmd_split():
    text = header("memory.h")
    alias = re.search(r"^#define XENMEM_(\w+)\s+XENMEM_(\w+)", text, re.MULTILINE)
    assert memory_op.TABLE.aliases == {alias.group(1): alias.group(2)}
    assert memory_op.lookup("XENMEM_add_to_physmap_range").number == 23
    assert memory_op.split_cmd(6 | (5 << 6)) == (6, 5)
    assert memory_op.name(6 | (5 << 6)) == "populate_physmap"


def test_hvm_op_table_matches_header_exactly():
    defs = [
        d
        for d in numeric(defines(header("hvm/hvm_op.h"), "HVMOP_"))
        if d.name[0].islower() and not d.name.startswith("altp2m_")
    ]
    assert {op.name: op.number for op in hvm_op.OPS} == as_dict((d.name, d.value) for d in defs)
    legacy = {
        d.name
        for d in defs
        if any("__XEN_INTERFACE_VERSION__ <" in c or "__XEN_TOOLS__" in c for c in d.conds)
    }
    assert {op.name for op in hvm_op.OPS if op.status == subops.LEGACY} == legacy


def test_hvm_op_altp2m_matches_header():
    text = header("hvm/hvm_op.h")
    defs = numeric(defines(text, "HVMOP_altp2m_"))
    assert ops_dict(hvm_op.ALTP2M_OPS, subops.ACTIVE) == as_dict((d.name, d.value) for d in defs)
    version = re.search(r"#define HVMOP_ALTP2M_INTERFACE_VERSION\s+(0x[0-9a-fA-F]+)", text)
    assert int(version.group(1), 16) == hvm_op.ALTP2M_INTERFACE_VERSION


def test_subop_tables_have_unique_current_numbers():
    tables = [
        domctl.TABLE,
        sysctl.TABLE,
        memory_op.TABLE,
        memory_op.PAGING_TABLE,
        memory_op.ACCESS_TABLE,
        memory_op.SHARING_TABLE,
        hvm_op.TABLE,
        hvm_op.ALTP2M_TABLE,
    ]
    for table in tables:
        numbers = [op.number for op in table.current()]
        assert len(numbers) == len(set(numbers)), table
        names = [op.name for op in table.ops]
        assert len(names) == len(set(names)), table


def test_memory_op_tools_only_notes_follow_header_guard():
    defs = [
        d
        for d in numeric(defines(header("memory.h"), "XENMEM_"))
        if d.name[0].islower() and not d.name.startswith(NESTED_XENMEM) and not d.commented
    ]
    tools = {d.name for d in defs if any("__XEN_TOOLS__" in c for c in d.conds)}
    assert {op.name for op in memory_op.OPS if "tools only" in op.note} == tools
