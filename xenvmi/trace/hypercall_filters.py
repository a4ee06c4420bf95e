"""What to trace: pid, comm, hypercall (and command), errors only.

Each filter becomes a ``#define`` that hypercalls.bpf.c tests in the kernel, so filtered-out
calls cost one comparison and never reach user space (as in bcc's tools). ``matches`` is
the same rule in Python, for tests and for events read back from a JSON trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.abi import hypercalls as hc
from xenvmi.abi import releases
from xenvmi.errors import NotFoundError, UsageError
from xenvmi.trace import hypercall_subops
from xenvmi.trace.hypercall_decode import KIND_BY_NAME, KIND_NAMES, MAX_ERRNO, HypercallEvent

#: The kernel keeps 15 characters of a task's name (TASK_COMM_LEN 16 with the NUL).
COMM_LEN = 15


@dataclass(frozen=True)
class Filters:
    """Conditions an event must meet; None means "any"."""

    pid: int | None = None
    comm: str | None = None
    kind: int | None = None  #: privcmd ioctl number (0 = hypercall)
    op: int | None = None  #: hypercall number
    subop: int | None = None  #: command of ``op`` (domctl, memory_op, ...)
    errors_only: bool = False
    release: str | None = None  #: Xen release naming the commands (DEFAULT for None)

    def __post_init__(self) -> None:
        if self.pid is not None and self.pid <= 0:
            raise UsageError(f"trace: --pid must be positive, not {self.pid}")
        if self.comm is not None:
            if not self.comm or "\0" in self.comm:
                raise UsageError("trace: --comm must be a non-empty process name")
            object.__setattr__(self, "comm", truncate_comm(self.comm))
        if self.subop is not None and self.op is None:
            raise UsageError("trace: a command filter needs its hypercall (--op domctl:5)")

    def defines(self) -> list[str]:
        """The preprocessor lines that turn these filters on in hypercalls.bpf.c."""
        out = []
        if self.pid is not None:
            out.append(f"#define FILTER_PID {self.pid}")
        if self.comm is not None:
            out.append(f"#define FILTER_COMM {c_string(self.comm)}")
        if self.kind is not None:
            out.append(f"#define FILTER_KIND {self.kind}")
        if self.op is not None:
            out.append(f"#define FILTER_OP {self.op}")
        if self.subop is not None:
            out.append(f"#define FILTER_SUBOP {self.subop}")
        if self.errors_only:
            out.append("#define FILTER_ERRORS")
        return out

    def matches(self, ev: HypercallEvent) -> bool:
        """The rule the BPF program applies, on a decoded event."""
        if self.pid is not None and ev.pid != self.pid:
            return False
        if self.comm is not None and ev.comm != self.comm:
            return False
        if self.kind is not None and KIND_BY_NAME.get(ev.kind, 255) != self.kind:
            return False
        if self.op is not None and ev.op != self.op:
            return False
        if self.subop is not None and ev.subop != self.subop:
            return False
        if self.errors_only and not -MAX_ERRNO <= ev.ret < 0:
            return False
        return True

    def describe(self) -> str:
        """ "failed domctl getdomaininfo calls of pid 812" style banner text."""
        what = "privcmd calls"
        if self.op is not None:
            what = hc.BY_NUMBER[self.op].name if self.op in hc.BY_NUMBER else f"hypercall {self.op}"
            if self.subop is not None:
                sub = hypercall_subops.subop_name(self.op, self.subop, self.release)
                what += " " + (sub or str(self.subop))
            what += " calls"
        elif self.kind is not None:
            what = f"privcmd {KIND_NAMES.get(self.kind, self.kind)} calls"
        if self.errors_only:
            what = "failed " + what
        who = []
        if self.pid is not None:
            who.append(f"pid {self.pid}")
        if self.comm is not None:
            who.append(f"comm {self.comm!r}")
        return what + (" of " + " and ".join(who) if who else "")


def truncate_comm(name: str) -> str:
    """What the kernel keeps of a process name: its first 15 bytes."""
    raw = name.encode("utf-8")[:COMM_LEN]
    return raw.decode("utf-8", "ignore")


def c_string(text: str) -> str:
    """A C string literal of ``text`` using only octal escapes: nothing can break out."""
    return '"' + "".join(f"\\{b:03o}" for b in text.encode("utf-8")) + '"'


def parse_op(text: str, release: str | None = None) -> tuple[int | None, int | None, int | None]:
    """``--op`` -> (kind, op, subop).

    ``domctl``, ``36``, ``domctl:getdomaininfo``, ``memory_op:6``: a hypercall, optionally one
    command of it. ``mmapbatch_v2``, ``mmap_resource``, ``restrict``...: another privcmd
    request. ``dm_op`` is the hypercall, whether issued directly or through the dm_op ioctl.
    Commands are looked up in Xen ``release``'s tables (DEFAULT for None).
    """
    name, _, sub = text.strip().partition(":")
    if not name:
        raise UsageError(f"trace: --op {text!r}: give a hypercall or privcmd request name")
    try:
        op = hc.lookup(name).number
    except NotFoundError:
        if name.lower() in KIND_BY_NAME:
            if sub:
                raise UsageError(
                    f"trace: --op {text!r}: privcmd request {name} has no commands to pick from"
                ) from None
            return KIND_BY_NAME[name.lower()], None, None
        raise NotFoundError(
            f"trace: --op {name!r} is neither a Xen {releases.get(release).version} hypercall "
            f"nor a privcmd request ({', '.join(sorted(KIND_BY_NAME))})"
        ) from None
    if not sub:
        return None, op, None
    return None, op, hypercall_subops.lookup_subop(op, sub, release)
