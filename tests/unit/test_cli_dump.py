"""`xenvmi dump` and `xenvmi shell`, and the guest commands on dump files, from the CLI."""

from __future__ import annotations

import io
import json
import os

import pytest
import vmcore_image as I

from xenvmi import cli, guests
from xenvmi.backends.dumpfile import DumpMemory
from xenvmi.commands.dump import ProgressLine
from xenvmi.errors import GuestDataError
from xenvmi.guest import vmcore

pytest.importorskip("drgn")
from xenvmi.guest.synthetic import SyntheticKernel


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XENVMI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def domain(monkeypatch):
    """`xvm-test` is a synthetic guest in memory (what LibVMI would give)."""
    real = guests.open_memory

    def fake(target):
        return I.memory() if target == "xvm-test" else real(target)

    monkeypatch.setattr(guests, "open_memory", fake)


@pytest.fixture
def kernel(monkeypatch):
    """Any guest's kernel is a synthetic one (real discovery needs a real kernel)."""
    k = SyntheticKernel()
    init = k.add_task(1, b"init")
    k.add_task(9, b"sh", parent=init)
    k.add_module(b"dummy")
    kp = k.kernel_program()
    monkeypatch.setattr(guests.Guest, "kernel_program", lambda self: kp)
    return kp


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("xenvmi")


def files(directory) -> list[str]:
    """What is in ``directory`` besides the discovery cache."""
    return sorted(f for f in os.listdir(directory) if f != "cache")


# -- dump --------------------------------------------------------------------------------


def test_dump_a_domain(tmp_path, capsys, domain):
    path = tmp_path / "g.vmcore"
    code, out, err = run(capsys, "dump", "xvm-test", path, "--json", "-q")
    # This image's kernel has VMCOREINFO but no kallsyms: no RAM map, and the user is told.
    assert code == 0 and err.count("\n") == 1
    assert err.startswith("xenvmi: warning: the guest's RAM map was not read (")
    assert err.endswith("RAM found by probing\n")
    got = json.loads(out)
    assert got["path"] == str(path) and got["bytes"] == path.stat().st_size
    assert [(r["start"], r["end"]) for r in got["ranges"]] == I.RANGES
    assert got["vcpus"] == 2 and got["vmcoreinfo"] and got["direct_map"] == I.DIRECT_MAP
    assert got["seconds"] >= 0 and got["mb_per_s"] > 0
    with DumpMemory(path) as m:
        assert m.vmcoreinfo == I.note_text()
        assert m.read_physical(0, I.SIZE) == I.expected(I.image())


def test_dump_text_summary_and_progress(tmp_path, capsys, domain):
    code, out, err = run(capsys, "dump", "xvm-test", tmp_path / "g.raw", "--format", "raw")
    assert code == 0 and "raw image" in out and "4 range(s)" in out
    assert "xenvmi: dumping xvm-test: 100.0%" in err  # not a tty: whole lines


def test_dump_refuses_to_overwrite(tmp_path, capsys, domain):
    path = tmp_path / "g.vmcore"
    path.write_text("precious")
    code, out, err = run(capsys, "dump", "xvm-test", path, "-q")
    assert code == 2 and out == "" and one_error_line(err) and "--force" in err
    assert path.read_text() == "precious"
    code, _, _ = run(capsys, "dump", "xvm-test", path, "-q", "--force")
    assert code == 0 and path.stat().st_size > I.MiB


@pytest.mark.parametrize(
    "exc, code",
    [
        (GuestDataError("guest memory went away"), 7),
        (OSError(28, "No space left on device"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_dump_removes_the_partial_file(tmp_path, capsys, domain, monkeypatch, exc, code):
    real = vmcore._Copier._store

    def fail_midway(self, addr, data, ok):
        real(self, addr, data, ok)
        if addr >= 8 * I.MiB:
            raise exc

    monkeypatch.setattr(vmcore._Copier, "_store", fail_midway)
    got, out, err = run(capsys, "dump", "xvm-test", tmp_path / "g.vmcore", "-q")
    assert got == code and out == "" and one_error_line(err)
    assert files(tmp_path) == []


def test_a_domain_that_goes_away_mid_dump_fails_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    """Reads of a destroyed domain fail like holes: without asking whether the domain is
    still there, the dump would finish "complete" with the rest of the guest missing
    (seen in the lab). The copier asks as it goes and once more at the end."""
    from xenvmi.errors import NotFoundError

    mem = I.memory()
    asked = []

    def check_alive():
        asked.append(1)
        if len(asked) >= 3:
            raise NotFoundError(f"{mem.name} (domain 7) went away while being read")

    mem.check_alive = check_alive
    monkeypatch.setattr(guests, "open_memory", lambda target: mem)
    monkeypatch.setattr(vmcore, "ALIVE_EVERY", 0.0)
    code, out, err = run(capsys, "dump", "xvm-test", tmp_path / "g.vmcore", "-q")
    assert code == 3 and out == "" and one_error_line(err) and "went away" in err
    assert files(tmp_path) == [] and len(asked) == 3


def test_dump_timeout(tmp_path, capsys, domain, monkeypatch):
    monkeypatch.setattr(vmcore.time, "monotonic", iter(range(0, 10**6, 1000)).__next__)
    code, _, err = run(capsys, "dump", "xvm-test", tmp_path / "g.vmcore", "-q", "--timeout", "5")
    assert code == 1 and "deadline" in err and one_error_line(err)
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    "argv, what",
    [
        (["dump", "xvm-test"], "FILE"),
        (["dump", "xvm-test", "x", "--format", "qcow2"], "--format"),
        (["dump", "xvm-test", "x", "--timeout", "0"], "--timeout"),
        (["dump", "xvm-test", "x", "--timeout", "soon"], "--timeout"),
    ],
)
def test_dump_bad_arguments(tmp_path, capsys, domain, monkeypatch, argv, what):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and what in err and one_error_line(err)
    assert files(tmp_path) == []


def test_dump_missing_directory_and_file(tmp_path, capsys, domain):
    code, _, err = run(capsys, "dump", tmp_path / "none.vmcore", tmp_path / "o")
    assert code == 3 and "no such file" in err and one_error_line(err)
    code, _, err = run(capsys, "dump", "xvm-test", tmp_path / "d" / "o")
    assert code == 3 and "no directory" in err


def test_progress_line_is_throttled():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    line = ProgressLine("g", out)
    for done in range(0, 100 << 20, 1 << 20):
        line(done, 100 << 20)
    line(100 << 20, 100 << 20)
    line.finish()
    text = out.getvalue()
    assert text.count("\r") <= 3 and "100.0%" in text and "MB/s" in text
    assert text.endswith("\n") and text.count("\n") == 1


# -- the guest commands on files --------------------------------------------------------


@pytest.fixture
def dumped(tmp_path, capsys, domain):
    path = tmp_path / "g.vmcore"
    assert run(capsys, "dump", "xvm-test", path, "-q")[0] == 0
    return path


def test_ps_and_lsmod_on_a_file(dumped, capsys, kernel):
    code, out, err = run(capsys, "ps", dumped, "--json")
    got = json.loads(out)
    assert code == 0 and got["domain"] == str(dumped)
    assert [p["pid"] for p in got["rows"]] == [1, 9]
    code, out, _ = run(capsys, "lsmod", dumped)
    assert code == 0 and "dummy" in out


def test_regs_on_a_file(dumped, capsys):
    code, out, _ = run(capsys, "regs", dumped, "--vcpu", "all", "--json")
    got = json.loads(out)
    assert code == 0 and [v["vcpu"] for v in got["rows"]] == [0, 1]
    assert got["rows"][0]["raw"] == I.REGS[0] and got["rows"][0]["decoded"]["cr3"] == 14 * I.MiB
    code, out, _ = run(capsys, "regs", dumped)
    assert out.splitlines()[0] == f"{dumped} vCPU 0: 64-bit mode, CPL 0, paging 4-level"


def test_corrupt_file_is_one_line_exit_7(tmp_path, capsys):
    bad = tmp_path / "bad.vmcore"
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(20))
    for cmd in ("ps", "kernel", "regs", "shell"):
        code, out, err = run(capsys, cmd, bad)
        assert code == 7 and out == "" and one_error_line(err) and "corrupt" in err


def test_help_mentions_files(capsys):
    for cmd in ("ps", "dump", "shell"):
        with pytest.raises(SystemExit):
            cli.main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "examples:" in out and ".vmcore" in out


# -- shell --------------------------------------------------------------------------------


def test_shell_code(dumped, capsys, kernel):
    code, out, err = run(capsys, "shell", dumped, "-c", 'print(prog["init_task"].comm)')
    assert code == 0 and out.strip() == '(char [16])"swapper/0"'
    code, out, _ = run(
        capsys,
        "shell",
        dumped,
        "-c",
        "tasks = prog['init_task'].tasks.address_of_()\n"
        "print(sorted(t.pid.value_() for t in list_for_each_entry("
        "'struct task_struct', tasks, 'tasks')), guest.memory.kind)",
    )
    assert code == 0 and out.strip() == "[1, 9] dump"  # a drgn Linux helper, imported


def test_shell_errors_and_exit_codes(dumped, capsys, kernel):
    code, out, err = run(capsys, "shell", dumped, "-c", "x = 1\nundefined_name")
    assert code == 1 and one_error_line(err)
    assert "<-c> line 2: NameError" in err
    code, _, err = run(capsys, "shell", dumped, "-c", "raise SystemExit(3)")
    assert code == 3 and err == ""
    code, _, err = run(capsys, "shell", dumped, "-c", "def (")
    assert code == 2 and one_error_line(err) and "line 1" in err


def test_shell_script_with_arguments(dumped, tmp_path, capsys, kernel):
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint(sys.argv[1:], prog['init_task'].pid.value_())\n")
    code, out, _ = run(capsys, "shell", dumped, script, "--", "a", "--b")
    assert code == 0 and out.strip() == "['a', '--b'] 0"
    code, _, err = run(capsys, "shell", dumped, tmp_path / "none.py")
    assert code == 2 and one_error_line(err)


def test_shell_reads_stdin_when_not_a_tty(dumped, capsys, kernel, monkeypatch):
    monkeypatch.setattr(
        "sys.stdin",
        io.StringIO(
            "print(list_empty(prog['modules'].address_of_()), prog['init_task'].comm.string_())\n"
        ),
    )
    code, out, _ = run(capsys, "shell", dumped)
    assert code == 0 and out.strip() == "False b'swapper/0'"


def test_shell_interactive(dumped, capsys, kernel, monkeypatch, tmp_path):
    """drgn's own REPL (run_interactive) on a terminal: banner, globals, then EOF."""
    import pty

    monkeypatch.setenv("HOME", str(tmp_path))  # drgn keeps its history there
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "r")
    os.write(master, b"print(prog['init_task'].pid, guest.memory.kind)\n")
    os.write(master, b"print(callable(list_for_each_entry))\n\x04")
    monkeypatch.setattr("sys.stdin", tty)
    try:
        code, out, err = run(capsys, "shell", dumped)
    finally:
        tty.close()
        os.close(master)
    assert code == 0
    assert "(pid_t)0 dump" in out and "True" in out
    assert f"xenvmi: {dumped}" in err + out and "drgn.helpers.linux import *" in err + out


def test_fresh_prompt_starts_a_new_snapshot():
    from xenvmi.commands.shell import FreshPrompt

    class KP:
        views = 0

        def view(self, seconds):
            self.views += 1
            assert seconds is None

    class G:
        memory = I.memory()

    G.memory.read_physical(0, 64)
    kp = KP()
    prompt = FreshPrompt(">>> ", G, kp)
    assert G.memory._pages and str(prompt) == ">>> "
    assert not G.memory._pages and kp.views == 1
