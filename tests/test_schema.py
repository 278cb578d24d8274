"""The scenario language's JSON Schema and docs tables: generated from the op definitions, and true to the parser.

``docs/scenario.schema.json`` and the reference part of ``docs/scenarios.md`` must be what
``python -m lang.schema --write`` writes today; every shipped scenario must validate; the schema must
refuse the malformed files of tests/test_bad_input.py that JSON Schema can express; and, field by field
over every registered op, the schema and the parser must agree on what they take.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dependencies import import_or_skip
from test_bad_input import BAD

import lang.schema
from lang.errors import ScenarioError
from lang.scenario import OP_TYPES, JsonField, Op, Scenario, load

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [ROOT / "tests" / "scenarios", ROOT.parent / "shared" / "examples"]


def validator() -> Any:
    jsonschema = import_or_skip("jsonschema", "pip install -e '.[check]'")
    return _validator(jsonschema)


@functools.cache
def _validator(jsonschema: Any) -> Any:
    schema = json.loads(lang.schema.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_and_docs_are_what_the_op_definitions_generate() -> None:
    assert lang.schema.outdated(lang.schema.generated()) == []
    done = subprocess.run(
        [sys.executable, "-m", "lang.schema", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_finds_a_stale_page(tmp_path: Path) -> None:
    page = lang.schema.with_reference(lang.schema.DOCS_PATH.read_text())
    stale = page.replace("#### `mmap`", "#### `mmap2`")
    target = tmp_path / "scenarios.md"
    target.write_text(stale)
    assert lang.schema.outdated([(target, page)]) == [target]
    assert lang.schema.with_reference(stale) == page


def test_the_docs_keep_their_prose_and_name_every_op_and_config_key() -> None:
    page = lang.schema.DOCS_PATH.read_text()
    head = page.split(lang.schema.BEGIN)[0]
    assert "## Bad input" in head and "## Several CPUs: TLBs and shootdown" in head
    reference = page.split(lang.schema.BEGIN)[1].split(lang.schema.END)[0]
    for name in OP_TYPES:
        assert f"#### `{name}`" in reference
    for key in lang.scenario.Config.LIMITS:
        assert f"| `{key}` |" in reference
    schema = json.loads(lang.schema.SCHEMA_PATH.read_text())
    assert set(schema["$defs"]["ops"]) == set(OP_TYPES)


def shipped_scenarios() -> list[Path]:
    files = [p for root in SHIPPED if root.is_dir() for p in sorted(root.rglob("*.json"))]
    return [p for p in files if {"ops", "scenario"} & set(json.loads(p.read_text()))]


def test_every_shipped_scenario_validates_against_the_schema() -> None:
    check = validator()
    paths = shipped_scenarios()
    assert len(paths) >= 30
    for path in paths:
        load(path)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in check.iter_errors(
            json.loads(path.read_text())
        )]  # fmt: skip
        assert errors == [], f"{path}: {errors}"


# The malformed files of tests/test_bad_input.py the schema refuses, and those it cannot see, with why.
REFUSED = {
    "deep-in-a-field", "5000-digit-string", "nan", "infinity", "op-name-list", "op-name-object", "op-name-missing",
    "top-level-list", "expected-null", "expected-int", "expected-list", "expected-string", "typo-top-level",
    "typo-in-wrapper", "about-not-text", "mutant-not-text", "mmap-1e9-pages", "too-many-ops", "frames-too-many",
    "3mb-value", "3mb-key", "3mb-op-name",
}  # fmt: skip
BEYOND_SCHEMA = {
    "not-utf8": "bytes, before JSON",
    "utf16-without-bom": "bytes, before JSON",
    "utf16-bom-broken": "bytes, before JSON",
    "deep-nesting": "not a JSON document Python reads",
    "5000-digit-number": "not a JSON document Python reads",
    "lone-surrogate": "a string JSON Schema cannot tell from Unicode",
    "empty-file": "not JSON",
    "expected-too-few": "the count of results must equal the count of ops",
    "given-twice": "a key inside and outside the wrapper",
    "duplicate-top-level": "JSON Schema sees the object after duplicates collapse",
    "duplicate-in-op": "JSON Schema sees the object after duplicates collapse",
    "duplicate-in-config": "JSON Schema sees the object after duplicates collapse",
    "mapped-pages-total": "a total over ops",
    "processes-total": "a total over ops",
}
MIXED = {name for name in BAD if name.startswith("mix-")}  # one layer per scenario: a relation between ops


def test_the_schema_refuses_the_bad_inputs_it_can_express() -> None:
    assert REFUSED | set(BEYOND_SCHEMA) | MIXED == set(BAD), "classify each case of test_bad_input.BAD here"
    check = validator()
    for name in sorted(REFUSED):
        data, _ = BAD[name]
        raw = json.loads(data)
        assert not check.is_valid(raw), name
    for name in sorted(MIXED):
        assert check.is_valid(json.loads(BAD[name][0])), f"{name}: the schema does not judge layers"


# --- the schema and the parser agree, field by field, on every registered op ---------------------------------

PROBES: list[object] = [
    0, 1, 7, 8, 63, 64, 65536, 65537, (1 << 24), (1 << 24) + 1, (1 << 31) - 1, 1 << 31, (1 << 32), (1 << 32) + 1,
    (1 << 64) - 1, 1 << 64, -1, 1.5, 2.0, math.inf, True, False, None, [], [1], {}, {"0x8": 5}, {"0x3": 5}, {"x": 1},
    "0x10", "16", " 5", "0o7", "0b1", "1_0", "-1", "+3", "", "x", "abc", "a.b-c_1", "a" * 65, "rw-", "r-x", "rwz",
    "user", "supervisor", "read", "write", "fetch", "dontneed", "cold", "pageout", "kernel",
    "vm.panic_on_oom", "vm.oom_kill_allocating_task", -1000, 1000, -1001, 1001, "enabled", "madvise", "hugepage",
    "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "/", "a/b", "a/b/c/d", "A",
    "0x" + "f" * 17, "1" * 81,
]  # fmt: skip


def parses(raw: object) -> bool:
    try:
        Scenario.from_json(raw)
    except ScenarioError:
        return False
    return True


def example(f: JsonField) -> object:
    """A value the field takes."""
    for value in PROBES:
        try:
            f.field(value, "probe")
        except ScenarioError:
            continue
        return value
    raise AssertionError(f"no probe value is a valid {f.key}: add one to PROBES")


def scenario_with(op: dict[str, object]) -> dict[str, object]:
    return {"config": {"frames": 16, "cpus": 2}, "ops": [op]}


def minimal(cls: type[Op]) -> dict[str, object]:
    return {"op": cls.name, **{f.key: example(f) for f in lang.schema.op_fields(cls) if f.required}}


@pytest.mark.parametrize("name", sorted(OP_TYPES))
def test_the_schema_takes_what_the_parser_takes(name: str) -> None:
    """For each key of the op, each probe value: the parser's verdict and the schema's agree, except that the
    schema cannot bound an integer written as a string (a value, or a key of ``words``), nor tell ``2.0`` from
    ``2`` (JSON Schema's integers are numbers without a fraction), so it lets the parser refuse those."""
    check = validator()
    cls = OP_TYPES[name]
    base = minimal(cls)
    assert parses(scenario_with(base)) and check.is_valid(scenario_with(base)), base
    disagreements = []
    for f in lang.schema.op_fields(cls):
        for value in PROBES:
            raw = scenario_with({**base, f.key: value})
            parser, schema = parses(raw), check.is_valid(raw)
            beyond = isinstance(value, (str, dict)) or (isinstance(value, float) and value.is_integer())
            if parser != schema and not (schema and beyond):
                disagreements.append(f"{f.key}={value!r}: parser {parser}, schema {schema}")
        if f.required:
            left_out = scenario_with({k: v for k, v in base.items() if k != f.key})
            assert not parses(left_out) and not check.is_valid(left_out), f"{name} without {f.key}"
    unknown = scenario_with({**base, "no_such_key": 1})
    assert not parses(unknown) and not check.is_valid(unknown)
    assert disagreements == []
