"""``xenvmi errno`` and ``xenvmi hypercall`` end to end: exit codes, one-line errors, JSON.

JSON shapes (stable; scripts may rely on them):

``xenvmi errno VALUE --json`` prints one object, ``--all --json`` a list of them::

    {"value": 13, "name": "EACCES", "message": "Permission denied",
     "internal": false,          # true for EINTR/ERESTART, which never reach a guest
     "alias_of": null,           # "EAGAIN" for EWOULDBLOCK, "EDEADLK" for EDEADLOCK
     "aliases": [],              # ["EWOULDBLOCK"] for EAGAIN
     "ret": -13,                 # the hypercall return value
     "describe": "-EACCES (Permission denied)"}

``xenvmi hypercall VALUE [--arch A] [--ops] [--xen X.Y] --json`` prints one object::

    {"number": 36, "name": "domctl",
     "xen": "4.17",              # the Xen release whose tables answered
     "x86_name": null,           # "mca" / "paging_domctl_cont" for arch_0 / arch_1
     "availability": {"x86_64-pv": "yes", "x86_64-hvm": "yes", "arm64": "yes",
                      "arm32": "yes"},   # only the guest kinds --arch selects;
                                         # values: yes, no, enosys, optional
     "kconfig": null,            # build option the handler depends on, if any
     "note": "...",
     "interface_version": 21,    # XEN_DOMCTL/SYSCTL_INTERFACE_VERSION (0x15), else null
     "subop_count": 75,          # defined commands (domctl, sysctl, memory_op, hvm_op)
     "calling_conventions": [{"arch": "x86_64-pv", "instruction": "syscall",
                              "number_register": "rax",
                              "argument_registers": ["rdi", "rsi", "rdx", "r10", "r8"],
                              "return_register": "rax", "note": "..."}, ...],
     "subops": [{"number": 1, "name": "createdomain", "status": "active",
                 "note": ""}, ...]}      # only with --ops

``xenvmi hypercall --all [--arch A] --json`` prints
``{"xen": "4.17", "hypercalls": [<object above without xen/calling_conventions/subops>,
...], "calling_conventions": [...]}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenvmi import cli, xen_release
from xenvmi.abi import domctl, releases

ROOT = Path(__file__).resolve().parents[2]

ERRNO_KEYS = {"value", "name", "message", "internal", "alias_of", "aliases", "ret", "describe"}
HYPERCALL_KEYS = {
    "number",
    "name",
    "x86_name",
    "availability",
    "kconfig",
    "note",
    "interface_version",
    "subop_count",
}
CC_KEYS = {
    "arch",
    "instruction",
    "number_register",
    "argument_registers",
    "return_register",
    "note",
}


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``xenvmi.cli.main(argv)`` with only the abi commands, off Xen (no running
    hypervisor to pick the tables); return (rc, out, err)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("abi",))
    monkeypatch.setattr(xen_release, "_running", lambda: None)

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            rc = cli.main(list(argv))
        except SystemExit as exc:  # argparse's own errors and --help
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err

    return _run


def assert_one_line_error(err: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("xenvmi") and "error" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- errno


@pytest.mark.parametrize(
    "argv",
    [
        ["-13"],
        ["13"],
        ["EACCES"],
        ["eacces"],
        ["-EACCES"],
        ["-0xd"],
        ["0xfffffff3"],
        ["--", "-EACCES"],
        ["--json", "-13"],
        ["-13", "--json"],
    ],
)
def test_errno_spellings(run, argv):
    rc, out, err = run("errno", *argv)
    assert (rc, err) == (0, "")
    if "--json" in argv:
        assert json.loads(out)["name"] == "EACCES"
    else:
        assert "EACCES" in out and "Permission denied" in out


def test_errno_json_shape(run):
    rc, out, _ = run("errno", "11", "--json")
    data = json.loads(out)
    assert rc == 0 and set(data) == ERRNO_KEYS
    assert data == {
        "value": 11,
        "name": "EAGAIN",
        "message": "Resource temporarily unavailable",
        "internal": False,
        "alias_of": None,
        "aliases": ["EWOULDBLOCK"],
        "ret": -11,
        "describe": "-EAGAIN (Resource temporarily unavailable)",
    }


def test_errno_all(run):
    rc, out, _ = run("errno", "--all", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == 51 and all(set(r) == ERRNO_KEYS for r in rows)
    assert {r["name"] for r in rows if r["internal"]} == {"EINTR", "ERESTART"}
    rc, out, _ = run("errno", "--all")
    assert rc == 0 and len(out.splitlines()) == 52
    assert out.splitlines()[0].split() == ["VALUE", "NAME", "RET", "MESSAGE", "NOTE"]


def test_errno_internal_is_flagged(run):
    rc, out, _ = run("errno", "85")
    assert rc == 0 and "ERESTART" in out and "internal" in out


@pytest.mark.parametrize(
    "argv, code",
    [
        (["EFOO"], 3),
        (["27"], 3),
        (["0"], 3),
        (["-0xfff"], 3),
        (["1.5"], 2),
        (["E ACCES"], 2),
        ([], 2),
        (["13", "--all"], 2),
    ],
)
def test_errno_errors(run, argv, code):
    rc, out, err = run("errno", *argv)
    assert rc == code and out == ""
    assert_one_line_error(err)


@pytest.mark.parametrize("argv", [["--bogus"], ["-x"], ["13", "14"]])
def test_errno_argparse_errors(run, argv):
    rc, _, err = run("errno", *argv)
    assert rc == 2
    assert_one_line_error(err)


def test_errno_help_has_examples(run):
    rc, out, _ = run("errno", "--help")
    assert rc == 0 and "examples:" in out and "xenvmi errno -13" in out


# ------------------------------------------------------------------------ hypercall


def test_hypercall_json_shape(run):
    rc, out, _ = run("hypercall", "domctl", "--json")
    data = json.loads(out)
    assert rc == 0 and set(data) == HYPERCALL_KEYS | {"xen", "calling_conventions"}
    assert (data["number"], data["name"], data["interface_version"]) == (36, "domctl", 0x15)
    assert data["xen"] == "4.17" == releases.DEFAULT
    assert data["availability"] == {
        "x86_64-pv": "yes",
        "x86_64-hvm": "yes",
        "arm64": "yes",
        "arm32": "yes",
    }
    assert [c["arch"] for c in data["calling_conventions"]] == [
        "x86_64-pv",
        "x86_64-hvm",
        "arm64",
        "arm32",
    ]
    assert all(set(c) == CC_KEYS for c in data["calling_conventions"])


def test_hypercall_arch_filter(run):
    rc, out, _ = run("hypercall", "36", "--arch", "arm64", "--json")
    data = json.loads(out)
    assert rc == 0 and list(data["availability"]) == ["arm64"]
    (cc,) = data["calling_conventions"]
    assert (cc["instruction"], cc["number_register"], cc["return_register"]) == (
        "hvc #0xEA1",
        "x16",
        "x0",
    )
    assert cc["argument_registers"] == ["x0", "x1", "x2", "x3", "x4"]
    rc, out, _ = run("hypercall", "36", "--arch", "x86_64", "--json")
    data = json.loads(out)
    assert list(data["availability"]) == ["x86_64-pv", "x86_64-hvm"]
    assert [c["instruction"] for c in data["calling_conventions"]] == ["syscall", "vmcall|vmmcall"]


def test_hypercall_text(run):
    rc, out, err = run("hypercall", "sysctl")
    assert (rc, err) == (0, "")
    assert "hypercall 35: sysctl" in out and "0x00000015" in out
    assert "arm32" in out and "r12" in out and "hvc #0xEA1" in out
    rc, out, _ = run("hypercall", "0x30", "--arch", "x86_64")
    assert rc == 0 and "hypercall 48: mca" in out
    rc, out, _ = run("hypercall", "48", "--arch", "arm64")
    assert rc == 0 and "hypercall 48: arch_0" in out


def test_hypercall_ops(run):
    rc, out, _ = run("hypercall", "domctl", "--ops", "--json")
    subops = json.loads(out)["subops"]
    assert (
        rc == 0 and {"number": 5, "name": "getdomaininfo", "status": "active", "note": ""} in subops
    )
    rc, out, _ = run("hypercall", "hvm_op", "--ops")
    assert rc == 0 and "HVMOP_* commands" in out and "altp2m" in out


def test_hypercall_all(run):
    rc, out, _ = run("hypercall", "--all", "--json")
    data = json.loads(out)
    assert rc == 0 and set(data) == {"xen", "hypercalls", "calling_conventions"}
    assert len(data["hypercalls"]) == 50
    assert all(set(h) == HYPERCALL_KEYS for h in data["hypercalls"])
    rc, out, _ = run("hypercall", "--all", "--arch", "arm32")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 51 and lines[0].split() == ["NR", "NAME", "ARM32", "KCONFIG"]


def test_hypercall_ops_of_another_release(run):
    rc, out, err = run("hypercall", "domctl", "--ops", "--xen", "4.20", "--json")
    data = json.loads(out)
    assert (rc, err, data["xen"], data["interface_version"]) == (0, "", "4.20", 0x17)
    names = {op["number"]: op["name"] for op in data["subops"]}
    assert (names[87], names[88], names[89]) == ("dt_overlay", "gsi_permission", "set_llc_colors")
    assert data["subop_count"] == len(domctl.TABLES["4.20"].current()) == 75 + 3
    rc, old, _ = run("hypercall", "domctl", "--ops", "--xen", "4.17", "--json")
    assert {op["number"] for op in json.loads(old)["subops"]} & {87, 88, 89} == set()
    rc, default, _ = run("hypercall", "domctl", "--ops", "--json")
    assert default == old  # off Xen: the default release
    rc, out, _ = run("hypercall", "sysctl", "--ops", "--xen", "4.20")
    assert rc == 0 and "[Xen 4.20]" in out and "dt_overlay" in out and "0x00000015" in out


def test_hypercall_follows_the_running_release(run, monkeypatch):
    monkeypatch.setattr(xen_release, "_running", lambda: "4.20")
    rc, out, err = run("hypercall", "domctl", "--ops")
    assert (rc, err) == (0, "") and "[Xen 4.20]" in out and "gsi_permission" in out
    monkeypatch.setattr(xen_release, "_running", lambda: "4.22")
    rc, out, err = run("hypercall", "domctl", "--json")
    assert rc == 0 and json.loads(out)["xen"] == "4.20"
    assert err.startswith("xenvmi: warning: the running hypervisor: no ABI tables for Xen 4.22")
    assert err.count("\n") == 1


def test_hypercall_xen_option_errors_and_fallback(run):
    rc, out, err = run("hypercall", "domctl", "--xen", "4.x")
    assert rc == 2 and out == ""
    assert_one_line_error(err)
    rc, out, err = run("hypercall", "domctl", "--json", "--xen", "4.21")
    assert rc == 0 and json.loads(out)["xen"] == "4.20" and "Xen 4.21" in err
    rc, out, err = run("hypercall", "domctl", "--json", "--xen", "4.18")
    assert (rc, err, json.loads(out)["interface_version"]) == (0, "", 0x16)
    rc, out, err = run("hypercall", "domctl", "--ops", "--xen", "4.20", "--help")
    assert rc == 0 and "--xen 4.20" in out


@pytest.mark.parametrize(
    "argv, code",
    [
        (["11"], 3),
        (["99"], 3),
        (["nosuchcall"], 3),
        (["mca", "--arch", "arm64"], 3),
        (["-1"], 2),
        (["3.6"], 2),
        ([], 2),
        (["36", "--all"], 2),
        (["--all", "--ops"], 2),
        (["xen_version", "--ops"], 2),
        (["36", "--arch", "sparc"], 2),
    ],
)
def test_hypercall_errors(run, argv, code):
    rc, out, err = run("hypercall", *argv)
    assert rc == code and out == ""
    assert_one_line_error(err)


def test_hypercall_help_has_examples(run):
    rc, out, _ = run("hypercall", "--help")
    assert rc == 0 and "examples:" in out and "--arch arm64" in out


# ------------------------------------------------------------------- via python -m


def xenvmi(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "xenvmi", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_subprocess_errno_negative():
    p = xenvmi("errno", "-13")
    assert p.returncode == 0 and "EACCES" in p.stdout and p.stderr == ""


def test_subprocess_errno_not_found_is_one_line():
    p = xenvmi("errno", "ENOTREAL")
    assert p.returncode == 3 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("xenvmi: error: errno:")


def test_subprocess_usage_error_is_one_line():
    p = xenvmi("hypercall", "dom ctl")
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_subprocess_hypercall_json():
    p = xenvmi("hypercall", "--all", "--arch", "x86_64", "--json")
    assert p.returncode == 0
    names = {h["number"]: h["x86_name"] or h["name"] for h in json.loads(p.stdout)["hypercalls"]}
    assert names[48] == "mca" and names[49] == "paging_domctl_cont" and names[36] == "domctl"
