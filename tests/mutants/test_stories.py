"""mmcheck explain on saved mutant counterexamples names the invariant the implementation's state breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lang.scenario import load
from mmcheck.views.explain import explain
from properties.mutants import recorded_mutant

STORIES = Path(__file__).parent / "stories"

pytestmark = pytest.mark.quality


@pytest.mark.parametrize(
    ("name", "invariant"),
    [("free-before-flush", "usable_free_violations"), ("dirty-cow", "cow_violations")],
)
def test_explain_names_the_broken_invariant(name: str, invariant: str) -> None:
    """With the recorded mutant applied, the story stops at the divergence and names the invariant."""
    scenario = load(STORIES / f"{name}.json")
    mutant = recorded_mutant(scenario)
    assert mutant is not None and mutant.name.startswith(name)
    with mutant.applied():
        lines, ok = explain(scenario)
    assert not ok
    assert any(line.strip().startswith(f"{invariant}:") for line in lines), "\n".join(lines[-12:])


def test_without_the_mutant_the_story_runs_to_the_end() -> None:
    """The same ops on the shipped implementation agree at every step."""
    scenario = load(STORIES / "free-before-flush.json")
    lines, ok = explain(scenario)
    assert ok, "\n".join(lines[-8:])
