"""Choosing a Xen release's ABI tables: version strings, the nearest-older fallback, the
running hypervisor's release (libxenctrl's xc_version, else /sys/hypervisor), ``--xen``,
and what differs between the releases' tables (each checked against its headers in
test_abi.py; here: that the differences are exactly the ones the headers show)."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import pytest

from xenvmi import xen_release
from xenvmi.abi import domctl, hvm_op, memory_op, releases, sysctl
from xenvmi.backends import xen_release as backend
from xenvmi.backends.privcmd import Privcmd
from xenvmi.backends.xenctrl import XENVER_VERSION, XenCtrl
from xenvmi.errors import Unavailable, UsageError


@pytest.mark.parametrize(
    "text, parsed",
    [("4.17", (4, 17)), ("4.20.1", (4, 20)), (" 4.17.5-pre ", (4, 17)), ("4.21-rc", (4, 21))],
)
def test_parse(text, parsed):
    assert releases.parse(text) == parsed


@pytest.mark.parametrize("text", ["", "4", "4.x", "four.two", "4.17;rm", "1234.1", None, 4.17])
def test_parse_rejects_what_is_not_a_version(text):
    with pytest.raises(UsageError):
        releases.parse(text)


@pytest.mark.parametrize(
    "text, chosen, warned",
    [
        ("4.17", "4.17", False),
        ("4.17.5", "4.17", False),
        ("4.20", "4.20", False),
        ("4.18", "4.18", False),
        ("4.19.2", "4.19", False),
        ("4.21", "4.20", True),
        ("4.22", "4.20", True),
        ("5.0", "4.20", True),
        ("4.16", "4.17", True),
    ],
)
def test_nearest_older_known_release(text, chosen, warned):
    got, warning = releases.nearest(text)
    assert got == chosen and (warning is not None) == warned
    if warning:
        assert f"Xen {chosen}" in warning and "\n" not in warning


def test_get_knows_only_known_releases():
    assert releases.get().version == releases.DEFAULT == "4.17"
    assert releases.get("4.20").version == "4.20"
    with pytest.raises(UsageError):
        releases.get("4.21")


def test_what_each_release_added_to_the_one_before():
    def ops(r, name):
        return {(o.number, o.name) for o in releases.get(r).subop_tables[name].ops}

    added = {
        r: {n: sorted(ops(r, n) - ops(prev, n)) for n in ("domctl", "sysctl")}
        for prev, r in zip(releases.KNOWN, releases.KNOWN[1:])
    }
    assert added == {
        "4.18": {"domctl": [], "sysctl": [(30, "dt_overlay")]},
        "4.19": {"domctl": [(87, "dt_overlay")], "sysctl": []},
        "4.20": {"domctl": [(88, "gsi_permission"), (89, "set_llc_colors")], "sysctl": []},
    }
    versions = [releases.get(r).interface_versions["domctl"] for r in releases.KNOWN]
    assert versions == [0x15, 0x16, 0x17, 0x17]


def test_the_releases_differ_exactly_where_their_headers_do():
    old, new = releases.get("4.17"), releases.get("4.20")
    changed = [(a, b) for a, b in zip(old.hypercalls, new.hypercalls) if a != b]
    assert [(a.name, a.pv64, b.pv64) for a, b in changed] == [("xenoprof_op", "yes", "optional")]
    assert [h.number for h in old.hypercalls] == [h.number for h in new.hypercalls]
    assert new.hypercall(31).kconfig.startswith("XENOPROF (EXPERT, default n")
    assert (old.interface_versions, new.interface_versions) == (
        {"domctl": 0x15, "sysctl": 0x15},
        {"domctl": 0x17, "sysctl": 0x15},
    )

    def added(name):
        before = {(o.number, o.name) for o in old.subop_tables[name].ops}
        return sorted({(o.number, o.name) for o in new.subop_tables[name].ops} - before)

    assert added("domctl") == [(87, "dt_overlay"), (88, "gsi_permission"), (89, "set_llc_colors")]
    assert added("sysctl") == [(30, "dt_overlay")]
    assert added("memory_op") == added("hvm_op") == []
    for name, table in new.subop_tables.items():
        assert table.release == "4.20" and old.subop_tables[name].release == "4.17"
    # the unkeyed module names stay 4.17's
    assert domctl.TABLE is domctl.TABLES["4.17"] and sysctl.TABLE is sysctl.TABLES["4.17"]
    assert memory_op.TABLE is memory_op.TABLES["4.17"] and hvm_op.TABLE is hvm_op.TABLES["4.17"]


def test_a_tables_errors_name_its_release():
    with pytest.raises(Exception, match="Xen 4.20"):
        domctl.TABLES["4.20"].lookup(90)
    assert domctl.TABLES["4.20"].lookup("XEN_DOMCTL_gsi_permission").number == 88


# -- selection ------------------------------------------------------------------------


def test_select_prefers_the_request_then_the_running_release_then_the_default():
    warnings: list[str] = []
    assert xen_release.select("4.20", detect=lambda: "4.17", warn=warnings.append) == "4.20"
    assert xen_release.select(None, detect=lambda: "4.20", warn=warnings.append) == "4.20"
    assert xen_release.select(None, detect=lambda: None, warn=warnings.append) == "4.17"
    assert warnings == []
    assert xen_release.select(None, detect=lambda: "4.21", warn=warnings.append) == "4.20"
    assert xen_release.select("4.21", detect=lambda: None, warn=warnings.append) == "4.20"
    assert [w.split(":")[0] for w in warnings] == ["the running hypervisor", "--xen"]
    with pytest.raises(UsageError):
        xen_release.select("latest", detect=lambda: None, warn=warnings.append)


def test_select_warns_on_stderr(capsys):
    assert xen_release.select(None, detect=lambda: "4.30") == "4.20"
    err = capsys.readouterr().err
    assert err.startswith("xenvmi: warning: the running hypervisor: no ABI tables for Xen 4.30")


# -- the running hypervisor's release (backends) ---------------------------------------


def sysfs(tmp_path: Path, kind="xen", major="4", minor="20") -> Path:
    (tmp_path / "version").mkdir()
    (tmp_path / "type").write_text(kind + "\n")
    (tmp_path / "version" / "major").write_text(major + "\n")
    (tmp_path / "version" / "minor").write_text(minor + "\n")
    return tmp_path


def test_sysfs_release(tmp_path):
    assert backend.from_sysfs(sysfs(tmp_path)) == "4.20"


@pytest.mark.parametrize(
    "kind, major, minor", [("kvm", "4", "20"), ("xen", "4", "x"), ("xen", "4", "99999")]
)
def test_sysfs_that_is_not_a_xen_version(tmp_path, kind, major, minor):
    assert backend.from_sysfs(sysfs(tmp_path, kind, major, minor)) is None


def test_no_sysfs(tmp_path):
    assert backend.from_sysfs(tmp_path / "absent") is None


class FakeVersionLib:
    """The two libxenctrl calls XenCtrl makes to learn the version."""

    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.calls: list[tuple] = []

    def xc_interface_open(self, *args):
        return 0x1000

    def xc_interface_close(self, xch):
        return 0

    def xc_version(self, xch, cmd, arg):
        self.calls.append((xch, cmd, arg))
        if self.answer < 0:
            ctypes.set_errno(1)
        return self.answer


def test_xc_version_is_split_into_major_and_minor():
    lib = FakeVersionLib(4 << 16 | 17)
    assert XenCtrl(lib).xen_version() == (4, 17)
    assert lib.calls == [(0x1000, XENVER_VERSION, None)]
    with pytest.raises(Unavailable):
        XenCtrl(FakeVersionLib(-1)).xen_version()


def test_running_release_falls_back_to_sysfs(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "from_xenctrl", lambda: None)
    monkeypatch.setattr(backend, "SYS_HYPERVISOR", sysfs(tmp_path, minor="17"))
    monkeypatch.setattr(backend.from_sysfs, "__defaults__", (backend.SYS_HYPERVISOR,))
    assert backend.running_release() == "4.17"
    monkeypatch.setattr(backend, "from_xenctrl", lambda: "4.20")
    assert backend.running_release() == "4.20"


def test_xenctrl_unusable_means_no_answer(monkeypatch):
    import xenvmi.backends.xenctrl as xenctrl

    def refuse(*a, **kw):
        raise Unavailable("libxenctrl cannot be loaded")

    monkeypatch.setattr(xenctrl, "XenCtrl", refuse)
    assert backend.from_xenctrl() is None


class RecordingPrivcmd(Privcmd):
    """Privcmd without /dev/xen: records hypercalls; xen_version answers ``xen``, others 0."""

    def __init__(self, xen: int) -> None:  # no super().__init__: no device to open
        self.calls: list[tuple] = []
        self.xen = xen
        self.buf = bytearray(4096)  # type: ignore[assignment]
        self.addr = 0x1000
        self._versions = None

    def hypercall(self, op: int, *args: int) -> int:
        self.calls.append((op, bytes(self.buf[:8]) if op in (35, 36) else args))
        return self.xen if op == 17 else 0


@pytest.mark.parametrize("xen, domctl_version", [((4 << 16) | 17, 0x15), ((4 << 16) | 20, 0x17)])
def test_privcmd_sends_the_running_releases_interface_version(xen, domctl_version):
    p = RecordingPrivcmd(xen)
    p.domctl(5, 7)
    p.domctl(5, 7)
    p.sysctl(6)
    assert [c[0] for c in p.calls] == [17, 36, 36, 35]  # one xen_version, then cached
    assert struct.unpack("<II", p.calls[1][1]) == (5, domctl_version)
    assert struct.unpack("<II", p.calls[3][1]) == (6, 0x15)
    p = RecordingPrivcmd(xen)
    p.xen_version()
    p.domctl(5, 7, version=0x14)
    assert [c[0] for c in p.calls] == [17, 36]
    assert struct.unpack("<II", p.calls[1][1]) == (5, 0x14)
