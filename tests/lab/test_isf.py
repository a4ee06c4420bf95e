"""`xenvmi isf` on the lab's real guests: volatility3 reads xenvmi's dumps with xenvmi's
ISF and lists the processes `xenvmi ps` lists.

For a guest of each kernel (6.1 PVH, 5.10 HVM with KASLR, 6.12 PVH): write the ISF from the
guest's dump (the paused dump test_dumps made). For the 5.10 KASLR guest also: run
volatility3's ``linux.pslist`` on the dump with only that ISF in its symbol path (as a user
would: ``vol -s DIR -f DUMP linux.pslist``) and compare its pids and ppids with ``xenvmi ps
DUMP``; and write the ISF from the running guest, which must equal the dump's.

volatility3 runs here as it does where jsonschema is not installed: it then skips checking
the ISF against its JSON schema. That check is 34 of a cold run's 38 s natively and over
20 minutes on the lab's emulated CPU; tests/unit/test_isf.py checks xenvmi's ISFs against
volatility3's schema with jsonschema instead.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from xenvmi.lab.groundtruth import ARM64_STEXT_BASE

from .conftest import ARM, DUMP_GUESTS, ground_truth, randomized, xenvmi_json

#: volatility3 and the live profile on the KASLR guest of the oldest kernel only: each costs
#: minutes of the lab's emulated CPU, and a slide and an older kernel are where they can
#: disagree. (The arm64 lab has one kernel, with no KASLR on its PVH guests.)
DEEP_GUEST = "xvm-pvh1" if ARM else "xvm-deb11"
KERNEL_TEXT = 0xFFFF_FFFF_8100_0000  # x86-64 _text at link time (__START_KERNEL)
#: volatility3 (2.28) translates x86 addresses only: its layers have no AArch64 one.
NO_VOL3_ON_ARM = "volatility3 has no AArch64 translation layer (Intel layers only)"
#: volatility3's `vol`, as without jsonschema (its schema check is optional; see above).
VOL = (
    "import sys; sys.modules['jsonschema'] = None; sys.argv[0] = 'vol'; "
    "from volatility3.cli import main; main()"
)

pytestmark = pytest.mark.timeout(5400)


@pytest.fixture(scope="module")
def vol3_cache(tmp_path_factory):
    """volatility3's cache for this module (its symbol-file index)."""
    res = subprocess.run([sys.executable, "-c", "import volatility3"], capture_output=True)
    assert res.returncode == 0, (
        "volatility3 is not installed in dom0: rebuild the lab "
        "image (setup.cfg's test extra lists it)"
    )
    return tmp_path_factory.mktemp("vol3-cache")


@pytest.fixture(scope="module")
def profiled(paused_dump, tmp_path_factory):
    """name -> the guest's vmcore (shared with test_dumps) and the ISF `xenvmi isf`
    writes from it, made once per module."""

    @functools.cache
    def get(name: str) -> SimpleNamespace:
        core = paused_dump(name).path
        d = tmp_path_factory.mktemp(name)
        isf = d / "symbols" / "linux" / f"{name}.json"
        isf.parent.mkdir(parents=True)
        summary = xenvmi_json("isf", str(core), "-o", str(isf), "-q")
        return SimpleNamespace(name=name, core=core, dir=d, isf=isf, summary=summary)

    return get


@pytest.fixture(params=DUMP_GUESTS)
def dumped(request, profiled):
    return profiled(request.param)


@pytest.fixture
def deep(profiled):
    return profiled(DEEP_GUEST)


def test_isf_of_dump(dumped):
    s = dumped.summary
    truth = ground_truth(dumped.name)
    assert s["output"] == str(dumped.isf)
    assert s["banner"].startswith(f"Linux version {truth.release} (")
    assert s["user_types"] > 5000 and s["enums"] > 500 and not s["warnings"], s
    doc = json.loads(dumped.isf.read_text())
    assert doc["metadata"]["format"] == "6.2.0"
    if ARM:  # kallsyms names functions only (no KALLSYMS_ALL), and no _text
        assert s["symbols"] > 40_000 and s["typed_symbols"] >= 5, s
        assert doc["symbols"]["_stext"]["address"] == ARM64_STEXT_BASE
        assert doc["symbols"]["linux_banner"]["type"]["kind"] == "array"
    else:
        assert s["symbols"] > 50_000 and s["typed_symbols"] > 50, s
        assert doc["symbols"]["_text"]["address"] == KERNEL_TEXT  # link-time, whatever the slide
    assert doc["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    assert "comm" in doc["user_types"]["task_struct"]["fields"]
    kernel = xenvmi_json("kernel", str(dumped.core))["rows"][0]
    assert s["kaslr_slide"] == kernel["kaslr_slide"]
    assert (kernel["kaslr_slide"] != 0) == randomized(dumped.name)


@pytest.mark.skipif(ARM, reason=NO_VOL3_ON_ARM)
def test_volatility3_pslist_matches_xenvmi_ps(deep, vol3_cache):
    dumped = deep
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
            str(vol3_cache),
            "-s",
            str(dumped.dir / "symbols"),
            "-f",
            str(dumped.core),
            "linux.pslist",
        ],
        capture_output=True,
        text=True,
        timeout=5000,
    )
    assert res.returncode == 0, f"vol linux.pslist on {dumped.core}: {res.stderr[-3000:]}"
    theirs = {(r["PID"], r["PPID"]) for r in json.loads(res.stdout)}
    ours = {(p["pid"], p["ppid"]) for p in xenvmi_json("ps", str(dumped.core))["rows"]}
    assert theirs == ours, (
        f"{dumped.name}: only volatility3 {sorted(theirs - ours)}, "
        f"only xenvmi {sorted(ours - theirs)}"
    )
    comms = {r["COMM"] for r in json.loads(res.stdout)}
    assert {"init", "xvm-alpha", "xvm-parent", "xvm-child"} <= comms


def test_live_profile_equals_dump_profile(deep):
    """The ISF from the running guest is the one from its dump: same types, same symbols."""
    dumped = deep
    live = dumped.dir / "live.json"
    xenvmi_json("isf", dumped.name, "-o", str(live), "-q")
    a, b = json.loads(live.read_text()), json.loads(dumped.isf.read_text())
    assert a["user_types"] == b["user_types"] and a["enums"] == b["enums"]
    assert a["symbols"] == b["symbols"]
