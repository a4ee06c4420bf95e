"""``xenvmi isf DOMAIN|FILE -o ISF.json``: a Volatility3 symbol table for a guest's kernel.

volatility3 needs an ISF made from the exact kernel it analyses, normally by dwarf2json
from a vmlinux with DWARF that the guest's distribution may not even ship. xenvmi reads
the same facts (BTF types, kallsyms, linux_banner) from the guest's memory or from a dump
of it, so this writes that ISF with no file from the user (:mod:`xenvmi.guest.isf`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xenvmi import render
from xenvmi.commands import add_command
from xenvmi.errors import UsageError, XenvmiError

HELP = "Write a Volatility3 ISF (symbol table) for a guest's kernel, from its memory or a dump."

EXAMPLES = """\
  xenvmi isf xvm-hvm -o symbols/linux/xvm-hvm.json             from a live guest
  xenvmi dump xvm-hvm hvm.core --pause                         a dump, then its ISF:
  xenvmi isf hvm.core -o symbols/linux/hvm.json --xz           (writes hvm.json.xz)
  vol -s symbols -f hvm.core linux.pslist                      volatility3 on the dump

volatility3 looks for ISF files (*.json, *.json.xz) anywhere under each -s directory
(symbols/linux/ is its convention) and picks the one whose linux_banner the image holds;
it finds the KASLR slide itself, so an ISF fits every boot of the same kernel build.
Exit codes: 0 ok, 2 bad arguments, 3 no such domain or file, 7 guest data unusable.
"""


def register(sub: Any) -> None:
    # `profile`, its name before 0.2, stays one release (it read as performance profiling)
    p = add_command(sub, "isf", HELP, EXAMPLES, aliases=["profile"])
    p.add_argument("target", metavar="DOMAIN|FILE", help="guest name, domain id, or dump file")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="ISF.json",
        help="file to write (*.json or *.json.xz: volatility3 loads no other name)",
    )
    p.add_argument("--xz", action="store_true", help="compress with xz (adds .xz to the name)")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="rescan memory for the kernel instead of using the cache",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def _output(args: argparse.Namespace) -> Path:
    """The checked output path (before any guest is opened: bad arguments fail fast)."""
    path = Path(args.output)
    name = path.name + (".xz" if args.xz and not path.name.endswith(".xz") else "")
    if not name.endswith((".json", ".json.xz")):
        raise UsageError(
            f"isf: {args.output}: volatility3 only loads ISF files named *.json or *.json.xz"
        )
    if not path.parent.is_dir():
        raise UsageError(f"profile: {path.parent} is not a directory (create it first)")
    return path


def run(args: argparse.Namespace) -> int:
    from xenvmi import guests
    from xenvmi.guest import isf

    out = _output(args)
    say = (
        (lambda m: None)
        if args.quiet
        else (lambda m: print(f"xenvmi: {m}", file=sys.stderr, flush=True))
    )
    with guests.open_guest(args.target, use_cache=not args.no_cache, progress=say) as g:
        kp = g.kernel_program()
        doc, summary = isf.from_kernel_program(kp, progress=say)
    say(f"writing {out}{'.xz' if args.xz and out.suffix != '.xz' else ''}")
    try:
        path = isf.write_isf(doc, out, xz=args.xz)
    except OSError as e:
        raise XenvmiError(f"profile: cannot write {out}: {e.strerror or e}") from None
    result = {
        "output": str(path),
        "banner": summary.banner,
        "kaslr_slide": summary.kaslr_slide,
        "base_types": summary.base_types,
        "user_types": summary.user_types,
        "enums": summary.enums,
        "symbols": summary.symbols,
        "typed_symbols": summary.typed_symbols,
        "bitfields": summary.bitfields,
        "anonymous_types": summary.anonymous_types,
        "skipped": summary.skipped,
        "warnings": summary.warnings,
    }
    if args.json:
        print(render.dumps(result))
    else:
        print(
            f"wrote {path}: {summary.user_types} structs/unions, {summary.enums} enums, "
            f"{summary.base_types} base types, {summary.symbols} symbols "
            f"({summary.typed_symbols} typed)"
        )
        print(f"banner: {summary.banner}")
        if summary.skipped:
            print(
                "left out: " + ", ".join(f"{n} {why}" for why, n in sorted(summary.skipped.items()))
            )
    for w in summary.warnings:
        print(f"xenvmi: warning: {w}", file=sys.stderr)
    return 0
