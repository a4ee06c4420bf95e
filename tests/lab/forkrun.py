"""Run the ``xenvmi`` command in a child forked from an interpreter that has imported it.

In the lab's emulated dom0 an interpreter's start and xenvmi's imports cost 3-4 s of every
command (a warm ``xenvmi ps``: 5.5 s as a new process, 1.9 s forked), and the lab tests run
about a hundred commands. A forked child is still a separate process that runs the CLI
from ``argv`` with its own stdout, stderr and exit code, as a user's would; only the start-up
is shared. Where forking is not safe (other threads alive in this process, which a child
would lose mid-operation) it runs a new interpreter instead.
"""

from __future__ import annotations

import importlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time


def preload() -> None:
    """Import every command module (and so what each imports) once, in this process."""
    from xenvmi import cli

    for name in cli.COMMAND_MODULES:
        importlib.import_module(f"xenvmi.commands.{name}")


def _child(argv: list[str], out_w: int, err_w: int) -> None:
    """In the forked child: the CLI on fds 1 and 2, then exit with its code."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        sys.argv = ["xenvmi", *argv]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        from xenvmi.cli import main

        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what an uncaught exception does to `python -m xenvmi`
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def fork_safe() -> bool:
    """A child of a process with other threads keeps only the forking one: a lock another
    thread held at that moment stays held forever in the child."""
    return threading.active_count() == 1


def run_forked(argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """``xenvmi ARGV`` in a forked child; raises subprocess.TimeoutExpired (after killing
    the child) like subprocess.run."""
    if not fork_safe():
        return subprocess.run(
            [sys.executable, "-m", "xenvmi", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        _child(argv, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    chunks = {out_r: [], err_r: []}
    deadline = None if timeout is None else time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        open_fds = set(chunks)
        while open_fds:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                for fd in chunks:
                    os.close(fd)
                raise subprocess.TimeoutExpired(["xenvmi", *argv], timeout)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
    for fd in chunks:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)

    def decode(parts: list[bytes]) -> str:
        return b"".join(parts).decode(errors="replace")

    return subprocess.CompletedProcess(
        ["xenvmi", *argv], code, decode(chunks[out_r]), decode(chunks[err_r])
    )
