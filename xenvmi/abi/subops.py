"""Sub-operation tables (domctl, sysctl, memory_op, hvm_op commands) and their lookup.

Multiplexing hypercalls carry a command number in their argument; a tracer needs the name.
Each table is plain data in its own module; this module holds the shared shape and lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.abi._parse import split_input
from xenvmi.errors import NotFoundError, UsageError

ACTIVE = "active"  #: defined in the public header
INTERNAL = "internal"  #: defined only for Xen itself (``#ifdef __XEN__``)
REMOVED = "removed"  #: commented out / retired in the header; the number must not be reused
LEGACY = "legacy"  #: defined only for an old __XEN_INTERFACE_VERSION__ or tools builds,
#: and no longer handled by the hypervisor (-ENOSYS)


@dataclass(frozen=True)
class SubOp:
    """One command number of a multiplexing hypercall."""

    number: int
    name: str  #: without the prefix, e.g. "getdomaininfo"
    status: str = ACTIVE
    note: str = ""


class SubOpTable:
    """The commands of one hypercall (or of one nested command, e.g. XENMEM_access_op)."""

    def __init__(
        self,
        title: str,
        prefix: str,
        ops: tuple[SubOp, ...],
        interface_version: int | None = None,
        aliases: dict[str, str] | None = None,
        release: str = "4.17",
    ) -> None:
        self.title = title
        self.prefix = prefix
        self.ops = ops
        self.interface_version = interface_version
        self.aliases = dict(aliases or {})
        self.release = release  #: the Xen release whose header this table follows

    def for_release(
        self,
        release: str,
        ops: tuple[SubOp, ...] | None = None,
        interface_version: int | None = None,
    ) -> SubOpTable:
        """This table as another release has it: same title and prefix, its own ops."""
        return SubOpTable(
            self.title,
            self.prefix,
            self.ops if ops is None else ops,
            self.interface_version if interface_version is None else interface_version,
            self.aliases,
            release,
        )

    def __repr__(self) -> str:
        return f"SubOpTable({self.title!r}, Xen {self.release}, {len(self.ops)} ops)"

    def current(self) -> list[SubOp]:
        """Ops a hypervisor of this release may be asked for (not removed)."""
        return [op for op in self.ops if op.status != REMOVED]

    def name(self, number: int) -> str:
        """The name for a traced number, "unknown_<n>" if undefined (never raises)."""
        op = self.by_number(number)
        return op.name if op else f"unknown_{number}"

    def by_number(self, number: int) -> SubOp | None:
        """Prefer a defined op over a retired one sharing its number (domctl 23)."""
        found = [op for op in self.ops if op.number == number]
        found.sort(key=lambda op: op.status == REMOVED)
        return found[0] if found else None

    def lookup(self, number_or_name: int | str) -> SubOp:
        """Find an op by number or by name, with or without the prefix, any case."""
        number, name = split_input(number_or_name, self.title)
        if name is not None:
            key = name.lower()
            prefix = self.prefix.lower()
            key = key[len(prefix) :] if key.startswith(prefix) else key
            key = self.aliases.get(key, key)
            for op in self.ops:
                if op.name.lower() == key:
                    return op
            raise NotFoundError(f"{self.title}: no command named {name!r} in Xen {self.release}")
        assert number is not None
        if number < 0:
            raise UsageError(f"{self.title}: command number {number} is negative")
        found = self.by_number(number)
        if found is None:
            raise NotFoundError(
                f"{self.title}: command {number} is not defined in Xen {self.release}"
            )
        return found
