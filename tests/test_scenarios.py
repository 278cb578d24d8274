"""Scenario files with known answers replay to exactly those answers, on both sides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcheck.replay import replay
from mmcheck.scenario import load

SCENARIOS = Path(__file__).parent / "scenarios"


def replayable(path: Path) -> bool:
    """Scenarios whose ops this build's runners all know."""
    import json

    from mmcheck.scenario import OP_TYPES

    raw = json.loads(path.read_text())
    ops = raw.get("scenario", raw)["ops"]
    return all(op["op"] in OP_TYPES for op in ops)


FILES = sorted(p for p in SCENARIOS.glob("*.json") if replayable(p))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_gives_expected_results(path: Path) -> None:
    """Spec and implementation agree op by op, and match the recorded answers."""
    scenario = load(path)
    assert scenario.expected_results is not None, "a regression scenario records its answers"
    report = replay(scenario)
    assert report.divergence is None, report.divergence
    assert list(scenario.expected_results) == report.results


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("model", ["spec", "impl"])
def test_each_side_alone_gives_expected_results(path: Path, model: str) -> None:
    """Each side, run alone, also gives the recorded answers."""
    scenario = load(path)
    assert list(scenario.expected_results or ()) == replay(scenario, model).results
