"""A minimal privcmd client: issue raw hypercalls from Python (root, in dom0).

Why: the tracer's lab tests and the overhead benchmark need hypercalls with known
outcomes (a domctl on a domain that does not exist, a wrong interface version, a harmless
xen_version in a tight loop) without depending on which hypercalls xl happens to make.
Pointer arguments live in a page mapped from /dev/xen/hypercall, as libxencall does.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct

from xenvmi.abi import releases
from xenvmi.errors import PermissionDenied, Unavailable

IOCTL_PRIVCMD_HYPERCALL = 0x00305000  #: _IOC(NONE, 'P', 0, 48)
IOCTL_PRIVCMD_DM_OP = 0x00105005  #: _IOC(NONE, 'P', 5, 16)
IOCTL_PRIVCMD_RESTRICT = 0x00025006  #: _IOC(NONE, 'P', 6, 2)
PRIVCMD = "/dev/xen/privcmd"
HYPERCALL_BUF = "/dev/xen/hypercall"

HYPERVISOR_xen_version = 17
HYPERVISOR_xsm_op = 27
HYPERVISOR_sysctl = 35
HYPERVISOR_domctl = 36
HYPERVISOR_dm_op = 41
#: struct xen_domctl and xen_sysctl are < 1 KiB; a page holds either with room to spare.
PAGE = 4096


class Privcmd:
    """An open /dev/xen/privcmd plus one page of hypercall buffer."""

    def __init__(self) -> None:
        try:
            self.fd = os.open(PRIVCMD, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Unavailable(f"privcmd: {PRIVCMD} missing (not a Xen dom0?)") from None
        except PermissionError:
            raise PermissionDenied(f"privcmd: opening {PRIVCMD} needs root") from None
        try:
            bfd = os.open(HYPERCALL_BUF, os.O_RDWR | os.O_CLOEXEC)
            try:
                self.buf = mmap.mmap(bfd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(bfd)
        except OSError:
            os.close(self.fd)
            raise
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))
        self._versions: dict[str, int] | None = None

    def close(self) -> None:
        if self.fd >= 0:
            # from_buffer exported a pointer: drop it before unmapping (BufferError otherwise)
            self.addr = 0
            try:
                self.buf.close()
            except BufferError:
                pass
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Privcmd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def hypercall(self, op: int, *args: int) -> int:
        """Issue hypercall ``op``; return its value, or the negative errno it failed with."""
        if len(args) > 5:
            raise ValueError("at most 5 hypercall arguments")
        packed = struct.pack(
            "<6Q", op, *(a & (1 << 64) - 1 for a in args), *([0] * (5 - len(args)))
        )
        try:
            return self._ioctl(IOCTL_PRIVCMD_HYPERCALL, packed)
        except OSError as exc:
            return _failed(exc)

    def _ioctl(self, request: int, packed: bytes) -> int:
        """ioctl(2) through libc: fcntl.ioctl with a buffer returns the buffer, not the
        int result a hypercall's value travels in."""
        arg = ctypes.create_string_buffer(packed, len(packed))
        ret = _libc.ioctl(self.fd, ctypes.c_ulong(request), arg)
        if ret == -1:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return ret

    def xen_version(self) -> int:
        """XENVER_version (cmd 0): (major << 16) | minor. Harmless; the benchmark's call.
        Also what picks the default domctl/sysctl interface versions (so a caller that has
        asked costs no second call)."""
        word = self.hypercall(HYPERVISOR_xen_version, 0, 0)
        if word >= 0 and self._versions is None:
            release, _ = releases.nearest(f"{word >> 16}.{word & 0xFFFF}")
            self._versions = releases.get(release).interface_versions
        return word

    def interface_version(self, hypercall: str) -> int:
        """The domctl/sysctl interface version the running Xen wants, from its release
        (XENVER_version) and xenvmi's tables (the nearest older release's for another)."""
        if self._versions is None:
            word = self.xen_version()
            if self._versions is None:
                raise Unavailable(f"privcmd: xen_version failed ({word})")
        return self._versions[hypercall]

    def domctl(self, cmd: int, domid: int, version: int | None = None) -> int:
        """A domctl with an all-zero payload (safe for getdomaininfo-style queries), sent
        with ``version`` (default: the one the running Xen wants)."""
        if version is None:
            version = self.interface_version("domctl")
        self.buf[:PAGE] = bytes(PAGE)
        self.buf[:10] = struct.pack("<IIH", cmd, version, domid)
        return self.hypercall(HYPERVISOR_domctl, self.addr)

    def sysctl(self, cmd: int, version: int | None = None) -> int:
        if version is None:
            version = self.interface_version("sysctl")
        self.buf[:PAGE] = bytes(PAGE)
        self.buf[:8] = struct.pack("<II", cmd, version)
        return self.hypercall(HYPERVISOR_sysctl, self.addr)

    def dm_op(self, domid: int, op: int) -> int:
        """The dm_op hypercall, raw, with one buffer (in the hypercall buffer) holding struct
        xen_dm_op {op, pad, ...}. One buffer at least: since XSA-506 Xen answers none with
        -ENODATA before it looks at the domain."""
        self.buf[:PAGE] = bytes(PAGE)
        self.buf[256:264] = struct.pack("<II", op, 0)
        self.buf[0:16] = struct.pack("<QQ", self.addr + 256, 64)  # xen_dm_op_buf {h, size}
        return self.hypercall(HYPERVISOR_dm_op, domid, 1, self.addr)

    def dm_op_ioctl(self, domid: int, op: int) -> int:
        """IOCTL_PRIVCMD_DM_OP with one buffer holding struct xen_dm_op {op, pad, ...}.

        The buffers are ordinary process memory, as libxendevicemodel's are: privcmd pins
        them itself, and Linux 6.12 refuses to pin the hypercall buffer's mapping (the
        ioctl failed with -EFAULT before reaching Xen)."""
        op_buf = ctypes.create_string_buffer(struct.pack("<II", op, 0), 64)
        bufs = ctypes.create_string_buffer(struct.pack("<QQ", ctypes.addressof(op_buf), 64))
        packed = struct.pack("<HHIQ", domid, 1, 0, ctypes.addressof(bufs))  # privcmd_dm_op
        try:
            return self._ioctl(IOCTL_PRIVCMD_DM_OP, packed)
        except OSError as exc:
            return _failed(exc)

    def restrict(self, domid: int) -> int:
        """IOCTL_PRIVCMD_RESTRICT: from now on this fd may only act on ``domid`` (and no
        raw hypercalls: privcmd answers them with -EPERM itself)."""
        try:
            return self._ioctl(IOCTL_PRIVCMD_RESTRICT, struct.pack("<H", domid))
        except OSError as exc:
            return _failed(exc)


def _failed(exc: OSError) -> int:
    """What a failed call returns: the negative errno (_ioctl's OSErrors always carry one;
    EIO for one that does not)."""
    return -(exc.errno if exc.errno is not None else errno.EIO)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int
