"""The command table that lets a command import only its own module."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

from xenvmi import cli


def _registered_by(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(f"xenvmi.commands.{module}").register(sub)
    return set(sub.choices)


def test_every_command_maps_to_the_module_that_registers_it():
    seen = {}
    for module in cli.COMMAND_MODULES:
        for name in _registered_by(module):
            seen[name] = module
    assert {n: m for n, m in seen.items() if m != "views"} == cli.COMMANDS
    views = {n for n, m in seen.items() if m == "views"}
    assert views == {"kernel", "ps", "lsmod", "dmesg", "regs"}
    assert all(cli.module_of(n) == "views" for n in views)
    assert cli.module_of("hypercalls") == "views"  # a view without a command of its own
    assert cli.module_of("nonsense") is None and cli.module_of("../x") is None


def test_a_view_command_imports_only_the_views_module():
    code = (
        "import sys; from xenvmi import cli; cli.build_parser('ps'); "
        "print(sorted(m for m in sys.modules if m.startswith('xenvmi.commands.')))"
    )
    root = Path(cli.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert eval(out) == ["xenvmi.commands.plugins", "xenvmi.commands.views"]


def test_command_of():
    assert cli.command_of(["ps", "xvm-pvh1", "--json"]) == "ps"
    assert cli.command_of(["--version"]) is None and cli.command_of([]) is None
    assert cli.command_of(["--", "ps"]) is None


def test_a_command_imports_only_its_module():
    """`xenvmi errno` does not import the guest, trace or TUI command modules."""
    code = (
        "import sys; from xenvmi import cli; cli.build_parser('errno'); "
        "print(sorted(m for m in sys.modules if m.startswith('xenvmi.commands.')))"
    )
    root = Path(cli.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert eval(out) == ["xenvmi.commands.abi"]


def test_unknown_command_is_a_usage_error_listing_every_command(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        cli.main(["no-such-command"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and all(f"'{name}'" in err for name in cli.COMMANDS)


def test_a_view_command_discovers_no_plugin_and_imports_no_xen_library():
    """`xenvmi ps` runs its own class: no entry-point scan, no plugin file imported, and
    neither LibVMI nor the xenstore client loaded before the view needs them."""
    code = (
        "import sys; from xenvmi import cli; cli.main(['ps', './no-such.vmcore']); "
        "print(sorted(m for m in sys.modules if m in ('importlib.metadata', 'libvmi', "
        "'pyxs', 'xenvmi.backends.xenstore') or m.startswith('xenvmi_plugin_')))"
    )
    root = Path(cli.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root
    ).stdout
    assert eval(out.strip().splitlines()[-1]) == []
