"""Compare every static ABI table in xenvmi.abi with each Xen release's public headers.

The tables are hand-written data (a dom0 in the field may lack libxen-dev); these tests keep
them honest against the headers of every release in xenvmi.abi.releases.KNOWN, kept as
fixtures in tests/unit/data/xen-headers/<release>/ (copied from Debian's libxen-dev). Every
comparison is both ways: nothing missing, nothing extra, same values. The installed
/usr/include/xen, where there is one, must equal the fixture of its release.
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

from xenvmi.abi import domctl, hvm_op, hypercalls, memory_op, releases, subops, sysctl
from xenvmi.abi import errno as xerrno

FIXTURES = Path(__file__).parent / "data" / "xen-headers"
INSTALLED = Path(os.environ.get("XENVMI_XEN_INCLUDE", "/usr/include/xen"))
#: What each release's headers hold (counted in them; the tables must agree).
COUNTS = {
    "4.17": {"errno": 51, "hypercalls": 50, "domctl": 74, "sysctl": 26, "version": 0x15},
    "4.18": {"errno": 51, "hypercalls": 50, "domctl": 74, "sysctl": 27, "version": 0x16},
    "4.19": {"errno": 51, "hypercalls": 50, "domctl": 75, "sysctl": 27, "version": 0x17},
    "4.20": {"errno": 51, "hypercalls": 50, "domctl": 77, "sysctl": 27, "version": 0x17},
}


def header(rel: str, release: str = "4.17") -> str:
    """Text of one header of ``release``'s fixture."""
    path = FIXTURES / release / rel
    assert path.is_file(), f"{path} is missing from the fixtures"
    return path.read_text()


@pytest.fixture(params=releases.KNOWN)
def release(request) -> str:
    return request.param


def test_every_known_release_has_fixture_headers_and_counts():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == list(releases.KNOWN)
    assert set(COUNTS) == set(releases.KNOWN)
    for r in releases.KNOWN:
        assert "SPDX-License-Identifier: MIT" in header("domctl.h", r)


def test_installed_headers_equal_the_fixture_of_their_release():
    if not (INSTALLED / "domctl.h").is_file():
        pytest.skip(f"no Xen headers installed at {INSTALLED} (the fixtures are the reference)")
    text = (INSTALLED / "domctl.h").read_text()
    version = int(re.search(r"XEN_DOMCTL_INTERFACE_VERSION\s+(0x\w+)", text).group(1), 16)
    matching = [r for r in releases.KNOWN if COUNTS[r]["version"] == version]
    assert matching, f"installed headers have domctl interface {version:#x}, no fixture does"
    fixture = FIXTURES / matching[-1]
    for path in sorted(fixture.rglob("*.h")):
        rel = path.relative_to(fixture)
        assert (INSTALLED / rel).read_text() == path.read_text(), f"{rel} differs"


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


def header_errnos(release: str = "4.17") -> list[tuple[str, int, bool]]:
    out = []
    for line, conds in walk(header("errno.h", release)):
        m = re.match(r"^XEN_ERRNO\((\w+),\s*(\d+)\)", line)
        if m:
            out.append((m.group(1), int(m.group(2)), is_xen_only(conds)))
    return out


def test_errno_table_matches_header_exactly(release):
    found = header_errnos(release)
    count = COUNTS[release]["errno"]
    assert len(found) == count, f"errno.h has {len(found)} XEN_ERRNO entries ({release}: {count})"
    assert [(e.name, e.value, e.internal) for e in xerrno.ERRNOS] == found


def test_errno_internal_entries_are_eintr_and_erestart(release):
    internal = {name: value for name, value, xen_only in header_errnos(release) if xen_only}
    assert internal == {"EINTR": 4, "ERESTART": 85}
    assert {e.name: e.value for e in xerrno.ERRNOS if e.internal} == internal


def test_errno_aliases_are_the_header_aliases(release):
    text = header("errno.h", release)
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


def test_hypercall_numbers_match_xen_h_exactly(release):
    found = as_dict(
        (d.name, d.value)
        for d in numeric(defines(header("xen.h", release), "__HYPERVISOR_"))
        if not d.commented
    )
    count = COUNTS[release]["hypercalls"]
    assert len(found) == count, f"xen.h defines {len(found)} hypercalls ({release}: {count})"
    assert {h.name: h.number for h in releases.get(release).hypercalls} == found


def test_hypercall_aliases_come_from_headers(release):
    text = header("xen.h", release) + header("arch-x86/xen-mca.h", release)
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


def test_x86_64_calling_convention_matches_header_comment(release):
    text = header("arch-x86/xen-x86_64.h", release)
    args = re.search(r"Input:\s*(.*?)\s*\(arguments 1-5\)", text).group(1)
    regs = tuple(r.strip().lstrip("%") for r in args.split(","))
    ret = re.search(r"Output:\s*%(\w+)", text).group(1)
    for arch in ("x86_64-pv", "x86_64-hvm"):
        cc = hypercalls.CALLING_CONVENTIONS[arch]
        assert cc.argument_registers == regs == ("rdi", "rsi", "rdx", "r10", "r8")
        assert cc.return_register == ret == "rax"
        assert cc.number_register == "rax"


def test_arm_calling_convention_matches_header(release):
    text = header("arch-arm.h", release)
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


def cmd_defines(rel: str, struct: str, prefix: str, release: str = "4.17") -> list[Define]:
    """The command numbers listed in ``struct <struct> { uint32_t cmd; ... }``."""
    text = block(
        header(rel, release),
        rf"struct {struct} \{{\s*uint32_t cmd;",
        "uint32_t interface_version;",
    )
    return numeric(defines(text, prefix))


@pytest.mark.parametrize(
    "mod, rel, struct, prefix",
    [
        (domctl, "domctl.h", "xen_domctl", "XEN_DOMCTL_"),
        (sysctl, "sysctl.h", "xen_sysctl", "XEN_SYSCTL_"),
    ],
)
def test_cmd_table_matches_header_exactly(mod, rel, struct, prefix, release):
    count = COUNTS[release][mod.TABLE.title]
    ops = mod.TABLES[release].ops
    defs = cmd_defines(rel, struct, prefix, release)
    live = [d for d in defs if not d.commented]
    active = as_dict((d.name, d.value) for d in live if not is_xen_only(d.conds))
    internal = as_dict((d.name, d.value) for d in live if is_xen_only(d.conds))
    removed = as_dict((d.name, d.value) for d in defs if d.commented)
    assert len(active) == count, f"{rel}: {len(active)} {prefix}* commands ({release}: {count})"
    assert ops_dict(ops, subops.ACTIVE) == active
    assert ops_dict(ops, subops.INTERNAL) == internal
    assert ops_dict(ops, subops.REMOVED) == removed
    assert len(ops) == len(defs)
    assert [op.number for op in ops] == sorted(op.number for op in ops)
    assert mod.TABLES[release].release == release


@pytest.mark.parametrize(
    "mod, rel, name",
    [
        (domctl, "domctl.h", "XEN_DOMCTL_INTERFACE_VERSION"),
        (sysctl, "sysctl.h", "XEN_SYSCTL_INTERFACE_VERSION"),
    ],
)
def test_interface_version_matches_header(mod, rel, name, release):
    m = re.search(rf"^#define {name}\s+(0x[0-9a-fA-F]+)", header(rel, release), re.MULTILINE)
    assert m, f"{rel} has no {name}"
    assert int(m.group(1), 16) == mod.INTERFACE_VERSIONS[release]
    assert mod.TABLES[release].interface_version == mod.INTERFACE_VERSIONS[release]
    assert releases.get(release).interface_versions[mod.TABLE.title] == int(m.group(1), 16)
    if mod is domctl:
        assert int(m.group(1), 16) == COUNTS[release]["version"]


def test_hypercall_reports_interface_versions():
    assert hypercalls.lookup("domctl").interface_version == domctl.INTERFACE_VERSION
    assert hypercalls.lookup("sysctl").interface_version == sysctl.INTERFACE_VERSION
    assert hypercalls.lookup("memory_op").interface_version is None


# ------------------------------------------------------------------ memory_op / hvm_op

NESTED_XENMEM = ("paging_op_", "access_op_", "sharing_op_", "resource_")


def test_memory_op_table_matches_header_exactly(release):
    defs = [
        d
        for d in numeric(defines(header("memory.h", release), "XENMEM_"))
        if d.name[0].islower() and not d.name.startswith(NESTED_XENMEM)
    ]
    ops = memory_op.TABLES[release].ops
    assert ops_dict(ops, subops.ACTIVE) == as_dict(
        (d.name, d.value) for d in defs if not d.commented
    )
    assert ops_dict(ops, subops.REMOVED) == as_dict((d.name, d.value) for d in defs if d.commented)
    assert len(ops) == len(defs)


@pytest.mark.parametrize(
    "nested, ops",
    [
        ("paging_op_", memory_op.PAGING_OPS),
        ("access_op_", memory_op.ACCESS_OPS),
        ("sharing_op_", memory_op.SHARING_OPS),
    ],
)
def test_memory_op_nested_tables_match_header(nested, ops, release):
    defs = numeric(defines(header("memory.h", release), "XENMEM_" + nested))
    assert ops_dict(ops, subops.ACTIVE) == as_dict(
        (d.name, d.value) for d in defs if not d.commented
    )
    assert ops_dict(ops, subops.REMOVED) == as_dict((d.name, d.value) for d in defs if d.commented)


def test_memory_op_alias_and_cmd_split(release):
    text = header("memory.h", release)
    alias = re.search(r"^#define XENMEM_(\w+)\s+XENMEM_(\w+)", text, re.MULTILINE)
    assert memory_op.TABLES[release].aliases == {alias.group(1): alias.group(2)}
    assert memory_op.lookup("XENMEM_add_to_physmap_range").number == 23
    assert memory_op.split_cmd(6 | (5 << 6)) == (6, 5)
    assert memory_op.name(6 | (5 << 6)) == "populate_physmap"


def test_hvm_op_table_matches_header_exactly(release):
    defs = [
        d
        for d in numeric(defines(header("hvm/hvm_op.h", release), "HVMOP_"))
        if d.name[0].islower() and not d.name.startswith("altp2m_")
    ]
    ops = hvm_op.TABLES[release].ops
    assert {op.name: op.number for op in ops} == as_dict((d.name, d.value) for d in defs)
    legacy = {
        d.name
        for d in defs
        if any("__XEN_INTERFACE_VERSION__ <" in c or "__XEN_TOOLS__" in c for c in d.conds)
    }
    assert {op.name for op in ops if op.status == subops.LEGACY} == legacy


def test_hvm_op_altp2m_matches_header(release):
    text = header("hvm/hvm_op.h", release)
    defs = numeric(defines(text, "HVMOP_altp2m_"))
    assert ops_dict(hvm_op.ALTP2M_OPS, subops.ACTIVE) == as_dict((d.name, d.value) for d in defs)
    version = re.search(r"#define HVMOP_ALTP2M_INTERFACE_VERSION\s+(0x[0-9a-fA-F]+)", text)
    assert int(version.group(1), 16) == hvm_op.ALTP2M_INTERFACE_VERSION


def test_subop_tables_have_unique_current_numbers():
    tables = [
        *(t for r in releases.KNOWN for t in releases.get(r).subop_tables.values()),
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


def test_memory_op_tools_only_notes_follow_header_guard(release):
    defs = [
        d
        for d in numeric(defines(header("memory.h", release), "XENMEM_"))
        if d.name[0].islower() and not d.name.startswith(NESTED_XENMEM) and not d.commented
    ]
    tools = {d.name for d in defs if any("__XEN_TOOLS__" in c for c in d.conds)}
    ops = memory_op.TABLES[release].ops
    assert {op.name for op in ops if "tools only" in op.note} == tools
