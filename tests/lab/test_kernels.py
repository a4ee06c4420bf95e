"""Kernels of other releases, found with no configuration: the kallsyms search on real
kernel images, checked against what the kernels say about themselves."""

from __future__ import annotations

import pytest

from xenvmi.guest import discover
from xenvmi.guest.kallsyms_tables import find
from xenvmi.guest.vmcoreinfo import KALLSYMS_KEYS

from .conftest import LAB_GUESTS, xenvmi

pytestmark = pytest.mark.timeout(1800)


def _memory(name: str):
    from xenvmi.backends.libvmi import LibvmiMemory
    return LibvmiMemory(name)


@pytest.mark.parametrize("name", ["xvm-hvm", "xvm-deb13"])  # 6.1 with KASLR, 6.12
def test_search_finds_the_tables_vmcoreinfo_names(guests, name):
    """On kernels whose VMCOREINFO does name the tables (6.1 with KASLR, 6.12), a search
    that is not told where they are must find exactly those addresses."""
    mem = _memory(name)
    try:
        info = discover.discover(mem).info
        assert info.has_kallsyms(), f"{name}: {info.osrelease} should export kallsyms"
        told = {k: info.symbols[k] for k in KALLSYMS_KEYS if k in info.symbols}
        known = {k: v for k, v in info.symbols.items() if not k.startswith("kallsyms_")}
        start = info.symbols["_stext"]
        found = find(lambda pa, n: mem.read_physical(pa, n), info.kernel_image_pa(start),
                     start, 96 << 20, known)
        assert found.symbols() == told
        assert found.encoding in ("absolute-percpu", "base-relative")
    finally:
        mem.close()


def test_kernel_before_6_0_reads_with_no_configuration(guests):
    """Debian 11's 5.10 exports no kallsyms tables in VMCOREINFO: `kernel` says where the
    symbols came from (the search), and they agree with the guest's own /proc/kallsyms
    (its init reports _text: the KASLR slide's source)."""
    name = next(n for n, (_, k) in LAB_GUESTS.items() if k == "deb11")
    res = xenvmi("kernel", name, "--json", "--no-cache")
    assert res.returncode == 0, res.stderr
    import json
    got = json.loads(res.stdout)["kernel"]
    assert got["release"].startswith("5.10.")
    assert "found by structure" in got["sources"]["symbols"], got["sources"]
    assert got["symbols"] > 50_000
