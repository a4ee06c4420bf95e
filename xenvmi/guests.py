"""Look inside a guest with zero configuration: the public Python API of the guest views.

    with xenvmi.guests.open_guest("xvm-pvh1") as g:
        for p in g.processes().rows:
            print(p.pid, p.comm)

Opening is cheap (LibVMI partial init); the first view that needs the kernel finds it
(VMCOREINFO scan, cached per boot) and builds the drgn Program, which later views reuse.
Each view returns a GuestView: rows, whether they are complete, and warnings. A Guest
belongs to the thread that opened it (LibVMI is not thread-safe). Every function here
also takes a dump file (an ELF vmcore or a raw memory image) in place of a domain.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from xenvmi.backends.memory import GuestMemory
from xenvmi.errors import GuestDataError, XenvmiError
from xenvmi.model.guest import GuestView, KernelInfo, LogRecord, Module, Process, VcpuRegisters

T = TypeVar("T")
Progress = Callable[[str], None]

DEFAULT_TIMEOUT = 120.0  # seconds per view, discovery excluded
RAM_MAP_TIMEOUT = 60.0  # seconds for the RAM map a dump reads first


def _quiet(msg: str) -> None:
    pass


class Guest:
    """One guest's memory plus, once needed, its kernel (a drgn Program)."""

    def __init__(
        self,
        memory: GuestMemory,
        *,
        use_cache: bool = True,
        progress: Progress = _quiet,
        discovery_timeout: float = 600.0,
        drgn_plugins: bool = False,
        vmlinux: str | None = None,
    ) -> None:
        """``drgn_plugins``: load drgn's plugins (its shell commands) into the Program;
        only the shell wants them, and loading them costs ~0.1 s a run. ``vmlinux``: a
        file with the kernel's DWARF, read for its types when the kernel has no BTF."""
        self.vmlinux = vmlinux
        self.memory = memory
        self.drgn_plugins = drgn_plugins
        self.use_cache = use_cache
        self.progress = progress
        self.discovery_timeout = discovery_timeout
        self._kp = None
        self.timings: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self.memory.name

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.memory.close()

    def cancel(self) -> None:
        """Stop the view running in another thread at its next read (an operator's
        Ctrl-C): its deadline passes now, so a paused guest is resumed at once."""
        if self._kp is not None:
            self._kp.budget.deadline = float("-inf")

    def kernel_program(self, discovery=None):
        """The drgn-backed kernel (discovery + kallsyms + BTF), built on first use; a
        ``discovery`` already made for this guest is used rather than made again."""
        if self._kp is None:
            from xenvmi.guest import discover, program

            t = time.monotonic()
            d = discovery or discover.discover(
                self.memory,
                use_cache=self.use_cache,
                timeout=self.discovery_timeout,
                progress=self.progress,
            )
            self.timings["discovery"] = time.monotonic() - t
            t = time.monotonic()
            self._kp = program.build(
                self.memory,
                d,
                timeout=self.discovery_timeout,
                use_cache=self.use_cache,
                progress=self.progress,
                drgn_plugins=self.drgn_plugins,
                vmlinux=self.vmlinux,
            )
            self.timings["program"] = time.monotonic() - t
        return self._kp

    def _view(self, fn, timeout: float | None, pause: bool) -> GuestView:
        kp = self.kernel_program()
        t = time.monotonic()
        budget = kp.view(timeout)
        if pause:
            with self.memory.paused():
                rows = fn(kp, budget)
        else:
            rows = fn(kp, budget)
        view = GuestView(
            self.name, rows, budget.complete, kp.warnings + budget.warnings, time.monotonic() - t
        )
        view.extra["timings"] = {**self.timings, "view": view.seconds}
        return view

    def processes(
        self, timeout: float | None = DEFAULT_TIMEOUT, pause: bool = False
    ) -> GuestView[Process]:
        from xenvmi.guest import linux

        return self._view(linux.processes, timeout, pause)

    def modules(
        self, timeout: float | None = DEFAULT_TIMEOUT, pause: bool = False
    ) -> GuestView[Module]:
        from xenvmi.guest import linux

        return self._view(linux.modules, timeout, pause)

    def kernel_log(
        self, timeout: float | None = DEFAULT_TIMEOUT, pause: bool = False
    ) -> GuestView[LogRecord]:
        from xenvmi.guest import printk

        return self._view(printk.kernel_log, timeout, pause)

    def kernel_info(self, timeout: float | None = DEFAULT_TIMEOUT) -> GuestView[KernelInfo]:
        from xenvmi.guest import linux

        return self._view(lambda kp, b: [linux.kernel_info(kp, b)], timeout, False)

    def dump(
        self,
        path,
        *,
        fmt: str = "elf",
        pause: bool = False,
        timeout: float | None = 1800.0,
        progress=None,
        force: bool = False,
    ):
        """Write the guest's memory to ``path``: an ELF vmcore or (``fmt="raw"``) a flat image.

        A vmcore gets the kernel's VMCOREINFO note (discovered as for any view, so within
        ``timeout``), and the kernel's "System RAM" ranges are read whole; a guest whose
        kernel is not found still dumps, with a warning. See
        :func:`xenvmi.guest.vmcore.dump` for ``pause``, ``progress`` and ``force``.
        """
        from xenvmi.guest import discover, vmcore

        vmcore.check_target(Path(path), force)  # before a discovery that may take a while
        t0, d, warnings = time.monotonic(), None, []
        if fmt == "elf":
            try:
                d = discover.discover(
                    self.memory,
                    use_cache=self.use_cache,
                    timeout=timeout or self.discovery_timeout,
                    progress=self.progress,
                )
                warnings += d.warnings
            except GuestDataError as e:
                warnings.append(
                    f"the vmcore has no VMCOREINFO note (drgn will not see a "
                    f"Linux kernel in it): {e}"
                )
        ram = self._ram_ranges(d, warnings) if d is not None else []
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
        summary = vmcore.dump(
            self.memory,
            path,
            fmt=fmt,
            discovery=d,
            pause=pause,
            timeout=left,
            progress=progress,
            force=force,
            ram_ranges=ram,
        )
        summary.warnings[:0] = warnings
        return summary

    def _ram_ranges(self, discovery, warnings: list[str]) -> list[tuple[int, int]]:
        """The kernel's own RAM map for a dump, or [] (memory is then found by probing)."""
        from xenvmi.guest import linux

        try:
            kp = self.kernel_program(discovery)
            budget = kp.view(RAM_MAP_TIMEOUT)
            ranges = linux.ram_ranges(kp, budget)
        except XenvmiError as e:
            warnings.append(f"the guest's RAM map was not read ({e}): RAM found by probing")
            return []
        warnings += budget.warnings
        return ranges

    def registers(self, vcpu: int | None = 0) -> GuestView[VcpuRegisters]:
        """Decoded registers of one vCPU (``None``: all); needs no kernel, works for PV."""
        from xenvmi.guest.regs_arm64 import decode_arm64
        from xenvmi.guest.regs_x86 import decode_x86

        decode = decode_arm64 if self.memory.arch == "aarch64" else decode_x86
        t = time.monotonic()
        vcpus = range(self.memory.vcpu_count()) if vcpu is None else [vcpu]
        rows = []
        for n in vcpus:
            raw = self.memory.vcpu_registers(n)
            rows.append(VcpuRegisters(self.name, n, decode(raw), raw))
        return GuestView(self.name, rows, True, [], time.monotonic() - t)


def is_file_target(target: str | int | os.PathLike) -> bool:
    """Whether ``target`` names a dump file rather than a domain.

    A path (anything with a '/', or a path object) is a file; a number is a domain id;
    a bare name is a file only if such a regular file exists (write ``./NAME`` to be sure).
    """
    if isinstance(target, os.PathLike):
        return True
    if isinstance(target, int):
        return False
    text = str(target)
    if "/" in text:
        return True
    return not text.isdigit() and os.path.isfile(text)


#: The live backends: LibVMI's, and the native one on Xen's own libraries.
BACKENDS = ("libvmi", "native")
#: Names one of BACKENDS for every live domain this process opens (unless a caller does).
BACKEND_ENV = "XENVMI_BACKEND"


def choose_backend(backend: str | None = None) -> str:
    """The live backend to use: ``backend`` if given, else $XENVMI_BACKEND, else LibVMI
    where the libvmi package imports and the native backend where it does not (Debian
    13's Python has no libvmi wheel). An unknown name is a usage error."""
    from xenvmi.errors import UsageError

    where = "--backend" if backend else BACKEND_ENV
    choice = (backend or os.environ.get(BACKEND_ENV, "")).strip().lower()
    if not choice:
        from xenvmi.backends.libvmi import importable

        return "libvmi" if importable() else "native"
    if choice not in BACKENDS:
        raise UsageError(f"{where}: no backend {choice!r} (choose {' or '.join(BACKENDS)})")
    return choice


def open_memory(target: str | int | os.PathLike, backend: str | None = None) -> GuestMemory:
    """A live domain's memory (by name or domid) through the backend
    :func:`choose_backend` picks, or a dump file's (vmcore or raw image) when ``target``
    names a file (:func:`is_file_target`; ``backend`` does not apply to files)."""
    # (a path object always is a file target, a number never is)
    if isinstance(target, os.PathLike) or (isinstance(target, str) and is_file_target(target)):
        from xenvmi.backends.dumpfile import DumpMemory

        return DumpMemory(target)
    if choose_backend(backend) == "native":
        from xenvmi.backends.native import NativeMemory

        return NativeMemory(target)
    from xenvmi.backends.libvmi import LibvmiMemory

    return LibvmiMemory(target)


def open_guest(target: str | int | os.PathLike, backend: str | None = None, **kw) -> Guest:
    """Open a live domain by name or id, or a dump file; ``backend`` as
    :func:`open_memory`, the other keyword arguments as :class:`Guest`'s."""
    memory = open_memory(target) if backend is None else open_memory(target, backend=backend)
    return Guest(memory, **kw)


def _once(domain: str | int, method: str, *args, **kw) -> GuestView:
    opts = {k: kw.pop(k) for k in ("use_cache", "progress", "discovery_timeout") if k in kw}
    with open_guest(domain, **opts) as g:
        return getattr(g, method)(*args, **kw)


def ps(domain: str | int, **kw) -> GuestView[Process]:
    return _once(domain, "processes", **kw)


def lsmod(domain: str | int, **kw) -> GuestView[Module]:
    return _once(domain, "modules", **kw)


def dmesg(domain: str | int, **kw) -> GuestView[LogRecord]:
    return _once(domain, "kernel_log", **kw)


def kernel(domain: str | int, **kw) -> KernelInfo:
    view = _once(domain, "kernel_info", **kw)
    if not view.rows:
        raise GuestDataError(f"{domain}: no kernel information")
    return view.rows[0]


def regs(
    domain: str | int, vcpu: int | None = 0, backend: str | None = None
) -> GuestView[VcpuRegisters]:
    with open_guest(domain, backend=backend) as g:
        return g.registers(vcpu)


def dump(
    target: str | int | os.PathLike,
    path,
    *,
    use_cache: bool = True,
    notify: Progress = _quiet,
    **kw,
):
    """Dump a domain (or convert a dump) to ``path``; keywords as :meth:`Guest.dump`."""
    with open_guest(target, use_cache=use_cache, progress=notify) as g:
        return g.dump(path, **kw)
