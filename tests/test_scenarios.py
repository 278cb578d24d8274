"""Scenario files with known answers replay to exactly those answers, on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lang.scenario import OP_TYPES, load
from properties.replay import replay, result_matches

SCENARIOS = Path(__file__).parent / "scenarios"


def scenario_params() -> list[object]:
    """Every scenario file; those using ops this build does not know yet are skipped, by name."""
    params: list[object] = []
    for path in sorted(SCENARIOS.glob("*.json")):
        raw = json.loads(path.read_text())
        unknown = sorted({op["op"] for op in raw.get("scenario", raw)["ops"]} - set(OP_TYPES))
        marks = [pytest.mark.skip(reason=f"ops not in the vocabulary yet: {', '.join(unknown)}")] if unknown else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def assert_results(expected: list[dict[str, object]], actual: list[dict[str, object]]) -> None:
    """One result per op, each giving every key the file lists with its value (the file may leave some out)."""
    assert len(expected) == len(actual)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert result_matches(want, got), f"op {index}: expected {want}, got {got}"


@pytest.mark.parametrize("path", scenario_params())
def test_scenario_gives_expected_results(path: Path) -> None:
    """Spec and implementation agree op by op, and match the recorded answers."""
    scenario = load(path)
    assert scenario.expected_results is not None, "a regression scenario records its answers"
    report = replay(scenario)
    assert report.divergence is None, report.divergence
    assert_results(list(scenario.expected_results), report.results)


@pytest.mark.parametrize("path", scenario_params())
@pytest.mark.parametrize("model", ["spec", "impl"])
def test_each_side_alone_gives_expected_results(path: Path, model: str) -> None:
    """Each side, run alone, also gives the recorded answers."""
    scenario = load(path)
    assert_results(list(scenario.expected_results or ()), replay(scenario, model).results)


def test_scenario_round_trips_through_json(tmp_path: Path) -> None:
    """Writing a parsed scenario and reading it back gives the same scenario."""
    from lang.scenario import dump

    original = load(SCENARIOS / "sdm-permission-rules.json")
    assert original == load(dump(original, tmp_path / "copy.json"))
