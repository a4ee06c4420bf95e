"""`xenvmi plugins` and `xenvmi run`: tables, JSON, warnings on stderr, exit codes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from xenvmi import cli
from xenvmi.plugins import loader, requirements

pytestmark = pytest.mark.timeout(60)

PLUGINS = {
    "hello": """
        from dataclasses import dataclass
        from xenvmi.plugins import Plugin

        @dataclass(frozen=True)
        class Greeting:
            domain: str
            text: str
            length: int

        class Hello(Plugin):
            name = "hello"
            version = "1.2"
            description = "Greets a domain."
            needs_domain = True
            row = Greeting
            columns = ("domain", "text")
            options = {"shout": "yes to shout"}

            def run(self, ctx):
                text = f"hello {ctx.domain}"
                if ctx.option("shout") == "yes":
                    text = text.upper()
                ctx.warn("greeted only once")
                yield Greeting(str(ctx.domain), text, len(text))
    """,
    "boom": """
        from dataclasses import dataclass
        from xenvmi.plugins import Plugin

        @dataclass
        class R:
            x: int

        class Boom(Plugin):
            name = "boom"
            description = "Always fails."
            row = R

            def run(self, ctx):
                yield R(1)
                raise ZeroDivisionError("division by zero\\nin plugin")
    """,
    "needy": """
        from dataclasses import dataclass
        from xenvmi.plugins import Plugin

        @dataclass
        class R:
            x: int

        class Needy(Plugin):
            name = "needy"
            description = "Needs bcc."
            requires = ("bcc", "root")
            row = R

            def run(self, ctx):
                return [R(1)]
    """,
    "broken": "import xenvmi_does_not_exist\n",
}


@pytest.fixture
def pdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv(loader.ENV_PATH, raising=False)
    monkeypatch.setitem(
        requirements.CHECKS,
        "bcc",
        lambda: "bcc: python3-bpfcc is not installed (apt install python3-bpfcc)",
    )
    monkeypatch.setitem(requirements.CHECKS, "root", lambda: None)
    d = tmp_path / "p"
    d.mkdir()
    for name, text in PLUGINS.items():
        (d / f"{name}.py").write_text(textwrap.dedent(text))
    return d


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plugins_table(pdir, capsys):
    code, out, err = run(capsys, "plugins", "--plugin-dir", str(pdir))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "DOMAIN", "REQUIRES", "STATUS", "DESCRIPTION"]
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln and not ln.startswith(" ")}
    assert rows["hello"].split()[:5] == ["hello", "1.2", "yes", "-", "ready"]
    assert rows["needy"].split()[:5] == ["needy", "0.1", "-", "bcc,root", "unavailable"]
    assert rows["broken"].split()[4] == "broken"
    assert {"ps", "lsmod", "dmesg", "hypercalls"} <= set(rows)
    assert any(ln.startswith("needy: bcc: python3-bpfcc is not installed") for ln in lines)
    assert any(
        ln.startswith("broken: ModuleNotFoundError: No module named 'xenvmi_does_not_exist'")
        for ln in lines
    )


def test_plugins_json(pdir, capsys):
    code, out, _ = run(capsys, "plugins", "--json", "--plugin-dir", str(pdir))
    got = {p["name"]: p for p in json.loads(out)}
    assert code == 0
    assert set(got["hello"]) >= {
        "name",
        "version",
        "description",
        "requires",
        "available",
        "why_not",
        "needs_domain",
        "source",
        "error",
    }
    assert got["hello"]["available"] and got["hello"]["needs_domain"]
    assert got["hello"]["options"] == {"shout": "yes to shout"}
    assert not got["needy"]["available"] and got["needy"]["requires"] == ["bcc", "root"]
    assert got["broken"]["error"].startswith("ModuleNotFoundError")


def test_run_table(pdir, capsys):
    code, out, err = run(
        capsys, "run", "hello", "xvm-pvh1", "--plugin-dir", str(pdir), "-o", "shout=yes"
    )
    assert code == 0
    assert out.splitlines() == ["DOMAIN    TEXT", "xvm-pvh1  HELLO XVM-PVH1"]
    assert err.splitlines() == [
        "xenvmi: warning: greeted only once",
        "xenvmi: warning: hello of xvm-pvh1 may be incomplete (see above)",
    ]


def test_run_json(pdir, capsys):
    code, out, _ = run(capsys, "run", "hello", "7", "--json", "--plugin-dir", str(pdir))
    got = json.loads(out)
    assert code == 0 and got["plugin"] == "hello" and got["version"] == "1.2"
    assert got["rows"] == [{"domain": "7", "text": "hello 7", "length": 7}]
    assert got["warnings"] == ["greeted only once"] and got["error"] is None
    assert got["complete"] is False and got["domain"] == "7"


def test_run_raising_plugin(pdir, capsys):
    code, out, err = run(capsys, "run", "boom", "--plugin-dir", str(pdir))
    assert code == 1
    assert err.strip().splitlines() == ["xenvmi: error: ZeroDivisionError: division by zero"]
    assert out.split() == ["X", "1"]  # the row before the failure still prints
    code, out, err = run(capsys, "run", "boom", "--json", "--plugin-dir", str(pdir))
    got = json.loads(out)
    assert code == 1 and got["error"] == "ZeroDivisionError: division by zero"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["run", "nosuch"], 3, "no plugin named 'nosuch'"),
        (["run", "needy"], 5, "plugin needy cannot run here: bcc: python3-bpfcc is not installed"),
        (["run", "hello"], 2, "plugin hello needs a DOMAIN"),
        (["run", "hello", "d", "-o", "loud=1"], 2, "has no option loud (options: shout)"),
        (["run", "hello", "d", "-o", "shout"], 2, "-o wants KEY=VALUE"),
        (["run", "hello", "d", "--timeout", "0"], 2, "--timeout must be positive"),
        (["run", "broken"], 1, "plugin broken failed to load: ModuleNotFoundError"),
    ],
)
def test_run_exit_codes(pdir, capsys, argv, code, message):
    got, out, err = run(capsys, *argv, "--plugin-dir", str(pdir))
    assert got == code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xenvmi: error: ") and message in lines[0]


def test_run_no_rows(pdir, capsys, tmp_path):
    (pdir / "quiet.py").write_text(
        PLUGINS["needy"]
        .replace("Needy", "Quiet")
        .replace('"needy"', '"quiet"')
        .replace('requires = ("bcc", "root")', "")
        .replace("return [R(1)]", "return []")
    )
    (pdir / "quiet.py").write_text(textwrap.dedent((pdir / "quiet.py").read_text()))
    code, out, err = run(capsys, "run", "quiet", "--plugin-dir", str(pdir))
    assert (code, out, err) == (0, "(no rows)\n", "")


def test_help_has_examples(capsys):
    for cmd in ("plugins", "run"):
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out
