"""The running Xen (4.17 in the lab) picks xenvmi's ABI tables, and they are the right ones.

`xenvmi hypercall` without --xen must answer with the running release's tables (the
same as --xen 4.17, and unlike --xen 4.20 where the headers differ), both sources of the
release (libxenctrl's xc_version and /sys/hypervisor) must agree with `xl info`, and the
hypervisor itself must accept the selected table's domctl interface version and refuse
4.20's (-EACCES), which is what makes the choice matter.
"""

from __future__ import annotations

import json
import re
import subprocess

from xenvmi import xen_release
from xenvmi.abi import releases
from xenvmi.backends import xen_release as backend
from xenvmi.backends.privcmd import Privcmd

from .forkrun import run_forked

GETDOMAININFO, GETDOMAININFOLIST = 5, 6


def xenvmi(*args: str) -> subprocess.CompletedProcess:
    return run_forked(list(args), timeout=300)


def xl_release() -> str:
    out = subprocess.run(
        ["xl", "info"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    fields = dict(re.findall(r"^(xen_major|xen_minor)\s*:\s*(\d+)", out, re.MULTILINE))
    return f"{fields['xen_major']}.{fields['xen_minor']}"


def test_selected_release_is_the_running_one():
    assert xl_release() == "4.17"
    assert backend.from_xenctrl() == backend.from_sysfs() == backend.running_release() == "4.17"
    warnings: list[str] = []
    assert xen_release.select(warn=warnings.append) == "4.17"
    assert warnings == []


def test_hypercall_ops_default_is_the_running_release():
    default = xenvmi("hypercall", "domctl", "--ops")
    pinned = xenvmi("hypercall", "domctl", "--ops", "--xen", "4.17")
    other = xenvmi("hypercall", "domctl", "--ops", "--xen", "4.20")
    for res in (default, pinned, other):
        assert (res.returncode, res.stderr) == (0, ""), res.stderr
    assert default.stdout == pinned.stdout
    assert "[Xen 4.17]" in default.stdout and "0x00000015" in default.stdout
    assert default.stdout != other.stdout
    assert "[Xen 4.20]" in other.stdout and "0x00000017" in other.stdout


def test_hypercall_json_differs_from_4_20_exactly_where_the_headers_do():
    here = json.loads(xenvmi("hypercall", "domctl", "--ops", "--json").stdout)
    there = json.loads(xenvmi("hypercall", "domctl", "--ops", "--json", "--xen", "4.20").stdout)
    assert (here["xen"], here["interface_version"]) == ("4.17", 0x15)
    assert (there["xen"], there["interface_version"]) == ("4.20", 0x17)
    ours = {(op["number"], op["name"]) for op in here["subops"]}
    theirs = {(op["number"], op["name"]) for op in there["subops"]}
    assert theirs - ours == {(87, "dt_overlay"), (88, "gsi_permission"), (89, "set_llc_colors")}
    assert ours - theirs == set()
    sysctl_here = json.loads(xenvmi("hypercall", "sysctl", "--ops", "--json").stdout)
    assert 30 not in {op["number"] for op in sysctl_here["subops"]}


def test_the_hypervisor_wants_the_selected_interface_versions():
    """Xen checks the version of every domctl/sysctl: the selected release's passes, 4.20's
    domctl version does not."""
    here = releases.get(xen_release.select()).interface_versions
    there = releases.get("4.20").interface_versions
    assert here["domctl"] != there["domctl"]
    with Privcmd() as p:
        assert p.domctl(GETDOMAININFO, 0, version=here["domctl"]) == 0
        assert p.domctl(GETDOMAININFO, 0, version=there["domctl"]) == -13  # -EACCES
        assert p.sysctl(GETDOMAININFOLIST, version=here["sysctl"]) == 0
