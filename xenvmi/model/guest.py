"""What the guest views return: plain dataclasses the CLI renders as tables or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from xenvmi.guest.regs_arm64 import Arm64Regs
from xenvmi.guest.regs_x86 import X86Regs

T = TypeVar("T")


@dataclass(frozen=True)
class Process:
    """One process (thread-group leader), as ``ps`` inside the guest would show it."""

    pid: int
    ppid: int
    comm: str
    state: str  # one ps letter: R S D T t X Z P I (? if unknown)
    uid: int | None  # effective uid, as ps shows
    start_time: float | None  # seconds after boot
    cmdline: str | None  # None for kernel threads and unreadable argument pages
    kernel_thread: bool
    task: int  # address of the task_struct


@dataclass(frozen=True)
class Module:
    name: str
    size: int | None
    state: str  # live, coming, going, unformed
    refcount: int | None
    address: int | None


@dataclass(frozen=True)
class LogRecord:
    seq: int
    timestamp: float  # seconds after boot
    level: int
    facility: int
    text: str
    caller: str | None = None  # "T123" (task) or "C0" (CPU)


@dataclass(frozen=True)
class KernelInfo:
    domain: str
    release: str
    version: str | None
    hostname: str | None
    build_id: str | None
    kaslr_slide: int
    phys_base: int
    page_size: int
    vmcoreinfo_address: int
    btf_size: int
    btf_types: int
    symbols: int
    discovery_seconds: float
    discovery_cached: bool
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VcpuRegisters:
    domain: str
    vcpu: int
    decoded: X86Regs | Arm64Regs  #: by the memory source's architecture
    raw: dict[str, int] = field(default_factory=dict)


@dataclass
class GuestView(Generic[T]):
    """One view of a guest: the rows read, and why they may be incomplete."""

    domain: str
    rows: list[T]
    complete: bool = True
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
