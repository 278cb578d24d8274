"""proofs/promela.py: the shared models explored by the spec explorer and by SPIN, state for state."""

from __future__ import annotations

import pytest
from dependencies import requires

from lang.errors import ConfigError
from proofs.promela import (
    Action,
    Model,
    ModelSystem,
    lost_update,
    models,
    promela,
    shootdown,
    spin_count,
    spin_missing,
    spin_runs,
)
from proofs.spec_explore import explore_spec

NO_SPIN = spin_missing()
# Building pan takes a compiler run or two per model: two models in the fast suite, every one in the slow.
FAST = {lost_update(2).name, shootdown("free-before-flush").name}


def test_the_lost_update_is_found_with_a_shortest_path() -> None:
    """Two processes: both load 0 before either stores; the shortest way is six steps (load, load, add, add,
    store, store in some order)."""
    result = explore_spec(ModelSystem(lost_update(2)), 100)
    assert result.path is not None and 6 == len(result.path)
    loads = [i for i, op in enumerate(result.path) if op.endswith("load")]
    stores = [i for i, op in enumerate(result.path) if op.endswith("store")]
    assert max(loads) < min(stores)


def test_the_shootdown_fails_only_when_the_frame_is_freed_before_the_flush() -> None:
    assert explore_spec(ModelSystem(shootdown("flush-before-free")), 100).path is None
    bad = explore_spec(ModelSystem(shootdown("free-before-flush")), 100)
    assert ["CPU1 TLB fill", "CPU0 zap PTE", "CPU0 free frame"] == bad.path


def test_counting_without_the_invariant_reaches_the_states_past_a_violation() -> None:
    """Lost update of one process: start, loaded, added, stored."""
    assert 4 == explore_spec(ModelSystem(lost_update(1), invariant=False), 100).stats.distinct


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (Model("m", (("x", 0),), (("P", (Action("a", 0, 1, assign=(("y", "1"),)),)),), "x == 0"), "'y'"),
        (Model("m", (("x", 0),), (("P", (Action("a", 0, 1, guard="z == 1"),)),), "x == 0"), "'z'"),
        (
            Model("m", (("x", 0), ("y", 0)), (("P", (Action("a", 0, 1, assign=(("x", "1"), ("y", "x"))),)),), "true"),
            "earlier",
        ),
    ],
)
def test_a_model_naming_what_it_does_not_have_is_refused(model: Model, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        promela(model)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="1 to 8"):
        lost_update(0)
    with pytest.raises(ConfigError, match="variant"):
        shootdown("none")


@pytest.mark.xdist_group("spin")
@requires("spin", NO_SPIN)
@pytest.mark.parametrize(
    ("model", "holds"),
    [
        pytest.param(model, holds, marks=() if model.name in FAST else pytest.mark.slow, id=model.name)
        for model, holds in [*models(), (lost_update(5), False)]
    ],
)
def test_spin_reaches_exactly_our_states_and_finds_the_same_violations(model: Model, holds: bool) -> None:
    """SPIN without partial-order reduction stores exactly the states the explorer reaches; with assertions on,
    with and without reduction, it finds a violation exactly where the explorer does."""
    ours = explore_spec(ModelSystem(model, invariant=False), 1000)
    assert ours.stats.exhausted
    counting, checking = spin_runs(model)
    assert counting.states == ours.stats.distinct and 0 == counting.errors
    found = explore_spec(ModelSystem(model), 1000).path is not None
    assert found is not holds
    assert (checking.errors > 0) is found
    assert (spin_count(model, assertions=True, reduce=True).errors > 0) is found
