"""``xenvmi kernel|ps|lsmod|dmesg|regs DOMAIN|FILE``: see inside a guest, no agent, no files.

Everything comes from the guest's memory (VMCOREINFO, kallsyms, BTF) through LibVMI in
dom0, or from a dump of it (an ELF vmcore or a raw image: ``xenvmi dump``). Slow steps (the first discovery after a guest boots) report progress on stderr;
warnings about corrupt or changing guest data go to stderr too, and the rows that could
be read still print (JSON carries ``complete`` and ``warnings``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xenvmi import render
from xenvmi.commands import add_command
from xenvmi.errors import UsageError

COMMON = """
Run in dom0 as root. The first command after a guest boots scans its memory for the
kernel (seconds to a minute under emulation); later ones reuse what it found
(cached per boot in /run/xenvmi). DOMAIN may also be a dump FILE (`xenvmi dump`'s
vmcore, a kdump vmcore or a raw memory image): a path with a '/', or an existing
file's name. Exit codes: 0 ok (see stderr for warnings), 3 no such domain or file,
4 not root, 5 libvmi/PV unsupported, 7 guest data (or dump file) unusable.
"""

EXAMPLES = {
    "kernel": "  xenvmi kernel xvm-hvm          release, KASLR slide, BTF, and where each came from\n"
              "  xenvmi kernel 3 --json         by domain id\n"
              "  xenvmi kernel /root/hvm.vmcore a dump (see xenvmi dump)\n",
    "ps": "  xenvmi ps xvm-pvh1             processes: pid, ppid, state, uid, start, command\n"
          "  xenvmi ps xvm-pvh1 --json      everything, with warnings and completeness\n"
          "  xenvmi ps xvm-hvm --pause      pause the guest while reading (consistent list)\n"
          "  xenvmi ps /root/pvh1.vmcore    the same from a dump (or ./pvh1.raw, a raw image)\n",
    "lsmod": "  xenvmi lsmod xvm-pvh2          loaded modules\n"
             "  xenvmi lsmod /root/pvh2.vmcore a dump's\n",
    "dmesg": "  xenvmi dmesg xvm-pvh1          the kernel log\n"
             "  xenvmi dmesg xvm-pvh1 --tail 20\n"
             "  xenvmi dmesg /root/pvh1.vmcore the log as it was when dumped\n",
    "regs": "  xenvmi regs xvm-pv             vCPU 0's decoded state (works for PV guests too)\n"
            "  xenvmi regs xvm-hvm --vcpu all --json\n"
            "  xenvmi regs /root/hvm.vmcore   the registers saved in a vmcore\n",
}

HELP = {
    "kernel": "Show a guest kernel's release, KASLR slide, BTF and symbols, found in memory.",
    "ps": "List a guest's processes from its memory (no agent).",
    "lsmod": "List a guest's loaded kernel modules from its memory.",
    "dmesg": "Print a guest's kernel log from its memory.",
    "regs": "Show a guest vCPU's registers, decoded (modes, paging, syscall MSRs).",
}


def register(sub: Any) -> None:
    for name in ("kernel", "ps", "lsmod", "dmesg", "regs"):
        p = add_command(sub, name, HELP[name], EXAMPLES[name] + COMMON)
        p.add_argument("domain", metavar="DOMAIN|FILE",
                       help="guest name or domain id, or a dump file (vmcore or raw image)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "regs":
            p.add_argument("--vcpu", default="0", help="vCPU number or 'all' (default 0)")
        else:
            p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                           help="give up reading after this long (default 120)")
            p.add_argument("--no-cache", action="store_true",
                           help="rescan memory for the kernel instead of using the cache")
            p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
        if name in ("ps", "lsmod", "dmesg"):
            p.add_argument("--pause", action="store_true",
                           help="pause the guest while reading (always resumed)")
        if name == "dmesg":
            p.add_argument("--tail", type=int, metavar="N", help="only the last N records")
        p.set_defaults(func=globals()[f"run_{name}"])


def _progress(args: argparse.Namespace):
    if getattr(args, "quiet", False):
        return lambda msg: None
    return lambda msg: print(f"xenvmi: {msg}", file=sys.stderr, flush=True)


def _open(args: argparse.Namespace):
    from xenvmi import vmi
    return vmi.open_guest(args.domain, use_cache=not args.no_cache, progress=_progress(args))


def _emit(args: argparse.Namespace, view, key: str, text: str, payload=None) -> int:
    """Print a view: JSON ``{domain, KEY: rows (or payload), complete, warnings, seconds}``."""
    if args.json:
        value = view.rows if payload is None else payload
        print(render.dumps({"domain": view.domain, key: value, "complete": view.complete,
                            "warnings": view.warnings, "seconds": round(view.seconds, 3)}))
    else:
        if text:
            print(text)
    for w in view.warnings:
        print(f"xenvmi: warning: {w}", file=sys.stderr)
    if not view.complete:
        print(f"xenvmi: warning: {key} of {view.domain} may be incomplete (see above)",
              file=sys.stderr)
    return 0


def run_ps(args: argparse.Namespace) -> int:
    with _open(args) as g:
        view = g.processes(timeout=args.timeout, pause=args.pause)
    rows = [{"pid": p.pid, "ppid": p.ppid, "s": p.state, "uid": p.uid,
             "start": None if p.start_time is None else f"{p.start_time:.2f}",
             "command": p.cmdline if p.cmdline else f"[{p.comm}]"} for p in view.rows]
    return _emit(args, view, "processes",
                 render.table(rows, ["pid", "ppid", "s", "uid", "start", "command"]))


def run_lsmod(args: argparse.Namespace) -> int:
    with _open(args) as g:
        view = g.modules(timeout=args.timeout, pause=args.pause)
    rows = [{"module": m.name, "size": m.size, "used": m.refcount, "state": m.state,
             "address": None if m.address is None else f"{m.address:#x}"} for m in view.rows]
    text = render.table(rows, ["module", "size", "used", "state", "address"]) if rows \
        else "(no modules loaded)"
    return _emit(args, view, "modules", text)


def run_dmesg(args: argparse.Namespace) -> int:
    with _open(args) as g:
        view = g.kernel_log(timeout=args.timeout, pause=args.pause)
    if args.tail is not None:
        if args.tail < 0:
            raise UsageError("dmesg: --tail needs a number >= 0")
        view.rows = view.rows[-args.tail:] if args.tail else []
    text = "\n".join(f"[{r.timestamp:12.6f}] {r.text}" for r in view.rows)
    return _emit(args, view, "records", text)


def run_kernel(args: argparse.Namespace) -> int:
    with _open(args) as g:
        view = g.kernel_info(timeout=args.timeout)
    k = view.rows[0]
    if args.json:  # one kernel: an object, not a list of one
        return _emit(args, view, "kernel", "", payload=k)
    lines = [
        f"domain:        {k.domain}",
        f"release:       {k.release}",
        f"version:       {k.version or '-'}",
        f"hostname:      {k.hostname or '-'}",
        f"build id:      {k.build_id or '-'}",
        f"KASLR slide:   {k.kaslr_slide:#x}" + ("  (not randomized)" if not k.kaslr_slide else ""),
        f"phys_base:     {k.phys_base:#x}",
        f"VMCOREINFO:    at guest-physical {k.vmcoreinfo_address:#x}, "
        + (f"from the cache ({k.discovery_seconds:.2f}s)" if k.discovery_cached
           else "from the dump's note" if "note of the dump" in k.sources.get("vmcoreinfo", "")
           else f"found by scanning in {k.discovery_seconds:.1f}s"),
        f"symbols:       {k.symbols} (kallsyms)",
        f"BTF:           {k.btf_size} bytes, {k.btf_types} types",
        "sources:",
    ] + [f"  {key:<12} {value}" for key, value in k.sources.items()]
    return _emit(args, view, "kernel", "\n".join(lines))


def run_regs(args: argparse.Namespace) -> int:
    from xenvmi import vmi
    if args.vcpu == "all":
        vcpu = None
    else:
        try:
            vcpu = int(args.vcpu, 0)
        except ValueError:
            raise UsageError(f"regs: --vcpu wants a number or 'all', not {args.vcpu!r}") from None
    view = vmi.regs(args.domain, vcpu)
    if args.json:
        return _emit(args, view, "vcpus", "")
    blocks = [_regs_text(r) for r in view.rows]
    return _emit(args, view, "vcpus", "\n\n".join(blocks))


def _hex(v: int | None) -> str:
    return "-" if v is None else f"{v:#018x}"


def _regs_text(r) -> str:
    d = r.decoded
    flags = " ".join(d.rflags_flags)
    lines = [
        f"{r.domain} vCPU {r.vcpu}: {d.cpu_mode or '?'} mode, "
        f"CPL {'?' if d.cpl is None else d.cpl}, paging "
        f"{d.paging_mode or '?'}",
        f"  rip {_hex(d.rip)}  rsp {_hex(d.rsp)}  rflags {_hex(d.rflags)} [{flags}]",
        f"  cr0 {_hex(d.cr0)} [{' '.join(d.cr0_flags)}]",
        f"  cr3 {_hex(d.cr3)} (page tables at {_hex(d.page_table_base)}"
        + (f", PCID {d.pcid}" if d.pcid is not None else "") + ")",
        f"  cr4 {_hex(d.cr4)} [{' '.join(d.cr4_flags)}]",
        f"  efer {_hex(d.efer)} [{' '.join(d.efer_flags)}]",
        f"  fs_base {_hex(d.fs_base)}  gs_base {_hex(d.gs_base)}  "
        f"kernel_gs {_hex(d.kernel_gs_base)}",
        f"  syscall entry (lstar) {_hex(d.lstar)}  cstar {_hex(d.cstar)}  "
        f"mask [{' '.join(d.syscall_mask_flags)}]",
    ]
    gprs = [k for k in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10",
                        "r11", "r12", "r13", "r14", "r15") if k in r.raw]
    for i in range(0, len(gprs), 4):
        lines.append("  " + "  ".join(f"{k:>3} {r.raw[k]:#018x}" for k in gprs[i:i + 4]))
    return "\n".join(lines)
