"""CLI subcommands: one module each, each with ``register(subparsers)``."""

import argparse
from collections.abc import Callable


def add_command(sub, name: str, help: str, examples: str = "", **kw) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with its examples."""
    epilog = f"examples:\n{examples}" if examples else None
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )


def usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command group run without its subcommand: print the group's help,
    exit code 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show
