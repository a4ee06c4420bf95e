"""GuestMemory on a file: an ELF vmcore (xenvmi's, kdump's, QEMU's) or a flat raw image.

So every guest view (ps, lsmod, dmesg, kernel, regs, shell) works on a dump as on a live
domain. A vmcore's PT_LOADs are read by ``p_paddr`` (guest-physical, what all the views
use); its notes give the kernel's VMCOREINFO (so discovery needs no scan), the vCPUs'
NT_PRSTATUS registers, and xenvmi's own notes (see :mod:`xenvmi.guest.vmcore`). A file
that is not an ELF core is a raw image: byte N is guest-physical address N.

A dump file is hostile input like guest memory: every count and size is bounded and
checked against the file's size before use, reads use ``pread`` (a file truncated while
mapped would kill us with SIGBUS), and anything wrong is one :class:`DumpFileError` line.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
import struct

from xenvmi import vmcore_format as W
from xenvmi.backends.memory import PAGE, GuestMemory
from xenvmi.errors import GuestDataError, NotFoundError, PermissionDenied, UsageError
from xenvmi.vmcore_format import MAX_VMCOREINFO_DESC as MAX_DESC

MAX_PHDRS = 65536  # makedumpfile splits RAM around excluded pages: thousands are normal
MAX_NOTE_BYTES = 16 << 20
MAX_NOTES = 8192
MAX_VCPUS = 4096
MAX_PHYS = 1 << 52  # x86-64's and arm64's (LPA) physical address width
PN_XNUM = 0xFFFF
_RENAME = {
    "eflags": "rflags",
    "cs": "cs_sel",
    "ss": "ss_sel",
    "ds": "ds_sel",
    "es": "es_sel",
    "fs": "fs_sel",
    "gs": "gs_sel",
}  # arm64's user_pt_regs names (x0-x30, sp, pc, pstate) are kept as they are


class DumpFileError(GuestDataError):
    """A dump file that is truncated, corrupt or of an unsupported kind."""


class DumpMemory(GuestMemory):
    """Guest-physical memory and vCPU registers from a vmcore or raw image file."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = self.name = os.fspath(path)
        self.vmcoreinfo: bytes | None = None  # the VMCOREINFO note's text
        self.vmcoreinfo_address: int | None = None  # where it was in guest memory
        self.warnings: list[str] = []
        self._segments: list[tuple[int, int, int, int]] = []  # start, end, offset, filesz
        self._prstatus: list[dict[str, int]] = []
        self._xregs: dict[int, dict[str, int]] = {}
        self.size = 0
        self._fd = self._open()
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{self.path} is not a regular file")
            self.size = st.st_size
            #: Identifies this file's contents for the discovery cache (path, inode, mtime).
            self.cache_key = hashlib.sha256(
                f"{os.path.realpath(self.path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0"
                f"{st.st_mtime_ns}".encode()
            ).hexdigest()[:24]
            head = self._pread(64, 0)
            if head[:4] == b"\x7fELF":
                self.kind = "dump"
                self._parse_elf(head)
            else:
                self.kind = "image"
                self.arch_known = False  # a raw image: its kernel's note tells
                if self.size == 0:
                    raise DumpFileError(f"{self.path} is empty")
                self._segments = [(0, self.size, 0, self.size)]
        except BaseException:
            os.close(self._fd)
            raise
        self._starts = [s[0] for s in self._segments]
        self._max = -(-self._segments[-1][1] // PAGE) * PAGE

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"no such file: {self.path}") from None
        except PermissionError:
            raise PermissionDenied(f"cannot read {self.path}: permission denied") from None
        except OSError as e:
            raise DumpFileError(f"cannot open {self.path}: {e.strerror}") from None

    def _pread(self, size: int, offset: int) -> bytes:
        if offset >= self.size or size <= 0:  # callers check lengths: short means past EOF
            return b""
        try:
            return os.pread(self._fd, size, offset)
        except OSError as e:
            raise DumpFileError(f"cannot read {self.path}: {e.strerror}") from None

    def _corrupt(self, why: str) -> DumpFileError:
        return DumpFileError(f"{self.path}: corrupt or truncated vmcore: {why}")

    # -- ELF ------------------------------------------------------------------------

    def _parse_elf(self, head: bytes) -> None:
        if len(head) < W.EHDR:
            raise self._corrupt("ELF header cut short")
        if head[4:6] != b"\x02\x01":
            raise DumpFileError(f"{self.path}: not a 64-bit little-endian ELF file")
        (etype, machine, _, _, phoff, shoff, _, _, phentsize, phnum, _, shnum, _) = (
            struct.unpack_from("<HHIQQQIHHHHHH", head, 16)
        )
        if etype != W.ET_CORE:
            raise DumpFileError(f"{self.path}: an ELF file but not a core dump (e_type {etype})")
        arch = next((a for a, m in W.MACHINES.items() if m == machine), None)
        if arch is None:
            raise DumpFileError(
                f"{self.path}: an ELF core for machine {machine}, not x86-64 "
                f"({W.EM_X86_64}) or AArch64 ({W.EM_AARCH64})"
            )
        self.arch = arch
        if phentsize != W.PHDR:
            raise self._corrupt(f"program header size {phentsize} (want {W.PHDR})")
        if phnum == PN_XNUM:  # the real count is in section header 0's sh_info
            sh0 = self._pread(64, shoff) if shnum or shoff else b""
            if len(sh0) < 64:
                raise self._corrupt("e_phnum is PN_XNUM but section header 0 is missing")
            phnum = struct.unpack_from("<I", sh0, 44)[0]
        if not 0 < phnum <= MAX_PHDRS:
            raise self._corrupt(f"{phnum} program headers (1 to {MAX_PHDRS} expected)")
        table = self._pread(phnum * W.PHDR, phoff)
        if len(table) != phnum * W.PHDR:
            raise self._corrupt(
                f"program headers at {phoff:#x} run past the end of the file ({self.size} bytes)"
            )
        loads, note_bytes = [], 0
        for n in range(phnum):
            ptype, _, off, _, paddr, filesz, memsz, align = struct.unpack_from(
                "<IIQQQQQQ", table, n * W.PHDR
            )
            if ptype not in (W.PT_LOAD, W.PT_NOTE):
                continue
            if off + filesz > self.size:
                raise self._corrupt(
                    f"segment {n} ends at {off + filesz:#x}, past the end "
                    f"of the file ({self.size:#x})"
                )
            if ptype == W.PT_NOTE:
                note_bytes += filesz
                if note_bytes > MAX_NOTE_BYTES:
                    raise self._corrupt(f"more than {MAX_NOTE_BYTES >> 20} MiB of notes")
                self._parse_notes(self._pread(filesz, off), 8 if align == 8 else 4)
            elif paddr != W.U64 and memsz:  # p_paddr -1: no physical address (kcore)
                if filesz > memsz or paddr + memsz > MAX_PHYS:
                    raise self._corrupt(
                        f"segment {n}: {filesz:#x} bytes in the file for "
                        f"{memsz:#x} at physical {paddr:#x}"
                    )
                loads.append((paddr, memsz, off, filesz))
        if not loads:
            raise self._corrupt("no memory segments (PT_LOAD)")
        self._segments = _disjoint(loads)

    def _parse_notes(self, data: bytes, align: int) -> None:
        pos, count = 0, 0
        while pos + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            if namesz == descsz == 0:
                break  # the terminating empty note, or padding
            count += 1
            if count > MAX_NOTES:
                self.warnings.append(f"more than {MAX_NOTES} notes: the rest ignored")
                return
            desc_off = pos + 12 + -(-namesz // align) * align
            if desc_off + descsz > len(data):
                raise self._corrupt(f"note {count} runs past its segment")
            name = data[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            self._note(name, ntype, data[desc_off : desc_off + descsz])
            pos = desc_off + -(-descsz // align) * align

    def _note(self, name: bytes, ntype: int, desc: bytes) -> None:
        if name == b"CORE" and ntype == W.NT_PRSTATUS and len(self._prstatus) < MAX_VCPUS:
            names = W.ARM64_USER_REGS if self.arch == "aarch64" else W.USER_REGS
            if len(desc) < W.PR_REG + len(names) * 8:
                self.warnings.append(
                    f"NT_PRSTATUS note of {len(desc)} bytes ignored (too short for {self.arch})"
                )
                return
            values = struct.unpack_from(f"<{len(names)}Q", desc, W.PR_REG)
            self._prstatus.append(
                {_RENAME.get(k, k): v for k, v in zip(names, values) if k != "orig_rax"}
            )
        elif name == b"VMCOREINFO" and self.vmcoreinfo is None:
            if len(desc) > MAX_DESC:
                self.warnings.append(
                    f"VMCOREINFO note of {len(desc)} bytes ignored (more than {MAX_DESC})"
                )
            else:
                self.vmcoreinfo = desc
        elif name == W.XENVMI_NOTE.rstrip(b"\0"):
            if ntype == W.NT_XENVMI_VMCOREINFO_ADDRESS and len(desc) == 8:
                self.vmcoreinfo_address = struct.unpack("<Q", desc)[0]
            elif ntype == W.NT_XENVMI_REGISTERS:
                self._registers_note(desc)

    def _registers_note(self, desc: bytes) -> None:
        lines = desc.decode("ascii", "replace").splitlines()
        try:
            key, _, value = lines[0].partition("=")
            vcpu = int(value)
            if key != "vcpu" or not 0 <= vcpu < MAX_VCPUS or len(lines) > W.MAX_REGISTERS + 1:
                raise ValueError
            regs = {}
            for line in lines[1:]:
                k, _, v = line.partition("=")
                if not (k.isidentifier() and len(k) <= 32):
                    raise ValueError
                regs[k] = int(v, 16) & W.U64
        except (ValueError, IndexError):
            self.warnings.append("a malformed xenvmi registers note was ignored")
            return
        self._xregs[vcpu] = regs

    # -- GuestMemory ----------------------------------------------------------------

    @property
    def max_physical_address(self) -> int:
        return self._max

    def _read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        out, ok = bytearray(size), [False] * (size // PAGE)
        end = addr + size
        i = max(0, bisect.bisect_right(self._starts, addr) - 1)
        while i < len(self._segments) and self._segments[i][0] < end:
            start, stop, offset, filesz = self._segments[i]
            i += 1
            lo, hi = max(start, addr), min(stop, end)
            if lo >= hi:
                continue
            file_hi = min(hi, start + filesz)  # past p_filesz: zeros (makedumpfile)
            if file_hi > lo:
                data = self._pread(file_hi - lo, offset + lo - start)
                if len(data) != file_hi - lo:
                    raise DumpFileError(f"{self.path} shrank while being read")
                out[lo - addr : file_hi - addr] = data
            for page in range((lo - addr) // PAGE, (hi - 1 - addr) // PAGE + 1):
                ok[page] = True
        return bytes(out), ok

    def vcpu_count(self) -> int:
        return max(len(self._prstatus), max(self._xregs, default=-1) + 1)

    def vcpu_registers(self, vcpu: int = 0) -> dict[str, int]:
        if not 0 <= vcpu < self.vcpu_count():
            what = (
                "a raw memory image has no vCPU registers"
                if self.kind == "image"
                else f"it holds registers of {self.vcpu_count()} vCPU(s)"
            )
            raise NotFoundError(f"{self.path}: no vCPU {vcpu} ({what})")
        if vcpu in self._xregs:  # xenvmi's note: every register the source gave, as given
            return dict(self._xregs[vcpu])
        return dict(self._prstatus[vcpu])

    def ranges(self) -> list[tuple[int, int]]:
        """The guest-physical ranges the file holds, [start, end)."""
        return [(s, e) for s, e, _, _ in self._segments]

    def close(self) -> None:
        super().close()
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)


def _disjoint(loads: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Sorted, non-overlapping (start, end, offset, filesz); where segments overlap (kdump
    repeats the kernel image) the one starting first wins."""
    out: list[tuple[int, int, int, int]] = []
    covered = 0
    for paddr, memsz, off, filesz in sorted(loads, key=lambda s: (s[0], -s[1])):
        end = paddr + memsz
        if out and end <= covered:
            continue
        if out and paddr < covered:
            cut = covered - paddr
            paddr, off, filesz = covered, off + cut, max(0, filesz - cut)
        out.append((paddr, end, off, filesz))
        covered = end
    return out


def open_dump(path: str | os.PathLike) -> DumpMemory:
    return DumpMemory(path)
