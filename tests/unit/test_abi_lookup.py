"""Lookups in xenvmi.abi: every spelling a user or a trace may hand us, and the errors.

Unknown but well-formed values are NotFoundError (exit 3); malformed input is UsageError
(exit 2); both carry a one-line message.
"""

from __future__ import annotations

import pytest

from xenvmi.abi import domctl, hvm_op, hypercalls, memory_op, sysctl
from xenvmi.abi import errno as xerrno
from xenvmi.errors import NotFoundError, UsageError


@pytest.mark.parametrize(
    "spelling",
    [
        13,
        -13,
        "13",
        "-13",
        " 13 ",
        "0xd",
        "-0xD",
        "0xfffffff3",
        "0xfffffffffffffff3",
        0xFFFFFFF3,
        "EACCES",
        "eacces",
        "XEN_EACCES",
        "xen_eacces",
        "-EACCES",
    ],
)
def test_errno_lookup_spellings(spelling):
    assert xerrno.lookup(spelling).name == "EACCES"


def test_errno_aliases_and_internal():
    assert xerrno.lookup(11).name == "EAGAIN"
    assert xerrno.lookup(35).name == "EDEADLK"
    ewb = xerrno.lookup("EWOULDBLOCK")
    assert (ewb.value, ewb.alias_of) == (11, "EAGAIN")
    assert xerrno.lookup(4).internal and xerrno.lookup("ERESTART").internal
    assert not xerrno.lookup("ENOSYS").internal
    assert len(xerrno.all_errnos()) == 51
    assert len(xerrno.all_errnos(include_internal=False)) == 49


@pytest.mark.parametrize("value", [0, "0", 27, -27, "EFBIG", "ENOTANERRNO", 4096, "-5000"])
def test_errno_unknown_is_not_found(value):
    with pytest.raises(NotFoundError) as exc:
        xerrno.lookup(value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "1.5",
        "-",
        "E ACCES",
        "13abc",
        "0x",
        "ä",
        None,
        1.0,
        True,
        b"13",
        1 << 70,
        "-" + "9" * 30,
    ],
)
def test_errno_garbage_is_usage_error(value):
    with pytest.raises(UsageError) as exc:
        xerrno.lookup(value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "ret, text",
    [
        (-13, "-EACCES (Permission denied)"),
        (-38, "-ENOSYS (Function not implemented)"),
        (-85, "-ERESTART (Interrupted system call should be restarted)"),
        (-11, "-EAGAIN (Resource temporarily unavailable)"),
        (0, "0"),
        (5, "5"),
        (-27, "-27 (unknown Xen errno)"),
        ((1 << 64) - 13, "-EACCES (Permission denied)"),
        (-100000, "-100000"),
    ],
)
def test_describe(ret, text):
    assert xerrno.describe(ret) == text


@pytest.mark.parametrize(
    "spelling, number",
    [
        (36, 36),
        ("36", 36),
        ("0x24", 36),
        ("domctl", 36),
        ("DOMCTL", 36),
        ("__HYPERVISOR_domctl", 36),
        ("hypervisor_domctl", 36),
        ("mca", 48),
        ("arch_0", 48),
        ("paging_domctl_cont", 49),
        ("dom0_op", 7),
        (0, 0),
        (55, 55),
    ],
)
def test_hypercall_lookup_spellings(spelling, number):
    assert hypercalls.lookup(spelling).number == number


def test_hypercall_arch_names():
    h = hypercalls.lookup(48)
    assert h.display_name("x86_64") == "mca" and h.display_name("x86_64-pv") == "mca"
    assert h.display_name("arm64") == "arch_0"
    assert hypercalls.lookup("arch_0", arch="arm64").number == 48
    with pytest.raises(NotFoundError, match="x86 name"):
        hypercalls.lookup("mca", arch="arm32")
    assert hypercalls.lookup("mca", arch="x86_64").number == 48


def test_hypercall_availability_facts():
    by = hypercalls.lookup
    assert by("mmu_update").availability("x86_64-pv") == "yes"
    assert by("mmu_update").availability("x86_64-hvm") == "no"
    assert by("physdev_op").availability("arm64") == "enosys"
    assert by("dm_op").availability("arm64") == "optional"
    assert by("dm_op").availability("x86_64-hvm") == "yes"
    assert by("tmem_op").availability("x86_64-pv") == "no"
    assert by("xenoprof_op").availability("x86_64-pv") == "yes"
    assert by("hvm_op").availability("arm32") == "yes"
    with pytest.raises(UsageError):
        by("domctl").availability("riscv64")


@pytest.mark.parametrize("value", [11, 43, 47, 56, 63, 64, 1000, "tmem", "nosuchcall"])
def test_hypercall_unknown_is_not_found(value):
    with pytest.raises(NotFoundError):
        hypercalls.lookup(value)


@pytest.mark.parametrize("value", [-1, "-36", "", "dom ctl", "3.6", None, True])
def test_hypercall_garbage_is_usage_error(value):
    with pytest.raises(UsageError):
        hypercalls.lookup(value)


def test_hypercall_bad_arch_is_usage_error():
    with pytest.raises(UsageError):
        hypercalls.lookup(36, arch="sparc")


def test_subop_lookups():
    assert domctl.lookup(5).name == "getdomaininfo"
    assert domctl.lookup("XEN_DOMCTL_getdomaininfo").number == 5
    assert domctl.lookup(23).name == "soft_reset_cont"  # defined beats removed
    assert domctl.lookup("arch_setup").status == "removed"
    assert domctl.name(76) == "unknown_76"
    assert sysctl.lookup("tbuf_op").number == 2
    assert hvm_op.ALTP2M_TABLE.lookup(16).name == "set_visibility"
    assert memory_op.ACCESS_TABLE.lookup("XENMEM_access_op_set_access_multi").number == 4
    with pytest.raises(NotFoundError):
        domctl.lookup(76)
    with pytest.raises(NotFoundError):
        sysctl.lookup("nosuchop")
    with pytest.raises(UsageError):
        domctl.lookup(-1)
    with pytest.raises(UsageError):
        domctl.lookup("get domain info")
