"""One exception family: the CLI maps each to a one-line message and an exit code."""


class XenvmiError(Exception):
    """Base of every error xenvmi reports to a user; ``str(e)`` is the one-line message."""

    exit_code = 1


class UsageError(XenvmiError):
    """The user asked for something malformed (bad value, unknown name)."""

    exit_code = 2


class NotFoundError(XenvmiError):
    """A named thing (domain, path, errno name) does not exist."""

    exit_code = 3


class PermissionDenied(XenvmiError):
    """The operation needs privileges the caller lacks (usually root in dom0)."""

    exit_code = 4


class Unavailable(XenvmiError):
    """A capability is missing here: a package, a daemon, a device. The message says the fix."""

    exit_code = 5


class LabError(XenvmiError):
    """The QEMU lab could not be built, booted or reached."""

    exit_code = 6


class GuestDataError(XenvmiError):
    """Guest memory did not hold what we expected: corrupt, hostile or unsupported."""

    exit_code = 7
