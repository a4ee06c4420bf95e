"""Kernels of other releases, found with no configuration: the kallsyms search on real
kernel images, checked against what the kernels say about themselves."""

from __future__ import annotations

import json

import pytest

from xenvmi.guest import discover, nonote
from xenvmi.guest.kallsyms_tables import find
from xenvmi.guest.vmcoreinfo import KALLSYMS_KEYS

from .conftest import LAB_GUESTS, worker_key, xenvmi, xenvmi_json

pytestmark = pytest.mark.timeout(1800)


def _memory(name: str):
    """The guest's memory through the backend chosen here (the search does not care)."""
    from xenvmi.guests import open_memory

    return open_memory(name)


@pytest.mark.parametrize("name", ["xvm-hvm", "xvm-deb13", "xvm-deb11"])
def test_search_finds_the_tables(guests, name):
    """On kernels whose VMCOREINFO names the tables (6.1 with KASLR, 6.12), a search that
    is not told where they are must find exactly those addresses; on 5.10, whose
    VMCOREINFO does not, it must find tables that give the kernel's own symbols."""
    mem = _memory(name)
    try:
        info = discover.discover(mem).info
        told = {k: info.symbols[k] for k in KALLSYMS_KEYS if k in info.symbols}
        known = {k: v for k, v in info.symbols.items() if not k.startswith("kallsyms_")}
        start = info.symbols["_stext"]
        found = find(
            lambda pa, n: mem.read_physical(pa, n),
            info.kernel_image_pa(start),
            start,
            96 << 20,
            known,
        )
        if LAB_GUESTS[name][1] == "deb11":
            assert info.osrelease.startswith("5.10.") and not told
            assert {"_stext", "init_uts_ns"} <= set(found.agreed)
            assert found.num_syms > 50_000
        else:
            assert info.has_kallsyms(), f"{name}: {info.osrelease} should export kallsyms"
            assert found.symbols() == told
        assert found.encoding == "absolute-percpu"  # x86-64 SMP before 6.15
    finally:
        mem.close()


def test_kernel_before_6_0_says_where_its_symbols_came_from(guests):
    """`xenvmi kernel` on Debian 11's 5.10 names the search as the symbols' source on its
    first run of the boot and the cache after (test_guest_views ran it first)."""
    name = next(n for n, (_, k) in LAB_GUESTS.items() if k == "deb11")
    res = xenvmi("kernel", name, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)["rows"][0]
    assert got["release"].startswith("5.10.")
    assert got["sources"]["kallsyms"].startswith("not in VMCOREINFO (Linux < 6.0)")
    assert got["symbols"] > 50_000


#: One guest of each kernel: 5.10 (HVM, KASLR), 6.1 (PVH), 6.12 (PVH).
NO_NOTE_GUESTS = ("xvm-deb11", "xvm-pvh1", "xvm-deb13")


@pytest.mark.parametrize("name", NO_NOTE_GUESTS)
def test_discovery_without_the_note_gives_the_same_kernel_and_ps(guests, name, monkeypatch):
    """With the note ignored (XENVMI_IGNORE_VMCOREINFO=1: the kernel found from vCPU 0's
    page tables, its banner and a kallsyms search), `kernel` says the same facts and `ps`
    lists the same processes as with it: every process seen in both note runs around it,
    and nothing else but processes started since (a higher pid)."""
    kernel_note = xenvmi_json("kernel", name)["rows"][0]
    before = xenvmi_json("ps", name)["rows"]
    monkeypatch.setenv(nonote.IGNORE_ENV, "1")
    kernel_pt = xenvmi_json("kernel", name)["rows"][0]  # its own cache entry
    without = xenvmi_json("ps", name)["rows"]  # the discovery cached for the boot
    monkeypatch.delenv(nonote.IGNORE_ENV)
    after = xenvmi_json("ps", name)["rows"]

    keys = ("release", "kaslr_slide", "phys_base", "build_id", "symbols", "btf_types", "version")
    for key in keys:
        assert kernel_pt[key] == kernel_note[key], (name, key)
    assert kernel_pt["sources"]["vmcoreinfo"] == "none used", kernel_pt["sources"]
    assert "page tables" in kernel_pt["sources"]["kernel"]
    assert kernel_pt["vmcoreinfo_address"] == 0

    def keys(rows):
        return {worker_key((p["pid"], p["ppid"], p["comm"])) for p in rows}

    stable = keys(before) & keys(after)
    ours = keys(without)
    assert stable - ours == set(), f"{name}: without the note ps misses {sorted(stable - ours)}"
    newest = max(pid for pid, _, _ in stable)
    extra = {k for k in ours - keys(before) - keys(after) if k[0] <= newest}
    assert not extra, f"{name}: without the note ps lists {sorted(extra)}"
