"""xenvmi.remote: the ssh argv ``xenvmi tui --host`` builds, its checks on user input,
and how a host's answer, failure or silence comes back (through tests/tui/fake_ssh.py,
which runs the real xenvmi CLI on the lab recording)."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from xenvmi.cli import main
from xenvmi.errors import GuestDataError, NotFoundError, Unavailable, UsageError, XenvmiError
from xenvmi.remote import Remote, check_host, check_ssh_option

TESTS = Path(__file__).resolve().parents[1]
FAKE_SSH = str(TESTS / "tui" / "fake_ssh.py")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_RECORDING", str(TESTS / "tui" / "fixtures" / "lab"))
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    return log


@pytest.mark.parametrize("host", ["dom0-a", "root@dom0-b", "root@10.0.0.7", "a.b.example", "::1"])
def test_hosts_ssh_takes_are_accepted(host):
    assert check_host(host) == host


@pytest.mark.parametrize(
    "host",
    ["-oProxyCommand=touch /tmp/x", "-p2222", "", "dom0 a", "dom0\n-oX=y", "dom0;id", "a/b"],
)
def test_an_option_or_a_shell_word_is_not_a_host(host):
    with pytest.raises(UsageError, match="bad host"):
        check_host(host)
    with pytest.raises(UsageError):
        Remote(host)


@pytest.mark.parametrize("opt", ["", "-oX=y", "=x", "Port", "Port=22\nProxyCommand=id"])
def test_bad_ssh_options_are_refused(opt):
    with pytest.raises(UsageError, match="bad ssh option"):
        check_ssh_option(opt)


def test_argv_batch_mode_timeouts_and_the_host_after_double_dash():
    r = Remote("root@dom0-a", ("Port=2222",), ("/opt/venv/bin/python", "-m", "xenvmi"))
    argv = r.argv(["ps", "--json", "--", "x'; rm -rf / #"])
    assert argv[0] == "ssh" and argv[-3:-1] == ["--", "root@dom0-a"]
    opts = [argv[i + 1] for i, a in enumerate(argv[:-3]) if a == "-o"]
    assert opts[:2] == ["BatchMode=yes", "ConnectTimeout=10"]
    assert "ServerAliveInterval=5" in opts and "ServerAliveCountMax=3" in opts
    assert opts[-1] == "Port=2222"
    # the remote shell gets back exactly these words: nothing of the name is run
    assert shlex.split(argv[-1]) == [
        "/opt/venv/bin/python",
        "-m",
        "xenvmi",
        "ps",
        "--json",
        "--",
        "x'; rm -rf / #",
    ]


def test_json_runs_the_hosts_xenvmi(fake):
    domains = Remote("dom0-a", ssh=FAKE_SSH).json(["list", "--json"], timeout=60)
    assert [d["name"] for d in domains][:2] == ["Domain-0", "xvm-hvm"]
    assert fake.read_text().split(" ", 1)[1] == "dom0-a xenvmi list --json\n"


def test_a_refused_connection_is_one_line_naming_the_host(fake, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_DOWN", "dom0-b")
    with pytest.raises(Unavailable) as exc:
        Remote("dom0-b", ssh=FAKE_SSH).json(["list", "--json"], timeout=60)
    assert str(exc.value) == "dom0-b: ssh: connect to host dom0-b port 22: Connection refused"


def test_the_hosts_error_keeps_its_kind(fake):
    r = Remote("dom0-a", ssh=FAKE_SSH)
    with pytest.raises(NotFoundError, match=r"^dom0-a: xenstore: no node /nowhere$"):
        r.json(["xs", "read", "--json", "--", "/nowhere"], timeout=60)
    with pytest.raises(GuestDataError, match="dom0-a: `xenvmi list` sent bad JSON"):
        r.json(["list"], timeout=60)  # a table, not JSON
    missing = Remote("dom0-a", ssh=FAKE_SSH, xenvmi=("/usr/local/bin/xenvmi",))
    with pytest.raises(
        XenvmiError, match="command not found .is xenvmi installed.*--remote-xenvmi"
    ):
        missing.json(["list", "--json"], timeout=60)


def test_a_silent_host_times_out_and_its_ssh_is_ended(fake, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_HANG", "dom0-c")
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match=r"dom0-c: no answer in 1s to `xenvmi list`"):
        Remote("dom0-c", ssh=FAKE_SSH).json(["list", "--json"], timeout=1)
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 10
    while not fake.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(fake.read_text().split(" ", 1)[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_stopping_ends_a_call_early(fake, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_HANG", "dom0-c")
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="dom0-c: stopped"):
        Remote("dom0-c", ssh=FAKE_SSH).json(
            ["list", "--json"], timeout=600, should_stop=lambda: time.monotonic() - t0 > 0.5
        )
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--host=-oProxyCommand=touch /tmp/pwned"], "bad host"),
        (["--host", "dom0-a", "--ssh-option=-oX"], "bad ssh option"),
        (["--host", "dom0-a", "--replay", "/tmp"], "--host and --replay"),
        (["--host", "dom0-a", "--host", "dom0-a"], "a host is given twice"),
        (["--host", "dom0-a", "--remote-xenvmi", "'"], "--remote-xenvmi"),
    ],
)
def test_tui_host_arguments_are_checked(argv, message, capsys):
    pytest.importorskip("textual")
    try:
        code = main(["tui", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
