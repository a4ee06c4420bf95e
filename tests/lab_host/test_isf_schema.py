"""xenvmi's ISF from a real lab guest passes volatility3's JSON schema.

Runs on the host against the running lab (``xenvmi lab up``): dom0 writes the ISF of the
KASLR HVM guest, and this host checks it with jsonschema, which takes half a minute here
and over twenty on the lab's emulated CPU (so tests/lab/test_isf.py runs volatility3
without its optional schema check). A lab that is not running fails this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xenvmi.lab import remote
from xenvmi.lab.paths import LabPaths

GUEST = "xvm-hvm"
REMOTE_ISF = "/var/tmp/xenvmi-schema-check.json"

pytestmark = pytest.mark.timeout(2400)


def test_isf_of_a_real_guest_is_schema_valid():
    jsonschema = pytest.importorskip("jsonschema", reason="the test extra installs jsonschema")
    from volatility3 import schemas

    paths = LabPaths.default()
    state = paths.load_state()
    assert state is not None and remote.reachable(paths, state.port), (
        "the lab is not running: `xenvmi lab up` first"
    )
    remote.run(
        paths,
        state.port,
        f"rm -f {REMOTE_ISF} && cd {remote.REMOTE_SRC} && "
        f"{remote.REMOTE_PY} -m xenvmi isf {GUEST} -o {REMOTE_ISF} -q",
        timeout=1800,
    )
    doc = json.loads(remote.run(paths, state.port, f"cat {REMOTE_ISF}", timeout=300).stdout)
    assert doc["metadata"]["format"] == "6.2.0" and len(doc["user_types"]) > 5000
    schema = Path(schemas.__file__).parent / f"schema-{doc['metadata']['format']}.json"
    jsonschema.Draft202012Validator(json.loads(schema.read_text())).validate(doc)
