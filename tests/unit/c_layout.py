"""What a C compiler says of Xen's public structs: the ground truth the ctypes mirrors in
xenvmi.backends are checked against (offsets, sizes, constants)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def c_layout(
    tmp_path: Path, c_types: dict, constants, include: Path, headers: str
) -> dict[str, int]:
    """offsetof/sizeof of every field of ``c_types`` (ctypes class -> C type name) and the
    values of ``constants``, compiled with ``headers`` (the #include lines) against the
    headers in ``include``. Skips where there is no C compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler here: the header-text checks still run")
    lines = []
    for cls, ctype in c_types.items():
        lines.append(f'P("{ctype}", sizeof({ctype}));')
        for name, *_ in cls._fields_:
            lines.append(f'P("{ctype}.{name}", offsetof({ctype}, {name}));')
            lines.append(f'P("{ctype}.{name}#", sizeof((({ctype} *)0)->{name}));')
    lines += [f'P("{k}", {k});' for k in constants]
    src = tmp_path / "layout.c"
    src.write_text(
        "#define __XEN_TOOLS__ 1\n#include <stddef.h>\n#include <stdio.h>\n#include <stdint.h>\n"
        + headers
        + '#define P(n, v) printf("%s %zu\\n", n, (size_t)(v))\n'
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n"
    )
    exe = tmp_path / "layout"
    res = subprocess.run(
        [cc, f"-I{include.parent}", "-o", str(exe), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}
