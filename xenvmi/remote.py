"""Run a xenvmi command on another dom0 through the user's ``ssh`` (``xenvmi tui --host``).

Nothing new listens on a host: every call is ``ssh HOST -- xenvmi ... --json`` and the
host's own xenvmi does the reading. ssh runs with BatchMode (a password or host-key prompt
would hang a worker forever), a connect timeout, and keep-alives (a dead link ends the
command instead of blocking it); the caller's deadline bounds the rest, and a process that
outlives it is killed with its process group. Host names and ``--ssh-option`` values are
user input that lands in ssh's argv: a host starting with '-' would be read as an option,
so it is refused, as is whitespace or a control character in either. What a host sends
back is not trusted either: its output is bounded, its JSON checked, its error text
escaped (xenvmi.safetext).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from xenvmi.errors import (
    GuestDataError,
    NotFoundError,
    PermissionDenied,
    Unavailable,
    UsageError,
    XenvmiError,
)
from xenvmi.safetext import escape

#: Seconds ssh may take to connect (ssh -o ConnectTimeout).
CONNECT_TIMEOUT = 10
#: Keep-alives: a link silent for ALIVE_INTERVAL * ALIVE_COUNT s is declared dead.
ALIVE_INTERVAL = 5
ALIVE_COUNT = 3
#: Largest answer read from a host (a ps of a big guest is a few MB).
MAX_OUTPUT = 64 * 1024 * 1024
#: Exit code with which ssh itself reports a failure (cannot connect, auth refused ...).
SSH_FAILED = 255
_HOST = re.compile(r"(?:[A-Za-z0-9._+-]{1,64}@)?[A-Za-z0-9._%:\[\]-]{1,253}")
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:=| )\S.*")
#: A remote xenvmi's exit code -> the error it means here (README's exit codes).
_BY_EXIT: dict[int, type[XenvmiError]] = {
    cls.exit_code: cls
    for cls in (UsageError, NotFoundError, PermissionDenied, Unavailable, GuestDataError)
}


#: A command running on a host (its ssh, locally).
Running = subprocess.Popen[bytes]


def check_host(text: str) -> str:
    """``[user@]host`` as ssh takes it (a name, an address or an ssh config alias)."""
    if text.startswith("-") or not _HOST.fullmatch(text):
        raise UsageError(
            f"bad host {escape(text)!r}: expected [user@]host (letters, digits, '.-_:'; "
            "not starting with '-')"
        )
    return text


def check_ssh_option(text: str) -> str:
    """One ``ssh -o`` option, ``Key=Value`` (or ``Key Value``), on one line."""
    if not _OPTION.fullmatch(text) or not text.isprintable():
        raise UsageError(f"bad ssh option {escape(text)!r}: expected Key=Value, as ssh -o takes")
    return text


@dataclass(frozen=True)
class Remote:
    """One host and how to reach its xenvmi."""

    host: str
    ssh_options: tuple[str, ...] = ()
    #: The remote command that runs xenvmi (e.g. a venv's ``python -m xenvmi``).
    xenvmi: tuple[str, ...] = ("xenvmi",)
    #: The ssh program (tests put a fake one here).
    ssh: str = "ssh"
    connect_timeout: int = CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        check_host(self.host)
        for opt in self.ssh_options:
            check_ssh_option(opt)

    def argv(self, args: Sequence[str]) -> list[str]:
        """ssh's argv running ``xenvmi ARGS`` on the host (quoted for its shell)."""
        argv = [self.ssh, "-T"]
        for opt in (
            "BatchMode=yes",
            f"ConnectTimeout={self.connect_timeout}",
            f"ServerAliveInterval={ALIVE_INTERVAL}",
            f"ServerAliveCountMax={ALIVE_COUNT}",
            *self.ssh_options,
        ):
            argv += ["-o", opt]
        return [*argv, "--", self.host, shlex.join([*self.xenvmi, *args])]

    def start(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``xenvmi ARGS`` on the host, stdout and stderr piped, in its own process
        group (so ``stop`` ends ssh and whatever it started, ProxyCommands included)."""
        try:
            return subprocess.Popen(
                self.argv(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise Unavailable(f"{self.host}: cannot run {self.ssh}: {exc.strerror}") from None

    def json(
        self,
        args: Sequence[str],
        timeout: float,
        should_stop: Callable[[], bool] | None = None,
    ) -> Any:
        """``xenvmi ARGS`` (a --json command) on the host, its output parsed; at most
        ``timeout`` s, less if ``should_stop`` turns true (checked every 0.2 s)."""
        proc = self.start(args)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if should_stop is not None and should_stop():
                        raise Unavailable(f"{self.host}: stopped") from None
                    if time.monotonic() > deadline:
                        raise Unavailable(
                            f"{self.host}: no answer in {timeout:g}s to `xenvmi {args[0]}`"
                        ) from None
        finally:
            stop(proc)
        failure = self.failure(proc.returncode, err)
        if failure is not None:
            raise failure
        if len(out) > MAX_OUTPUT:
            raise GuestDataError(f"{self.host}: `xenvmi {args[0]}` sent over {MAX_OUTPUT} bytes")
        return parse(self.host, out, args[0])

    def failure(self, code: int | None, stderr: bytes) -> XenvmiError | None:
        """The error a finished command's exit code and stderr mean, or None if it did
        not fail: one line, the host's last message (``xenvmi: error: ...``), escaped."""
        if code == 0:
            return None
        lines = [ln for ln in stderr[-4096:].decode("utf-8", "replace").splitlines() if ln]
        last = escape(lines[-1].strip()) if lines else f"exit status {code}"
        if code == SSH_FAILED:
            return Unavailable(f"{self.host}: ssh: {last.removeprefix('ssh: ')}")
        last = last.removeprefix("xenvmi: error: ").removeprefix("xenvmi: ")
        if code == 127:
            last = f"{last} (is xenvmi installed there? see --remote-xenvmi)"
        return _BY_EXIT.get(code or 1, XenvmiError)(f"{self.host}: {last}")


def parse(host: str, raw: bytes, what: str) -> Any:
    """One JSON document from a host."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise GuestDataError(f"{host}: `xenvmi {what}` sent bad JSON: {exc}") from None


def read_line(pipe: IO[bytes], host: str) -> bytes:
    """One line of a streaming command, bounded (a host cannot make us buffer forever)."""
    line = pipe.readline(MAX_OUTPUT + 1)
    if len(line) > MAX_OUTPUT:
        raise GuestDataError(f"{host}: a line over {MAX_OUTPUT} bytes")
    return line


def stop(proc: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """End ``proc`` and its process group (TERM, then KILL after ``grace`` s) and reap it.
    Its pipes are left to whoever reads them (closing one under a reading thread is not
    safe): the group's end is their EOF."""
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
    proc.wait()
