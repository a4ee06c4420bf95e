"""``xenvmi kernel|ps|lsmod|dmesg|regs DOMAIN|FILE``: the built-in views as commands.

Each command is made from its view's one definition (``xenvmi/views/``): its help and
examples, its options (``--pause``, ``--tail N``, ``--vcpu N``), its table or text, and its
JSON, which is ``xenvmi run VIEW --json``'s shape. The view runs through the plugin runner
as any plugin does, with a deadline, isolated, its guest opened and closed in one thread.

Everything comes from the guest's memory (VMCOREINFO, kallsyms, BTF) through LibVMI or
Xen's own libraries (``--backend``) in dom0, or from a dump of it (an ELF vmcore or a raw
image: ``xenvmi dump``). Slow steps (the first discovery after a guest boots) report
progress on stderr; warnings about corrupt or changing guest data go to stderr too, and
the rows that could be read still print (JSON carries ``complete`` and ``warnings``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xenvmi.commands import add_command
from xenvmi.commands.plugins import print_result
from xenvmi.guests import BACKENDS

COMMON = """
Run in dom0 as root. The first command after a guest boots scans its memory for the
kernel (seconds to a minute under emulation); later ones reuse what it found
(cached per boot in /run/xenvmi). DOMAIN may also be a dump FILE (`xenvmi dump`'s
vmcore, a kdump vmcore or a raw memory image): a path with a '/', or an existing
file's name. --json prints `xenvmi run VIEW --json`'s shape (docs/views.md).
Exit codes: 0 ok (see stderr for warnings), 3 no such domain or file,
4 not root, 5 no guest-memory backend, a PV guest's memory, or a requirement
missing, 7 guest data (or dump file) unusable.
"""

#: JSON keys the commands used for their rows before they shared ``rows`` with ``xenvmi
#: run`` (0.1); kept beside ``rows`` for one release, then removed (CHANGELOG.md).
LEGACY_KEYS = {
    "ps": "processes",
    "lsmod": "modules",
    "dmesg": "records",
    "regs": "vcpus",
    "kernel": "kernel",
}


def register(sub: Any, only: str | None = None) -> None:
    """Every view's command, or (``only``, a view module's name) just that one's."""
    from xenvmi.plugins.base import option_specs, yes_no
    from xenvmi.plugins.loader import view_classes

    for view in view_classes(only):
        if not view.command:
            continue
        p = add_command(sub, view.name, view.description, view.examples + COMMON)
        p.add_argument(
            "domain",
            metavar="DOMAIN|FILE",
            help="guest name or domain id, or a dump file (vmcore or raw image)",
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            metavar="SECONDS",
            help="give up after this long (default 120)",
        )
        p.add_argument(
            "--no-cache",
            action="store_true",
            help="rescan memory for the kernel instead of using the cache",
        )
        p.add_argument(
            "--vmlinux",
            metavar="FILE",
            help="the guest kernel's vmlinux with DWARF (e.g. Debian's linux-image-*-dbg), "
            "for its types when the kernel has no BTF",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
        p.add_argument(
            "--backend",
            choices=BACKENDS,
            default=None,
            help="read a live domain through LibVMI or Xen's own libraries "
            "(default: $XENVMI_BACKEND, else LibVMI where it is installed)",
        )
        for key, spec in option_specs(view).items():
            if spec.kind is yes_no:
                p.add_argument(
                    f"--{key}", action="store_const", const="yes", dest=f"opt_{key}", help=spec.help
                )
            else:
                p.add_argument(
                    f"--{key}",
                    metavar=spec.metavar,
                    dest=f"opt_{key}",
                    type=_checked(spec.kind),
                    help=spec.help,
                )
        p.set_defaults(func=run_view, view=view)


def _checked(kind):
    """An argparse type that rejects what ``kind`` rejects (a usage error naming the flag)
    and passes the text on: the view converts its options itself, as under `xenvmi run`."""

    def check(text: str) -> str:
        kind(text)
        return text

    check.__name__ = getattr(kind, "__name__", "value")
    return check


def run_view(args: argparse.Namespace) -> int:
    from xenvmi import plugins
    from xenvmi.errors import UsageError

    view = args.view
    if not args.timeout > 0:
        raise UsageError(f"{view.name}: --timeout must be positive")
    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    quiet = args.quiet
    progress = (
        (lambda m: None)
        if quiet
        else (lambda m: print(f"xenvmi: {m}", file=sys.stderr, flush=True))
    )
    result = plugins.run(
        view.name,
        args.domain,
        timeout=args.timeout,
        options=options,
        progress=progress,
        use_cache=not args.no_cache,
        plugin=view,
        backend=args.backend,
        vmlinux=args.vmlinux,
    )
    legacy = LEGACY_KEYS.get(view.name)
    extra = {}
    if legacy and result.error is None:
        extra[legacy] = result.rows[0] if legacy == "kernel" and result.rows else result.rows
    return print_result(result, args.json, view, extra)
