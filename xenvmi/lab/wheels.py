"""Wheels PyPI does not have for dom0's platform, built once on the host and cached there.

drgn publishes no aarch64 wheel (sdist only), so an arm64 dom0's offline pip install would
have none. The build runs what `pip wheel` runs, on the declared requirement's sdist,
inside a throwaway copy of the arm64 dom0 tree (its compiler and libraries are the ones
dom0 runs with; qemu-user runs them through binfmt) and the wheel is kept under the lab
directory (``LAB_DIR/built-wheels``), never in the source tree. The cache is keyed by the
wheel's own name (project, version, Python tag, platform): a later image build reuses it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from xenvmi.errors import LabError
from xenvmi.lab.paths import LabPaths

#: Debian packages the sdist builds need in the build tree (drgn: autotools' configure,
#: elfutils' libelf/libdw, Python's headers; setuptools instead of build isolation).
BUILD_PACKAGES = (
    "build-essential",
    "pkg-config",
    "autoconf",
    "automake",
    "libtool",
    "python3-dev",
    "python3-pip",
    "python3-setuptools",
    "python3-wheel",
    "libelf-dev",
    "libdw-dev",
    "zlib1g-dev",
    "liblzma-dev",
    "libbz2-dev",
)
MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}


def cache_dir(paths: LabPaths) -> Path:
    return paths.root / "built-wheels"


def _tag(python: str) -> str:
    return "cp" + python.replace(".", "")


def cached(paths: LabPaths, project: str, python: str, arch: str) -> Path | None:
    """The newest cached wheel of ``project`` for this Python and architecture."""
    tag = _tag(python)
    pattern = f"{project.replace('-', '_')}-*-{tag}-{tag}-*{MACHINE[arch]}.whl"
    hits = sorted(cache_dir(paths).glob(pattern))
    return hits[-1] if hits else None


def fetch_sdist(requirement: str, dest: Path) -> Path:
    """The requirement's sdist, downloaded on the host (the build tree needs no index)."""
    dest.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(dest),
            requirement,
        ],
        capture_output=True,
        text=True,
    )
    found = sorted(dest.glob("*.tar.gz"))
    if res.returncode != 0 or not found:
        raise LabError(
            f"pip download of the {requirement} sdist failed: {res.stderr.strip()[-300:]}"
        )
    return found[-1]


def build_script(sdist_name: str) -> str:
    """What runs in the build tree: its build dependencies, then `pip wheel` on the sdist."""
    return (
        "set -e; mount -t proc proc /proc; export DEBIAN_FRONTEND=noninteractive; "
        "apt-get update -q; "
        f"apt-get install -y -q --no-install-recommends {' '.join(BUILD_PACKAGES)}; "
        "python3 -m pip wheel -v --no-deps --no-build-isolation -w /wheel-out "
        f"/wheel-in/{sdist_name}"
    )
