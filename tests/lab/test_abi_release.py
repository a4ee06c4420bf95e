"""The running Xen (4.17 in the default lab, 4.20 in trixie's) picks xenvmi's ABI tables, and
they are the right ones.

`xenvmi hypercall` without --xen must answer with the running release's tables (the same
as --xen RUNNING, and unlike the other end of 4.17..4.20, where the headers differ), both
sources of the release (libxenctrl's xc_version and /sys/hypervisor) must agree with `xl
info`, and the hypervisor itself must accept the selected table's domctl interface version
and refuse the other release's (-EACCES), which is what makes the choice matter.
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
#: What Xen's public headers say each release's domctl interface version is.
DOMCTL_VERSION = {"4.17": 0x15, "4.20": 0x17}
#: domctl commands 4.18-4.20 added (domctl.h of each release).
DOMCTL_ADDED_AFTER_4_17 = {(87, "dt_overlay"), (88, "gsi_permission"), (89, "set_llc_colors")}
#: sysctl dt_overlay: added in 4.18.
SYSCTL_DT_OVERLAY = 30


def xenvmi(*args: str) -> subprocess.CompletedProcess:
    return run_forked(list(args), timeout=300)


def xl_release() -> str:
    out = subprocess.run(
        ["xl", "info"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    fields = dict(re.findall(r"^(xen_major|xen_minor)\s*:\s*(\d+)", out, re.MULTILINE))
    return f"{fields['xen_major']}.{fields['xen_minor']}"


def running_and_other() -> tuple[str, str]:
    """The running release (from `xl info`, which the lab images fix to 4.17 or 4.20) and
    the one at the other end of the tables, whose headers differ from it."""
    running = xl_release()
    assert running in DOMCTL_VERSION, f"the lab runs Xen {running}: add its facts here"
    return running, "4.17" if running == "4.20" else "4.20"


def test_selected_release_is_the_running_one():
    running, _ = running_and_other()
    assert backend.from_xenctrl() == backend.from_sysfs() == backend.running_release() == running
    warnings: list[str] = []
    assert xen_release.select(warn=warnings.append) == running
    assert warnings == []


def test_hypercall_ops_default_is_the_running_release():
    running, other_release = running_and_other()
    default = xenvmi("hypercall", "domctl", "--ops")
    pinned = xenvmi("hypercall", "domctl", "--ops", "--xen", running)
    other = xenvmi("hypercall", "domctl", "--ops", "--xen", other_release)
    for res in (default, pinned, other):
        assert (res.returncode, res.stderr) == (0, ""), res.stderr
    assert default.stdout == pinned.stdout
    assert f"[Xen {running}]" in default.stdout
    assert f"{DOMCTL_VERSION[running]:#010x}" in default.stdout
    assert default.stdout != other.stdout
    assert f"[Xen {other_release}]" in other.stdout
    assert f"{DOMCTL_VERSION[other_release]:#010x}" in other.stdout


def test_hypercall_json_differs_from_the_other_release_exactly_where_the_headers_do():
    running, other_release = running_and_other()
    here = json.loads(xenvmi("hypercall", "domctl", "--ops", "--json").stdout)
    there = json.loads(
        xenvmi("hypercall", "domctl", "--ops", "--json", "--xen", other_release).stdout
    )
    assert (here["xen"], here["interface_version"]) == (running, DOMCTL_VERSION[running])
    assert (there["xen"], there["interface_version"]) == (
        other_release,
        DOMCTL_VERSION[other_release],
    )
    ours = {(op["number"], op["name"]) for op in here["subops"]}
    theirs = {(op["number"], op["name"]) for op in there["subops"]}
    newer, older = (ours, theirs) if running == "4.20" else (theirs, ours)
    assert newer - older == DOMCTL_ADDED_AFTER_4_17
    assert older - newer == set()
    sysctl_here = json.loads(xenvmi("hypercall", "sysctl", "--ops", "--json").stdout)
    has_dt_overlay = SYSCTL_DT_OVERLAY in {op["number"] for op in sysctl_here["subops"]}
    assert has_dt_overlay == (running == "4.20")


def test_the_hypervisor_wants_the_selected_interface_versions():
    """Xen checks the version of every domctl/sysctl: the selected release's passes, the
    other release's domctl version does not."""
    _, other_release = running_and_other()
    here = releases.get(xen_release.select()).interface_versions
    there = releases.get(other_release).interface_versions
    assert here["domctl"] != there["domctl"]
    with Privcmd() as p:
        assert p.domctl(GETDOMAININFO, 0, version=here["domctl"]) == 0
        assert p.domctl(GETDOMAININFO, 0, version=there["domctl"]) == -13  # -EACCES
        assert p.sysctl(GETDOMAININFOLIST, version=here["sysctl"]) == 0
