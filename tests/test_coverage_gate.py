"""The branch-coverage gate: branches named by where they are, the listing kept exact, the target enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs import coverage_gate

SOURCE = """\
class Cache:
    def lookup(self, key):
        if key in self.entries:
            return self.entries[key]
        if key < 0:
            raise KeyError(key)
        if key in self.entries:
            return None
        return 0


def free(x):
    return x
"""


def test_a_branch_is_named_by_its_function_and_source_text_not_its_line_numbers() -> None:
    names = coverage_gate.branch_names("impl/x.py", SOURCE, [(5, 6), (3, 4), (7, 8), (7, 9)])
    assert [
        "impl/x.py::Cache.lookup: if key in self.entries: -> return self.entries[key]",
        "impl/x.py::Cache.lookup: if key < 0: -> raise KeyError(key)",
        "impl/x.py::Cache.lookup: if key in self.entries: -> return None",
        "impl/x.py::Cache.lookup: if key in self.entries: -> return 0",
    ] == names
    shifted = "\n\n\n" + SOURCE
    assert names == coverage_gate.branch_names("impl/x.py", shifted, [(8, 9), (6, 7), (10, 11), (10, 12)])


def test_repeated_text_is_numbered_and_leaving_the_function_is_exit() -> None:
    source = "def f(a):\n    for x in a:\n        pass\n    for x in a:\n        pass\n"
    names = coverage_gate.branch_names("impl/y.py", source, [(2, 3), (4, 5), (4, -1)])
    assert [
        "impl/y.py::f: for x in a: -> pass",
        "impl/y.py::f: for x in a: -> exit",
        "impl/y.py::f: for x in a: -> pass #2",
    ] == names


def report(tmp_path: Path, covered: int, missing: list[list[int]]) -> dict[str, object]:
    (tmp_path / "impl").mkdir(exist_ok=True)
    (tmp_path / "impl" / "x.py").write_text(SOURCE)
    summary = {"num_branches": 100, "covered_branches": covered}
    return {"files": {"impl/x.py": {"summary": summary, "missing_branches": missing}}}


def test_the_gate_fails_below_target_on_an_unlisted_branch_and_on_a_stale_entry(tmp_path: Path) -> None:
    name = "impl/x.py::Cache.lookup: if key < 0: -> raise KeyError(key)"
    found = coverage_gate.modules(report(tmp_path, 99, [[5, 6]]), tmp_path)
    lines, ok = coverage_gate.judge(found, {name: "bad input, covered by tests/test_x.py"})
    assert ok and "99 of 100 branches" in lines[-1] and "1 listed with a reason" in lines[-1]
    lines, ok = coverage_gate.judge(found, {})
    assert not ok and any(line.startswith("not taken by verify and not listed") for line in lines)
    lines, ok = coverage_gate.judge(coverage_gate.modules(report(tmp_path, 100, []), tmp_path), {name: "x"})
    assert not ok and any("taken by verify now (remove it)" in line for line in lines)
    lines, ok = coverage_gate.judge(coverage_gate.modules(report(tmp_path, 96, []), tmp_path), {})
    assert not ok and "96.0%" in lines[-1]


def test_a_listed_branch_needs_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "uncovered.toml"
    listing.write_text('[[branch]]\nname = "impl/x.py::f: a -> b"\nreason = " "\n')
    data = tmp_path / "coverage.json"
    data.write_text(json.dumps(report(tmp_path, 100, [])))
    assert 2 == coverage_gate.main([str(data), "--listing", str(listing)])
    assert "listed without a reason" in capsys.readouterr().err


def test_a_benchmarked_function_verify_does_not_run_fails_the_gate(tmp_path: Path) -> None:
    data = report(tmp_path, 100, [])
    files = data["files"]
    assert isinstance(files, dict)
    files["impl/x.py"]["functions"] = {"Cache.lookup": {"executed_lines": [3]}, "free": {"executed_lines": []}}
    found = coverage_gate.modules(data, tmp_path)
    reached = coverage_gate.reached_functions(data)
    assert {"impl/x.py::Cache.lookup"} == reached
    lines, ok = coverage_gate.judge(found, {}, {"impl/x.py::Cache.lookup"}, reached)
    assert ok and "1 of 1 benchmarked functions run by verify" in lines[-1]
    lines, ok = coverage_gate.judge(found, {}, {"impl/x.py::Cache.lookup", "impl/x.py::free"}, reached)
    assert not ok
    assert "timed by the benchmarks (docs/bench-paths.txt) but run by no verify check: impl/x.py::free" in lines


def test_the_committed_listing_has_reasons_and_names_tests_that_exist() -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    listing = coverage_gate.load_listing(root / coverage_gate.LISTING)
    assert listing, "docs/uncovered-branches.toml lists nothing"
    for name, reason in listing.items():
        assert name.startswith("impl/") and " -> " in name, name
        for test in re.findall(r"tests/[\w/]+\.py(?:::\w+)?", reason):
            path, _, function = test.partition("::")
            assert (root / path).exists(), f"{name}: {path} does not exist"
            assert not function or f"def {function}(" in (root / path).read_text(), f"{name}: no {test}"
