"""The walls of the package, read from every module's imports (static: no optional
dependency needs to be installed, and a lazy import inside a function counts too).

- One door to Xen: only ``xenvmi/backends/`` imports the Xen-facing libraries (LibVMI,
  pyxs, bcc, ctypes, fcntl's ioctls) or runs programs (subprocess). The lab's tooling,
  which drives QEMU, ssh and xl by design, and ``remote.py``, which runs the user's ssh
  for ``xenvmi tui --host`` (a transport, not Xen), are the exceptions.
- Backends never import the kernel reading (``xenvmi.guest``), the TUI or the CLI.
- Library first: nothing outside ``xenvmi/tui/`` imports Textual or Rich, except the
  ``tui`` command's lazy start of the app.
- Public APIs only: no dependency's private module (``pyxs._internal``).
- Views are plugins: ``xenvmi/views/`` never imports the CLI or the TUI (they derive from
  the views, not the other way round), and at import time only the plugin API, the row
  models and the standard library (the CLI imports every view to build its commands).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "xenvmi"

XEN_FACING = {"libvmi", "pyxs", "bcc", "ctypes", "fcntl", "subprocess"}
XEN_DOORS = ("backends/", "lab/", "commands/lab.py", "remote.py")
BACKENDS_NEVER = ("xenvmi.guest", "xenvmi.tui", "xenvmi.commands", "xenvmi.cli")
TERMINAL_UI = {"textual", "rich"}
TUI_PLACES = ("tui/", "commands/tui.py")
VIEWS_NEVER = ("xenvmi.tui", "xenvmi.commands", "xenvmi.cli")
VIEWS_AT_IMPORT = (
    "__future__",
    "dataclasses",
    "typing",
    "xenvmi.plugins",
    "xenvmi.model.guest",
    "xenvmi.views",
)


def imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return found


def top_level_imports(path: Path) -> set[str]:
    """The modules a file imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def violations(root: Path) -> list[str]:
    """Every import that crosses a wall, as "file: module (why)"."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        package = ".".join(["xenvmi", *path.relative_to(root).parent.parts])
        for name in sorted(imports(path, package)):
            top = name.split(".")[0]
            if top in XEN_FACING and not rel.startswith(XEN_DOORS):
                out.append(f"{rel}: {name} (Xen-facing: only backends/)")
            if top in TERMINAL_UI and not rel.startswith(TUI_PLACES):
                out.append(f"{rel}: {name} (terminal UI outside xenvmi/tui)")
            if top not in ("xenvmi", "__future__") and any(
                part.startswith("_") for part in name.split(".")[1:]
            ):
                out.append(f"{rel}: {name} (a dependency's private module)")
            if rel.startswith("backends/") and name.startswith(BACKENDS_NEVER):
                out.append(f"{rel}: {name} (backends never import guest, tui or the CLI)")
            if rel.startswith("views/") and name.startswith(VIEWS_NEVER):
                out.append(f"{rel}: {name} (views never import the CLI or the TUI)")
        if rel.startswith("views/"):
            for name in sorted(top_level_imports(path)):
                if not name.startswith(VIEWS_AT_IMPORT):
                    out.append(
                        f"{rel}: {name} (a view imports only the plugin API and "
                        "models at import time)"
                    )
    return out


def test_the_package_keeps_its_walls():
    assert len(list(ROOT.rglob("*.py"))) > 80, "walked too few modules"
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    "rel, text, why",
    [
        ("guest/sneaky.py", "import ctypes\n", "Xen-facing"),
        ("trace/sneaky.py", "def f():\n    from bcc import BPF\n", "Xen-facing"),
        ("api_x.py", "import pyxs.client\n", "Xen-facing"),
        ("render_x.py", "import subprocess\n", "Xen-facing"),
        ("guest/view.py", "from textual.app import App\n", "terminal UI"),
        ("backends/leaky.py", "from xenvmi.guest import linux\n", "backends never"),
        ("backends/sub/leaky.py", "from ...tui import app\n", "backends never"),
        ("backends/private.py", "def f():\n    from pyxs._internal import Op\n", "private"),
        ("views/table.py", "def f():\n    from xenvmi.commands import plugins\n", "views never"),
        ("views/heavy.py", "from xenvmi.guest import linux\n", "at import time"),
    ],
)
def test_a_planted_crossing_is_caught(tmp_path, rel, text, why):
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(text)
    (tmp_path / "backends").mkdir(exist_ok=True)
    (tmp_path / "backends" / "fine.py").write_text("import ctypes\nimport pyxs\n")
    (tmp_path / "tui").mkdir(exist_ok=True)
    (tmp_path / "tui" / "fine.py").write_text("from textual.app import App\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(rel) and why in found[0], found


def test_the_readme_layout_names_every_top_level_module_and_package():
    readme = (ROOT.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    tops = {
        p.name
        for p in ROOT.iterdir()
        if (p.suffix == ".py" and not p.name.startswith("_"))
        or (p.is_dir() and (p / "__init__.py").exists())
    }
    for name in tops:
        shown = f"xenvmi/{name}" + ("" if name.endswith(".py") else "/")
        assert shown in layout, f"README's Layout does not list {shown}"
