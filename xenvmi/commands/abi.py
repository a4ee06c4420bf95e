"""``xenvmi errno`` and ``xenvmi hypercall``: name Xen error codes and hypercalls offline.

Both read only the static tables in ``xenvmi.abi``, so they work on any machine, with or
without Xen, and are what a user reaches for when a trace or a tool prints ``-13`` or
``hypercall 36``. ``hypercall`` shows the running hypervisor's release's tables (off Xen:
xenvmi.abi.releases.DEFAULT), or another release's with ``--xen``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from xenvmi import render, xen_release
from xenvmi.abi import errno as xerrno
from xenvmi.abi import hypercalls as hc
from xenvmi.abi import releases
from xenvmi.abi.subops import SubOpTable
from xenvmi.commands import add_command
from xenvmi.errors import UsageError

ERRNO_EXAMPLES = """\
  xenvmi errno -13              what a hypercall returning -13 means (-EACCES)
  xenvmi errno EACCES           by name (any case; XEN_ prefix optional)
  xenvmi errno 0xfffffff3       a 32-bit register dump of -13
  xenvmi errno -- -EACCES       '--' also works for anything starting with '-'
  xenvmi errno --all --json     the whole table as JSON
"""

HYPERCALL_EXAMPLES = """\
  xenvmi hypercall 36           number, availability and calling convention per arch
  xenvmi hypercall domctl --arch arm64
  xenvmi hypercall domctl --ops  with XEN_DOMCTL_* command numbers
  xenvmi hypercall domctl --ops --xen 4.20   another Xen release's table
  xenvmi hypercall 0x30 --arch x86_64   arch_0 is 'mca' on x86
  xenvmi hypercall --all --arch x86_64 --json

availability: yes, no (-ENOSYS), enosys (dispatched but always -ENOSYS),
optional (only with a non-default build option, see KCONFIG).
Tables: the running hypervisor's Xen release (4.17 off Xen); --xen picks another
(known: {known}; others get the nearest older one, with a warning).
""".format(known=", ".join(releases.KNOWN))

#: What argparse should treat as a positional although it starts with '-':
#: -13, -0xd, -EACCES, -xen_eacces (the errno parser has no option that looks like these).
_NEGATIVE_VALUE = re.compile(r"^-(\d+|0[xob][0-9a-f]+|(xen_)?e[a-z0-9]+)$", re.IGNORECASE)


def register(sub: Any) -> None:
    """Add the ``errno`` and ``hypercall`` subcommands."""
    p = add_command(sub, "errno", "Name a Xen error code (hypercall return value).", ERRNO_EXAMPLES)
    p.add_argument(
        "value", nargs="?", metavar="VALUE|NAME", help="13, -13, 0xfffffff3, EACCES, xen_eacces"
    )
    p.add_argument("--all", action="store_true", help="list every error code Xen 4.17 defines")
    p.add_argument("--json", action="store_true", help="print JSON")
    # argparse would read "-EACCES" / "-0xd" as unknown options; it consults this (private,
    # present in 3.8-3.13) matcher to decide what is a negative number. "--" always works.
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = _NEGATIVE_VALUE
    p.set_defaults(func=run_errno)

    p = add_command(
        sub,
        "hypercall",
        "Describe a Xen hypercall: number, availability, calling convention.",
        HYPERCALL_EXAMPLES,
    )
    p.add_argument(
        "value", nargs="?", metavar="NUMBER|NAME", help="36, 0x24, domctl, __HYPERVISOR_domctl, mca"
    )
    p.add_argument(
        "--arch", choices=tuple(hc.ARCH_GROUPS), help="only this architecture (default: all)"
    )
    p.add_argument("--all", action="store_true", help="list every hypercall number")
    p.add_argument(
        "--ops",
        action="store_true",
        help="also list the command numbers of domctl, sysctl, memory_op, hvm_op",
    )
    p.add_argument(
        "--xen",
        metavar="X.Y",
        help=f"use Xen X.Y's tables ({', '.join(releases.KNOWN)}; default: the running "
        f"hypervisor's, {releases.DEFAULT} off Xen)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_hypercall)


def _value_or_all(args: argparse.Namespace, what: str) -> None:
    if args.all and args.value is not None:
        raise UsageError(f"{what}: give a value or --all, not both")
    if not args.all and args.value is None:
        raise UsageError(f"{what}: give a value or --all (see 'xenvmi {what} --help')")


# ---------------------------------------------------------------------------- errno


def errno_row(entry: xerrno.XenErrno) -> dict[str, Any]:
    """The JSON object for one error code (see tests/unit/test_cli_abi.py for the shape)."""
    aliases = [e.name for e in xerrno.ERRNOS if e.alias_of == entry.name]
    return {
        "value": entry.value,
        "name": entry.name,
        "message": entry.message,
        "internal": entry.internal,
        "alias_of": entry.alias_of,
        "aliases": aliases,
        "ret": entry.ret,
        "describe": xerrno.describe(entry.ret),
    }


def _errno_note(row: dict[str, Any]) -> str:
    notes = []
    if row["internal"]:
        notes.append("internal to Xen, never reaches a guest")
    if row["alias_of"]:
        notes.append(f"alias of {row['alias_of']}")
    if row["aliases"]:
        notes.append("also " + ",".join(row["aliases"]))
    return "; ".join(notes)


def run_errno(args: argparse.Namespace) -> int:
    _value_or_all(args, "errno")
    entries = xerrno.all_errnos() if args.all else [xerrno.lookup(args.value)]
    rows = [errno_row(e) for e in entries]
    if args.json:
        print(render.dumps(rows if args.all else rows[0]))
        return 0
    for row in rows:
        row["note"] = _errno_note(row)
    print(render.table(rows, ["value", "name", "ret", "message", "note"]))
    return 0


# ------------------------------------------------------------------------ hypercall


def _convention(arch: str) -> dict[str, Any]:
    cc = hc.CALLING_CONVENTIONS[arch]
    return {
        "arch": cc.arch,
        "instruction": cc.instruction,
        "number_register": cc.number_register,
        "argument_registers": list(cc.argument_registers),
        "return_register": cc.return_register,
        "note": cc.note,
    }


def _subops(table: SubOpTable) -> list[dict[str, Any]]:
    return [
        {"number": op.number, "name": op.name, "status": op.status, "note": op.note}
        for op in table.ops
    ]


def hypercall_row(
    h: hc.Hypercall, arches: tuple[str, ...], abi: releases.AbiRelease | None = None
) -> dict[str, Any]:
    """The JSON object for one hypercall in release ``abi`` (DEFAULT for None),
    availability limited to ``arches``."""
    abi = abi or releases.get()
    table = abi.table(h.name)
    return {
        "number": h.number,
        "name": h.name,
        "x86_name": h.x86_name,
        "availability": {a: h.availability(a) for a in arches},
        "kconfig": h.kconfig,
        "note": h.note,
        "interface_version": abi.interface_versions.get(h.name),
        "subop_count": len(table.current()) if table else None,
    }


def _display_name(h: hc.Hypercall, arch: str | None) -> str:
    if h.x86_name and arch is None:
        return f"{h.name}/{h.x86_name}"
    return h.display_name(arch)


def run_hypercall(args: argparse.Namespace) -> int:
    _value_or_all(args, "hypercall")
    arches = hc.arches_for(args.arch)
    abi = releases.get(xen_release.select(args.xen))
    if args.all:
        return _hypercall_all(args, arches, abi)
    h = abi.hypercall(hc.lookup(args.value, args.arch, abi.version).number)
    table = abi.table(h.name) if args.ops else None  # set: print the commands
    if args.ops and table is None:
        raise UsageError(
            f"hypercall: {h.name} has no command table here (--ops works for "
            f"{', '.join(abi.subop_tables)})"
        )
    if args.json:
        row = hypercall_row(h, arches, abi)
        row["xen"] = abi.version
        row["calling_conventions"] = [_convention(a) for a in arches]
        if table is not None:
            row["subops"] = _subops(table)
        print(render.dumps(row))
        return 0
    title = f"hypercall {h.number}: {_display_name(h, args.arch)}  [Xen {abi.version}]"
    version = abi.interface_versions.get(h.name)
    if version is not None:
        title += f"  (XEN_{h.name.upper()}_INTERFACE_VERSION {version:#010x})"
    lines = [title]
    if h.kconfig:
        lines.append(f"build option: CONFIG_{h.kconfig}")
    if h.note:
        lines.append(f"note: {h.note}")
    rows = []
    for a in arches:
        cc = hc.CALLING_CONVENTIONS[a]
        rows.append(
            {
                "guest": a,
                "available": h.availability(a),
                "instruction": cc.instruction,
                "nr": cc.number_register,
                "arguments": list(cc.argument_registers),
                "return": cc.return_register,
            }
        )
    lines += ["", render.table(rows, list(rows[0]))]
    if table is not None:
        lines += [
            "",
            f"{table.prefix}* commands:",
            render.table(table.ops, ["number", "name", "status", "note"]),
        ]
    print("\n".join(lines))
    return 0


def _hypercall_all(
    args: argparse.Namespace, arches: tuple[str, ...], abi: releases.AbiRelease
) -> int:
    if args.ops:
        raise UsageError("hypercall: --ops needs one hypercall, not --all")
    if args.json:
        print(
            render.dumps(
                {
                    "xen": abi.version,
                    "hypercalls": [hypercall_row(h, arches, abi) for h in abi.hypercalls],
                    "calling_conventions": [_convention(a) for a in arches],
                }
            )
        )
        return 0
    rows = []
    for h in abi.hypercalls:
        row: dict[str, Any] = {"nr": h.number, "name": _display_name(h, args.arch)}
        row.update({a: h.availability(a) for a in arches})
        row["kconfig"] = h.kconfig
        rows.append(row)
    print(render.table(rows, ["nr", "name", *arches, "kconfig"]))
    return 0
