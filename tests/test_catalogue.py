"""``mmcheck new KIND`` (a starting scenario of each kind, which replays as it is) and ``mmcheck scenarios``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lang.scenario import loads
from mmcheck.cli import main
from mmcheck.views.catalogue import KINDS, SHIPPED, entries, kind_of, scenario_files, template

ROOT = Path(__file__).resolve().parent.parent


def mmcheck(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmcheck", *args], input=stdin, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_prints_a_scenario_that_replays_as_it_is(kind: str, tmp_path: Path) -> None:
    made = mmcheck("new", kind)
    assert made.returncode == 0, made.stderr
    scenario = loads(made.stdout)
    assert kind_of(scenario) == kind
    assert scenario.about and scenario.expected_results is not None
    done = mmcheck("replay", "-", stdin=made.stdout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert len(done.stdout.splitlines()) == 2 * len(scenario.ops)


@pytest.mark.parametrize("kind", KINDS)
def test_the_templates_expected_results_are_checked(kind: str) -> None:
    """A wrong expectation in a template makes replay exit 1: the results it lists are what the ops give."""
    raw = json.loads(template(kind))
    last = len(raw["ops"]) - 1
    raw["expected_results"][last] = {"no_such_result": True}
    done = mmcheck("replay", "-", stdin=json.dumps(raw))
    assert done.returncode == 1, done.stderr
    assert f"ops[{last}] gave" in done.stderr


def test_new_writes_a_file_and_keeps_an_existing_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "first.json"
    assert main(["new", "slab", "-o", str(target)]) == 0
    assert target.read_text() == template("slab")
    assert main(["new", "kernel", "-o", str(target)]) == 2
    assert "--force" in capsys.readouterr().err
    assert target.read_text() == template("slab")
    assert main(["new", "kernel", "-o", str(target), "--force"]) == 0
    assert target.read_text() == template("kernel")
    assert main(["new", "kernel", "-o", str(tmp_path / "first.txt")]) == 2


def test_an_unknown_kind_is_a_usage_error() -> None:
    done = mmcheck("new", "hyper")
    assert done.returncode == 2 and "invalid choice: 'hyper'" in done.stderr


def test_scenarios_lists_every_shipped_scenario_with_kind_and_op_count() -> None:
    done = mmcheck("scenarios")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    files = [p for folder in SHIPPED for p in scenario_files(folder)]
    assert len(files) >= 30 and len(lines) == len(files)
    kinds = {line.split()[1] for line in lines}
    assert kinds == set(KINDS)
    line = next(line for line in lines if line.startswith("tests/scenarios/buddy-expand-merge.json "))
    assert line.split()[1:4] == ["buddy", "12", "ops"]
    assert "expand()" in line


def test_scenarios_by_kind_as_json_and_of_another_folder(tmp_path: Path) -> None:
    done = mmcheck("scenarios", "--kind", "slab", "--json")
    listed = json.loads(done.stdout)
    assert listed and {e["kind"] for e in listed} == {"slab"}
    assert {Path(e["path"]).name for e in listed} == {e.path.name for e in entries() if e.kind == "slab"}
    (tmp_path / "mine.json").write_text(template("pressure"))
    (tmp_path / "other.json").write_text('{"not": "a scenario"}')
    done = mmcheck("scenarios", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["mine.json", "pressure", "13", "ops"]
    missing = mmcheck("scenarios", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere: no such folder" in missing.stderr
