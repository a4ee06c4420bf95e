"""Write a Volatility3 ISF (Intermediate Symbol Format) from a guest kernel's BTF and kallsyms.

volatility3's Linux plugins need an ISF for the exact kernel they analyse; users normally
make one with dwarf2json from a vmlinux with DWARF, which Debian-style guests do not ship.
xenvmi already has everything an ISF holds, read from guest memory: types from the
kernel's own BTF (:class:`~xenvmi.guest.btf.Btf`), symbols from its kallsyms tables, and
the ``linux_banner`` string volatility3 matches an image with. This module converts them,
in the shape dwarf2json gives (format 6.2.0, the newest volatility3 2.x reads; types by
:mod:`xenvmi.guest.isf_types`):

* symbol addresses are link-time (KASLR slide removed, as in System.map): volatility3
  finds the slide itself (VMCOREINFO's KERNELOFFSET, or its init_task scan) and adds it;
* BTF has no global variables, so the globals volatility3 reads get declared types, as
  xenvmi's own drgn object finder gives them (:data:`~xenvmi.guest.btf_drgn.DEFAULT_GLOBALS`
  plus :data:`VOL3_GLOBALS`); every other symbol is ``void``, as dwarf2json's symtab ones;
* ``linux_banner`` carries its text (``constant_data``): volatility3 finds the ISF that
  belongs to an image by scanning the image for it.

Guest data is hostile: the banner read is bounded and checked, symbol counts capped.
"""

from __future__ import annotations

import base64
import json
import lzma
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from xenvmi import __version__
from xenvmi.errors import GuestDataError
from xenvmi.guest import btf as B
from xenvmi.guest.isf_types import VOID, IsfSummary, IsfTypes

FORMAT = "6.2.0"  # dwarf2json 0.9's; volatility3 reads 6.x with x <= its newest (6.2)
KERNEL_MAP = 0xFFFF_FFFF_8000_0000  # x86-64 __START_KERNEL_map: KASLR moves what is above
MAX_SYMBOLS = 2_000_000
MAX_BANNER = 1024
MAX_ARRAY_GUESS = 1 << 24  # elements of a `T x[]` global sized from its symbol
#: Globals volatility3's Linux plugins read beyond xenvmi's own table (btf_drgn).
VOL3_GLOBALS: Mapping[str, str] = {
    "timekeeper": "struct timekeeper",
    "wall_to_monotonic": "struct timespec",
    "total_sleep_time": "struct timespec",
    "taint_flags": "const struct taint_flag []",
    "num_registered_fb": "int",
    "registered_fb": "struct fb_info *[]",
    "module_addr_min": "unsigned long",
    "module_addr_max": "unsigned long",
    "ftrace_ops_list": "struct ftrace_ops *",
    "ftrace_list_end": "struct ftrace_ops",
    "ftrace_ops_trampoline_list": "struct list_head",
    "ftrace_mod_maps": "struct list_head",
    "height_to_maxnodes": "unsigned long []",
    "height_to_maxindex": "unsigned long []",
    "cap_last_cap": "const int",
    "tty_drivers": "struct list_head",
    "sockfs_dentry_operations": "const struct dentry_operations",
    "socket_file_ops": "const struct file_operations",
    "module_kset": "struct kset *",
    "keyboard_notifier_list": "struct atomic_notifier_head",
    "bpf_kallsyms": "struct list_head",
}
#: Globals whose type is an anonymous struct: found by the members it has.
ANONYMOUS_GLOBALS: Mapping[str, tuple[str, ...]] = B.ANONYMOUS_GLOBALS


# -- the document ------------------------------------------------------------------------


def declared_globals() -> dict[str, Any]:
    """xenvmi's table of typed globals (btf_drgn, when drgn is there) plus volatility3's."""
    try:
        from xenvmi.guest.btf_drgn import DEFAULT_GLOBALS
    except ImportError:  # drgn absent: the ISF still gets volatility3's own list
        DEFAULT_GLOBALS = {}
    out: dict[str, Any] = {k: v for k, v in DEFAULT_GLOBALS.items() if isinstance(v, str)}
    out.update(VOL3_GLOBALS)
    out.update(ANONYMOUS_GLOBALS)
    return out


def _symbol_type(types: IsfTypes, name: str, spec: Any, size: int) -> dict | None:
    var = types.named(name, (B.VAR,))
    if var is not None:  # a BTF VAR (per-CPU variables) wins, as in xenvmi's finder
        return types.desc(types.btf.get(var).type)
    if isinstance(spec, tuple):
        return types.anonymous_with(spec)
    if not isinstance(spec, str):
        return None
    d, dims = types.parse(spec)
    if d is None:
        return None
    for n in reversed(dims):  # `T x[2][3]`: array of 2 arrays of 3 T
        if n is None:  # `T x[]`: as many as the symbol's size holds
            elem = types.sizeof(d)
            n = min(size // elem, MAX_ARRAY_GUESS) if elem and size > 0 else 0
        d = {"kind": "array", "count": n, "subtype": d}
    return d


def build_isf(
    btf: B.Btf,
    symbols: Iterable[Any],
    *,
    kaslr_slide: int = 0,
    banner: bytes | None = None,
    declared: Mapping[str, Any] | None = None,
    slid: Callable[[int], bool] = lambda addr: addr >= KERNEL_MAP,
) -> tuple[dict, IsfSummary]:
    """The ISF document for a kernel: ``symbols`` have ``name``, ``address`` (as loaded,
    i.e. with the KASLR slide) and ``size``; ``banner`` is ``linux_banner``'s bytes up to
    and including its NUL (what volatility3 scans images for). ``slid(address)``: whether
    KASLR moved the symbol (x86-64: the image above __START_KERNEL_map; per-CPU symbols
    are offsets)."""
    summary = IsfSummary(kaslr_slide=kaslr_slide)
    types = IsfTypes(btf, summary)
    user_types, enums = types.user_types(), types.enums()
    syms: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    for s in symbols:
        name, addr = s.name, s.address
        if len(syms) >= MAX_SYMBOLS:
            raise GuestDataError(f"more than {MAX_SYMBOLS} kernel symbols: not a kernel")
        if not name or name in syms:
            summary.skip("duplicate or unnamed symbols")
            continue
        if slid(addr):  # per-CPU symbols are absolute offsets: KASLR leaves them
            addr -= kaslr_slide
        if not 0 <= addr < 1 << 64:
            summary.skip("symbols with impossible addresses")
            continue
        syms[name] = {"address": addr, "type": VOID}
        sizes[name] = int(getattr(s, "size", 0) or 0)
    declared = declared_globals() if declared is None else declared
    for name in set(declared) | {v for v in syms if types.named(v, (B.VAR,)) is not None}:
        if name not in syms or name == "linux_banner":
            continue
        d = _symbol_type(types, name, declared.get(name), sizes[name])
        if d is None:
            summary.skip("declared globals whose type this BTF lacks")
            continue
        syms[name]["type"] = d
        summary.typed_symbols += 1
    if banner is not None and "linux_banner" in syms:
        char = types.named("char", (B.INT,))
        syms["linux_banner"]["type"] = {
            "kind": "array",
            "count": len(banner),
            "subtype": types.desc(char) if char else VOID,
        }
        syms["linux_banner"]["constant_data"] = base64.b64encode(banner).decode()
        summary.typed_symbols += 1
        summary.banner = banner.rstrip(b"\0").decode("latin-1").strip()
    else:
        summary.warnings.append(
            "no linux_banner (symbol or text): volatility3 will not match this ISF to an image"
        )
    # Nothing boot-specific (addresses, dates): every boot of one kernel build gives the
    # same file, so volatility3's validation cache (keyed by content) hits across guests.
    doc = {
        "metadata": {
            "format": FORMAT,
            "producer": {"name": "xenvmi", "version": __version__},
            "linux": {
                "symbols": [{"kind": "symtab", "name": "kallsyms (guest memory)"}],
                "types": [{"name": "BTF (guest memory)"}],
            },
        },
        "base_types": types.base,
        "user_types": user_types,
        "enums": enums,
        "symbols": syms,
    }
    summary.base_types, summary.user_types = len(types.base), len(user_types)
    summary.enums, summary.symbols = len(enums), len(syms)
    return doc, summary


def write_isf(doc: dict, path: str | os.PathLike, *, xz: bool = False) -> Path:
    """Write atomically; ``xz`` (or a ``.xz`` name) compresses, which volatility3 reads."""
    path = Path(path)
    if xz and path.suffix != ".xz":
        path = path.with_name(path.name + ".xz")
    if not (path.name.endswith(".json") or path.name.endswith(".json.xz")):
        raise ValueError(f"{path}: volatility3 only loads ISF files named *.json or *.json.xz")
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if path.suffix == ".xz":
            with lzma.open(tmp, "wb", preset=3) as f:
                f.write(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_banner(read: Callable[[int, int], bytes], address: int) -> bytes:
    """``linux_banner`` at ``address`` through ``read(addr, n)``: bounded, checked text."""
    out = b""
    while len(out) < MAX_BANNER:
        chunk = read(address + len(out), 64)
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[: nul + 1]
            break
        out += chunk
    else:
        raise GuestDataError(f"linux_banner is not a string within {MAX_BANNER} bytes")
    if not out.startswith(b"Linux version ") or any(
        c < 0x20 and c not in (0x0A, 0x00) or c > 0x7E for c in out
    ):
        raise GuestDataError(f"linux_banner is not a kernel banner: {out[:40]!r}")
    return out


def from_kernel_program(
    kp, progress: Callable[[str], None] = lambda m: None
) -> tuple[dict, IsfSummary]:
    """The ISF of a guest kernel opened by :func:`xenvmi.guest.program.build`."""
    import drgn

    prog = kp.prog
    finder = prog.cache.get("xenvmi_btf")
    if finder is None:
        raise GuestDataError(f"{kp.memory.name}: no BTF attached to the kernel program")
    kp.view(60.0)  # a fresh deadline for the reads below
    try:
        address = prog.symbol("linux_banner").address
        banner = read_banner(lambda a, n: prog.read(a, n), address)
    except LookupError:
        raise GuestDataError(
            f"{kp.memory.name}: kallsyms has no linux_banner (kernel "
            "built without CONFIG_KALLSYMS_ALL?): volatility3 could not "
            "match an ISF to the image"
        ) from None
    except drgn.FaultError as e:
        raise GuestDataError(f"{kp.memory.name}: linux_banner unreadable: {e}") from None
    info = kp.discovery.info
    prefix = f"Linux version {info.osrelease} (".encode()
    progress(f"writing volatility3 types and symbols ({kp.btf_types} BTF types)")
    doc, summary = build_isf(
        finder.btf,
        prog.symbols(),
        kaslr_slide=info.kernel_offset,
        banner=banner,
        slid=info.in_image if kp.memory.arch == "aarch64" else lambda a: a >= KERNEL_MAP,
    )
    if not banner.startswith(prefix):
        summary.warnings.append(
            f"linux_banner does not start with {prefix!r}: volatility3's "
            "VMCOREINFO stacker will skip it"
        )
    return doc, summary
