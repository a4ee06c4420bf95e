"""A stand-in for a KernelProgram with a banner in memory: ISF and `xenvmi isf` tests."""

from __future__ import annotations

from types import SimpleNamespace


def fake_kernel_program(banner: bytes, release: str = "6.1.0-99-amd64"):
    """The synthetic kernel (drgn over bytes, BTF from btf_writer) plus ``linux_banner``."""
    from xenvmi.guest.bounded import Budget
    from xenvmi.guest.synthetic import SyntheticKernel

    k = SyntheticKernel()
    k.put_bytes(k.alloc(len(banner), "linux_banner"), banner)
    kp = SimpleNamespace(
        prog=k.program(),
        memory=SimpleNamespace(name="g", arch="x86_64"),
        btf_types=40,
        budget=Budget(),
        discovery=SimpleNamespace(info=SimpleNamespace(kernel_offset=0, osrelease=release)),
        sources={"symbols": "synthetic kallsyms", "types": "synthetic BTF"},
        warnings=[],
    )
    kp.view = lambda seconds: kp.budget
    return kp
