"""Types from a vmlinux with DWARF (``--vmlinux``) for a kernel without BTF, through
drgn's own loader; and the one-line error that names what is missing when neither
exists. The vmlinux is a small ELF built here with ``gcc -g`` describing the structs,
linked where the synthetic kernel (:mod:`nonote_image`) has them before its KASLR slide.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

drgn = pytest.importorskip("drgn")
from nonote_image import BANNER_OFF, RELEASE, START_KERNEL, UTS_OFF, kernel  # noqa: E402

from xenvmi import cli  # noqa: E402
from xenvmi.backends.memory import BytesMemory  # noqa: E402
from xenvmi.errors import GuestDataError, NotFoundError  # noqa: E402
from xenvmi.guest import discover, program  # noqa: E402

SOURCE = """
struct list_head { struct list_head *next, *prev; };
struct task_struct {
    unsigned int __state; int exit_state; struct list_head tasks; int pid; int tgid;
    char comm[16]; struct task_struct *real_parent;
};
struct task_struct init_task;
struct new_utsname { char sysname[65], nodename[65], release[65], version[65]; };
struct uts_namespace { int kref; struct new_utsname name; };
__attribute__((section(".uts"))) struct uts_namespace init_uts_ns = { 1 };
__attribute__((section(".banner"))) const char linux_banner[] = "Linux version x";
void start_kernel(void) {}
"""


BUILD_ID = bytes(range(1, 21))


def _vmlinux(tmp_path: Path, banner_off: int = BANNER_OFF) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build a vmlinux with DWARF")
    src = tmp_path / "k.c"
    src.write_text(SOURCE)
    out = tmp_path / f"vmlinux-{banner_off:x}"
    subprocess.run(
        [
            "gcc", "-g", "-O0", "-mcmodel=kernel", "-fno-pic", "-no-pie", "-nostdlib",
            "-static", "-Wl,-e,start_kernel", f"-Wl,--build-id=0x{BUILD_ID.hex()}",
            f"-Wl,-Ttext=0x{START_KERNEL + 0x1000:x}",
            f"-Wl,--section-start=.banner=0x{START_KERNEL + banner_off:x}",
            f"-Wl,--section-start=.uts=0x{START_KERNEL + UTS_OFF:x}",
            "-o", str(out), str(src),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(out)


def _guest(**kw):
    k = kernel(btf=False, **kw)
    mem = BytesMemory(k.image, name="g", registers=k.regs)
    return k, mem, discover.discover(mem, use_cache=False, timeout=60)


def test_a_kernel_without_btf_says_what_would_supply_its_types():
    _, mem, d = _guest()
    with pytest.raises(GuestDataError) as e:
        program.build(mem, d, use_cache=False)
    text = str(e.value)
    assert "\n" not in text and "has no BTF" in text and "--vmlinux FILE" in text
    assert f"linux-image-{RELEASE}-dbg" in text


def test_types_come_from_the_vmlinux_dwarf_at_the_kaslr_slide(tmp_path):
    k, mem, d = _guest()
    kp = program.build(mem, d, use_cache=False, vmlinux=_vmlinux(tmp_path))
    task = kp.prog.type("struct task_struct")
    assert [m.name for m in task.members][:5] == ["__state", "exit_state", "tasks", "pid", "tgid"]
    assert task.member("comm").offset == 32
    assert "DWARF from" in kp.sources["types"] and "linux_banner agrees" in kp.sources["types"]
    uts = kp.prog.object("init_uts_ns")  # DWARF's object, slid onto the guest's memory
    assert uts.address_ == k.syms["init_uts_ns"]
    assert uts.name.release.string_().decode() == RELEASE
    assert kp.btf_types == 0


def test_a_vmlinux_of_another_kernel_is_refused(tmp_path):
    _, mem, d = _guest()
    with pytest.raises(GuestDataError, match="is another kernel: it puts linux_banner"):
        program.build(mem, d, use_cache=False, vmlinux=_vmlinux(tmp_path, BANNER_OFF + 0x1000))


def test_drgn_checks_the_build_id_the_kernel_gives(tmp_path):
    path = _vmlinux(tmp_path)
    _, mem, d = _guest(build_id=BUILD_ID)
    kp = program.build(mem, d, use_cache=False, vmlinux=path)
    assert kp.prog.type("struct task_struct").size == 56
    _, mem, d = _guest(build_id=b"\x01" * 20)  # another build of the same release
    with pytest.raises(GuestDataError, match="drgn took no DWARF"):
        program.build(mem, d, use_cache=False, vmlinux=path)


def test_a_file_without_dwarf_or_absent(tmp_path):
    _, mem, d = _guest()
    stripped = tmp_path / "stripped"
    shutil.copy(_vmlinux(tmp_path), stripped)
    subprocess.run(["strip", "--strip-debug", str(stripped)], check=True)
    with pytest.raises(GuestDataError, match="drgn took no DWARF"):
        program.build(mem, d, use_cache=False, vmlinux=str(stripped))
    with pytest.raises(NotFoundError, match="no such file"):
        program.build(mem, d, use_cache=False, vmlinux=str(tmp_path / "absent"))


def test_the_views_take_vmlinux():
    args = cli.build_parser().parse_args(["ps", "g", "--vmlinux", "/boot/vmlinux"])
    assert args.vmlinux == "/boot/vmlinux"
