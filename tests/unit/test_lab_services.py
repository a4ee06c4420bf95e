"""`xenvmi lab deps` installs Prometheus without its packaged service (xenvmi/lab/services.py):
the mask and the policy-rc.d, in a scratch root, and the policy run as invoke-rc.d and
deb-systemd-invoke run it."""

from __future__ import annotations

import os
import subprocess

import pytest

from xenvmi.lab import image, services


def policy_exit(script, name: str) -> int:
    return subprocess.run(["sh", str(script), name, "start"], timeout=10).returncode


def test_deps_installs_prometheus_and_holds_its_service():
    assert image.TEST_PACKAGES["/usr/bin/prometheus"] == "prometheus"
    assert services.HELD["prometheus"] == "prometheus.service"


def test_held_masks_the_unit_and_denies_the_start_only_during_the_install(tmp_path):
    policy = tmp_path / "usr/sbin/policy-rc.d"
    link = tmp_path / "etc/systemd/system/prometheus.service"
    with services.held(["qemu-utils", "prometheus"], root=tmp_path, log=lambda m: None) as hold:
        assert hold == ["prometheus"]
        assert os.readlink(link) == "/dev/null"
        assert os.access(policy, os.X_OK)
        # invoke-rc.d asks with the init script's name, deb-systemd-invoke with the unit's
        assert policy_exit(policy, "prometheus") == 101
        assert policy_exit(policy, "prometheus.service") == 101
        assert policy_exit(policy, "ssh") == 0
    assert not policy.exists()
    assert os.readlink(link) == "/dev/null"  # the mask stays: no start at boot either


def test_held_removes_its_policy_when_the_install_fails(tmp_path):
    with pytest.raises(RuntimeError), services.held(["prometheus"], root=tmp_path, log=print):
        raise RuntimeError("apt-get failed")
    assert not (tmp_path / "usr/sbin/policy-rc.d").exists()


def test_held_leaves_the_administrators_files_alone(tmp_path):
    policy = tmp_path / "usr/sbin/policy-rc.d"
    policy.parent.mkdir(parents=True)
    policy.write_text("#!/bin/sh\nexit 101\n")
    unit = tmp_path / "etc/systemd/system/prometheus.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/prometheus --web.listen-address=::1:9090\n")
    said = []
    with services.held(["prometheus"], root=tmp_path, log=said.append):
        assert policy.read_text() == "#!/bin/sh\nexit 101\n"
    assert policy.read_text() == "#!/bin/sh\nexit 101\n"
    assert unit.read_text().startswith("[Service]") and not unit.is_symlink()
    assert any("not masked" in m for m in said)


def test_nothing_is_held_for_other_packages(tmp_path):
    with services.held(["tmux", "qemu-utils"], root=tmp_path) as hold:
        assert hold == []
    assert not any(tmp_path.iterdir())
