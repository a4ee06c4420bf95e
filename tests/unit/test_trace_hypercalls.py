"""Decoding and rendering of privcmd events (xenvmi.trace.hypercall_decode), without bcc.

Events are built as the dicts HypercallTracer makes of hypercalls.bpf.c's struct event_t;
the C text itself is cross-checked here (field names, ioctl numbers, hypercall numbers), and
the sub-op tables the tracer adds are compared with Xen's headers like xenvmi.abi's are.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xenvmi import render
from xenvmi.abi import domctl, hvm_op, hypercalls, memory_op, releases, sysctl
from xenvmi.backends import privcmd
from xenvmi.errors import NotFoundError, UsageError
from xenvmi.trace import hypercall_decode as D
from xenvmi.trace import hypercall_subops as S
from xenvmi.trace.hypercalls import bpf_source

HEADERS = Path(__file__).parent / "data" / "xen-headers"
BUF = 0x7F0000001000


def raw(**kw):
    """struct event_t as a dict: an xl domctl getdomaininfo(7) failing with -ESRCH in 12us."""
    base = dict(
        ts_ns=1,
        latency_ns=12_345,
        ret=-3,
        op=36,
        args=[BUF, 0, 0, 0, 0],
        pid=812,
        tid=812,
        cmd=D.IOCTL_PRIVCMD_HYPERCALL,
        kind=0,
        subop=5,
        version=domctl.INTERFACE_VERSION,
        domid=7,
        flags=D.F_SUBOP | D.F_DOMID | D.F_VERSION,
        comm=b"xl\0\0garbage",
    )
    base.update(kw)
    return base


def line(**kw) -> str:
    return D.format_event(D.decode_event(raw(**kw), arch="x86_64-pv"))


# ----------------------------------------------------------------------- one line each


def test_the_issue_example_line():
    assert line() == "xl[812] domctl getdomaininfo(domid=7) -> -ESRCH (No such process) 12us"


def test_return_value_as_unsigned_64_bit_is_folded_back():
    ev = D.decode_event(raw(ret=(1 << 64) - 3))
    assert ev.ret == -3 and ev.error == "ESRCH" and ev.failed


def test_xsm_op_has_no_table_so_arguments_show():
    text = line(op=27, args=[0, BUF, 0, 0, 0], ret=-38, flags=0, subop=D.NO_VALUE, latency_ns=800)
    assert text == f"xl[812] xsm_op(0x0, {BUF:#x}) -> -ENOSYS (Function not implemented) 800ns"


def test_wrong_interface_version_is_pointed_out():
    text = line(version=0x14, ret=-13)
    assert "domctl getdomaininfo(domid=7, version=0x14, want 0x15) -> -EACCES" in text


def test_sysctl_names_its_command_without_domid():
    text = line(
        op=35,
        subop=6,
        flags=D.F_SUBOP | D.F_VERSION,
        ret=0,
        version=sysctl.INTERFACE_VERSION,
        latency_ns=2_500_000,
    )
    assert text == "xl[812] sysctl getdomaininfolist() -> 0 2.5ms"


def test_memory_op_command_is_masked_of_its_continuation():
    ev = D.decode_event(
        raw(
            op=12,
            subop=6,
            args=[6 | (5 << 6), BUF, 0, 0, 0],
            ret=0,
            flags=D.F_SUBOP | D.F_DOMID,
            domid=0x7FF0,
        )
    )
    assert ev.subop_name == "populate_physmap"
    assert D.format_event(ev).startswith("xl[812] memory_op populate_physmap(domid=self)")


def test_sched_op_event_channel_op_hvm_op_names():
    assert D.decode_event(raw(op=29, subop=1, flags=D.F_SUBOP)).subop_name == "block"
    assert D.decode_event(raw(op=32, subop=4, flags=D.F_SUBOP)).subop_name == "send"
    ev = D.decode_event(raw(op=34, subop=1, flags=D.F_SUBOP | D.F_DOMID, domid=3, ret=0))
    assert D.format_event(ev).startswith("xl[812] hvm_op get_param(domid=3) -> 0")


def test_unknown_subop_is_named_by_number():
    assert D.decode_event(raw(subop=999)).subop_name == "unknown_999"


def test_dm_op_through_its_own_ioctl():
    text = line(
        kind=5,
        cmd=privcmd.IOCTL_PRIVCMD_DM_OP,
        op=41,
        subop=20,
        domid=0,
        flags=D.F_SUBOP | D.F_DOMID,
        ret=-1,
        comm=b"qemu-system-i38",
    )
    assert text.startswith(
        "qemu-system-i38[812] privcmd dm_op nr_vcpus(domid=0) -> -EPERM (Operation not permitted)"
    )


def test_mmapbatch_v2_and_mmap_resource_and_restrict():
    text = line(
        kind=4,
        cmd=0x00205004,
        op=D.NO_VALUE,
        args=[1, 3, 0x7F00DEAD000, 0, 0],
        flags=D.F_DOMID,
        domid=3,
        ret=0,
    )
    assert text == "xl[812] privcmd mmapbatch_v2(domid=3, num=1, addr=0x7f00dead000) -> 0 12us"
    text = line(
        kind=7, cmd=0x00205007, op=D.NO_VALUE, args=[2, 1, 0, 0, 1], flags=D.F_DOMID, domid=2, ret=0
    )
    assert "privcmd mmap_resource(domid=2, type=1, id=0, idx=0, num=1) -> 0" in text
    text = line(
        kind=6,
        cmd=privcmd.IOCTL_PRIVCMD_RESTRICT,
        op=D.NO_VALUE,
        args=[1, 0, 0, 0, 0],
        flags=D.F_DOMID,
        domid=1,
        ret=0,
    )
    assert "privcmd restrict(domid=1) -> 0" in text


def test_unknown_ioctl_gets_linux_error_name():
    text = line(kind=D.KIND_OTHER, cmd=0x1234, op=D.NO_VALUE, flags=0, ret=-25)
    assert text == "xl[812] privcmd ioctl_0x1234() -> -ENOTTY (Inappropriate ioctl for device) 12us"
    text = line(kind=D.KIND_OTHER, cmd=0x50FF, op=D.NO_VALUE, flags=0, ret=-25)
    assert text.startswith("xl[812] privcmd unimplemented() -> -ENOTTY")


def test_unreadable_arguments_are_flagged():
    text = line(op=D.NO_VALUE, flags=D.F_FAULT, ret=-14)
    assert text.endswith("[arguments unreadable]") and "-EFAULT" in text


def test_big_success_values_in_hex():
    assert line(op=17, flags=0, ret=0x40011, args=[0] * 5).startswith(
        "xl[812] xen_version() -> 0x40011"
    )


def test_arch_names_arch_slots():
    assert D.op_name(0, 48, arch="x86_64-pv") == "mca"
    assert D.op_name(0, 48, arch="arm64") == "arch_0"
    assert D.op_name(0, 60) == "hypercall_60"


@pytest.mark.parametrize(
    "ns,text",
    [(0, "0ns"), (999, "999ns"), (12_345, "12us"), (3_400_000, "3.4ms"), (1_200_000_000, "1.20s")],
)
def test_format_ns(ns, text):
    assert D.format_ns(ns) == text


def test_describe_ret():
    assert D.describe_ret(-1) == "-EPERM (Operation not permitted)"
    assert D.describe_ret(-4095).endswith("(unknown errno)")
    assert D.describe_ret(-5000) == "-5000" and D.describe_ret(7) == "7"


def test_json_object():
    obj = json.loads(render.json_line(D.event_json(D.decode_event(raw(), arch="x86_64-pv"))))
    assert obj["name"] == "domctl" and obj["subop_name"] == "getdomaininfo"
    assert obj["error"] == "ESRCH" and obj["ret"] == -3 and obj["failed"] is True
    assert obj["domid"] == 7 and obj["comm"] == "xl" and obj["latency_ns"] == 12_345
    assert obj["args"] == [BUF, 0, 0, 0, 0] and obj["kind"] == "hypercall"
    assert obj["text"].startswith("xl[812] domctl getdomaininfo")


# ------------------------------------------------------- the C program agrees with Python


def c_struct(name: str) -> list[str]:
    body = re.search(rf"struct {name} \{{(.*?)\}};", bpf_source(), re.S).group(1)
    return re.findall(r"(\w+)(?:\[[^\]]*\])?;", re.sub(r"/\*.*?\*/", "", body))


def test_event_struct_fields_are_what_the_decoder_reads():
    assert set(c_struct("event_t")) == set(raw())


def test_ioctl_numbers_in_c_match_the_kernel_header_values():
    src = bpf_source()
    found = {
        int(nr): int(size)
        for nr, size in re.findall(r"#define IOCTL_PRIVCMD_\w+\s+PRIVCMD_IOC\((\d+), (\d+)\)", src)
    }
    assert found == {0: 48, 2: 16, 3: 24, 4: 32, 5: 16, 6: 2, 7: 32}
    ioc = {nr: (size << 16) | (ord("P") << 8) | nr for nr, size in found.items()}
    assert ioc[0] == D.IOCTL_PRIVCMD_HYPERCALL == privcmd.IOCTL_PRIVCMD_HYPERCALL == 0x305000
    assert ioc[5] == privcmd.IOCTL_PRIVCMD_DM_OP and ioc[6] == privcmd.IOCTL_PRIVCMD_RESTRICT
    assert set(found) | {8, 9} == set(D.KIND_NAMES)


def test_ioctl_numbers_match_the_installed_privcmd_header(tmp_path):
    """Compile a probe against Xen's <xen/sys/privcmd.h>: the real request numbers."""
    header = Path("/usr/include/xen/sys/privcmd.h")
    if not header.exists():
        pytest.fail(f"{header} missing: apt install libxen-dev", pytrace=False)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to evaluate the header's _IOC macros")
    names = re.findall(r"#define IOCTL_PRIVCMD_(\w+)\s", header.read_text())
    src = tmp_path / "p.c"
    src.write_text(
        "#include <stdio.h>\n#include <stdint.h>\n#include <sys/ioctl.h>\n"
        "#include <xen/xen.h>\n#include <xen/sys/privcmd.h>\nint main(void){\n"
        + "".join(f'printf("{n} %lu\\n", (unsigned long)IOCTL_PRIVCMD_{n});\n' for n in names)
        + "return 0;}\n"
    )
    subprocess.run([cc, "-o", str(tmp_path / "p"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "p")], capture_output=True, text=True, check=True)
    values = {n.lower(): int(v) for n, v in (line.split() for line in out.stdout.splitlines())}
    # Xen's copy adds UNIMPLEMENTED ('P', 0xFF): libxen* issue it to probe the driver.
    assert values.pop("unimplemented") == D.IOCTL_PRIVCMD_UNIMPLEMENTED
    c_src = bpf_source()
    for name, value in values.items():
        m = re.search(rf"#define IOCTL_PRIVCMD_{name.upper()}\s+PRIVCMD_IOC\((\d+), (\d+)\)", c_src)
        assert m, f"hypercalls.bpf.c lacks IOCTL_PRIVCMD_{name.upper()}"
        nr, size = int(m.group(1)), int(m.group(2))
        assert (size << 16) | (ord("P") << 8) | nr == value, name
        assert D.KIND_NAMES[nr] == name
    assert values["hypercall"] == D.IOCTL_PRIVCMD_HYPERCALL
    assert values["dm_op"] == privcmd.IOCTL_PRIVCMD_DM_OP
    assert values["restrict"] == privcmd.IOCTL_PRIVCMD_RESTRICT


def test_hypercall_numbers_in_c_are_abi_numbers():
    src = bpf_source()
    found = dict(re.findall(r"#define HC_(\w+)\s+(\d+)", src))
    names = {
        "MEMORY_OP": "memory_op",
        "SCHED_OP": "sched_op",
        "EVTCHN_OP": "event_channel_op",
        "HVM_OP": "hvm_op",
        "SYSCTL": "sysctl",
        "DOMCTL": "domctl",
        "DM_OP": "dm_op",
    }
    assert {names[k]: int(v) for k, v in found.items()} == {
        n: hypercalls.BY_NAME[n].number for n in names.values()
    }
    assert set(S.TABLES) == {int(v) for v in found.values()}
    assert f"MEMOP_CMD_MASK {memory_op.MEMOP_CMD_MASK:#x}" in src


# ----------------------------------------------------------------- tables vs headers


def header_ops(rel: str, prefix: str, release: str = "4.17") -> dict[str, int]:
    path = HEADERS / release / rel
    assert path.is_file(), f"{path} is missing from the fixtures"
    return {
        n: int(v)
        for n, v in re.findall(
            rf"^#define {prefix}([a-z]\w*)\s+(\d+)\b", path.read_text(), re.MULTILINE
        )
    }


@pytest.mark.parametrize("release", releases.KNOWN)
@pytest.mark.parametrize(
    "op,rel,prefix",
    [
        (29, "sched.h", "SCHEDOP_"),
        (32, "event_channel.h", "EVTCHNOP_"),
        (41, "hvm/dm_op.h", "XEN_DMOP_"),
    ],
)
def test_tracer_subop_tables_match_headers(op, rel, prefix, release):
    table = S.tables(release)[op]
    assert {o.name: o.number for o in table.ops} == header_ops(rel, prefix, release)
    assert table.release == release


def test_tracer_names_commands_with_the_release_asked_for():
    ev = D.decode_event(raw(subop=88), release="4.20")
    assert (ev.subop_name, ev.expected_version) == ("gsi_permission", 0x17)
    ev = D.decode_event(raw(subop=88))
    assert (ev.subop_name, ev.expected_version) == ("unknown_88", 0x15)
    ev = D.decode_event(raw(version=0x15, ret=-13), release="4.20")
    assert "version=0x15, want 0x17" in D.format_event(ev)
    assert D.decode_event(raw(op=27, flags=0), release="4.20").expected_version is None
    assert S.subop_name(35, 30, "4.20") == "dt_overlay" and S.subop_name(35, 30) == "unknown_30"
    assert S.lookup_subop(36, "set_llc_colors", "4.20") == 89
    with pytest.raises(NotFoundError, match="Xen 4.17"):
        S.lookup_subop(36, "set_llc_colors")
    assert D.decode_event(raw(subop=87), release="4.19").subop_name == "dt_overlay"
    assert D.decode_event(raw(subop=87), release="4.18").expected_version == 0x16
    with pytest.raises(UsageError):
        D.decode_event(raw(), release="4.21")


def test_tracer_filters_and_kernel_stats_use_the_release():
    from xenvmi.trace.hypercall_filters import Filters, parse_op
    from xenvmi.trace.hypercall_stats import stats_from_maps

    assert parse_op("domctl:gsi_permission", "4.20") == (None, 36, 88)
    with pytest.raises(NotFoundError):
        parse_op("domctl:gsi_permission")
    f = Filters(op=36, subop=88, release="4.20")
    assert f.describe() == "domctl gsi_permission calls"
    stats = stats_from_maps([((0, 36, 88, 0), (2, 10, 6))], [], "x86_64-pv", "4.20")
    assert [(c.name, c.subop, c.calls) for c in stats.ops.values()] == [
        ("domctl", "gsi_permission", 2)
    ]


def test_an_event_recorded_without_expected_version_still_checks_the_version():
    ev = dataclasses.replace(D.decode_event(raw(version=0x14, ret=-13)), expected_version=None)
    assert "version=0x14, want 0x15" in D.format_event(ev)


def test_abi_tables_are_reused_not_copied():
    assert S.TABLES[36] is domctl.TABLE and S.TABLES[35] is sysctl.TABLE
    assert S.TABLES[12] is memory_op.TABLE and S.TABLES[34] is hvm_op.TABLE
    assert S.subop_name(17, 0) is None
    assert S.lookup_subop(36, "getdomaininfo") == 5
