"""Xen's error codes (xen/include/public/errno.h, Xen 4.17) as static data.

Hypercalls return ``-XEN_Exxx``; Xen's values equal Linux's on x86 and arm64, so dom0 sees
them as ordinary errno values. The table is written out here (not parsed from headers, not
taken from the running OS) because a dom0 in the field may lack libxen-dev, and the test
suite compares it entry by entry with /usr/include/xen/errno.h.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.abi._parse import split_input
from xenvmi.errors import NotFoundError, UsageError


@dataclass(frozen=True)
class XenErrno:
    """One ``XEN_ERRNO(name, value)`` line of errno.h."""

    value: int  #: positive errno value; hypercalls return its negation
    name: str  #: without the XEN_ prefix, e.g. "EACCES"
    message: str  #: glibc strerror() text for the same Linux value
    internal: bool  #: only inside Xen (``#ifdef __XEN__``); never reaches a guest
    alias_of: str | None = None  #: for EWOULDBLOCK/EDEADLOCK, the canonical name

    @property
    def ret(self) -> int:
        """The hypercall return value carrying this error."""
        return -self.value


def _e(
    value: int, name: str, message: str, internal: bool = False, alias_of: str | None = None
) -> XenErrno:
    return XenErrno(value, name, message, internal, alias_of)


#: Every entry of errno.h in header order, aliases included (51 in Xen 4.17).
ERRNOS: tuple[XenErrno, ...] = (
    _e(1, "EPERM", "Operation not permitted"),
    _e(2, "ENOENT", "No such file or directory"),
    _e(3, "ESRCH", "No such process"),
    _e(4, "EINTR", "Interrupted system call", internal=True),
    _e(5, "EIO", "Input/output error"),
    _e(6, "ENXIO", "No such device or address"),
    _e(7, "E2BIG", "Argument list too long"),
    _e(8, "ENOEXEC", "Exec format error"),
    _e(9, "EBADF", "Bad file descriptor"),
    _e(10, "ECHILD", "No child processes"),
    _e(11, "EAGAIN", "Resource temporarily unavailable"),
    _e(11, "EWOULDBLOCK", "Resource temporarily unavailable", alias_of="EAGAIN"),
    _e(12, "ENOMEM", "Cannot allocate memory"),
    _e(13, "EACCES", "Permission denied"),
    _e(14, "EFAULT", "Bad address"),
    _e(16, "EBUSY", "Device or resource busy"),
    _e(17, "EEXIST", "File exists"),
    _e(18, "EXDEV", "Invalid cross-device link"),
    _e(19, "ENODEV", "No such device"),
    _e(20, "ENOTDIR", "Not a directory"),
    _e(21, "EISDIR", "Is a directory"),
    _e(22, "EINVAL", "Invalid argument"),
    _e(23, "ENFILE", "Too many open files in system"),
    _e(24, "EMFILE", "Too many open files"),
    _e(28, "ENOSPC", "No space left on device"),
    _e(30, "EROFS", "Read-only file system"),
    _e(31, "EMLINK", "Too many links"),
    _e(33, "EDOM", "Numerical argument out of domain"),
    _e(34, "ERANGE", "Numerical result out of range"),
    _e(35, "EDEADLK", "Resource deadlock avoided"),
    _e(35, "EDEADLOCK", "Resource deadlock avoided", alias_of="EDEADLK"),
    _e(36, "ENAMETOOLONG", "File name too long"),
    _e(37, "ENOLCK", "No locks available"),
    _e(38, "ENOSYS", "Function not implemented"),
    _e(39, "ENOTEMPTY", "Directory not empty"),
    _e(61, "ENODATA", "No data available"),
    _e(62, "ETIME", "Timer expired"),
    _e(74, "EBADMSG", "Bad message"),
    _e(75, "EOVERFLOW", "Value too large for defined data type"),
    _e(84, "EILSEQ", "Invalid or incomplete multibyte or wide character"),
    _e(85, "ERESTART", "Interrupted system call should be restarted", internal=True),
    _e(88, "ENOTSOCK", "Socket operation on non-socket"),
    _e(90, "EMSGSIZE", "Message too long"),
    _e(95, "EOPNOTSUPP", "Operation not supported"),
    _e(98, "EADDRINUSE", "Address already in use"),
    _e(99, "EADDRNOTAVAIL", "Cannot assign requested address"),
    _e(105, "ENOBUFS", "No buffer space available"),
    _e(106, "EISCONN", "Transport endpoint is already connected"),
    _e(107, "ENOTCONN", "Transport endpoint is not connected"),
    _e(110, "ETIMEDOUT", "Connection timed out"),
    _e(111, "ECONNREFUSED", "Connection refused"),
)

BY_NAME: dict[str, XenErrno] = {e.name: e for e in ERRNOS}
#: value -> canonical entry (aliases never shadow the name they alias)
BY_VALUE: dict[int, XenErrno] = {e.value: e for e in ERRNOS if e.alias_of is None}

_U32 = 1 << 32
_U64 = 1 << 64
#: Linux's MAX_ERRNO: a return in [-4095, -1] is an error code.
MAX_ERRNO = 4095


def _normalise(number: int) -> int:
    """Map -13, 13, 0xfffffff3 and 0xfffffffffffffff3 all to 13."""
    if _U64 - MAX_ERRNO <= number < _U64:
        number -= _U64
    elif _U32 - MAX_ERRNO <= number < _U32:
        number -= _U32
    return abs(number)


def lookup(value_or_name: int | str) -> XenErrno:
    """Find an errno by value (13, -13, "0xfffffff3") or name ("EACCES", "xen_eacces", "-EACCES").

    Raises NotFoundError for a well-formed value/name Xen does not define, UsageError for
    anything else.
    """
    raw = value_or_name.strip() if isinstance(value_or_name, str) else value_or_name
    if isinstance(raw, str) and raw.startswith("-") and raw[1:2].isalpha():
        raw = raw[1:]  # "-EACCES" reads like "-13"
    number, name = split_input(raw, "errno")
    if name is not None:
        key = name.upper()
        key = key[4:] if key.startswith("XEN_") else key
        if key in BY_NAME:
            return BY_NAME[key]
        raise NotFoundError(
            f"errno: no error named {name!r} in Xen 4.17's errno.h (see 'xenvmi errno --all')"
        )
    assert number is not None
    if number == 0:
        raise NotFoundError("errno: 0 is success, not an error code")
    if abs(number) >= _U64:
        raise UsageError(f"errno: {value_or_name} does not fit in 64 bits")
    value = _normalise(number)
    if value in BY_VALUE:
        return BY_VALUE[value]
    raise NotFoundError(
        f"errno: {value_or_name} is not an error code Xen 4.17 defines (see 'xenvmi errno --all')"
    )


def describe(ret: int) -> str:
    """Render a hypercall return value: -13 -> "-EACCES (Permission denied)", 5 -> "5".

    Negative values outside the table come out as "-27 (unknown Xen errno)"; values given as
    unsigned 32/64-bit words in the error range are folded back to negative numbers first.
    """
    if _U64 - MAX_ERRNO <= ret < _U64:
        ret -= _U64
    if ret >= 0 or ret < -MAX_ERRNO:
        return str(ret)
    entry = BY_VALUE.get(-ret)
    if entry is None:
        return f"{ret} (unknown Xen errno)"
    return f"-{entry.name} ({entry.message})"


def all_errnos(include_internal: bool = True) -> list[XenErrno]:
    """The table in header order; ``include_internal=False`` leaves out EINTR and ERESTART."""
    return [e for e in ERRNOS if include_internal or not e.internal]
