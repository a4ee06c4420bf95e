"""``xenvmi dump DOMAIN FILE``: a guest's memory to an ELF vmcore (or a raw image).

The vmcore is what ``drgn -c``, crash and volatility3 open, and what every xenvmi guest
view reads as it reads a live domain (``xenvmi ps FILE``). Progress is one line on stderr;
the guest is paused only with ``--pause``, and then only while its memory is copied.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from xenvmi import render
from xenvmi.commands import add_command
from xenvmi.errors import UsageError

HELP = "Write a guest's memory to an ELF vmcore or a raw image file."

EXAMPLES = """  xenvmi dump xvm-pvh1 /root/pvh1.vmcore     ELF vmcore: drgn -c, crash, volatility3
  xenvmi dump xvm-hvm /root/hvm.vmcore --pause   the guest stands still while copied
  xenvmi dump xvm-pvh1 /root/pvh1.raw --format raw   flat image, holes zero-filled
  xenvmi dump /root/pvh1.vmcore /root/pvh1.raw --format raw   convert a vmcore
  xenvmi ps /root/pvh1.vmcore                  then every guest view reads the file
  xenvmi shell /root/pvh1.vmcore               drgn on it, Linux helpers imported

Run in dom0 as root. The file is written under a hidden temporary name next to FILE and
renamed when complete (mode 0600: it holds everything in the guest's memory); an error,
a timeout or Ctrl-C removes it. A vmcore holds one NT_PRSTATUS note per vCPU, the kernel's
VMCOREINFO note and one PT_LOAD per RAM range. Exit codes: 0 ok, 1 error or timeout,
2 usage (FILE exists without --force), 3 no such domain, 4 not root, 5 libvmi/PV
unsupported, 7 guest data unusable.
"""


def register(sub: Any) -> None:
    p = add_command(sub, "dump", HELP, EXAMPLES)
    p.add_argument(
        "domain", metavar="DOMAIN", help="guest name or domain id (or a dump file, to convert it)"
    )
    p.add_argument("file", metavar="FILE", help="the file to write")
    p.add_argument(
        "--format",
        choices=("elf", "raw"),
        default="elf",
        help="elf: a kdump-style vmcore (default); raw: byte N = address N",
    )
    p.add_argument(
        "--pause", action="store_true", help="pause the guest while copying (always resumed)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="give up (and remove the file) after this long (default 1800)",
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="rescan memory for the kernel instead of using the cache",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


class ProgressLine:
    """One line on stderr, redrawn at most 4 times a second on a terminal (every 10 s
    as separate lines otherwise, so logs stay readable): percent, MiB and MB/s."""

    def __init__(self, label: str, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.25 if self.tty else 10.0
        self.label, self.t0, self.last, self.drawn = label, time.monotonic(), 0.0, False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and done < total:
            return
        self.last = now
        pct = 100.0 * done / total if total else 100.0
        rate = done / 1e6 / max(now - self.t0, 1e-6)
        text = (
            f"xenvmi: dumping {self.label}: {pct:5.1f}%  {done >> 20}/{total >> 20} MiB"
            f"  {rate:.1f} MB/s"
        )
        self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so SIGTERM also removes the partial file


def run(args: argparse.Namespace) -> int:
    from xenvmi import guests

    if not args.timeout > 0:
        raise UsageError("dump: --timeout needs a number of seconds > 0")
    line = None if args.quiet else ProgressLine(str(args.domain))
    notify = (
        (lambda msg: None)
        if args.quiet
        else (lambda msg: print(f"xenvmi: {msg}", file=sys.stderr, flush=True))
    )
    try:
        old = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (an embedding program): leave SIGTERM alone
        old = None
    try:
        summary = guests.dump(
            args.domain,
            args.file,
            fmt=args.format,
            pause=args.pause,
            timeout=args.timeout,
            progress=line,
            force=args.force,
            use_cache=not args.no_cache,
            notify=notify,
        )
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        if line:
            line.finish()
    ranges = [{"start": s, "end": e} for s, e in summary.ranges]
    if args.json:
        print(
            render.dumps(
                {
                    "path": summary.path,
                    "format": summary.format,
                    "bytes": summary.bytes,
                    "ram_bytes": summary.ram_bytes,
                    "ranges": ranges,
                    "vcpus": summary.vcpus,
                    "vmcoreinfo": summary.vmcoreinfo,
                    "direct_map": summary.direct_map,
                    "seconds": round(summary.seconds, 3),
                    "mb_per_s": round(summary.mb_per_s, 1),
                    "warnings": summary.warnings,
                }
            )
        )
    else:
        what = "ELF vmcore" if summary.format == "elf" else "raw image"
        print(
            f"{summary.path}: {what}, {summary.bytes} bytes: {summary.ram_bytes >> 20} MiB "
            f"of RAM in {len(ranges)} range(s), {summary.vcpus} vCPU(s), "
            f"{summary.seconds:.1f}s ({summary.mb_per_s:.1f} MB/s)"
        )
    for w in summary.warnings:
        print(f"xenvmi: warning: {w}", file=sys.stderr)
    return 0
