"""The ``xenvmi`` command: argparse subcommands, each parse -> call the API -> render.

Every subcommand lives in ``xenvmi/commands/<name>.py`` with a ``register(subparsers)``
function; errors from the ``XenvmiError`` family become one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from xenvmi import __version__
from xenvmi.errors import XenvmiError

#: Command modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "domains",
    "xs",
    "abi",
    "xentrace",
    "trace",
    "lab",
    "views",
    "isf",
    "dump",
    "shell",
    "plugins",
    "tui",
    "exporter",
)
#: The module that registers each command: running one imports only its module. Importing
#: all twelve (the ABI tables, argparse's help for every command) took 12 s of a 17 s
#: `xenvmi ps` in the lab's emulated dom0. tests/unit checks this table against the modules.
#: A built-in view's command (ps, lsmod ...) is found by its module in xenvmi/views/.
COMMANDS = {
    "list": "domains",
    "top": "domains",
    "xs": "xs",
    "errno": "abi",
    "hypercall": "abi",
    "xentrace": "xentrace",
    "trace": "trace",
    "lab": "lab",
    "isf": "isf",
    "profile": "isf",
    "dump": "dump",
    "shell": "shell",
    "plugins": "plugins",
    "run": "plugins",
    "tui": "tui",
    "exporter": "exporter",
}

EPILOG = """examples:
  xenvmi lab up                 build and boot the QEMU lab (a real Xen 4.17 host)
  xenvmi lab exec -- xl list    run a command in the lab's dom0
  xenvmi errno -13              name a Xen error code
  xenvmi hypercall domctl --arch arm64

exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 permission, 5 unavailable, 6 lab, 7 guest data
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line plus a hint, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def module_of(command: str | None) -> str | None:
    """The command module that registers ``command`` (None: unknown, load them all)."""
    if command in COMMANDS:
        return COMMANDS[command]
    if command and command.isidentifier() and not command.startswith("_"):
        import importlib.util

        if importlib.util.find_spec(f"xenvmi.views.{command}") is not None:
            return "views"
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with only ``command``'s module when it is known."""
    parser = _Parser(
        prog="xenvmi",
        description="Inspect and trace live Xen domains from dom0.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xenvmi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    module = module_of(command)
    for name in (module,) if module else COMMAND_MODULES:
        register = importlib.import_module(f"xenvmi.commands.{name}").register
        if name == "views" and module == "views":
            register(sub, only=command)  # one view's module, not all of them
        else:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except XenvmiError as exc:
        print(f"xenvmi: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("xenvmi: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 0
