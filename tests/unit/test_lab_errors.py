"""Bad input to `xenvmi lab` gives one clear line and a non-zero exit, never a traceback."""

import os
import socket
import subprocess
import sys
from collections import namedtuple

import pytest

from xenvmi.cli import main
from xenvmi.errors import LabError
from xenvmi.lab import image, vm
from xenvmi.lab.paths import LabPaths, RunState


@pytest.fixture
def lab_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XENVMI_LAB_DIR", str(tmp_path / "lab"))
    return LabPaths.default()


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_lab_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["lab", "frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in one_line_error(capsys)


def test_commands_need_a_running_lab(lab_dir, capsys):
    for argv in (["lab", "exec", "--", "xl", "list"], ["lab", "sync"], ["lab", "check"]):
        assert main(argv) == 6
        assert "lab is not running" in one_line_error(capsys)


def test_exec_without_command(lab_dir, capsys, monkeypatch):
    monkeypatch.setattr(vm, "running", lambda paths: RunState(1, 2222, "x", 0.0))
    assert main(["lab", "exec", "--"]) == 2
    assert "needs a command" in one_line_error(capsys)


def test_bad_runs_value(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["lab", "check", "--runs", "many"])
    assert exc.value.code == 2
    assert "not a number" in one_line_error(capsys)


def test_port_in_use(lab_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not vm.port_free(port)
        with pytest.raises(Exception) as exc:
            vm.boot(lab_dir, tmp_path, port, 1024)
    assert "in use" in str(exc.value) and exc.value.exit_code == 6


def test_missing_qemu(lab_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Exception) as exc:
        vm.boot(lab_dir, tmp_path, 2222, 1024)
    assert "apt-get install qemu-system-x86" in str(exc.value)


def test_not_root(lab_dir, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Exception) as exc:
        image.preflight(lab_dir)
    assert "needs root" in str(exc.value) and exc.value.exit_code == 4


def test_no_disk_space(lab_dir, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(image.shutil, "disk_usage", lambda p: usage(10, 9, 1024**3))
    monkeypatch.setattr(image.shutil, "which", lambda tool: "/usr/bin/" + tool)
    with pytest.raises(Exception) as exc:
        image.preflight(lab_dir)
    assert "not enough disk space" in str(exc.value)


def test_corrupt_state_file(lab_dir, capsys):
    lab_dir.run.mkdir(parents=True)
    lab_dir.state_file.write_text("{not json")
    assert main(["lab", "status"]) == 6
    assert "corrupt lab state" in one_line_error(capsys)


def test_cli_subprocess_exit_code(lab_dir):
    res = subprocess.run(
        [sys.executable, "-m", "xenvmi", "lab", "exec", "--", "true"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert res.returncode == 6
    assert res.stderr.startswith("xenvmi: error: the lab is not running")


def test_recipe_digest_tracks_provisioning_files(lab_dir):
    image.ensure_key(lab_dir)
    first = image.recipe_digest(lab_dir)
    assert first == image.recipe_digest(lab_dir)
    lab_dir.key.with_suffix(".pub").write_text("ssh-ed25519 AAAA other\n")
    assert image.recipe_digest(lab_dir) != first


def test_dom0_wheels_follow_setup_cfg():
    """The wheels fetched for dom0's offline install are what provision.sh installs
    (setup.cfg's dom0 and test extras), pins included."""
    from pathlib import Path

    from xenvmi.lab.image import dom0_requirements

    reqs = dom0_requirements(Path(__file__).parents[2] / "setup.cfg")
    names = {r.split("=")[0].split(">")[0] for r in reqs}
    assert {"libvmi", "drgn", "pyxs", "textual", "psutil", "pytest", "setuptools"} <= names
    # the exporter runs in dom0, where its lab test scrapes it with a real Prometheus
    assert "prometheus_client" in names
    assert any(r.startswith("textual==") for r in reqs)
    assert not any("#" in r or not r for r in reqs)
    # host-only (the dev extra): dom0 has no wheels for them
    assert not names & {"ruff", "mypy", "hypothesis"}


def test_guest_payload_is_outside_the_image_recipe(lab_dir, tmp_path, monkeypatch):
    """Guest files are remade in dom0 from the synced tree, so editing them must not force
    an image rebuild, and must change the payload digest dom0 compares."""
    import shutil

    from xenvmi.lab import paths as lab_paths

    data = tmp_path / "data"
    shutil.copytree(lab_paths.DATA, data)
    monkeypatch.setattr(image, "DATA", data)
    image.ensure_key(lab_dir)
    recipe, payload = image.recipe_digest(lab_dir), lab_paths.guest_payload_digest(data)
    init = data / "guest-init.sh"
    init.write_text(init.read_text() + "\n# changed\n")
    (data / "guests" / "xvm-pv.cfg").write_text('name = "xvm-pv"\n')
    assert image.recipe_digest(lab_dir) == recipe
    assert lab_paths.guest_payload_digest(data) != payload
    (data / "provision.sh").write_text("# changed\n")
    assert image.recipe_digest(lab_dir) != recipe


def test_payload_digest_follows_the_other_releases_kernels(tmp_path):
    """A lab directory without kernels has the guest files' digest (the image of an older
    build); kernels copied in, or replaced by others, change it: dom0 then remakes."""
    from xenvmi.lab import kernels
    from xenvmi.lab import paths as lab_paths

    lab = tmp_path / "lab"
    lab.mkdir()
    plain = lab_paths.payload_digest(lab)
    assert plain == lab_paths.guest_payload_digest()
    (lab / "kernels").mkdir()
    for release in ("5.10.0-46-amd64", "5.10.0-47-amd64"):
        k = tmp_path / "deb11"
        k.mkdir(exist_ok=True)
        (k / "kernel-release").write_text(release + "\n")
        (k / "vmlinuz").write_bytes(release.encode() * 100)
        blob, digest = kernels.bundle([k])
        assert kernels.bundle([k]) == (blob, digest)  # the same files, the same bundle
        (lab / "kernels" / ".digest").write_text(digest + "\n")
        got = lab_paths.payload_digest(lab)
        assert got != plain
        plain = got


def test_image_package_is_the_metapackage_dependency():
    from xenvmi.lab.kernels import image_package

    show = (
        "Package: linux-image-amd64\nVersion: 6.12.118-1\n"
        "Depends: linux-image-6.12.118+deb13-amd64 (= 6.12.118-1)\n"
    )
    assert image_package(show) == "linux-image-6.12.118+deb13-amd64"
    with pytest.raises(LabError, match="names no versioned kernel"):
        image_package("Package: linux-image-amd64\nDepends: linux-base\n")


def test_dom0_toolstack_missing_is_a_failed_run():
    """Outside a dom0 (no xl), dom0's helpers see a failed command, not a traceback: the
    lab tests' own check then says where they must run."""
    from xenvmi.lab import dom0

    res = dom0._run(["xenvmi-no-such-tool", "list"])
    assert res.returncode == 127 and "not installed" in res.stderr
    assert dom0.parse_xl_list(res.stdout) == {}
