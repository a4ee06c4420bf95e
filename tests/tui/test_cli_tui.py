"""``xenvmi tui``: help with examples, argument errors, and a missing Textual (exit 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xenvmi.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tui", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "--refresh S",
        "--replay DIR",
        "--domain NAME",
        "examples:",
        "xenvmi tui --replay",
        "read-only",
    ):
        assert text in out


@pytest.mark.parametrize("value", ["0", "-1", "abc", "4000"])
def test_bad_refresh_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tui", "--refresh", value])
    assert exc.value.code == 2
    assert "--refresh" in capsys.readouterr().err


def test_replay_of_a_non_recording_names_the_fix(tmp_path, capsys):
    assert main(["tui", "--replay", str(tmp_path)]) == 5
    err = capsys.readouterr().err.strip()
    assert "not a recording" in err and "xenvmi.tui.synthetic" in err
    assert len(err.splitlines()) == 1


def test_without_textual_one_line_and_exit_5():
    code = (
        "import sys; sys.modules['textual'] = None\n"
        "from xenvmi.cli import main\n"
        f"sys.exit(main(['tui', '--replay', {str(ROOT / 'tests/tui/fixtures/lab')!r}]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 5
    assert out.stderr.strip().splitlines() == [
        "xenvmi: error: the TUI needs Textual: pip install 'xenvmi[tui]'"
    ]


def test_no_subcommand_still_prints_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: xenvmi" in out and "tui" in out
