"""The lab's integrity check makes its compressed input once and checks real decodes of it."""

import shutil

import pytest

from xenvmi.lab import integrity

pytestmark = pytest.mark.skipif(shutil.which("xz") is None, reason="xz is not installed")


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.setattr(integrity, "WORK", tmp_path / "work")
    monkeypatch.setattr(integrity, "SIZE", 64 * 1024)
    monkeypatch.setattr(integrity, "guests_running", lambda: 0)
    return tmp_path / "work"


def test_input_made_once_then_reused(work, monkeypatch):
    packed, md5 = integrity.packed_input()
    assert packed.exists() and not (work / "input.txt").exists() and len(md5) == 32

    def fail(path):
        raise AssertionError("the input was made again")

    monkeypatch.setattr(integrity, "make_input", fail)
    assert integrity.packed_input() == (packed, md5)
    result = integrity.check(runs=2, log=lambda m: None)
    assert result.ok and result.runs == 2 and result.expected_md5 == md5


def test_a_wrong_decode_is_a_mismatch(work):
    integrity.packed_input()
    (work / "input.md5").write_text("0" * 32 + "\n")  # as if the decoder returned other bytes
    result = integrity.check(runs=1, log=lambda m: None)
    assert not result.ok and result.mismatches == 1


def test_input_made_elsewhere_is_found_by_dom0(work, tmp_path):
    """The image build makes the input under the image's root; dom0 finds it at WORK."""
    made = integrity.packed_input(tmp_path / "image-root" / "var/tmp/x")
    assert made[0].parent == tmp_path / "image-root" / "var/tmp/x"
    work.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "image-root" / "var/tmp/x").rename(work)
    assert integrity.packed_input() == (work / "input.txt.xz", made[1])
