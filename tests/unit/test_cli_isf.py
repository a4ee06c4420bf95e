"""`xenvmi isf`: writes an ISF volatility3 loads, summary and JSON, one-line errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("drgn")

from tests.unit.isf_fakes import fake_kernel_program
from xenvmi import cli, guests
from xenvmi.errors import GuestDataError, NotFoundError

BANNER = b"Linux version 6.1.0-99-amd64 (debian-kernel@lists.debian.org) (gcc 12) #1 SMP\n\0"


class FakeGuest:
    def __init__(self, kp, opened):
        self.kp, self.opened = kp, opened

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.opened["closed"] = True

    def kernel_program(self):
        return self.kp


@pytest.fixture
def guest(monkeypatch):
    opened: dict = {}

    def fake_open(target, **kw):
        opened.update(target=target, **kw)
        return FakeGuest(fake_kernel_program(BANNER), opened)

    monkeypatch.setattr(guests, "open_guest", fake_open)
    return opened


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_isf_volatility3_loads(guest, capsys, tmp_path):
    code, out, err = run(capsys, "profile", "xvm-hvm", "-o", str(tmp_path / "k.json"))
    assert code == 0, err
    assert guest["target"] == "xvm-hvm" and guest["use_cache"] and guest["closed"]
    assert out.splitlines()[0].startswith(f"wrote {tmp_path / 'k.json'}: ")
    assert "banner: Linux version 6.1.0-99-amd64" in out
    assert "xenvmi: writing" in err  # progress on stderr
    doc = json.loads((tmp_path / "k.json").read_text())
    assert doc["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    pytest.importorskip("volatility3", reason="volatility3 not installed")
    from volatility3.framework import contexts
    from volatility3.framework.symbols import intermed

    ctx = contexts.Context()
    ctx.symbol_space.append(
        intermed.IntermediateSymbolTable(
            ctx, "cfg", "k", (tmp_path / "k.json").as_uri(), validate=False
        )
    )
    assert ctx.symbol_space.get_type("k!task_struct").relative_child_offset("comm") == 32
    assert ctx.symbol_space.get_symbol("k!linux_banner").constant_data == BANNER


def test_xz_json_quiet(guest, capsys, tmp_path):
    code, out, err = run(
        capsys, "isf", "g", "-o", str(tmp_path / "k.json"), "--xz", "-q", "--json", "--no-cache"
    )
    assert code == 0 and err == ""
    got = json.loads(out)
    assert got["output"] == str(tmp_path / "k.json.xz") and (tmp_path / "k.json.xz").exists()
    assert got["banner"].startswith("Linux version") and got["symbols"] >= 4
    assert set(got) >= {
        "user_types",
        "enums",
        "typed_symbols",
        "skipped",
        "warnings",
        "kaslr_slide",
    }
    assert guest["use_cache"] is False


@pytest.mark.parametrize(
    "output, why", [("k.isf", "*.json or *.json.xz"), ("nodir/k.json", "is not a directory")]
)
def test_bad_output_is_usage_error(guest, capsys, tmp_path, output, why):
    code, out, err = run(capsys, "isf", "g", "-o", str(tmp_path / output))
    assert code == 2 and out == "" and why in err
    assert err.count("\n") == 1 and err.startswith("xenvmi: error: ")
    assert "target" not in guest  # refused before opening the guest


@pytest.mark.parametrize(
    "exc, code",
    [
        (NotFoundError("no domain named 'x' (see `xl list`)"), 3),
        (GuestDataError("x: the kernel has no BTF"), 7),
    ],
)
def test_open_errors_are_one_line(monkeypatch, capsys, tmp_path, exc, code):
    def fail(target, **kw):
        raise exc

    monkeypatch.setattr(guests, "open_guest", fail)
    got, out, err = run(capsys, "isf", "x", "-o", str(tmp_path / "k.json"))
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith("xenvmi: error: ")
    assert not (tmp_path / "k.json").exists()


def test_no_banner_is_one_line(monkeypatch, capsys, tmp_path):
    kp = fake_kernel_program(b"not a banner\0")
    monkeypatch.setattr(guests, "open_guest", lambda t, **kw: FakeGuest(kp, {}))
    code, out, err = run(capsys, "profile", "g", "-o", str(tmp_path / "k.json"), "-q")
    assert code == 7 and "not a kernel banner" in err and err.count("\n") == 1


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["isf", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "vol -s symbols -f hvm.core linux.pslist" in out
    assert "xenvmi isf xvm-hvm -o symbols/linux/" in out
