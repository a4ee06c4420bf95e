"""What a one-shot command imports: `xenvmi list` and `xenvmi ps FILE` load what they use
and not the heavy rest (issue 22: a warm `xenvmi list` was 1.7 s in dom0 against 0.65 s
for `xl list`, most of it imports). Each command runs in a fresh interpreter; the modules
it adds to those the interpreter started with are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: Modules no one-shot command of these needs: the TUI, the exporter, the tracer, the lab,
#: plugin discovery (importlib.metadata), a second Xen client, and stdlib modules whose
#: import showed in `python -X importtime` of these commands.
NEVER = {
    "textual",
    "rich",
    "prometheus_client",
    "bcc",
    "psutil",
    "importlib.metadata",
    "xenvmi.tui",
    "xenvmi.exporter",
    "xenvmi.lab",
    "xenvmi.trace",
    "xenvmi.abi",
    "tempfile",
}
LIST_NEVER = NEVER | {
    "drgn",
    "_drgn",
    "libvmi",
    "xenvmi.guests",
    "xenvmi.guest",
    "xenvmi.plugins",
    "xenvmi.views",
    "json",  # the text table needs none
    "logging",
    "subprocess",  # ctypes.util's, for find_library: libxenstat loads by soname
    "hashlib",
    "pkgutil",
}
PS_FILE_NEVER = NEVER | {
    "pyxs",
    "libvmi",
    "xenvmi.api",
    "xenvmi.backends.xenstore",
    "xenvmi.backends.xenstat",
    "xenvmi.backends.libvmi",
    "xenvmi.backends.native",
    "xenvmi.views.lsmod",
    "xenvmi.views.dmesg",
    "xenvmi.views.regs",
    "xenvmi.views.kernel",
    "xenvmi.views.hypercalls",
}

PROLOGUE = f"""
import json, sys
sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]
before = set(sys.modules)
"""
EPILOGUE = """
new = set(sys.modules) - before
print(json.dumps({"rc": rc, "new": sorted(new)}))
"""


def imported(code: str, **env: str) -> tuple[int, set[str]]:
    """Run ``code`` (which sets ``rc``) in a fresh interpreter: its exit code and the
    modules it imported, with each module's parent packages."""
    import os

    res = subprocess.run(
        [sys.executable, "-c", PROLOGUE + code + EPILOGUE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["rc"], set(out["new"])


def heavy(new: set[str], never: set[str]) -> list[str]:
    return sorted(m for m in new if m in never or m.split(".")[0] in never or _under(m, never))


def _under(module: str, never: set[str]) -> bool:
    return any(module.startswith(n + ".") for n in never)


def test_list_imports_only_what_listing_needs():
    rc, new = imported("from xenvmi import cli\nrc = cli.main(['list'])")
    assert "xenvmi.commands.domains" in new and "xenvmi.api" in new  # it did get that far
    assert heavy(new, LIST_NEVER) == []
    assert not any(m.startswith("xenvmi.commands.") and m != "xenvmi.commands.domains" for m in new)


def test_list_json_is_the_only_list_that_imports_json():
    _, new = imported("from xenvmi import cli\nrc = cli.main(['list', '--json'])")
    assert heavy(new, LIST_NEVER - {"json"}) == []


@pytest.fixture
def dump(tmp_path):
    """A vmcore of the synthetic guest (tests/unit/vmcore_image.py), written by `xenvmi dump`."""
    pytest.importorskip("drgn")
    import vmcore_image as I

    from xenvmi import cli, guests

    path = tmp_path / "g.vmcore"
    real = guests.open_memory
    guests.open_memory = lambda target: I.memory()  # type: ignore[assignment]
    try:
        assert cli.main(["dump", "xvm-test", str(path), "-q"]) == 0
    finally:
        guests.open_memory = real  # type: ignore[assignment]
    return path


def test_ps_on_a_dump_imports_neither_xen_clients_nor_other_views(dump, tmp_path):
    """(hashlib and pkgutil do load here: the BTF cache's digest, and drgn's own import.)"""
    code = f"""
from xenvmi.guest.synthetic import SyntheticKernel
from xenvmi import cli, guests
k = SyntheticKernel()
k.add_task(9, b"sh", parent=k.add_task(1, b"init"))
kp = k.kernel_program()
guests.Guest.kernel_program = lambda self: kp  # a real kernel needs a real guest's dump
rc = cli.main(["ps", {str(dump)!r}, "--json", "-q"])
"""
    rc, new = imported(code, XENVMI_CACHE_DIR=str(tmp_path / "cache"))
    assert rc == 0 and "xenvmi.views.ps" in new and "xenvmi.backends.dumpfile" in new
    assert heavy(new, PS_FILE_NEVER) == []


def test_ps_help_registers_only_its_own_view():
    rc, new = imported(
        "from xenvmi import cli\ntry:\n    cli.main(['ps', '--help'])\n"
        "except SystemExit as e:\n    rc = e.code"
    )
    assert rc == 0
    assert sorted(m for m in new if m.startswith("xenvmi.views.")) == ["xenvmi.views.ps"]
