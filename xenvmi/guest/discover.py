"""Find a guest kernel's VMCOREINFO note with no file at all; remember it for the boot.

The note lives in a page the kernel allocated early, which on x86 ends up near the top
of RAM, so the scan runs top-down in 1 MiB chunks (under TCG about 10 MB/s: a cold
scan of a 256 MiB guest can take half a minute, a hit near the top a second); on arm64
it lies just above the kernel image, 35-160 MiB into RAM (Debian 11-13), so there the
scan runs bottom-up, holes below RAM skipped a MiB at a time. Each
candidate must parse (:mod:`xenvmi.guest.vmcoreinfo`) and its OSRELEASE must equal the
kernel's own ``init_uts_ns`` release, read through the note's own symbol and phys_base:
a user process can plant a fake note in its memory, but not in the kernel image.

The result is cached per domain boot: the key is the domain's uuid and domid, and a hit
must find the very same note bytes at the cached address, so a reboot (or a note that
moved or changed) falls back to a scan. A dump file is keyed by its path, inode and mtime
(``mem.cache_key``); a vmcore carries the note itself (``mem.vmcoreinfo``): no scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xenvmi.backends.memory import GuestMemory
from xenvmi.errors import GuestDataError, NotFoundError, Unavailable
from xenvmi.guest import nonote
from xenvmi.guest import vmcoreinfo as V

CHUNK = 1 << 20
MAX_CANDIDATES = 64  # notes (real or planted) checked before giving up
CACHE_VERSION = 1
#: How long a scan that found no note is remembered for the domain's boot: long enough
#: that the commands after it answer at once, short enough that a kernel still booting
#: when it was scanned is scanned again soon.
FAILED_SCAN_TTL = 600.0
UTS_LEN = 65  # __NEW_UTS_LEN + 1: sysname, nodename, release, ...

Progress = Callable[[str], None]


class ScanFailed(GuestDataError):
    """A whole scan found no usable note (not a scan cut short by its deadline)."""


@dataclass
class Discovery:
    """Where the kernel is and what it says about itself, with each fact's source."""

    info: V.VmcoreInfo
    note_address: int  # guest-physical address of the note header
    from_cache: bool
    seconds: float
    scanned_bytes: int = 0
    cache_path: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: "note": a VMCOREINFO note; "page tables": no note, found by :mod:`.nonote`
    #: (``info`` then holds the text a note would have had; ``note_address`` is 0).
    method: str = "note"


def _quiet(msg: str) -> None:
    pass


def cache_dir() -> Path:
    """$XENVMI_CACHE_DIR, else /run/xenvmi (tmpfs: gone with dom0's boot), else ~/.cache."""
    env = os.environ.get("XENVMI_CACHE_DIR")
    if env:
        return Path(env)
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "xenvmi"
    return Path.home() / ".cache" / "xenvmi"


def _cache_file(mem: GuestMemory, directory: Path) -> Path | None:
    file_key = getattr(mem, "cache_key", None)  # a dump file: its path, inode and mtime
    if file_key:
        return directory / "discovery" / f"file-{file_key}.json"
    if mem.domid is None and mem.uuid is None:
        return None  # a test image: nothing identifies a boot
    mode = "-nonote" if nonote.ignore_note() else ""  # never mixes with the note's entry
    return directory / "discovery" / f"{mem.uuid or 'nouuid'}-{mem.domid}{mode}.json"


# -- scanning --------------------------------------------------------------------------


def candidates(
    mem: GuestMemory, deadline: float, progress: Progress = _quiet, stats: dict | None = None
) -> Iterator[int]:
    """Guest-physical addresses of notes that look like VMCOREINFO, highest first (on
    arm64 lowest first)."""
    top = mem.ram_top
    up = mem.arch == "aarch64"
    chunks = range(0, top, CHUNK) if up else range((top - 1) // CHUNK * CHUNK, -1, -CHUNK)
    overlap = len(V.MARKER)
    scanned, last_report = 0, time.monotonic()
    for pos in chunks:
        if time.monotonic() > deadline:
            raise GuestDataError(
                f"no VMCOREINFO note found in {mem.name} before the deadline "
                f"(scanned {scanned >> 20} MiB from the {'bottom' if up else 'top'})"
            )
        size = min(CHUNK + overlap, top - pos)
        last = pos + min(CHUNK, size) - 1
        if not mem.page_readable(pos) and not mem.page_readable(last):
            continue  # a hole: probing it page by page would take seconds per MiB
        data = mem.read_physical(pos, size)
        scanned += min(CHUNK, size)
        if stats is not None:
            stats["scanned"] = scanned
        if time.monotonic() - last_report > 5:
            progress(
                f"scanning {mem.name}'s memory for the kernel: {scanned >> 20} of {top >> 20} MiB"
            )
            last_report = time.monotonic()
        hits = []
        i = data.find(V.MARKER)
        while 0 <= i < CHUNK:  # a hit at CHUNK or later is the chunk above's
            hits.append(pos + i - 12)
            i = data.find(V.MARKER, i + 1)
        yield from (hits if up else reversed(hits))


def read_note(mem: GuestMemory, addr: int) -> bytes:
    if addr < 0:
        raise V.NoteError("note header before address 0")
    head = mem.read_physical(addr, V.HEADER)
    return mem.read_physical(addr, V.note_size(head))


#: How far into struct uts_namespace its ``name`` may start (after a kref, before 5.11).
UTS_SEARCH = 64


def utsname_offset(mem: GuestMemory, pa: int, release: str) -> int | None:
    """Offset in struct uts_namespace of its ``struct new_utsname name``, whose layout is
    ABI (six char[65]: sysname, nodename, release, ...): the 4-aligned offset where
    sysname is "Linux" and release is VMCOREINFO's OSRELEASE."""
    data = mem.read_physical(pa, UTS_SEARCH + 3 * UTS_LEN)
    want = release.encode("ascii", "replace") + b"\x00"
    for off in range(0, UTS_SEARCH + 1, 4):
        if (
            data[off : off + 6] == b"Linux\x00"
            and data[off + 2 * UTS_LEN : off + 2 * UTS_LEN + len(want)] == want
        ):
            return off
    return None


def verify(mem: GuestMemory, info: V.VmcoreInfo) -> str:
    """Check the note against the kernel image; returns how (for the sources report)."""
    uts = info.symbols.get("init_uts_ns")
    name_off = info.fields.get("OFFSET(uts_namespace.name)")
    if uts is None or (name_off is not None and (not name_off.isdigit() or int(name_off) > 4096)):
        info.warnings.append(
            "VMCOREINFO has no init_uts_ns: the note could not be checked against the kernel image"
        )
        return "unverified"
    if name_off is None:  # before 5.13 the offset is not exported: find the utsname
        found = utsname_offset(mem, info.kernel_image_pa(uts), info.osrelease)
        if found is None:
            raise V.NoteError(
                f"no utsname naming Linux {info.osrelease!r} in the first "
                f"{UTS_SEARCH} bytes of init_uts_ns"
            )
        name_off = str(found)
    pa = info.kernel_image_pa(uts) + int(name_off) + 2 * UTS_LEN
    release = mem.read_physical(pa, UTS_LEN).split(b"\x00", 1)[0]
    if release.decode("ascii", "replace") != info.osrelease:
        raise V.NoteError(
            f"OSRELEASE {info.osrelease!r} differs from the kernel's "
            f"init_uts_ns release {release[:64]!r} at {pa:#x}"
        )
    return f"init_uts_ns release at {pa:#x} matches"


def scan(mem: GuestMemory, timeout: float = 600.0, progress: Progress = _quiet) -> Discovery:
    """Scan guest memory top-down for the kernel's VMCOREINFO note (no cache)."""
    t0 = time.monotonic()
    stats: dict = {"scanned": 0}
    rejected: list[str] = []
    for n, addr in enumerate(candidates(mem, t0 + timeout, progress, stats)):
        if n >= MAX_CANDIDATES:
            break
        try:
            note = read_note(mem, addr)
            info = V.parse_note(note, _arch(mem, note))
            how = verify(mem, info)
        except V.NoteError as e:
            rejected.append(f"{addr:#x}: {e}")
            continue
        mem.arch = info.arch
        d = Discovery(info, addr, False, time.monotonic() - t0, stats["scanned"])
        d.warnings += [f"ignored a VMCOREINFO look-alike at {r}" for r in rejected[:5]]
        _fill_sources(d, f"scan of guest memory (note at {addr:#x}, {how})")
        return d
    detail = f"; rejected: {'; '.join(rejected[:3])}" if rejected else ""
    kind = f"{mem.arch} " if mem.arch_known else ""
    raise ScanFailed(
        f"no valid VMCOREINFO note in {mem.name}'s memory (scanned "
        f"{stats['scanned'] >> 20} MiB in {time.monotonic() - t0:.0f}s): "
        f"is it a Linux {kind}guest whose kernel has crash-dump support "
        f"(CONFIG_CRASH_CORE, as every distribution kernel does)?{detail}"
    )


def _arch(mem: GuestMemory, note: bytes) -> str:
    """The architecture to parse a note by: the memory source's, or where the source does
    not say (a raw image) the one the note's own keys name."""
    return mem.arch if mem.arch_known else V.note_arch(note)


def _fill_sources(d: Discovery, where: str) -> None:
    info = d.info
    d.sources = {
        "vmcoreinfo": where,
        "release": "VMCOREINFO OSRELEASE",
        "kaslr_slide": (
            "VMCOREINFO KERNELOFFSET"
            if "KERNELOFFSET" in info.fields
            else "absent from VMCOREINFO (assumed 0)"
        ),
        "phys_base": "VMCOREINFO NUMBER(phys_base)"
        if "phys_base" in info.numbers
        else "none on arm64: the image is placed by VMCOREINFO NUMBER(kimage_voffset), "
        "the linear map by NUMBER(PHYS_OFFSET) and NUMBER(VA_BITS)"
        if info.arch == "aarch64"
        else "absent from VMCOREINFO (assumed 0)",
        "kallsyms": "VMCOREINFO SYMBOL(kallsyms_*)"
        if info.has_kallsyms()
        else "not in VMCOREINFO (Linux < 6.0): searched for in the kernel image",
    }
    d.warnings += info.warnings


def _note_bytes(text: bytes) -> bytes:
    return struct.pack("<III", len(V.NOTE_NAME), len(text), 0) + V.NOTE_NAME + b"\0" + text


def from_dump_note(mem: GuestMemory, note: bytes) -> Discovery:
    """A vmcore's VMCOREINFO ``note`` (``mem.vmcoreinfo``): no scan, but the same check as
    a scan hit (the note's release must be the kernel image's). Its guest-physical address
    is the one xenvmi's writer recorded, else 0 (unknown: another tool wrote the dump)."""
    t0 = time.monotonic()
    info = V.parse_text(note, mem.arch)
    how = verify(mem, info)
    addr = getattr(mem, "vmcoreinfo_address", None) or 0
    d = Discovery(info, addr, False, time.monotonic() - t0)
    _fill_sources(d, f"the VMCOREINFO note of the dump {mem.name} ({how})")
    return d


# -- cache -----------------------------------------------------------------------------


def _load_cached(mem: GuestMemory, path: Path) -> Discovery | None:
    t0 = time.monotonic()
    try:
        entry = json.loads(path.read_text())
        if entry.get("version") != CACHE_VERSION:
            return None
        if "failed" in entry:
            return None
        if entry.get("method") == "page tables":
            return _load_cached_nonote(mem, path, entry, t0)
        addr, want = int(entry["note_address"]), bytes.fromhex(entry["note"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        if read_note(mem, addr) != want:
            return None
        info = V.parse_note(want, _arch(mem, want))
    except V.NoteError:
        return None
    mem.arch = info.arch
    d = Discovery(info, addr, True, time.monotonic() - t0, cache_path=str(path))
    _fill_sources(d, f"cache {path} (note re-read at {addr:#x}, identical)")
    return d


def _load_cached_nonote(mem: GuestMemory, path: Path, entry: dict, t0: float) -> Discovery | None:
    try:
        text = bytes.fromhex(entry["text"])
        banner_pa, banner = int(entry["banner_pa"]), bytes.fromhex(entry["banner"])
        text_va, text_pa = int(entry["text_va"]), int(entry["text_pa"])
        if not 0 < len(banner) <= nonote.MAX_BANNER or not nonote.still_there(
            mem, text_va, text_pa, banner_pa, banner
        ):
            return None
        info = V.parse_text(text, mem.arch)
    except (ValueError, KeyError, TypeError):  # NoteError is a ValueError
        return None
    d = Discovery(info, 0, True, time.monotonic() - t0, cache_path=str(path), method="page tables")
    _nonote_sources(d, f"cache {path} (banner re-read at {banner_pa:#x}, _text re-mapped)")
    return d


def _nonote_sources(d: Discovery, how: str) -> None:
    d.sources = {
        "vmcoreinfo": "none used",
        "kernel": how,
        "release": "linux_banner (checked against init_uts_ns)",
        "kaslr_slide": "the page tables' first 2 MiB page of the kernel image mapping",
        "phys_base": "the physical address the page tables map _text at",
        "kallsyms": "searched for in the kernel image (checked against _text; its "
        "linux_banner, swapper_pg_dir and init_uts_ns against memory)",
    }
    d.warnings += d.info.warnings


def _remembered_failure(path: Path) -> str | None:
    """The message of a failed scan of this boot, if it is recent (FAILED_SCAN_TTL)."""
    try:
        entry = json.loads(path.read_text())
        age = time.time() - float(entry["failed_at"])
        message = str(entry["failed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry.get("version") != CACHE_VERSION or not 0 <= age < FAILED_SCAN_TTL:
        return None
    return f"{message} [remembered from a scan {age:.0f}s ago; --no-cache scans again]"


def _store(
    mem: GuestMemory,
    path: Path,
    d: Discovery | None,
    note: bytes | None = None,
    failed: str | None = None,
    extra: dict | None = None,
) -> str | None:
    """Write the cache entry: the note found, or (``d`` None) the failed scan's message."""
    entry: dict = {
        "version": CACHE_VERSION,
        "domain": mem.name,
        "uuid": mem.uuid,
        "domid": mem.domid,
    }
    if d is None:
        entry.update(failed=failed, failed_at=time.time())
    elif extra is not None:
        entry.update(extra)
    else:
        note = read_note(mem, d.note_address) if note is None else note
        entry.update(
            note_address=d.note_address,
            note=note.hex(),
            sha256=hashlib.sha256(note).hexdigest(),
            found_in_seconds=d.seconds,
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)
    except OSError as e:
        return f"could not cache the discovery in {path}: {e.strerror}"
    return None


def discover(
    mem: GuestMemory, *, use_cache: bool = True, timeout: float = 600.0, progress: Progress = _quiet
) -> Discovery:
    """The kernel's VMCOREINFO: a vmcore's own note, else the per-boot cache when it still
    matches, else a scan, else (no usable note) what the page tables and the image say."""
    path = _cache_file(mem, cache_dir()) if use_cache else None
    problems: list[str] = []
    ignore = nonote.ignore_note()
    note = None if ignore else getattr(mem, "vmcoreinfo", None)  # a dump's (DumpMemory)
    if note is not None:
        try:
            d = from_dump_note(mem, note)
        except V.NoteError as e:
            problems.append(
                f"the VMCOREINFO note of {mem.name} is unusable ({e}): scanned its memory instead"
            )
        else:
            if path is not None:  # the entry names the kallsyms/BTF cache files
                problem = _store(mem, path, d, note=_note_bytes(d.info.raw))
                if problem:
                    d.warnings.append(problem)
                else:
                    d.cache_path = str(path)
            return d
    if path is not None:
        hit = _load_cached(mem, path)
        if hit is not None:
            hit.warnings += problems
            return hit
        failure = _remembered_failure(path)
        if failure is not None:
            raise GuestDataError(failure)
    t0 = time.monotonic()
    try:
        if ignore:
            raise ScanFailed(f"{nonote.IGNORE_ENV}=1: no VMCOREINFO note looked for")
        progress(
            f"looking for the kernel in {mem.name}'s memory (first time this boot; "
            f"{mem.ram_top >> 20} MiB to scan at most)"
        )
        d = scan(mem, timeout=timeout, progress=progress)
    except ScanFailed as e:
        left = max(1.0, timeout - (time.monotonic() - t0))
        return _without_note(mem, path, str(e), problems, left, progress)
    d.warnings += problems
    progress(f"found the kernel's VMCOREINFO at {d.note_address:#x} in {d.seconds:.1f}s")
    if path is not None:
        problem = _store(mem, path, d)
        if problem:
            d.warnings.append(problem)
        else:
            d.cache_path = str(path)
    return d


def _without_note(
    mem: GuestMemory,
    path: Path | None,
    scan_error: str,
    problems: list[str],
    timeout: float,
    progress: Progress,
) -> Discovery:
    """Find the kernel from its page tables (:mod:`.nonote`) when no note is usable;
    a failure names both ways tried, and is remembered for the boot like a failed scan."""
    t0 = time.monotonic()
    try:
        if mem.arch != "x86_64":
            raise Unavailable(f"finding a kernel without its note is x86-64 only ({mem.arch})")
        info, lay, banner_pa, banner, how = nonote.locate(mem, timeout, progress)
    # no vCPU state (a raw image, a backend without it) is one more way this cannot work
    except (GuestDataError, NotFoundError, Unavailable, NotImplementedError) as e:
        message = f"{scan_error}; and without a note: {e}"
        if path is not None:
            _store(mem, path, None, failed=message)
        raise ScanFailed(message) from None
    d = Discovery(info, 0, False, time.monotonic() - t0, method="page tables")
    _nonote_sources(d, f"{how} [{scan_error}]")
    d.warnings += problems
    progress(f"found {mem.name}'s kernel from its page tables in {d.seconds:.1f}s")
    if path is not None:
        extra = {
            "method": "page tables",
            "text": info.raw.hex(),
            "banner_pa": banner_pa,
            "banner": banner.hex(),
            "text_va": lay.text,
            "text_pa": lay.text_pa,
            "how": how,
        }
        problem = _store(mem, path, d, extra=extra)
        if problem:
            d.warnings.append(problem)
        else:
            d.cache_path = str(path)
    return d
