"""The spec explorer on several processes (proofs/spec_parallel.py): the sequential search's states, exactly."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from proofs import smp_system
from proofs.promela import ModelSystem, lost_update
from proofs.spec_explore import explore_spec
from proofs.spec_parallel import explore_parallel, owner
from proofs.spec_systems import SpecBuddySystem, SpecSmpSystem
from proofs.systems import BuddyBounds
from spec.alloc.buddy import BuddyState


def figures(result: Any) -> tuple[object, ...]:
    s = result.stats
    return (s.distinct, s.explored, s.transitions, s.depth, s.exhausted, result.path)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpecBuddySystem(BuddyBounds(frames=10, max_order=2, max_alloc_order=2)),
        lambda: SpecSmpSystem(smp_system.VERIFY_BOUNDS),
        lambda: ModelSystem(lost_update(3), invariant=False),
    ],
    ids=["buddy", "smp", "lost-update"],
)
@pytest.mark.parametrize("workers", [2, 3])
def test_an_exhausted_parallel_search_reaches_the_sequential_states(make: Any, workers: int) -> None:
    sequential = explore_spec(make(), 1000, sample=4)
    parallel = explore_parallel(make(), 1000, workers, sample=4)
    assert sequential.stats.exhausted
    assert figures(sequential) == figures(parallel)
    assert [len(p) for p in sequential.deepest] == [len(p) for p in parallel.deepest]


def test_a_depth_bound_that_cuts_states_off_is_not_exhausted() -> None:
    make = lambda: SpecBuddySystem(BuddyBounds(frames=6, max_order=1, max_alloc_order=1))  # noqa: E731
    assert figures(explore_spec(make(), 2)) == figures(explore_parallel(make(), 2, 2))
    assert not explore_parallel(make(), 2, 2).stats.exhausted


class FullIsBad(SpecBuddySystem):
    """The buddy spec with one more 'invariant': not every frame allocated."""

    def check(self, state: BuddyState) -> list[str]:
        return ["every frame allocated"] if not state.free else []


def test_a_violation_is_found_by_its_owner_with_a_shortest_path() -> None:
    system = FullIsBad(BuddyBounds(frames=8, max_order=2, max_alloc_order=2))
    sequential = explore_spec(system, 20)
    parallel = explore_parallel(system, 20, 2)
    assert sequential.path is not None and parallel.path is not None
    assert len(sequential.path) == len(parallel.path) and "every frame allocated" in parallel.reason
    state = system.initial()
    for pick in parallel.path:  # the path leads to a state that breaks the invariant
        state = next(s for p, s in system.successors(state) if p == pick)
    assert system.check(state)


def test_fingerprints_spread_over_the_workers() -> None:
    """The buddy system's keys are bit sets (structured ints): still about half each on two workers."""
    system = SpecBuddySystem(BuddyBounds(frames=10, max_order=2, max_alloc_order=2))
    level = [system.initial()]
    keys = set()
    for _ in range(6):
        level = [s for state in level for _, s in system.successors(state)]
        keys |= {system.key(s) for s in level}
    shares = Counter(owner(key, 2) for key in keys)
    assert min(shares.values()) > 0.4 * len(keys)


def test_one_worker_is_the_sequential_search_and_none_is_refused() -> None:
    make = lambda: SpecBuddySystem(BuddyBounds(frames=4, max_order=1, max_alloc_order=1))  # noqa: E731
    assert figures(explore_spec(make(), 10)) == figures(explore_parallel(make(), 10, 1))
    with pytest.raises(ValueError, match="workers: 0"):
        explore_parallel(make(), 10, 0)
