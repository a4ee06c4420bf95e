"""The views' one definition: one module each, documented fields, a schema output obeys."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jsonschema
import pytest

from xenvmi import render
from xenvmi.commands.plugins import result_json
from xenvmi.model.guest import LogRecord, Module, Process
from xenvmi.plugins import loader
from xenvmi.plugins.base import column_specs
from xenvmi.plugins.runner import PluginResult
from xenvmi.plugins.schema import result_schema, row_schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "views.md"
VIEWS = {cls.name: cls for cls in loader.builtin_views()}


def test_each_view_is_one_module_named_after_it():
    assert set(VIEWS) == {"kernel", "ps", "lsmod", "dmesg", "regs", "hypercalls"}
    for name, cls in VIEWS.items():
        assert cls.__module__ == f"xenvmi.views.{name}"
        assert cls.description and (cls.examples or not cls.command)


def _doc_section(name: str) -> str:
    text = DOCS.read_text()
    match = re.search(rf"^### {name}: (.*?)(?=^### |\Z)", text, re.S | re.M)
    assert match, f"docs/views.md has no section for {name}"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_docs_list_every_field_of_every_view(name):
    section = _doc_section(name)
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert documented == {f.name for f in dataclasses.fields(VIEWS[name].row)}


def _printed(view, rows, **extra) -> dict:
    res = PluginResult(view.name, "g", rows, [], None, True, 0.5, 0, "1.1")
    return json.loads(render.dumps(result_json(res, extra)))


def test_output_obeys_its_schema_and_a_wrong_one_does_not():
    ps = VIEWS["ps"]
    rows = [
        Process(1, 0, "init", "S", 0, 0.5, "/sbin/init", False, 0xFFFF888000001000),
        Process(2, 0, "kthreadd", "S", None, None, None, True, 0xFFFF888000002000),
    ]
    got = _printed(ps, rows, processes=rows)
    jsonschema.validate(got, result_schema(ps, "processes"))
    broken = dict(got, rows=[dict(got["rows"][0], pid="1")])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, result_schema(ps))
    missing = dict(got, rows=[{k: v for k, v in got["rows"][0].items() if k != "task"}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, result_schema(ps))


def test_schemas_of_every_view_are_valid_json_schema():
    for view in VIEWS.values():
        jsonschema.Draft202012Validator.check_schema(result_schema(view))
    assert row_schema(Module)["properties"]["size"] == {"type": ["integer", "null"]}
    assert row_schema(LogRecord)["required"][0] == "seq"


def test_columns_read_the_same_in_cli_and_tui():
    """Both front ends show Column.text; the CLI table is made of the same cells."""
    p = Process(7, 1, "kworker/0:1", "I", 0, 12.3456, None, True, 0)
    cells = [c.text(p) for c in column_specs(VIEWS["ps"])]
    assert cells == ["7", "1", "I", "0", "12.35", "[kworker/0:1]"]
    table = render.column_table([p], column_specs(VIEWS["ps"]))
    assert table.splitlines()[1].split() == cells


def test_a_failed_view_prints_only_its_error(capsys):
    """A view that failed with no rows prints its one error line, not its empty-view text
    as well ("(no modules loaded)" then the error, which contradicted it); an empty view
    that did not fail still says it is empty."""
    from xenvmi.commands.plugins import print_result

    lsmod = VIEWS["lsmod"]
    failed = PluginResult("lsmod", "g", [], [], "the module list cannot be found", False, 0.1, 3)
    assert print_result(failed, False, lsmod) == 3
    out, err = capsys.readouterr()
    assert out == "" and err == "xenvmi: error: the module list cannot be found\n"
    empty = PluginResult("lsmod", "g", [], [], None, True, 0.1, 0)
    assert print_result(empty, False, lsmod) == 0
    assert capsys.readouterr().out == "(no modules loaded)\n"
