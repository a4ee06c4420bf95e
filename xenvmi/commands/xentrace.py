"""`xenvmi xentrace ...`: decode and summarise xentrace files; record one by running Xen's
own ``xentrace`` (the only supported way to read Xen's trace buffers from dom0)."""

from __future__ import annotations

import sys

from xenvmi import render
from xenvmi.commands import add_command, usage
from xenvmi.errors import NotFoundError, UsageError, XenvmiError
from xenvmi.trace import trc_events as T

EXAMPLES = """  xenvmi xentrace record /tmp/t.bin --seconds 5   trace PV/HVM hypercalls (root, dom0)
  xenvmi xentrace summary /tmp/t.bin               hypercall counts per domain
  xenvmi xentrace decode /tmp/t.bin --limit 20     the first records, one a line
  xenvmi xentrace decode /tmp/t.bin --json | jq -c 'select(.domid == 1)'
  xenvmi xentrace decode /tmp/t.bin --xen 4.20     a file recorded on Xen 4.20
"""

#: xentrace -e class names (tools/xentrace/xentrace.c parse_evtmask knows gen, sched,
#: dom0op, hvm and all; we pass numbers, so every public/trace.h class can be named).
MASK_NAMES = {name[4:].lower(): mask for mask, name in T.CLASS_NAMES.items()}
MASK_NAMES["all"] = 0x0FFFF000
#: sched is needed to attribute records to domains; pv and hvm carry the hypercalls.
DEFAULT_MASK = "sched,pv,hvm"


def parse_mask(text: str) -> int:
    """``sched,pv`` or ``0x0022f000`` -> the event mask xentrace -e takes."""
    mask = 0
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        if part in MASK_NAMES:
            mask |= MASK_NAMES[part]
            continue
        try:
            mask |= int(part, 0)
        except ValueError:
            raise UsageError(
                f"xentrace: unknown event class {part!r} (one of "
                f"{', '.join(sorted(MASK_NAMES))}, or a number)"
            ) from None
    if not 0 < mask <= 0x0FFFFFFF:
        raise UsageError(f"xentrace: event mask {text!r} selects nothing")
    return mask


def _open(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NotFoundError(f"xentrace: no such file: {path}") from None
    except OSError as exc:
        raise XenvmiError(f"xentrace: cannot read {path}: {exc.strerror}") from None


def _warn(decoder) -> None:
    for err in decoder.errors:
        print(f"xenvmi: warning: skipped damaged data: {err}", file=sys.stderr)
    if decoder.error_count > len(decoder.errors):
        print(
            f"xenvmi: warning: ... and {decoder.error_count - len(decoder.errors)} more",
            file=sys.stderr,
        )


def _fields_text(fields: dict) -> str:
    out = []
    for key, value in fields.items():
        if key == "args":
            value = ",".join("-" if a is None else hex(a) for a in value)
        out.append(f"{key}={value}")
    return " ".join(out)


def cmd_decode(args) -> int:
    from xenvmi import xen_release
    from xenvmi.trace.xentrace import TraceDecoder, domain_label

    limit = args.limit
    release = xen_release.select(args.xen)
    with _open(args.file) as stream:
        decoder = TraceDecoder(stream, strict=not args.keep_going, release=release)
        out = sys.stdout
        n = -1
        for n, rec in enumerate(decoder):
            if limit is not None and n >= limit:
                break
            if args.json:
                out.write(render.json_line(rec) + "\n")
            else:
                tsc = "-" if rec.tsc is None else str(rec.tsc)
                dom = "" if rec.domid is None else f"{domain_label(rec.domid)}v{rec.vcpu}"
                out.write(
                    f"{rec.offset:>10} cpu{rec.cpu:<3} {tsc:>16} {dom:<9} {rec.name}"
                    f" {_fields_text(rec.fields) or ' '.join(map(hex, rec.extra))}".rstrip()
                    + "\n"
                )
    _warn(decoder)
    if n < 0:
        _empty(args.file)
    return 0


def _empty(path) -> None:
    print(
        f"xenvmi: warning: {path} holds no trace records (xentrace writes none when "
        "nothing matched its mask)",
        file=sys.stderr,
    )


def cmd_summary(args) -> int:
    from xenvmi.trace.xentrace import summarize_file

    with _open(args.file) as stream:
        summary = summarize_file(stream, strict=not args.keep_going)
    for err in summary.errors:
        print(f"xenvmi: warning: skipped damaged data: {err}", file=sys.stderr)
    if not summary.records and not summary.errors:
        _empty(args.file)
    if args.json:
        print(render.dumps(summary))
        return 0
    first, last = summary.first_tsc, summary.last_tsc  # both set by any timestamped record
    span = "-" if first is None or last is None else f"{last - first}"
    print(
        f"windows {summary.windows}  records {summary.records}  cpus "
        f"{','.join(map(str, summary.cpus)) or '-'}  tsc span {span}  "
        f"lost records {summary.lost_records}"
    )
    print("classes: " + ("  ".join(f"{k} {v}" for k, v in summary.events_by_class.items()) or "-"))
    if summary.hypercalls:
        print()
        print(render.table(summary.hypercalls, ["domain", "source", "number", "name", "count"]))
    if summary.unattributed:
        print(
            f"\n{summary.unattributed} hypercalls ran before any scheduler record named "
            "their domain (trace with the sched class: --mask sched,pv,hvm)"
        )
    return 0


def cmd_record(args) -> int:
    from xenvmi.backends.xentrace_recorder import record

    if args.seconds < 1:
        raise UsageError("xentrace: --seconds must be at least 1")
    size = record(
        args.file,
        parse_mask(args.mask),
        args.seconds,
        grace=args.grace,
        buffer_pages=args.buffer_pages,
        binary=args.xentrace,
        announce=lambda cmd: print(f"xenvmi: running {' '.join(cmd)}", file=sys.stderr),
    )
    print(f"{args.file}: {size} bytes; `xenvmi xentrace summary {args.file}` counts them")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def register(sub) -> None:
    xt = add_command(sub, "xentrace", "record, decode and summarise Xen trace buffers", EXAMPLES)
    xsub = xt.add_subparsers(dest="xentrace_command", metavar="ACTION", parser_class=type(xt))
    xt.set_defaults(func=usage(xt))

    p = add_command(
        xsub,
        "decode",
        "print every record of a xentrace file",
        "  xenvmi xentrace decode t.bin --limit 50\n"
        "  xenvmi xentrace decode t.bin --json > t.jsonl\n"
        "  xenvmi xentrace decode t.bin --xen 4.20   event names of Xen 4.20's trace.h\n",
    )
    p.add_argument("file", help="a file written by xentrace")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument(
        "--xen",
        metavar="X.Y",
        help="name events as Xen X.Y's trace.h does (default: the running hypervisor's "
        "release, 4.17 off Xen; 4.19+ splits TRC_HVM_VMEXIT into VMX and SVM)",
    )
    p.add_argument("--limit", type=_positive, default=None, help="stop after N records")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="skip damaged windows (warnings on stderr) instead of failing",
    )
    p.set_defaults(func=cmd_decode)

    p = add_command(
        xsub,
        "summary",
        "hypercall counts per domain, and file totals",
        "  xenvmi xentrace summary t.bin\n  xenvmi xentrace summary t.bin --json\n",
    )
    p.add_argument("file", help="a file written by xentrace")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="skip damaged windows (warnings on stderr) instead of failing",
    )
    p.set_defaults(func=cmd_summary)

    p = add_command(
        xsub,
        "record",
        "run Xen's xentrace for a while (root, in dom0)",
        "  xenvmi xentrace record t.bin --seconds 10\n"
        "  xenvmi xentrace record t.bin --mask sched,pv --buffer-pages 256\n",
    )
    p.add_argument("file", help="the trace file to write")
    p.add_argument("--seconds", type=int, default=10, help="how long to trace (10)")
    p.add_argument(
        "--mask",
        default=DEFAULT_MASK,
        help=f"event classes ({','.join(sorted(MASK_NAMES))}) or a number "
        f"({DEFAULT_MASK}; keep sched to attribute records to domains)",
    )
    p.add_argument(
        "--buffer-pages",
        type=_positive,
        default=None,
        help="per-CPU trace buffer size in pages (xentrace -S; first use per boot)",
    )
    p.add_argument("--xentrace", default=None, help="path of the xentrace binary")
    p.add_argument(
        "--grace",
        type=int,
        default=30,
        help="seconds past --seconds before xentrace is killed (30)",
    )
    p.set_defaults(func=cmd_record)
