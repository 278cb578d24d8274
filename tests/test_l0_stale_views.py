"""The programmer's view (L0) explains a stale TLB entry by the memory before any change in flight that took
effect, not only the first (properties/mm/driver.py L0Side): once a false divergence, now a regression."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lang.scenario import load
from properties.drivers import Lockstep
from properties.mm.driver import Kept, L0Side
from properties.replay import replay
from spec.outcome import Value

SCENARIO = Path(__file__).parent / "scenarios" / "tlb-stale-entry-between-two-changes-in-flight.json"


def test_an_entry_filled_between_two_changes_in_flight_is_explained() -> None:
    report = replay(load(SCENARIO))
    assert report.ok, report.divergence or report.expected_mismatch


def side_at_the_stale_load() -> tuple[L0Side, object]:
    """L0 after the scenario's first six ops (both mmaps in flight, the first one's page stored 1), and the
    load of that page that follows."""
    scenario = load(SCENARIO)
    state = Lockstep(scenario.config)
    for op in scenario.ops[:6]:
        state.apply(op)
    return state.l0, scenario.ops[6]


def copy_of(side: L0Side) -> L0Side:
    other = L0Side.__new__(L0Side)
    other.candidates, other.ops = list(side.candidates), dict(side.ops)
    return other


@pytest.mark.parametrize(
    ("value", "allowed"),
    [(1, True), (0, True), (7, False)],
    ids=["the-stale-entry's-1", "the-new-zero-page", "a-word-never-stored"],
)
def test_the_stale_load_allows_what_the_memory_before_either_change_allows(value: int, allowed: bool) -> None:
    """1 is the page between the changes (through the entry CPU 0 filled then), 0 the new zero page; 7 was never
    stored anywhere and is still a divergence."""
    side, load_op = side_at_the_stale_load()
    problem = copy_of(side).check(load_op, Value(value))  # type: ignore[arg-type]
    assert (problem is None) is allowed, problem


def test_after_the_changes_return_the_stale_views_are_gone() -> None:
    """Once both mmaps returned, the page reads the new zero page alone: the stale 1 is a divergence."""
    scenario = load(SCENARIO)
    state = Lockstep(scenario.config)
    for op in scenario.ops[:-1]:
        state.apply(op)
    assert all(not c.stale for c in state.l0.candidates)
    assert copy_of(state.l0).check(scenario.ops[-1], Value(0)) is None  # type: ignore[arg-type]
    problem = copy_of(state.l0).check(scenario.ops[-1], Value(1))  # type: ignore[arg-type]
    assert problem is not None and "Value(value=1)" in problem


def test_equal_candidates_are_kept_once() -> None:
    side, load_op = side_at_the_stale_load()
    checked = copy_of(side)
    assert checked.check(load_op, Value(1)) is None  # type: ignore[arg-type]
    forms = [c.form() for c in checked.candidates]
    assert len(forms) == len(set(forms))


def test_many_candidates_are_kept_once_by_their_forms() -> None:
    """Past a few, equal candidates are told apart by their hashable forms: the same ones are kept."""
    side, _ = side_at_the_stale_load()
    base = side.candidates[0]
    kept = Kept()
    many = [replace(base, pending=(n,)) for n in range(Kept.FEW + 4)]
    for candidate in [*many, *many, replace(base, pending=(0,))]:
        kept.add(candidate)
    assert many == kept.candidates and kept.forms is not None
