"""The example plugin of docs/plugins.md works: loaded from a temporary folder with
--plugin-dir and run through the CLI on a synthetic guest kernel."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("drgn")

from xenvmi import cli, guests
from xenvmi.backends.memory import BytesMemory
from xenvmi.guest.synthetic import TASK, SyntheticKernel
from xenvmi.plugins import loader, requirements

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).parent / "data" / "example_plugin.py"
pytestmark = pytest.mark.timeout(60)


def test_doc_shows_the_tested_example():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert EXAMPLE.read_text() in blocks


@pytest.fixture
def guest(monkeypatch, tmp_path):
    for name in requirements.CHECKS:
        monkeypatch.setitem(requirements.CHECKS, name, lambda: None)
    monkeypatch.delenv(loader.ENV_PATH, raising=False)
    k = SyntheticKernel()
    init = k.add_task(1, b"init")
    k.add_task(2, b"kthreadd")  # no mm: a kernel thread, skipped
    sshd = k.add_task(40, b"sshd", parent=init)
    job = k.add_task(41, b"nobody-job", parent=init, uid=65534)
    bad = k.add_task(42, b"hostile", parent=init)
    for t in (init, sshd, job, bad):  # user processes have an mm
        k.put(t + TASK["mm"], "Q", k.alloc(32))
    k.put(bad + TASK["cred"], "Q", 0xFFFF_8880_7777_0000)  # cred pointer into nowhere
    kp = k.kernel_program()
    monkeypatch.setattr(guests, "open_memory", lambda d: BytesMemory(bytearray(4096), name=str(d)))
    monkeypatch.setattr(guests.Guest, "kernel_program", lambda self: kp)
    folder = tmp_path / "my-plugins"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "rootprocs.py")
    return folder


def test_example_runs_from_plugin_dir(guest, capsys):
    code = cli.main(["run", "rootprocs", "g", "--json", "--plugin-dir", str(guest)])
    got = json.loads(capsys.readouterr().out)
    assert code == 0 and got["error"] is None
    assert got["rows"] == [{"pid": 1, "comm": "init"}, {"pid": 40, "comm": "sshd"}]
    assert not got["complete"] and len(got["warnings"]) == 1
    assert got["warnings"][0].startswith("task at 0x") and "unreadable" in got["warnings"][0]


def test_example_table_and_listing(guest, capsys):
    code = cli.main(["run", "rootprocs", "g", "--plugin-dir", str(guest), "-o", "limit=2"])
    out, err = capsys.readouterr()
    assert code == 0 and out.splitlines() == ["PID  COMM", "  1  init"]
    assert "more than 2 entries" in err
    code = cli.main(["plugins", "--plugin-dir", str(guest)])
    out = capsys.readouterr().out
    assert code == 0 and re.search(r"^rootprocs\s+1\.0\s+yes\s+linux-guest,root\s+ready", out, re.M)
