"""`xenvmi lab --release`: Debian 13 beside Debian 12, the default's image digest unchanged."""

import hashlib
import json
from pathlib import Path

import pytest

from xenvmi.cli import main
from xenvmi.errors import LabError, UsageError
from xenvmi.lab import image, releases
from xenvmi.lab.paths import DATA, LabPaths, RunState, is_guest_payload

SETUP_CFG = Path(__file__).parents[2] / "setup.cfg"


@pytest.fixture
def lab_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XENVMI_LAB_DIR", str(tmp_path / "lab"))
    paths = LabPaths.default()
    image.ensure_key(paths)
    return paths


def digest_before_releases(paths: LabPaths) -> str:
    """The image digest as it was computed before releases existed (Debian 12 only):
    the default lab's cached images and CI's must keep their names."""
    h = hashlib.sha256(f"format={image.FORMAT} suite=bookworm\n".encode())
    for f in sorted(p for p in DATA.rglob("*") if p.is_file() and not is_guest_payload(p, DATA)):
        h.update(str(f.relative_to(DATA)).encode() + b"\0" + f.read_bytes())
    h.update(paths.key.with_suffix(".pub").read_bytes())
    h.update("\n".join(image.dom0_requirements(SETUP_CFG)).encode())
    return h.hexdigest()[:16]


def test_default_release_digest_is_unchanged(lab_dir):
    assert image.recipe_digest(lab_dir) == digest_before_releases(lab_dir)
    assert image.recipe_digest(lab_dir, releases.BOOKWORM) == digest_before_releases(lab_dir)


def test_trixie_has_its_own_stable_digest(lab_dir):
    trixie = image.recipe_digest(lab_dir, releases.TRIXIE)
    assert trixie == image.recipe_digest(lab_dir, releases.TRIXIE)
    assert trixie != image.recipe_digest(lab_dir)


def test_trixie_provisioning_is_the_shared_script_edited():
    original = (DATA / "provision.sh").read_text()
    assert releases.BOOKWORM.render(original) == original
    edited = releases.TRIXIE.render(original)
    assert "xen-hypervisor-4.20-amd64 xen-utils-4.20" in edited
    assert "4.17" not in edited.split("PACKAGES=(", 1)[1].split(")", 1)[0]
    assert "libglib2.0-0" not in edited
    assert f'-r "$WHEELS/{releases.REQUIREMENTS}" -e "$SRC[test]"' in edited
    assert "[dom0," not in edited
    # everything else is the same script, line for line
    assert len(edited.splitlines()) == len(original.splitlines())


def test_an_edit_that_no_longer_matches_is_an_error():
    with pytest.raises(LabError, match="xen-hypervisor-4.17-amd64"):
        releases.TRIXIE.render("PACKAGES=(xen-hypervisor-4.19-amd64)\n")


def test_trixie_dom0_requirements_have_no_libvmi():
    default = image.dom0_requirements(SETUP_CFG)
    trixie = image.dom0_requirements(SETUP_CFG, releases.TRIXIE)
    assert any(r.startswith("libvmi") for r in default)
    assert not any(r.startswith("libvmi") for r in trixie)
    assert set(trixie) == {r for r in default if not r.startswith("libvmi")}
    assert any(r.startswith("drgn") for r in trixie)


def test_keeps_matches_project_names_only():
    assert not releases.TRIXIE.keeps("libvmi>=3.7.1")
    assert not releases.TRIXIE.keeps("LibVMI ; python_version<'3.12'")
    assert releases.TRIXIE.keeps("libvmi-tools>=1")


def test_unknown_release(capsys):
    with pytest.raises(UsageError, match="unknown lab release 'sid'"):
        releases.get("sid")
    with pytest.raises(SystemExit) as exc:
        main(["lab", "up", "--release", "sid"])
    assert exc.value.code == 2
    assert "invalid choice: 'sid'" in capsys.readouterr().err


def test_image_suite_of_cached_images(tmp_path):
    """Building one release's image replaces that release's older images only."""
    for name, suite in (("a", "bookworm"), ("b", "trixie")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"suite": suite}))
    (tmp_path / "c.partial").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text("[not a manifest")
    assert image.image_suite(tmp_path / "a") == "bookworm"
    assert image.image_suite(tmp_path / "b") == "trixie"
    assert image.image_suite(tmp_path / "c.partial") is None
    assert image.image_suite(tmp_path / "d") is None


def test_run_state_of_an_older_lab_is_the_default_release(lab_dir):
    lab_dir.run.mkdir(parents=True)
    lab_dir.state_file.write_text(json.dumps({"pid": 1, "port": 2222, "image": "x", "started": 0}))
    state = lab_dir.load_state()
    assert state == RunState(1, 2222, "x", 0, "bookworm")
    lab_dir.save_state(RunState(1, 2223, "y", 0, "trixie"))
    assert lab_dir.load_state().release == "trixie"


def test_up_refuses_a_running_lab_of_another_release(lab_dir, monkeypatch, capsys):
    """One lab directory runs one release at a time: asking for the other is one line
    that says how to get it, and nothing is stopped or built."""
    from xenvmi.lab import vm

    running = RunState(4242, 2222, "c74e09ecedfa350a", 0.0, "bookworm")
    monkeypatch.setattr(vm, "running", lambda paths: running)
    monkeypatch.setattr(vm, "stop", lambda paths: pytest.fail("stopped the running lab"))
    monkeypatch.setattr(image, "build", lambda *a, **k: pytest.fail("built an image"))
    assert main(["lab", "up", "--release", "trixie"]) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "is Debian bookworm" in err and "XENVMI_LAB_DIR" in err


def test_a_kernel_directory_is_published_whole_or_not_at_all(tmp_path):
    """kernels.publish (both kernel fetchers' last step): an interrupted fetch leaves the
    old directory as it was (a half-written one would be taken for complete next time);
    a finished one replaces it with exactly the new files, and no staging is left."""
    from xenvmi.lab.kernels import publish

    out = tmp_path / "deb12"
    vmlinuz = tmp_path / "vmlinuz-6.1.0-1-amd64"
    vmlinuz.write_bytes(b"new kernel")
    publish(out, {"vmlinuz": vmlinuz, "old.ko": b"old"}, "6.1.0-0", "old.deb")
    with pytest.raises(FileNotFoundError):
        publish(out, {"vmlinuz": vmlinuz, "dummy.ko": tmp_path / "gone.ko"}, "6.1.0-1", "x")
    assert (out / "kernel-release").read_text() == "6.1.0-0\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "kernel-release",
        "old.ko",
        "package",
        "vmlinuz",
    ]
    publish(out, {"vmlinuz": vmlinuz, "dummy.ko": b"\x7fELF"}, "6.1.0-1", "new.deb")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        "vmlinuz": b"new kernel",
        "dummy.ko": b"\x7fELF",
        "kernel-release": b"6.1.0-1\n",
        "package": b"new.deb\n",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deb12", "vmlinuz-6.1.0-1-amd64"]
