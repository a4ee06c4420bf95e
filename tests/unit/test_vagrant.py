"""The Vagrant lab (machines with hardware virtualization) stays honest: its file is valid
for the libvirt provider it names, and it provisions with the QEMU lab's own script."""

import os
import re
import subprocess
from pathlib import Path

from xenvmi.lab.paths import DATA

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"


def test_vagrantfile_validates_with_the_libvirt_provider():
    env = dict(os.environ, VAGRANT_DEFAULT_PROVIDER="libvirt", VAGRANT_CHECKPOINT_DISABLE="1")
    res = subprocess.run(
        ["vagrant", "validate"],
        cwd=VAGRANT_DIR,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


def test_vagrant_provisions_with_the_qemu_labs_script():
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    synced = re.search(r'synced_folder "\.\.", "([^"]+)"', text)
    assert synced, "the checkout must be synced into the VM"
    script = f"{synced[1]}/{DATA.relative_to(DATA.parents[2]).as_posix()}/provision.sh"
    assert f"bash {script} --src {synced[1]}" in text
    assert (DATA / "provision.sh").exists()
