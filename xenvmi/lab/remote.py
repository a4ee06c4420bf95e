"""Reach the lab's dom0: ssh on a loopback port, and sync this source tree into it.

Dom0's venv has xenvmi installed editable from /opt/xenvmi/src, so copying the working tree
there is all it takes for dom0 to run the code being edited, without rebuilding the image.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import xenvmi
from xenvmi.errors import LabError
from xenvmi.lab.paths import LabPaths

REMOTE_SRC = "/opt/xenvmi/src"
REMOTE_PY = "/opt/xenvmi/venv/bin/python"
#: Top-level parts of a checkout that dom0 needs (the rest, like .git, stays home).
SYNCED = ("xenvmi", "plugins", "tests", "benchmarks", "setup.cfg", "pyproject.toml", "README.md")


def ssh_argv(
    paths: LabPaths, port: int, command: list[str] | None = None, tty: bool = False
) -> list[str]:
    argv = [
        "ssh",
        "-i",
        str(paths.key),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=120",
        "-o",
        "ConnectionAttempts=3",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
    ]
    argv.append("-t" if tty else "-T")
    argv.append("root@127.0.0.1")
    if command:
        argv += ["--", *command]
    return argv


def run(
    paths: LabPaths,
    port: int,
    command: str,
    timeout: float | None = 600,
    check: bool = True,
    capture: bool = True,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess:
    """Run a shell command line in dom0; a failure to connect is a LabError."""
    try:
        res = subprocess.run(
            ssh_argv(paths, port, [command]), input=stdin, timeout=timeout, capture_output=capture
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"command in dom0 timed out after {timeout:.0f}s: {command}") from None
    if res.returncode == 255:
        err = (res.stderr or b"").decode(errors="replace").strip()
        raise LabError(f"cannot reach dom0 over ssh on 127.0.0.1:{port}: {err or 'ssh failed'}")
    if check and res.returncode != 0:
        last = (res.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise LabError(f"`{command}` failed in dom0 (exit {res.returncode}): {' '.join(last)}")
    return res


def reachable(paths: LabPaths, port: int) -> bool:
    try:
        res = subprocess.run(ssh_argv(paths, port, ["true"]), capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0


def source_root() -> Path | None:
    """The checkout this xenvmi runs from, or None when it is an installed package."""
    root = Path(xenvmi.__file__).resolve().parent.parent
    return root if (root / "setup.cfg").exists() and (root / "xenvmi").is_dir() else None


def source_tarball(root: Path) -> bytes:
    """The synced parts of a checkout as a tar archive, without caches."""
    buf = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        if name in ("__pycache__", ".pytest_cache") or name.endswith((".pyc", ".egg-info")):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for part in SYNCED:
            if (root / part).exists():
                tar.add(root / part, arcname=part, filter=keep)
    return buf.getvalue()


def sync(paths: LabPaths, port: int, root: Path | None = None) -> int:
    """Copy the working tree to dom0's /opt/xenvmi/src; returns the bytes sent."""
    root = root or source_root()
    if root is None:
        raise LabError("lab sync needs a source checkout of xenvmi (setup.cfg beside xenvmi/)")
    blob = source_tarball(root)
    dirs = " ".join(p for p in SYNCED if "." not in p)
    run(
        paths,
        port,
        f"mkdir -p {REMOTE_SRC} && cd {REMOTE_SRC} && rm -rf {dirs} && tar -xzf -",
        stdin=blob,
        timeout=600,
    )
    return len(blob)
