"""Library-first: importing any xenvmi module outside xenvmi.tui must not load Textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import importlib, pkgutil, sys
import xenvmi
failed = []
names = [m.name for m in pkgutil.walk_packages(xenvmi.__path__, "xenvmi.")
         if not (m.name == "xenvmi.tui" or m.name.startswith("xenvmi.tui."))
         and m.name != "xenvmi.__main__"]   # it runs the CLI
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:          # an optional dependency (bcc, libvmi) is absent
        failed.append(f"{name}: {exc}")
print(len(names))
print("TEXTUAL" if any(m == "textual" or m.startswith("textual.") for m in sys.modules)
      else "CLEAN")
for f in failed:
    print("SKIPPED", f)
"""


def test_core_modules_do_not_import_textual():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert int(lines[0]) > 40, "walked too few modules: the package layout changed?"
    assert "xenvmi.commands.tui" not in out.stdout  # it imported (not skipped)
    assert lines[1] == "CLEAN", out.stdout


def test_the_check_would_notice_textual():
    """The same probe, with one textual import, reports it (the test can fail)."""
    script = SCRIPT.replace("import xenvmi\n", "import xenvmi, textual.app\n")
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.splitlines()[1] == "TEXTUAL"
