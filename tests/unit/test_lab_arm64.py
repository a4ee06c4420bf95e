"""`xenvmi lab --arch arm64`: the same release and script for an arm64 dom0, the amd64
lab's image digest and QEMU command line unchanged."""

import json
from pathlib import Path

import pytest

from xenvmi.cli import main
from xenvmi.errors import UsageError
from xenvmi.lab import image, releases, vm, wheels
from xenvmi.lab.paths import DATA, LabPaths, RunState

SETUP_CFG = Path(__file__).parents[2] / "setup.cfg"
ARM64 = releases.get("bookworm", "arm64")


@pytest.fixture
def lab_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XENVMI_LAB_DIR", str(tmp_path / "lab"))
    paths = LabPaths.default()
    image.ensure_key(paths)
    return paths


def test_amd64_is_the_release_itself():
    assert releases.get("bookworm", "amd64") is releases.BOOKWORM
    assert releases.get(None) is releases.DEFAULT
    assert releases.BOOKWORM.name == "bookworm" and ARM64.name == "bookworm-arm64"


def test_arm64_digest_is_its_own_and_stable(lab_dir):
    arm = image.recipe_digest(lab_dir, ARM64)
    assert arm == image.recipe_digest(lab_dir, releases.get("bookworm", "arm64"))
    assert arm not in (image.recipe_digest(lab_dir), image.recipe_digest(lab_dir, releases.TRIXIE))


def test_arm64_provisioning_is_the_shared_script_edited():
    original = (DATA / "provision.sh").read_text()
    edited = ARM64.render(original)
    packages = edited.split("PACKAGES=(", 1)[1].split(")", 1)[0].split()
    assert {"xen-hypervisor-4.17-arm64", "linux-image-arm64", "linux-headers-arm64"} <= set(
        packages
    )
    assert not [p for p in packages if p.endswith("-amd64")]
    assert "qemu-system-xen" not in packages and "libglib2.0-0" not in packages
    assert {"python3-bpfcc", "openssh-server", "python3", "xen-utils-4.17"} <= set(packages)
    assert f'-r "$WHEELS/{releases.REQUIREMENTS}" -e "$SRC[test]"' in edited
    assert len(edited.splitlines()) == len(original.splitlines())


def test_arm64_only_for_bookworm_and_known_arches():
    with pytest.raises(UsageError, match="no arm64 lab for Debian trixie"):
        releases.get("trixie", "arm64")
    with pytest.raises(UsageError, match="unknown lab architecture 'riscv64'"):
        releases.get("bookworm", "riscv64")


def test_arm64_requirements_build_drgn_and_leave_libvmi_out():
    reqs = image.dom0_requirements(SETUP_CFG, ARM64)
    assert not any(r.startswith("libvmi") for r in reqs)
    assert image.built_requirements(reqs, ARM64) == [r for r in reqs if r.startswith("drgn")]
    assert image.built_requirements(reqs, releases.BOOKWORM) == []
    assert image.built_requirements(reqs, releases.TRIXIE) == []


def test_image_names_keep_arches_apart(tmp_path):
    """An arm64 build replaces older arm64 images of its release only, never amd64's."""
    for name, manifest in (
        ("a", {"suite": "bookworm"}),
        ("b", {"suite": "bookworm", "arch": "arm64"}),
        ("c", {"arch": "arm64"}),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
    assert image.image_name(tmp_path / "a") == "bookworm"
    assert image.image_name(tmp_path / "b") == "bookworm-arm64"
    assert image.image_name(tmp_path / "c") is None
    assert image.image_name(tmp_path / "missing") is None


def test_host_tools_per_arch(monkeypatch):
    monkeypatch.setattr(image.shutil, "which", lambda tool: None)
    amd = image.missing_host_packages(with_tests=False, arch="amd64")
    arm = image.missing_host_packages(with_tests=False, arch="arm64")
    every = image.missing_host_packages(with_tests=False)
    assert "qemu-system-x86" in amd and "qemu-user-static" not in amd
    assert {"qemu-system-arm", "qemu-user-static", "binfmt-support"} <= set(arm)
    assert "qemu-system-x86" not in arm
    assert set(amd) | set(arm) == set(every)


def test_amd64_machine_is_unchanged(tmp_path):
    args = vm.machine_args("amd64", tmp_path, tmp_path / "o.qcow2")
    assert args[:4] == ["-machine", "q35", "-cpu", vm.CPU_MODEL]
    assert f"{tmp_path / 'vmlinuz'} {vm.DOM0_CMDLINE},{tmp_path / 'initrd.img'}" in args
    assert "virtio-net-pci,netdev=n0" in args


def test_arm64_machine_boots_xen_with_guest_loader_modules(tmp_path):
    args = vm.machine_args("arm64", tmp_path, tmp_path / "o.qcow2")
    assert args[args.index("-machine") + 1] == "virt,virtualization=on,gic-version=2"
    assert args[args.index("-cpu") + 1] == "cortex-a57"
    assert args[args.index("-kernel") + 1] == str(tmp_path / "xen")
    assert "console=dtuart" in args[args.index("-append") + 1]
    loaders = [
        args[i + 1] for i, a in enumerate(args) if a == "-device" and "guest-loader" in args[i + 1]
    ]
    assert loaders == [
        f"guest-loader,addr=0x49000000,kernel={tmp_path / 'Image'},bootargs={vm.DOM0_CMDLINE}",
        f"guest-loader,addr=0x50000000,initrd={tmp_path / 'initrd.img'}",
    ]
    assert "virtio-blk-device,drive=hd0" in args and "virtio-net-device,netdev=n0" in args


def test_cached_wheel_matches_project_python_and_machine(lab_dir):
    cache = wheels.cache_dir(lab_dir)
    cache.mkdir(parents=True)
    assert wheels.cached(lab_dir, "drgn", "3.11", "arm64") is None
    for name in (
        "drgn-0.3.0-cp311-cp311-linux_x86_64.whl",
        "drgn-0.3.0-cp313-cp313-linux_aarch64.whl",
        "drgnx-1-cp311-cp311-linux_aarch64.whl",
    ):
        (cache / name).write_bytes(b"")
    assert wheels.cached(lab_dir, "drgn", "3.11", "arm64") is None
    (cache / "drgn-0.3.0-cp311-cp311-linux_aarch64.whl").write_bytes(b"")
    hit = wheels.cached(lab_dir, "drgn", "3.11", "arm64")
    assert hit is not None and hit.name == "drgn-0.3.0-cp311-cp311-linux_aarch64.whl"


def test_arm64_guest_configs_are_pvh_on_the_plain_image():
    configs = sorted((DATA / "guests" / "arm64").glob("*.cfg"))
    assert [c.stem for c in configs] == ["xvm-pvh1", "xvm-pvh2"]
    for cfg in configs:
        text = cfg.read_text()
        assert 'type = "pvh"' in text and 'kernel = "@DIR@/Image"' in text
        assert "cpuid" not in text  # x86 only
        assert f"xenvmi.name={cfg.stem}" in text


def test_up_refuses_a_running_lab_of_another_arch(lab_dir, monkeypatch, capsys):
    running = RunState(4242, 2222, "f00", 0.0, "bookworm")
    monkeypatch.setattr(vm, "running", lambda paths: running)
    monkeypatch.setattr(vm, "stop", lambda paths: pytest.fail("stopped the running lab"))
    monkeypatch.setattr(image, "build", lambda *a, **k: pytest.fail("built an image"))
    assert main(["lab", "up", "--arch", "arm64"]) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is Debian bookworm" in err
