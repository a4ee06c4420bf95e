"""``xenvmi shell DOMAIN|FILE``: drgn's Python shell on a live guest's kernel, or a dump's.

``prog`` is the guest kernel's drgn Program, built as for ``xenvmi ps`` (VMCOREINFO,
kallsyms and BTF from guest memory: no vmlinux, no debug packages), with drgn's Linux
helpers imported, so ``for t in for_each_task(prog): print(t.pid, t.comm)`` just works.
It runs on the main thread, which owns the LibVMI handle. On a live guest each prompt
starts a fresh page snapshot: a statement sees the guest as it is when it runs, and the
page cache never serves it pages from minutes ago. ``-c CODE`` or a script file run
non-interactively (and testably); user code that fails is one error line, exit 1.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from xenvmi.commands import add_command
from xenvmi.errors import Unavailable, UsageError

HELP = "drgn's Python shell on a guest's kernel (live or a dump), Linux helpers imported."

EXAMPLES = """  xenvmi shell xvm-pvh1                 interactive: prog, guest, drgn's Linux helpers
  xenvmi shell xvm-hvm -c 'print(prog["init_task"].comm)'
  xenvmi shell /root/pvh1.vmcore -c 'for t in for_each_task(prog): print(t.pid, t.comm)'
  xenvmi shell xvm-pvh1 tasks.py -- -v    run a script (sys.argv = [tasks.py, -v])
  echo 'print(prog["jiffies"])' | xenvmi shell xvm-pvh1   code from stdin

Globals: prog (the drgn Program), guest (xenvmi.guests.Guest: guest.memory reads
guest-physical memory), drgn, and everything in drgn.helpers.common and
drgn.helpers.linux. Reads have no deadline here: Ctrl-C stops a long statement.
Run in dom0 as root for a live guest. Exit codes: 0 ok, 1 the code failed, 3 no such
domain, 4 not root, 5 drgn/libvmi missing, 7 guest data unusable.
"""


def register(sub: Any) -> None:
    p = add_command(sub, "shell", HELP, EXAMPLES)
    p.add_argument(
        "domain",
        metavar="DOMAIN|FILE",
        help="guest name or domain id, or a dump file (vmcore or raw image)",
    )
    p.add_argument("-c", dest="code", metavar="CODE", help="run CODE instead of a shell")
    p.add_argument(
        "script",
        metavar="SCRIPT [ARG ...]",
        nargs="*",
        help="run this Python file with these arguments (its sys.argv[1:]; "
        "put -- before them if one starts with '-')",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="rescan memory for the kernel instead of using the cache",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)


def _drgn():
    try:
        import drgn
        import drgn.cli
        import drgn.helpers.linux
    except ImportError as e:
        raise Unavailable(
            f"the drgn Python package cannot be loaded ({e}): pip install drgn"
        ) from None
    return drgn


def shell_globals(guest, kp) -> dict[str, Any]:
    """drgn's own default globals, plus the Linux helpers and ``guest``.

    drgn adds its Linux helpers only for a Program flagged as a Linux kernel; they are
    added here in any case (the brief of this command is a kernel shell).
    """
    drgn = _drgn()
    glob = drgn.cli.default_globals(kp.prog)
    for name in drgn.helpers.linux.__all__:
        glob.setdefault(name, getattr(drgn.helpers.linux, name))
    glob["guest"] = guest
    return glob


class FreshPrompt:
    """A ``sys.ps1`` that starts a new page snapshot whenever the prompt is shown."""

    def __init__(self, text: str, guest, kp) -> None:
        self.text, self.guest, self.kp = text, guest, kp

    def __str__(self) -> str:
        self.guest.memory.invalidate()
        self.kp.view(None)
        return self.text


def _fail(where: str, exc: BaseException) -> int:
    """One line for an exception in user code, naming the user's line that raised it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == where]
    at = f" line {frames[-1].lineno}" if frames else ""
    text = str(exc).splitlines()[0] if str(exc) else ""
    print(
        f"xenvmi: error: {where}{at}: {type(exc).__name__}" + (f": {text}" if text else ""),
        file=sys.stderr,
    )
    return 1


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def run_code(source: str, filename: str, glob: dict[str, Any], argv: list[str]) -> int:
    """Run user code the way ``python -c`` / ``python FILE`` would, with ``glob``."""
    drgn = _drgn()
    old_argv = sys.argv
    sys.argv = argv
    drgn.set_default_prog(glob["prog"])
    try:
        try:
            code = compile(source, filename, "exec")
        except SyntaxError as e:
            raise UsageError(f"{filename} line {e.lineno}: {e.msg}") from None
        exec(code, glob)
    except SystemExit as e:
        return _exit_code(e)
    except (KeyboardInterrupt, UsageError):
        raise
    except Exception as e:
        return _fail(filename, e)
    finally:
        sys.argv = old_argv
        drgn.set_default_prog(None)
    return 0


def _linux_line(banner: str) -> str:
    line = ">>> from drgn.helpers.linux import *"
    return banner if line in banner else f"{banner}\n{line}"


def _interactive(guest, kp, glob: dict[str, Any]) -> int:
    drgn = _drgn()
    live = guest.memory.kind not in ("dump", "image")
    release = kp.discovery.info.osrelease if hasattr(kp, "discovery") else "?"
    head = (
        f"xenvmi: {guest.name}: Linux {release}, "
        + ("live: each prompt reads the guest afresh" if live else "a dump file")
        + "\n>>> guest  # xenvmi.guests.Guest\n"
    )
    old_ps1 = getattr(sys, "ps1", None)
    if live:
        sys.ps1 = FreshPrompt(">>> ", guest, kp)
    try:
        drgn.cli.run_interactive(
            kp.prog, banner_func=lambda b: head + _linux_line(b), globals_func=lambda g: glob
        )
    finally:
        if old_ps1 is None:
            sys.__dict__.pop("ps1", None)
        else:
            sys.ps1 = old_ps1
    return 0


def run(args: argparse.Namespace) -> int:
    from xenvmi import guests

    _drgn()
    progress = (
        (lambda msg: None)
        if args.quiet
        else (lambda msg: print(f"xenvmi: {msg}", file=sys.stderr, flush=True))
    )
    with guests.open_guest(
        args.domain, use_cache=not args.no_cache, progress=progress, drgn_plugins=True
    ) as g:
        kp = g.kernel_program()
        kp.view(None)  # no deadline: the user decides, Ctrl-C stops a statement
        for w in kp.warnings:
            print(f"xenvmi: warning: {w}", file=sys.stderr)
        glob = shell_globals(g, kp)
        if args.code is not None:
            return run_code(args.code, "<-c>", glob, ["-c", *args.script])
        if args.script:
            script = args.script[0]
            try:
                with open(script, encoding="utf-8") as f:
                    source = f.read(16 << 20)
            except OSError as e:
                raise UsageError(f"shell: cannot read {script}: {e.strerror}") from None
            except UnicodeDecodeError:
                raise UsageError(
                    f"shell: {script} is not a UTF-8 Python file "
                    "(a dump file goes first: xenvmi shell FILE)"
                ) from None
            glob["__file__"] = script
            return run_code(source, script, glob, list(args.script))
        if not sys.stdin.isatty():
            return run_code(sys.stdin.read(16 << 20), "<stdin>", glob, [""])
        return _interactive(g, kp, glob)
