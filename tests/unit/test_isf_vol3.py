"""volatility3's own `linux.pslist` on a memory image, with only xenvmi's ISF: the stacker
matches it by banner, takes the KASLR slide from VMCOREINFO, and lists the tasks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.vol3_image import Vol3Image
from xenvmi.guest import btf as B
from xenvmi.guest import isf

pytestmark = pytest.mark.timeout(300)
VOL = 'import sys; sys.argv[0] = "vol"; from volatility3.cli import main; main()'


def vol_pslist(image_path, symbols_dir, cache_dir) -> list[dict]:
    cache_dir.mkdir(exist_ok=True)  # volatility3 does not create --cache-path
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            VOL,
            "-q",
            "-r",
            "json",
            "--offline",
            "--cache-path",
            str(cache_dir),
            "-s",
            str(symbols_dir),
            "-f",
            str(image_path),
            "linux.pslist",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


@pytest.mark.parametrize(
    "slide, phys_base, fmt",
    [
        (0, 0, "raw"),  # like the lab's PVH guests
        (0x1E00000, -16 << 20, "raw"),  # KASLR with a negative phys_base, like its HVM guest
        (0x1E00000, -16 << 20, "elf"),  # the same, through xenvmi's own ELF vmcore writer
    ],
)
def test_volatility3_pslist_with_xenvmi_isf(tmp_path, slide, phys_base, fmt):
    pytest.importorskip("volatility3", reason="volatility3 not installed")
    img = Vol3Image(slide=slide, phys_base=phys_base)
    init = img.add_task(1, b"init", user=True)
    img.add_task(2, b"kthreadd")
    img.add_task(9, b"sh", parent=init, user=True, uid=1000)
    img.add_task(31337, b"xvm-child-long-name", parent=init, user=True)
    image = tmp_path / f"guest.{fmt}"
    if fmt == "raw":
        image.write_bytes(img.mem)
    else:
        from xenvmi.backends.memory import BytesMemory
        from xenvmi.guest import discover, vmcore

        mem = BytesMemory(img.mem, name="img", registers={0: {"rip": 1, "cr3": 0x1000}})
        vmcore.dump(mem, image, discovery=discover.scan(mem))
    banner = isf.read_banner(img.read, img.symbols["linux_banner"])
    doc, summary = isf.build_isf(B.Btf(img.btf), img.kallsyms(), kaslr_slide=slide, banner=banner)
    assert not summary.skipped and not summary.warnings
    (tmp_path / "symbols" / "linux").mkdir(parents=True)
    isf.write_isf(doc, tmp_path / "symbols" / "linux" / "guest.json", xz=True)
    rows = vol_pslist(image, tmp_path / "symbols", tmp_path / "cache")
    got = [(r["PID"], r["PPID"], r["COMM"], r["UID"]) for r in rows]
    assert got == [
        (1, 0, "init", 0),
        (2, 0, "kthreadd", 0),
        (9, 1, "sh", 1000),
        (31337, 1, "xvm-child-long-", 0),
    ]
