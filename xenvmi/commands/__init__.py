"""CLI subcommands: one module each, each with ``register(subparsers)``."""

import argparse


def add_command(sub, name: str, help: str, examples: str = "", **kw) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with its examples."""
    epilog = f"examples:\n{examples}" if examples else None
    return sub.add_parser(name, help=help, description=help, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
