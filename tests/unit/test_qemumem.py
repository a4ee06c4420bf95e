"""xenvmi.lab.qemumem's pure parts: where each architecture's captures live, the apt
sources of each distribution, the guests' names (the real boots: tests/lab_host)."""

from __future__ import annotations

from pathlib import Path

from xenvmi.lab import qemumem


def test_each_architecture_has_its_own_cache(monkeypatch):
    monkeypatch.delenv("XENVMI_ARM64_DIR", raising=False)
    monkeypatch.delenv("XENVMI_X86_DIR", raising=False)
    home = Path.home() / ".cache" / "xenvmi"
    assert qemumem.root("arm64") == home / "arm64"  # the arm64 captures made before stay
    assert qemumem.root("amd64") == home / "x86"
    monkeypatch.setenv("XENVMI_X86_DIR", "/tmp/elsewhere")
    assert qemumem.root("amd64") == Path("/tmp/elsewhere")
    assert qemumem.root("arm64") == home / "arm64"


def test_kernels_name_their_architecture_and_machine():
    for name, k in qemumem.KERNELS.items():
        arch = qemumem.ARCHES[k.arch]
        assert name.startswith("x86-") == (k.arch == "amd64") == (arch.console == "ttyS0")
    assert qemumem.hostname("deb12") == "arm64-deb12"
    assert qemumem.hostname("x86-deb12") == "x86-deb12"
    assert qemumem.KERNELS["x86-focal"].flavour == "generic"  # Ubuntu's linux-image-generic


def test_sources():
    deb11 = qemumem.KERNELS["x86-deb11"].sources()
    assert deb11 == (
        "deb http://deb.debian.org/debian bullseye main\n"
        "deb http://deb.debian.org/debian-security bullseye-security main\n"
    )
    focal = qemumem.KERNELS["x86-focal"].sources(Path("/k/keys.gpg")).splitlines()
    assert [ln.split()[-2] for ln in focal] == ["focal", "focal-updates", "focal-security"]
    assert all(
        ln.startswith("deb [signed-by=/k/keys.gpg] http://archive.ubuntu.com/") for ln in focal
    )
