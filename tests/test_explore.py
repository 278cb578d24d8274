"""The breadth-first explorer on small systems whose answers are known."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from proofs.explore import Violation, explore


class Counters:
    """Two counters mod ``n``; ``inc0``/``inc1`` add one; reaching ``bad`` is a violation."""

    def __init__(self, n: int, bad: tuple[int, int] | None = None, symmetric: bool = False) -> None:
        self.n, self.bad, self.symmetric = n, bad, symmetric

    def initial(self) -> tuple[int, int]:
        return (0, 0)

    def enabled(self, state: tuple[int, int]) -> Iterable[str]:
        return ("inc0", "inc1")

    def step(self, state: tuple[int, int], op: str) -> tuple[int, int]:
        a, b = state
        nxt = ((a + 1) % self.n, b) if op == "inc0" else (a, (b + 1) % self.n)
        if nxt == self.bad:
            raise Violation(f"reached {nxt}")
        return nxt

    def fingerprint(self, state: tuple[int, int]) -> Hashable:
        return tuple(sorted(state)) if self.symmetric else state


def test_exhausts_every_reachable_state() -> None:
    """Two counters mod 4 have 16 states, all reachable within depth 6."""
    result = explore(Counters(4), max_depth=6)
    assert (16, True, None) == (result.stats.distinct, result.stats.exhausted, result.path)


def test_bound_reached_is_not_exhausted() -> None:
    """Depth 2 cannot reach (3, 3): the run says the bound was reached."""
    result = explore(Counters(4), max_depth=2)
    assert (6, False) == (result.stats.distinct, result.stats.exhausted)


def test_first_counterexample_is_a_shortest_one() -> None:
    """(2, 1) is three increments away, in some order; BFS returns a path of length 3."""
    result = explore(Counters(4, bad=(2, 1)), max_depth=10)
    assert result.path is not None
    assert 3 == len(result.path)
    assert (2, 1) == (result.path.count("inc0"), result.path.count("inc1"))
    assert "reached (2, 1)" == result.reason


def test_symmetry_reduction_keeps_one_state_per_orbit() -> None:
    """Swapping the counters is a symmetry: 10 unordered pairs remain of 16."""
    assert 10 == explore(Counters(4, symmetric=True), max_depth=8).stats.distinct


def test_max_states_stops_early() -> None:
    result = explore(Counters(100), max_depth=1000, max_states=50)
    assert (50, False) == (result.stats.distinct, result.stats.exhausted)


def test_a_limit_other_than_the_depth_is_named() -> None:
    """A run stopped by the state or time limit is not exhausted, and its summary says which limit stopped it."""
    by_states = explore(Counters(100), max_depth=1000, max_states=50).stats
    by_time = explore(Counters(100), max_depth=1000, time_limit=0.0).stats
    assert ("state limit reached", False) == (by_states.bound, by_states.exhausted)
    assert ("time limit reached", False) == (by_time.bound, by_time.exhausted)
    assert "(time limit reached)" in by_time.summary()
