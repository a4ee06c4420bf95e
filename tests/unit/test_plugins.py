"""The plugin API: discovery (folders, entry points), requirements, and isolation of
plugins that fail to import, raise, return the wrong rows or never stop."""

from __future__ import annotations

import configparser
import dataclasses
import textwrap
import time
from importlib import metadata
from pathlib import Path

import pytest

from xenvmi import plugins
from xenvmi.plugins import loader, requirements

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]

HEADER = """
from dataclasses import dataclass
from xenvmi.plugins import Plugin

@dataclass(frozen=True)
class Row:
    n: int
    word: str
"""

GOOD = (
    HEADER
    + """
class Good(Plugin):
    name = "good"
    version = "2.1"
    description = "Counts to three."
    row = Row
    options = {"upto": "last number"}

    def run(self, ctx):
        for n in range(1, ctx.option("upto", 3, int) + 1):
            yield Row(n, "x" * n)
"""
)


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def plugin(name: str, run_body: str, **attrs: str) -> str:
    extra = "".join(f"    {k} = {v}\n" for k, v in attrs.items())
    return (
        HEADER
        + f"""
class P(Plugin):
    name = "{name}"
    description = "test plugin {name}"
    row = Row
{extra}
    def run(self, ctx):
{textwrap.indent(textwrap.dedent(run_body), "        ")}
"""
    )


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    write(d, "good", GOOD)
    return d


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(loader.ENV_PATH, raising=False)


def by_name(infos) -> dict:
    return {i.name: i for i in infos}


# -- discovery -----------------------------------------------------------------------------


def test_discover_folder(folder):
    info = by_name(plugins.discover([folder]))["good"]
    assert (info.version, info.description, info.available, info.why_not) == (
        "2.1",
        "Counts to three.",
        True,
        "",
    )
    assert info.source == str((folder / "good.py").resolve()) and info.error is None
    assert info.columns == ("n", "word") and info.options == {"upto": "last number"}
    assert not info.needs_domain and info.requires == () and not info.has_tui


def test_run_folder_plugin(folder):
    res = plugins.run("good", None, extra_dirs=[folder], options={"upto": "2"})
    assert res.error is None and res.complete and res.exit_code == 0
    assert [dataclasses.astuple(r) for r in res.rows] == [(1, "x"), (2, "xx")]
    assert res.seconds >= 0 and res.version == "2.1"


def test_env_path(folder, monkeypatch, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write(other, "envplug", plugin("envplug", "return [Row(7, 'env')]"))
    monkeypatch.setenv(loader.ENV_PATH, f"{tmp_path / 'missing'}:{other}")
    infos = by_name(plugins.discover())
    assert infos["envplug"].available
    assert plugins.run("envplug", None).rows[0].n == 7
    assert infos["missing"].error and "does not exist" in infos["missing"].error


def test_checkout_folder_is_searched():
    assert ROOT / "plugins" in loader.default_dirs()


def test_reload_when_file_changes(folder):
    assert plugins.discover([folder])
    time.sleep(0.01)
    write(folder, "good", GOOD.replace('version = "2.1"', 'version = "2.2"'))
    assert by_name(plugins.discover([folder]))["good"].version == "2.2"


def test_broken_plugins_do_not_hide_others(folder):
    write(folder, "syntax", "def broken(:\n")
    write(folder, "imports", "import no_such_module_xenvmi\n")
    write(folder, "raises_on_import", "raise RuntimeError('boom at import')\n")
    write(folder, "empty", "X = 1\n")
    write(
        folder,
        "two",
        plugin("two-a", "return []")
        + plugin("two-b", "return []").replace(HEADER, "").replace("class P", "class Q"),
    )
    write(folder, "notdc", plugin("notdc", "return []").replace("row = Row", "row = dict"))
    write(folder, "badname", plugin("Bad Name", "return []"))
    write(folder, "norun", HEADER + "class P(Plugin):\n    name = 'norun'\n    row = Row\n")
    write(folder, "badcols", plugin("badcols", "return []", columns="('nope',)"))
    infos = by_name(plugins.discover([folder]))
    assert infos["good"].available
    errors = {
        n: infos[n].error
        for n in (
            "syntax",
            "imports",
            "raises_on_import",
            "empty",
            "two",
            "notdc",
            "badname",
            "norun",
            "badcols",
        )
    }
    assert errors["syntax"].startswith("SyntaxError")
    assert errors["imports"] == "ModuleNotFoundError: No module named 'no_such_module_xenvmi'"
    assert errors["raises_on_import"] == "RuntimeError: boom at import"
    assert "no Plugin subclass" in errors["empty"] and "2 Plugin subclasses" in errors["two"]
    assert "not a dataclass" in errors["notdc"] and "must match" in errors["badname"]
    assert "run(ctx)" in errors["norun"] and "not fields" in errors["badcols"]
    assert all(not infos[n].available for n in errors)
    res = plugins.run("syntax", None, extra_dirs=[folder])
    assert res.exit_code == 1 and "failed to load" in res.error


def test_private_files_are_skipped(folder):
    write(folder, "_helper", "raise RuntimeError('not a plugin')\n")
    assert "_helper" not in by_name(plugins.discover([folder]))


def test_shadowed_name(folder, tmp_path):
    second = tmp_path / "second"
    second.mkdir()
    write(second, "good", GOOD.replace("Counts to three.", "Impostor."))
    infos = [i for i in plugins.discover([folder, second]) if i.name == "good"]
    assert [i.available for i in infos] == [True, False]
    assert "shadowed" in infos[1].why_not
    res = plugins.run("good", None, extra_dirs=[folder, second])
    assert len(res.rows) == 3


def test_api_version_mismatch(folder):
    write(folder, "future", plugin("future", "return []", api_version="2"))
    info = by_name(plugins.discover([folder]))["future"]
    assert not info.available and "needs plugin API 2" in info.why_not
    assert plugins.run("future", None, extra_dirs=[folder]).exit_code == 5


def test_entry_points(monkeypatch, tmp_path):
    pkg = tmp_path / "site"
    pkg.mkdir()
    write(pkg, "xvm_ep_plugins", GOOD.replace('"good"', '"epgood"'))
    monkeypatch.syspath_prepend(str(pkg))
    eps = [
        metadata.EntryPoint("epgood", "xvm_ep_plugins:Good", loader.GROUP),
        metadata.EntryPoint("gone", "xvm_no_such_module:Thing", loader.GROUP),
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps)
    infos = by_name(plugins.discover())
    assert infos["epgood"].available and infos["epgood"].source == "entry point xvm_ep_plugins:Good"
    assert infos["gone"].error.startswith("ModuleNotFoundError")
    assert plugins.run("epgood", None).rows[-1].word == "xxx"
    # The built-ins are still there: entry points predating them are backed by the module.
    assert {"ps", "lsmod", "dmesg", "hypercalls"} <= set(infos)


def test_builtin_views_come_from_the_views_package_not_entry_points():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "xenvmi.plugins" not in cfg["options.entry_points"]
    builtins = {cls.name: cls for cls in loader.builtin_views()}
    assert set(builtins) == {"ps", "lsmod", "dmesg", "kernel", "regs", "hypercalls"}
    infos = by_name(plugins.discover())
    for name, cls in builtins.items():
        assert infos[name].error is None and infos[name].source == f"builtin {cls.__module__}"
        assert cls.__module__ == f"xenvmi.views.{name}"  # one file per view


def test_an_older_installs_entry_points_to_xenvmi_itself_are_ignored(monkeypatch):
    stale = metadata.EntryPoint("ps", "xenvmi.builtin_plugins:Ps", loader.GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [stale])
    infos = [i for i in plugins.discover() if i.name == "ps"]
    assert len(infos) == 1 and infos[0].error is None and infos[0].available is not None


def test_requirement_messages(monkeypatch):
    requirements.clear_cache()
    monkeypatch.setattr(
        requirements,
        "_import_error",
        lambda m: f"No module named {m!r}" if m in ("bcc", "libvmi") else None,
    )
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    assert requirements.unmet(["bcc", "root", "libvmi"]) == [
        "bcc: python3-bpfcc is not installed (apt install python3-bpfcc; a venv needs "
        "--system-site-packages)",
        "root: run as root",
        "libvmi: pip install libvmi",
    ]
    assert requirements.unmet(["drgn"]) == []
    assert requirements.unmet(["warp-drive"])[0].startswith("warp-drive: unknown requirement")


def test_linux_guest_implies_dom0_libvmi_drgn(monkeypatch):
    monkeypatch.setitem(requirements.CHECKS, "dom0", lambda: None)
    monkeypatch.setitem(requirements.CHECKS, "libvmi", lambda: "libvmi: pip install libvmi")
    monkeypatch.setitem(requirements.CHECKS, "drgn", lambda: None)
    assert requirements.unmet(["linux-guest", "libvmi"]) == ["libvmi: pip install libvmi"]


def test_unavailable_plugin(folder, monkeypatch):
    monkeypatch.setitem(requirements.CHECKS, "bcc", lambda: "bcc: python3-bpfcc is not installed")
    monkeypatch.setitem(requirements.CHECKS, "root", lambda: "root: run as root")
    write(folder, "needy", plugin("needy", "return []", requires="('bcc', 'root')"))
    info = by_name(plugins.discover([folder]))["needy"]
    assert not info.available
    assert info.why_not == "bcc: python3-bpfcc is not installed; root: run as root"
    res = plugins.run("needy", None, extra_dirs=[folder])
    assert res.exit_code == 5 and "cannot run here: bcc: python3-bpfcc" in res.error
    assert res.rows == [] and not res.complete


def test_requirements_are_checked_on_every_discovery(folder, monkeypatch):
    write(folder, "needy", plugin("needy", "return []", requires="('bcc',)"))
    monkeypatch.setitem(requirements.CHECKS, "bcc", lambda: "bcc: missing")
    assert not by_name(plugins.discover([folder]))["needy"].available
    monkeypatch.setitem(requirements.CHECKS, "bcc", lambda: None)  # installed meanwhile
    assert by_name(plugins.discover([folder]))["needy"].available


def test_plugin_own_check(folder):
    write(
        folder,
        "picky",
        plugin("picky", "return []")
        + "    @classmethod\n    def check(cls):\n        return 'picky: needs a full moon'\n",
    )
    write(
        folder,
        "crashy",
        plugin("crashy", "return []")
        + "    @classmethod\n    def check(cls):\n        raise OSError('no /proc')\n",
    )
    infos = by_name(plugins.discover([folder]))
    assert infos["picky"].why_not == "picky: needs a full moon"
    assert infos["crashy"].why_not == "check failed: OSError: no /proc"


# -- isolation at run time -----------------------------------------------------------------


def test_raising_plugin_is_isolated(folder):
    write(
        folder,
        "raiser",
        plugin(
            "raiser",
            """
        yield Row(1, "before")
        raise KeyError("guest went away\\nsecond line")
    """,
        ),
    )
    res = plugins.run("raiser", None, extra_dirs=[folder])
    assert res.error == "KeyError: 'guest went away\\nsecond line'"  # str(KeyError) is a repr
    assert "\n" not in res.error and res.exit_code == 1 and not res.complete
    assert [r.n for r in res.rows] == [1]
    assert plugins.run("good", None, extra_dirs=[folder]).complete


def test_xenvmi_error_keeps_its_exit_code(folder):
    write(
        folder,
        "nodomain",
        plugin(
            "nodomain",
            """
        from xenvmi.errors import NotFoundError
        raise NotFoundError(f"no domain {ctx.domain!r}")
    """,
            needs_domain="True",
        ),
    )
    res = plugins.run("nodomain", "ghost", extra_dirs=[folder])
    assert res.error == "NotFoundError: no domain 'ghost'" and res.exit_code == 3
    res = plugins.run("nodomain", None, extra_dirs=[folder])
    assert res.exit_code == 2 and "needs a DOMAIN" in res.error


def test_exit_and_baseexception_are_isolated(folder):
    write(folder, "quitter", plugin("quitter", "raise SystemExit(4)"))
    res = plugins.run("quitter", None, extra_dirs=[folder])
    assert res.error == "SystemExit: 4" and res.exit_code == 1


@pytest.mark.parametrize(
    "body, what",
    [
        ("return [{'n': 1}]", "dict"),
        ("return [Row(1, 'a'), (2, 'b')]", "tuple"),
        ("import dataclasses\nD = dataclasses.make_dataclass('D', ['n'])\nreturn [D(1)]", "D"),
        ("return 42", None),
    ],
)
def test_wrong_rows(folder, body, what):
    write(folder, "wrong", plugin("wrong", body))
    res = plugins.run("wrong", None, extra_dirs=[folder])
    assert res.exit_code == 1 and not res.complete
    if what:
        assert res.error == f"TypeError: wrong produced a {what}, not a Row dataclass"
    else:
        assert res.error.startswith("TypeError")


def test_returning_none_is_no_rows(folder):
    write(folder, "nothing", plugin("nothing", "return None"))
    res = plugins.run("nothing", None, extra_dirs=[folder])
    assert res.rows == [] and res.complete and res.error is None


def test_warnings_and_partial(folder):
    write(
        folder,
        "warner",
        plugin(
            "warner",
            """
        ctx.warn("list cut at entry 3")
        ctx.warn("cached symbols are stale", partial=False)
        return [Row(1, "a")]
    """,
        ),
    )
    res = plugins.run("warner", None, extra_dirs=[folder])
    assert res.warnings == ["list cut at entry 3", "cached symbols are stale"]
    assert res.error is None and not res.complete and res.exit_code == 0


def test_unknown_and_bad_options(folder):
    res = plugins.run("good", None, extra_dirs=[folder], options={"upto": "x"})
    assert res.exit_code == 2 and "upto='x' is not a valid int" in res.error
    res = plugins.run("good", None, extra_dirs=[folder], options={"colour": "red"})
    assert res.exit_code == 2 and "no option colour (options: upto)" in res.error


def test_cooperative_deadline(folder):
    write(
        folder,
        "patient",
        plugin(
            "patient",
            """
        import time
        n = 0
        while not ctx.expired():
            n += 1
            yield Row(n, "tick")
            time.sleep(0.01)
        ctx.warn("stopped at the deadline")
    """,
        ),
    )
    res = plugins.run("patient", None, extra_dirs=[folder], timeout=0.3)
    assert res.error is None and not res.complete and res.rows
    assert res.warnings == ["stopped at the deadline"] and res.seconds < 2


def test_runaway_plugin_is_abandoned(folder, monkeypatch):
    from xenvmi.plugins import runner

    monkeypatch.setattr(runner, "grace", lambda t: 0.2)
    write(
        folder,
        "runaway",
        plugin(
            "runaway",
            """
        import time
        yield Row(1, "a")
        time.sleep(3)
        yield Row(2, "late")
    """,
        ),
    )
    t = time.monotonic()
    res = plugins.run("runaway", None, extra_dirs=[folder], timeout=0.2)
    assert time.monotonic() - t < 2
    assert res.error.startswith("TimeoutError") and res.exit_code == 1
    assert [r.n for r in res.rows] == [1] and not res.complete


def test_unknown_plugin():
    res = plugins.run("no-such-plugin", None)
    assert res.exit_code == 3 and "no plugin named 'no-such-plugin'" in res.error


def test_tui_panel_hook(folder):
    write(
        folder,
        "paneled",
        plugin("paneled", "return []")
        + "    @classmethod\n    def tui_panel(cls):\n        return dict\n",
    )
    assert by_name(plugins.discover([folder]))["paneled"].has_tui
    assert plugins.tui_panel("paneled", [folder]) is dict
    assert plugins.tui_panel("good", [folder]) is None


def test_static_tui_panel_hook_does_not_break_discovery(folder):
    # has_tui compared the classmethods' __func__: a static tui_panel raised
    # AttributeError out of discover(), hiding every plugin
    write(
        folder,
        "static_panel",
        plugin("static-panel", "return []")
        + "    @staticmethod\n    def tui_panel():\n        return dict\n",
    )
    write(folder, "good", GOOD)
    found = by_name(plugins.discover([folder]))
    assert found["static-panel"].has_tui and found["static-panel"].error is None
    assert not found["good"].has_tui
    assert plugins.tui_panel("static-panel", [folder]) is dict


def test_core_never_imports_textual():
    import subprocess
    import sys

    code = (
        "import sys; from xenvmi import plugins; "
        "from xenvmi.commands import plugins as c; plugins.discover(); "
        "print('textual' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_plugins_others_may_write_are_refused_not_run(tmp_path):
    """xenvmi runs as root: a plugin someone else can change is someone else's root shell."""
    folder = tmp_path / "p"
    folder.mkdir(mode=0o755)
    marker = tmp_path / "ran"
    example = (ROOT / "tests/unit/data/example_plugin.py").read_text()
    code = example + f"\nopen({str(marker)!r}, 'w').write('x')\n"  # runs on import
    plugin = folder / "loose.py"
    plugin.write_text(code)
    plugin.chmod(0o666)
    infos = [i for i in plugins.discover([folder]) if i.source == str(plugin)]
    assert len(infos) == 1 and not infos[0].available
    assert "refused" in infos[0].error and "writable by group and others" in infos[0].error
    assert not marker.exists()  # never imported
    plugin.chmod(0o644)
    folder.chmod(0o777)
    info = next(i for i in plugins.discover([folder]) if i.source == str(plugin))
    assert "refused" in info.error and str(folder) in info.error and not marker.exists()
    folder.chmod(0o755)
    info = next(i for i in plugins.discover([folder]) if i.source == str(plugin))
    assert info.error is None and marker.exists()
