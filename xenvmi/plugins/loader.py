"""Find plugins: xenvmi's own views, the ``xenvmi.plugins`` entry points, then plugin
folders, one file each.

The built-in views are the modules of the ``xenvmi.views`` package, each a Plugin written
exactly as a third-party one (adding a view adds one file there). Folders, in order: the
checkout's ``plugins/`` (beside the ``xenvmi`` package), every
directory in ``$XENVMI_PLUGIN_PATH`` (``os.pathsep``-separated), then ``--plugin-dir``
ones. A plugin that fails to import or declares nonsense is listed with ``error`` set:
one bad file never hides the others. The first plugin of a name wins; a later one of the
same name is listed as shadowed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from xenvmi.plugins import requirements
from xenvmi.plugins.base import API_VERSION, Column, Option, Plugin

GROUP = "xenvmi.plugins"
ENV_PATH = "XENVMI_PLUGIN_PATH"
VIEWS_PACKAGE = "xenvmi.views"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class PluginInfo:
    """What ``xenvmi plugins`` shows: who a plugin is, what it needs, whether it can run."""

    name: str
    version: str
    description: str
    requires: tuple[str, ...]
    available: bool
    why_not: str  # '' when available
    needs_domain: bool
    source: str  # file path, or "entry point <module:attr>"
    error: str | None = None  # it could not be loaded (import error, bad declaration)
    api_version: int = API_VERSION
    row: str = ""  # the row dataclass's name
    columns: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    has_tui: bool = False


@dataclass
class Entry:
    """A discovered plugin: its info and, when it loaded, its class."""

    info: PluginInfo
    cls: type[Plugin] | None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _broken(name: str, source: str, error: str) -> Entry:
    return Entry(
        PluginInfo(
            name=name,
            version="?",
            description="",
            requires=(),
            available=False,
            why_not=error,
            needs_domain=False,
            source=source,
            error=error,
        ),
        None,
    )


def _validate(cls: Any) -> str | None:
    """What is wrong with a plugin class's declarations (None: nothing)."""
    if not (inspect.isclass(cls) and issubclass(cls, Plugin)):
        return f"{cls!r} is not a xenvmi.plugins.Plugin subclass"
    if not isinstance(cls.name, str) or not _NAME.match(cls.name):
        return f"plugin name {cls.name!r} must match {_NAME.pattern}"
    if not (dataclasses.is_dataclass(cls.row) and isinstance(cls.row, type)):
        return f"{cls.name}: row = {cls.row!r} is not a dataclass"
    if not (isinstance(cls.requires, tuple) and all(isinstance(r, str) for r in cls.requires)):
        return f"{cls.name}: requires must be a tuple of names"
    if cls.run is Plugin.run:
        return f"{cls.name}: does not implement run(ctx)"
    names = {f.name for f in dataclasses.fields(cls.row)}
    columns = cls.columns or ()
    if not all(isinstance(c, (str, Column)) for c in columns):
        return f"{cls.name}: columns must be field names or xenvmi.plugins.Column"
    bad = [
        c if isinstance(c, str) else c.key
        for c in columns
        if (c if isinstance(c, str) else c.key) not in names
        and not (isinstance(c, Column) and c.value is not None)
    ]
    if bad:
        return f"{cls.name}: columns {bad} are not fields of {cls.row.__name__}"
    if not all(
        isinstance(k, str) and isinstance(v, (str, Option)) for k, v in dict(cls.options).items()
    ):
        return f"{cls.name}: options must map names to help text or xenvmi.plugins.Option"
    return None


def _has_tui(cls: type[Plugin]) -> bool:
    """Whether ``cls`` overrides :meth:`Plugin.tui_panel` (a classmethod: its function is
    Plugin's unless overridden); a static method or other callable overrides it too."""
    own, base = cls.tui_panel, Plugin.tui_panel
    return not (
        isinstance(own, types.MethodType)
        and isinstance(base, types.MethodType)
        and own.__func__ is base.__func__
    )


def _info(found: type, source: str, fallback: str, dump_file: bool = False) -> Entry:
    """Validate and describe a plugin class (any class: what is wrong with it makes a
    broken entry); ``fallback`` names it if its name is bad. ``dump_file``: whether it can
    run on a dump file rather than a live domain (fewer requirements)."""
    error = _validate(found)
    if error:
        name = getattr(found, "name", None)
        return _broken(
            name if isinstance(name, str) and _NAME.match(name) else fallback, source, error
        )
    cls = cast("type[Plugin]", found)  # _validate checked it is a Plugin subclass
    if cls.api_version != API_VERSION:
        why = [f"needs plugin API {cls.api_version}, this xenvmi has {API_VERSION}"]
    else:
        why = requirements.unmet(cls.requires, dump_file=dump_file)
        try:
            extra = cls.check()
        except Exception as e:  # isolation boundary: a plugin's own check may fail
            extra = f"check failed: {_one_line(e)}"
        if extra:
            why.append(extra)
    fields = tuple(f.name for f in dataclasses.fields(cls.row))
    return Entry(
        PluginInfo(
            name=cls.name,
            version=str(cls.version),
            description=cls.description.strip(),
            requires=tuple(cls.requires),
            available=not why,
            why_not="; ".join(why),
            needs_domain=bool(cls.needs_domain),
            source=source,
            api_version=cls.api_version,
            row=cls.row.__name__,
            columns=tuple(c.key if isinstance(c, Column) else c for c in cls.columns or fields),
            options={k: v.help if isinstance(v, Option) else v for k, v in cls.options.items()},
            has_tui=_has_tui(cls),
        ),
        cls,
    )


# -- xenvmi's own views ------------------------------------------------------------------


def view_modules() -> list[str]:
    """The modules of the built-in views' package, in name order."""
    import pkgutil

    package = importlib.import_module(VIEWS_PACKAGE)
    return sorted(
        f"{VIEWS_PACKAGE}.{m.name}"
        for m in pkgutil.iter_modules(package.__path__)
        if not m.name.startswith("_")
    )


def _module_plugin(module: Any) -> type | str:
    """A module's one plugin class (or the one it names as ``PLUGIN``, any class until
    ``_info`` validates it), or why it has none."""
    explicit = getattr(module, "PLUGIN", None)
    if explicit is not None:
        return explicit if inspect.isclass(explicit) else type(explicit)
    found = [
        c
        for c in vars(module).values()
        if inspect.isclass(c)
        and issubclass(c, Plugin)
        and c is not Plugin
        and c.__module__ == module.__name__
    ]
    if len(found) != 1:
        what = "no Plugin subclass" if not found else f"{len(found)} Plugin subclasses"
        return f"defines {what} (one per file, or set PLUGIN)"
    return found[0]


def _from_views() -> list[Entry]:
    out = []
    for name in view_modules():
        try:
            found = _module_plugin(importlib.import_module(name))
        except Exception as e:  # isolation boundary: one broken view hides no other
            found = _one_line(e)
        short = name.rsplit(".", 1)[1]
        out.append(
            _broken(short, name, found)
            if isinstance(found, str)
            else _info(found, f"builtin {name}", short)
        )
    return out


def builtin_views() -> list[type[Plugin]]:
    """The built-in views that loaded and are valid, in name order."""
    return [e.cls for e in _from_views() if e.cls is not None]


def view_classes(only: str | None = None) -> list[type[Plugin]]:
    """The built-in views' classes, imported but neither validated nor checked against
    what is installed: what the CLI needs to build its commands, at start-up's cost only
    (``builtin_views`` and the runner check them; the unit tests validate every one).
    ``only``: just the view of that module (`xenvmi ps` imports no other view)."""
    out = []
    for name in [f"{VIEWS_PACKAGE}.{only}"] if only else view_modules():
        found = _module_plugin(importlib.import_module(name))
        if not isinstance(found, str):
            out.append(cast("type[Plugin]", found))
    return out


def entry_of(cls: type[Plugin], dump_file: bool = False) -> Entry:
    """A known plugin class's entry, without discovering the others (a view's command)."""
    return _info(
        cls, f"builtin {cls.__module__}", cls.__module__.rsplit(".", 1)[-1], dump_file=dump_file
    )


# -- entry points ------------------------------------------------------------------------


def _from_entry_points() -> list[Entry]:
    out = []
    from importlib import metadata  # tens of milliseconds: only when discovering

    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if ep.value.startswith("xenvmi."):
            continue  # an older xenvmi's own views: today's come from the package
        source = f"entry point {ep.value}"
        try:
            obj = ep.load()
        except Exception as e:  # isolation boundary: any import-time failure
            out.append(_broken(ep.name, source, _one_line(e)))
            continue
        out.append(_info(obj if inspect.isclass(obj) else type(obj), source, ep.name))
    return out


# -- folders -----------------------------------------------------------------------------


def default_dirs() -> list[Path]:
    """The checkout's plugins/ folder (if any), then $XENVMI_PLUGIN_PATH's folders."""
    dirs = []
    checkout = Path(__file__).resolve().parent.parent.parent / "plugins"
    if checkout.is_dir():
        dirs.append(checkout)
    dirs += [Path(p).expanduser() for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    return dirs


#: Loaded plugin files: path -> (mtime and size, the class or why it failed to load).
_loaded: dict[Path, tuple[tuple[int, int], type | str]] = {}


def _load_file(path: Path) -> Entry:
    """Import one plugin file (again only if it changed); requirements are checked anew
    on every call, since what is installed may change while the TUI runs."""
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _loaded.get(path)
    if not cached or cached[0] != stamp:
        cached = (stamp, _import_file(path))
        _loaded[path] = cached
    found = cached[1]
    if isinstance(found, str):
        return _broken(path.stem, str(path), found)
    return _info(found, str(path), path.stem)


def _import_file(path: Path) -> type | str:
    """The file's plugin class, or the one-line reason it has none."""
    import hashlib

    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    modname = f"xenvmi_plugin_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:  # not a file Python can import
        return f"cannot import {path.name} as a Python module"
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # dataclasses look their module up while being built
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # isolation boundary: any error while importing a user file
        sys.modules.pop(modname, None)
        return _one_line(e)
    return _module_plugin(module)


def untrusted(path: Path) -> str | None:
    """Why xenvmi refuses to run code from ``path`` (None: it may), as ssh refuses a key
    others can write: xenvmi runs as root in dom0, so a plugin file, or the folder it is
    in, that someone else owns or may write would let them run code as root. Owner: root
    or the user running xenvmi; no write permission for group or others."""
    try:
        st = path.stat()
    except OSError as e:
        return f"{path}: {e.strerror}"
    if st.st_uid not in (0, os.geteuid()):
        return f"refused: {path} is owned by uid {st.st_uid}, not root or you"
    writers = [who for bit, who in ((0o020, "group"), (0o002, "others")) if st.st_mode & bit]
    if writers:
        return f"refused: {path} is writable by {' and '.join(writers)} (chmod go-w {path})"
    return None


def _from_dir(folder: Path) -> list[Entry]:
    if not folder.is_dir():
        return [
            _broken(
                folder.name or str(folder), str(folder), f"plugin folder {folder} does not exist"
            )
        ]
    out = []
    folder_why = untrusted(folder.resolve())
    for p in sorted(folder.glob("*.py")):
        if p.name.startswith(("_", ".")):
            continue
        why = folder_why or untrusted(p.resolve())
        out.append(_broken(p.stem, str(p), why) if why else _load_file(p.resolve()))
    return out


def discover_entries(extra_dirs: Sequence[str | Path] = ()) -> list[Entry]:
    """Every plugin found, in precedence order, shadowed duplicates marked."""
    entries = _from_views() + _from_entry_points()
    seen_dirs: set[Path] = set()
    for folder in [*default_dirs(), *(Path(d).expanduser() for d in extra_dirs)]:
        key = folder.resolve()
        if key not in seen_dirs:
            seen_dirs.add(key)
            entries += _from_dir(folder)
    owner: dict[str, str] = {}
    out = []
    for e in entries:
        first = owner.setdefault(e.info.name, e.info.source)
        if first != e.info.source and e.cls is not None:
            why = f"shadowed: a plugin named {e.info.name!r} comes first from {first}"
            e = Entry(dataclasses.replace(e.info, available=False, why_not=why), e.cls)
        out.append(e)
    return out
