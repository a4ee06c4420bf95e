"""Bad input anywhere gives one clear line and a documented exit code, never a traceback.

Every command is run here, on a machine that is not a Xen host, with malformed arguments
and with files that are not what they claim (empty, random bytes, a directory, truncated
real formats): the exit code must be one of the README's, stderr must be one line (or
argparse's usage plus one line) and must not hold a traceback, and nothing may hang.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenvmi import cli

ROOT = Path(__file__).resolve().parents[2]
#: The README's exit codes (0 ok ... 7 guest data); 130 is an interrupted run.
EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def no_real_lab(monkeypatch, tmp_path):
    """Never reach a lab this machine may be running (`lab up` with a bad argument that
    slipped through would act on it)."""
    monkeypatch.setenv("XENVMI_LAB_DIR", str(tmp_path / "no-lab"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    out = {
        "empty": d / "empty.bin",
        "random": d / "random.bin",
        "dir": d / "adir",
        "elf": d / "trunc.vmcore",
        "json": d / "bad.json",
        "missing": d / "nope.vmcore",
        "huge-header": d / "huge.vmcore",
    }
    out["empty"].write_bytes(b"")
    out["random"].write_bytes(os.urandom(64 * 1024))
    out["dir"].mkdir()
    out["elf"].write_bytes(b"\x7fELF\x02\x01\x01" + bytes(40))
    out["json"].write_text('{"this is": [not json')
    # an ELF header claiming 65535 program headers at a far offset
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    header[0x20:0x28] = (1 << 40).to_bytes(8, "little")  # e_phoff
    header[0x36:0x38] = (56).to_bytes(2, "little")  # e_phentsize
    header[0x38:0x3A] = (0xFFFF).to_bytes(2, "little")  # e_phnum
    out["huge-header"].write_bytes(bytes(header))
    return out


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command in this process (as `xenvmi` would run it: cli.main, its exit code, its
    output), or for the TUI in a child (it would start an app). An exception escaping
    cli.main is what a user would see as a traceback: the test fails with it."""
    if argv and argv[0] == "tui":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return subprocess.run(
            [sys.executable, "-m", "xenvmi", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def assert_clean_failure(res: subprocess.CompletedProcess, argv) -> None:
    assert res.returncode in EXIT_CODES - {0}, (argv, res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, (argv, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, (argv, res.stderr)  # one line says what is wrong
    assert not any(ch in res.stderr + res.stdout for ch in "\x1b\x07"), argv


ARGUMENTS = [
    ("ps",),
    ("ps", "x", "--timeout", "-1"),
    ("ps", "x", "--timeout", "nan"),
    ("dmesg", "x", "--tail", "-3"),
    ("dmesg", "x", "--tail", "many"),
    ("regs", "x", "--vcpu", "minus-one"),
    ("kernel", "x", "--bogus"),
    ("isf", "x"),
    ("isf", "x", "-o", "out.txt"),
    ("dump", "x"),
    ("dump", "x", "/nonexistent-dir/out.vmcore"),
    ("run",),
    ("run", "nonexistent-plugin"),
    ("run", "ps", "x", "-o", "pause"),
    ("run", "ps", "x", "-o", "pause=maybe"),
    ("run", "ps", "x", "--timeout", "0"),
    ("plugins", "--schema", "nonexistent"),
    ("errno", "not-a-number"),
    ("errno",),
    ("hypercall", "no_such_call"),
    ("hypercall", "domctl", "--arch", "sparc"),
    ("xs", "read", "../../etc/passwd"),
    ("xs", "read", "/local/domain/\x1b[2J"),
    ("xs", "ls", "relative/path"),
    ("top", "-i", "-5"),
    ("top", "-d", "abc"),
    ("list", "--sort", "nonsense"),
    ("trace", "hypercalls", "--duration", "-1"),
    ("trace", "hypercalls", "--op", "nope"),
    ("xentrace", "decode"),
    ("xentrace", "summary", "--events", "nonsense"),
    ("lab", "exec"),
    ("lab", "up", "--check-runs", "-1"),
    ("lab", "up", "--port", "0"),
    ("lab", "up", "--boot-timeout", "nan"),
    ("lab", "exec", "--timeout", "-2", "--", "true"),
    ("lab", "status", "--bogus"),
    ("tui", "--replay", "/nonexistent-recording"),
    ("tui", "--refresh", "0"),
    ("no-such-command",),
]


@pytest.mark.parametrize("argv", ARGUMENTS, ids=lambda a: " ".join(a)[:60])
def test_malformed_arguments_are_one_clean_line(argv):
    assert_clean_failure(run(*argv), argv)


FILE_COMMANDS = [
    ("ps", "{f}"),
    ("kernel", "{f}"),
    ("regs", "{f}"),
    ("dmesg", "{f}"),
    ("isf", "{f}", "-o", "{out}"),
    ("dump", "{f}", "{out}.vmcore"),
    ("xentrace", "decode", "{f}"),
    ("xentrace", "summary", "{f}"),
    ("tui", "--replay", "{f}"),
    ("run", "ps", "{f}"),
]


@pytest.mark.parametrize(
    "kind", ["empty", "random", "dir", "elf", "json", "missing", "huge-header"]
)
@pytest.mark.parametrize("template", FILE_COMMANDS, ids=lambda t: " ".join(t[:2]))
def test_files_that_are_not_what_they_claim(files, tmp_path, template, kind):
    path = files[kind]
    argv = [a.format(f=path, out=tmp_path / "out.json") for a in template]
    res = run(*argv)
    if (template[0], kind) in VALID_AS_WELL:
        assert res.returncode == 0 and "Traceback" not in res.stderr, (argv, res.stderr)
        assert "warning" in res.stderr, f"{argv}: accepted without saying what it found"
        return
    assert_clean_failure(res, argv)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "no-lab"]
    assert leftovers == [], f"{argv}: a failed run left {leftovers}"


#: Files that are, in fact, valid input: any non-empty file is a raw memory image (dump
#: converts it, warning that no kernel was found in it), and an empty file is a trace
#: with no records (xentrace writes none when nothing happened).
VALID_AS_WELL = {("dump", "random"), ("dump", "json"), ("xentrace", "empty")}
