"""Which backend opens a live domain: ``--backend`` on the view commands, then
$XENVMI_BACKEND, then LibVMI where the libvmi package imports and the native backend where
it does not; and the "guest-memory" requirement either backend meets."""

from __future__ import annotations

import pytest

from xenvmi import guests
from xenvmi.backends.memory import PAGE, BytesMemory
from xenvmi.errors import UsageError

# -- which backend opens a domain -------------------------------------------------------------


@pytest.fixture
def opened(monkeypatch):
    """The backend each live open would use, recorded instead of opening."""
    from xenvmi.backends import libvmi, native

    seen = []
    monkeypatch.setattr(
        native, "NativeMemory", lambda t: seen.append(("native", t)) or BytesMemory(bytes(PAGE))
    )
    monkeypatch.setattr(
        libvmi, "LibvmiMemory", lambda t: seen.append(("libvmi", t)) or BytesMemory(bytes(PAGE))
    )
    monkeypatch.delenv(guests.BACKEND_ENV, raising=False)
    return seen


@pytest.mark.parametrize(
    "has_libvmi,env,arg,want",
    [
        (True, None, None, "libvmi"),
        (False, None, None, "native"),
        (True, "native", None, "native"),
        (False, "libvmi", None, "libvmi"),
        (True, "native", "libvmi", "libvmi"),
        (False, " Native ", None, "native"),
    ],
)
def test_backend_choice(opened, monkeypatch, has_libvmi, env, arg, want):
    from xenvmi.backends import libvmi

    monkeypatch.setattr(libvmi, "importable", lambda: has_libvmi)
    if env is not None:
        monkeypatch.setenv(guests.BACKEND_ENV, env)
    guests.open_memory("xvm-pvh1", backend=arg)
    assert opened == [(want, "xvm-pvh1")]


def test_unknown_backend_is_a_usage_error(opened, monkeypatch):
    monkeypatch.setenv(guests.BACKEND_ENV, "kvm")
    with pytest.raises(UsageError, match="XENVMI_BACKEND: no backend 'kvm'"):
        guests.open_memory("g")
    with pytest.raises(UsageError, match="--backend: no backend 'x'"):
        guests.open_memory("g", backend="x")
    assert not opened


def test_view_commands_pass_backend_to_the_guest(opened, monkeypatch, capsys):
    from xenvmi import cli
    from xenvmi.plugins import requirements

    monkeypatch.setattr(requirements, "unmet", lambda requires, dump_file=False: [])
    code = cli.main(["regs", "xvm-pv", "--backend", "native", "--json"])
    capsys.readouterr()
    assert code != 0  # the stand-in memory has no registers: the point is which backend
    assert opened == [("native", "xvm-pv")]
    with pytest.raises(SystemExit):
        cli.main(["ps", "xvm-pv", "--backend", "kvm"])
    assert "invalid choice" in capsys.readouterr().err


def test_guest_memory_requirement_met_by_either_backend(monkeypatch):
    from xenvmi.backends import native
    from xenvmi.plugins import requirements

    monkeypatch.setattr(requirements, "_import_error", lambda m: "no" if m == "libvmi" else None)
    monkeypatch.setitem(requirements.CHECKS, "dom0", lambda: None)
    monkeypatch.setattr(native, "unavailable", lambda: None)
    assert requirements.unmet(["guest-memory"]) == []
    monkeypatch.setattr(native, "unavailable", lambda: "libxenctrl cannot be loaded")
    assert requirements.unmet(["linux-guest"]) == [
        "guest-memory: pip install libvmi, or libxenctrl cannot be loaded"
    ]
    assert requirements.unmet(["linux-guest"], dump_file=True) == []
