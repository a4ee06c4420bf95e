"""Parse and check a VMCOREINFO ELF note taken from (hostile) guest memory.

The kernel keeps a note named "VMCOREINFO" whose text (``KEY=VALUE`` lines) gives its
release, KASLR slide (KERNELOFFSET), phys_base, page size and, since Linux 6.0, where
its kallsyms tables are. It is everything needed to start reading a kernel without any
file, but any process in the guest can plant a look-alike in its own memory, so every
field is bounded and symbol addresses must lie in the kernel image.

The architecture is the memory source's (``GuestMemory.arch``): x86-64's kernel image sits
at __START_KERNEL_map plus phys_base; arm64's at ``NUMBER(kimage_voffset)`` from its
physical address, with its linear map given by ``NUMBER(PHYS_OFFSET)`` and
``NUMBER(VA_BITS)`` (arch/arm64/kernel/crash_core.c exports them for crash tools).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from xenvmi.vmcore_format import MAX_VMCOREINFO_DESC

NOTE_NAME = b"VMCOREINFO\x00"
#: What a scan looks for: the padded note name, then the first key of the text.
MARKER = NOTE_NAME + b"\x00" + b"OSRELEASE="
HEADER = 12 + 12  # namesz, descsz, type + "VMCOREINFO\0" padded to 4 bytes
MAX_DESC = MAX_VMCOREINFO_DESC
MAX_LINES = 1024
MAX_LINE = 512

#: x86-64 kernel image mapping: __START_KERNEL_map and KERNEL_IMAGE_SIZE (with KASLR).
KERNEL_MAP = 0xFFFF_FFFF_8000_0000
KERNEL_IMAGE_SIZE = 1 << 30
X86_64_TEXT_BASE = 0xFFFF_FFFF_8100_0000
#: Start of the kernel half of the x86-64 address space (4-level paging; 5-level is lower).
KERNEL_HALF = 0xFF00_0000_0000_0000
U64 = (1 << 64) - 1
#: arm64's kernel VA sizes (CONFIG_ARM64_VA_BITS) and page sizes (4K, 16K, 64K granules).
ARM64_VA_BITS = (36, 39, 42, 47, 48, 52)
ARM64_PAGE_SIZES = (4096, 16384, 65536)
#: Symbols VMCOREINFO prints with VMCOREINFO_SYMBOL_ARRAY although they are pointers, so
#: the value is where they point, not a place in the image: mem_section (memory the kernel
#: allocated, with SPARSEMEM_EXTREME) and vmemmap (the struct page array, since 6.3).
POINTER_SYMBOLS = frozenset({"mem_section", "vmemmap"})

_KEY = re.compile(rb"^[A-Za-z0-9_]+(\([A-Za-z0-9_.]+\))?$|^[A-Z][A-Z-]*$")
_VALUE = re.compile(rb"^[\x20-\x7e]*$")
KALLSYMS_KEYS = (
    "kallsyms_names",
    "kallsyms_num_syms",
    "kallsyms_token_table",
    "kallsyms_token_index",
    "kallsyms_offsets",
    "kallsyms_relative_base",
)
#: Symbols xenvmi reads through: a note that puts one outside the image is refused.
#: Any other symbol outside it is left out with a warning (a kernel may export new ones).
IMAGE_SYMBOLS = frozenset(
    {"init_uts_ns", "_stext", "swapper_pg_dir", "vmcoreinfo_note", *KALLSYMS_KEYS}
)


class NoteError(ValueError):
    """This candidate is not a usable VMCOREINFO note (the reason is the message)."""


@dataclass
class VmcoreInfo:
    """The parsed text of one VMCOREINFO note."""

    raw: bytes  # the note's text (description), exactly as in guest memory
    fields: dict[str, str]
    arch: str = "x86_64"  # the memory source's: "x86_64" or "aarch64"
    symbols: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def osrelease(self) -> str:
        return self.fields.get("OSRELEASE", "")

    @property
    def build_id(self) -> str | None:
        return self.fields.get("BUILD-ID")

    @property
    def kernel_offset(self) -> int:
        """The KASLR slide (0 when the note has no KERNELOFFSET line)."""
        return _hex(self.fields.get("KERNELOFFSET", "0"), "KERNELOFFSET")

    @property
    def phys_base(self) -> int:
        return self.numbers.get("phys_base", 0)

    @property
    def page_size(self) -> int:
        text = self.fields.get("PAGESIZE", "4096")
        if not text.isdigit():  # the guest wrote it: "4 96" must refuse the note, not crash
            raise NoteError(f"PAGESIZE is not a number: {text[:40]!r}")
        return int(text)

    def has_kallsyms(self) -> bool:
        return all(k in self.symbols for k in KALLSYMS_KEYS[:4])

    def kernel_image_pa(self, vaddr: int) -> int:
        """Physical address of a kernel-image virtual address (__pa_symbol)."""
        if self.arch == "aarch64":
            return (vaddr - self.numbers["kimage_voffset"]) & U64
        return vaddr - KERNEL_MAP + self.phys_base

    @property
    def va_bits(self) -> int:
        """arm64: the kernel's VA size (VA_BITS)."""
        return self.numbers.get("VA_BITS", 48)

    @property
    def release_tuple(self) -> tuple[int, int]:
        m = re.match(r"^([0-9]+)\.([0-9]+)", self.osrelease)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    @property
    def kernel_start(self) -> int:
        """arm64: the lowest kernel address, -(1 << VA_BITS)."""
        return -(1 << self.va_bits) & U64

    @property
    def page_offset(self) -> int:
        """arm64: the linear map's start, PAGE_OFFSET: since Linux 5.4 (the "flipped"
        layout) the lowest kernel address, before it the upper half of the kernel's."""
        if self.release_tuple < (5, 4):
            return -(1 << (self.va_bits - 1)) & U64
        return self.kernel_start

    @property
    def vmalloc_area(self) -> tuple[int, int]:
        """arm64: [start, end) of the module and vmalloc areas where VMCOREINFO does not say
        (before 5.12): the kernel half's other half from the linear map."""
        half = self.kernel_start + (1 << (self.va_bits - 1))
        return (self.kernel_start, half) if self.release_tuple < (5, 4) else (half, 1 << 64)

    def linear_pa(self, vaddr: int) -> int:
        """arm64: the physical address of a linear-map address (__lm_to_phys)."""
        return ((vaddr & ~self.page_offset) + self.numbers["PHYS_OFFSET"]) & U64

    def linear_va(self, paddr: int) -> int:
        """arm64: the linear-map address of a physical address (__phys_to_virt)."""
        return ((paddr - self.numbers["PHYS_OFFSET"]) & U64) | self.page_offset

    def image_window(self) -> tuple[int, int]:
        """[start, end) of the virtual addresses the kernel image may occupy: symbols the
        views read through must lie in it."""
        if self.arch == "aarch64":  # _stext: an image symbol every arm64 note has
            start = self.symbols.get("_stext", 0) & ~((2 << 20) - 1)
            return start - (2 << 20), start + KERNEL_IMAGE_SIZE
        return KERNEL_MAP, KERNEL_MAP + KERNEL_IMAGE_SIZE

    def in_image(self, vaddr: int) -> bool:
        start, end = self.image_window()
        return start <= vaddr < end


def _hex(text: str, key: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise NoteError(f"{key} is not a hex number: {text[:40]!r}") from None


def note_size(header: bytes) -> int:
    """Total note size from its first 24 bytes; NoteError if the header is not VMCOREINFO's."""
    if len(header) < HEADER:
        raise NoteError("truncated note header")
    namesz, descsz, ntype = struct.unpack_from("<III", header)
    if namesz != len(NOTE_NAME) or header[12 : 12 + namesz] != NOTE_NAME:
        raise NoteError(f"note name size {namesz} / name is not VMCOREINFO")
    if ntype != 0:
        raise NoteError(f"note type {ntype} (VMCOREINFO notes have type 0)")
    if not 10 < descsz <= MAX_DESC:
        raise NoteError(f"note text size {descsz} out of bounds (max {MAX_DESC})")
    return HEADER + descsz


def note_arch(text: bytes) -> str:
    """The architecture whose kernel wrote a note's text, for a source that does not say
    (a raw image): arm64's crash_core.c alone exports ``kimage_voffset``. Only a guess to
    parse by: the parse and the check against the kernel image decide."""
    return "aarch64" if b"\nNUMBER(kimage_voffset)=" in text[:MAX_DESC] else "x86_64"


def parse_note(note: bytes, arch: str = "x86_64") -> VmcoreInfo:
    """Parse a whole note (header + text); NoteError for anything not a kernel's note."""
    size = note_size(note)
    if len(note) < size:
        raise NoteError("truncated note text")
    return parse_text(note[HEADER:size], arch)


def parse_text(raw: bytes, arch: str = "x86_64") -> VmcoreInfo:
    """Parse ``KEY=VALUE`` lines, bounded; bad lines become warnings, bad essentials errors.
    ``arch``: the memory source's, whose kernel must have written the note."""
    text = raw.split(b"\x00", 1)[0]
    if not text.startswith(b"OSRELEASE="):
        raise NoteError("note text does not start with OSRELEASE=")
    info = VmcoreInfo(raw=bytes(raw), fields={}, arch=arch)
    lines = text.split(b"\n")
    if len(lines) > MAX_LINES:
        info.warnings.append(f"VMCOREINFO has {len(lines)} lines; read the first {MAX_LINES}")
    for n, line in enumerate(lines[:MAX_LINES], 1):
        if not line:
            continue
        key, sep, value = line.partition(b"=")
        if not sep or len(line) > MAX_LINE or not _KEY.match(key) or not _VALUE.match(value):
            info.warnings.append(f"VMCOREINFO line {n} ignored (malformed): {line[:60]!r}")
            continue
        k, v = key.decode(), value.decode()
        if k in info.fields:
            info.warnings.append(f"VMCOREINFO line {n}: duplicate {k} ignored")
            continue
        info.fields[k] = v
        if k.startswith("SYMBOL("):
            info.symbols[k[7:-1]] = _hex(v, k)
        elif k.startswith("NUMBER("):
            try:  # decimal; 6.3+ prints NUMBER(VMALLOC_START) as 0x-prefixed hex
                info.numbers[k[7:-1]] = int(v, 16) if v[:2] in ("0x", "0X") else int(v)
            except ValueError:
                info.warnings.append(f"VMCOREINFO {k}={v[:30]!r} is not a number")
    _check(info)
    return info


def _check(info: VmcoreInfo) -> None:
    """Refuse notes a running kernel of the memory's architecture cannot have written."""
    release = info.osrelease
    if not release or len(release) > 64 or not re.match(r"^[0-9]+\.[0-9]+", release):
        raise NoteError(f"implausible OSRELEASE {release[:40]!r}")
    if info.arch == "aarch64":
        _check_arm64(info)
        return
    if info.page_size not in (4096,):
        raise NoteError(f"PAGESIZE={info.fields.get('PAGESIZE')} (x86-64 uses 4096)")
    slide = info.kernel_offset
    if slide % 0x200000 or slide >= KERNEL_IMAGE_SIZE:
        raise NoteError(f"KERNELOFFSET={slide:#x} is not a 2 MiB-aligned slide below 1 GiB")
    # phys_base is signed: with KASLR the image's virtual offset may exceed its physical
    # load address (Debian 6.1 HVM guests: -0x35600000), but never by more than the image.
    if info.phys_base % 0x1000 or not -KERNEL_IMAGE_SIZE < info.phys_base < (1 << 52):
        raise NoteError(f"phys_base={info.phys_base:#x} is not a page-aligned offset")
    for name, addr in list(info.symbols.items()):
        if name in POINTER_SYMBOLS:
            if not KERNEL_HALF <= addr < KERNEL_MAP:
                raise NoteError(f"SYMBOL({name})={addr:#x} is not a kernel address below the image")
        elif not KERNEL_MAP <= addr < KERNEL_MAP + KERNEL_IMAGE_SIZE:
            if name in IMAGE_SYMBOLS:
                raise NoteError(f"SYMBOL({name})={addr:#x} is outside the kernel image")
            del info.symbols[name]
            info.warnings.append(
                f"VMCOREINFO SYMBOL({name})={addr:#x} is outside the kernel image: not used"
            )


def _check_arm64(info: VmcoreInfo) -> None:
    """arm64: the page size of one of its granules, the linear-map and image numbers the
    views translate with, a 64 KiB-aligned KASLR slide, image symbols near _stext."""
    if info.page_size not in ARM64_PAGE_SIZES:
        raise NoteError(f"PAGESIZE={info.fields.get('PAGESIZE')} (arm64 uses 4K, 16K or 64K)")
    for key in ("VA_BITS", "kimage_voffset", "PHYS_OFFSET"):
        if key not in info.numbers:
            raise NoteError(f"no NUMBER({key}) (every arm64 kernel's VMCOREINFO has it)")
    if info.va_bits not in ARM64_VA_BITS:
        raise NoteError(f"NUMBER(VA_BITS)={info.va_bits} is not an arm64 VA size")
    for key in ("kimage_voffset", "PHYS_OFFSET"):
        info.numbers[key] &= U64  # printed as hex: a negative offset arrives as a u64
    slide = info.kernel_offset
    if slide % 0x10000 or slide >= 1 << info.va_bits:
        raise NoteError(f"KERNELOFFSET={slide:#x} is not a 64 KiB-aligned slide")
    stext = info.symbols.get("_stext")
    if stext is None or stext < info.kernel_start:
        raise NoteError("no SYMBOL(_stext) in the kernel half: the image cannot be placed")
    if info.kernel_image_pa(stext) >= 1 << 52:
        raise NoteError(f"kimage_voffset puts _stext at physical {info.kernel_image_pa(stext):#x}")
    for name, addr in list(info.symbols.items()):
        if name in POINTER_SYMBOLS:
            if not info.kernel_start <= addr:
                raise NoteError(f"SYMBOL({name})={addr:#x} is not a kernel address")
        elif not info.in_image(addr):
            if name in IMAGE_SYMBOLS:
                raise NoteError(f"SYMBOL({name})={addr:#x} is outside the kernel image")
            del info.symbols[name]
            info.warnings.append(
                f"VMCOREINFO SYMBOL({name})={addr:#x} is outside the kernel image: not used"
            )
