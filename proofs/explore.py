"""An explicit-state model checker: breadth-first, every reachable state within a bound.

A :class:`System` says where to start, which operations are enabled in a
state, how one step goes (running the spec and the implementation in
lockstep and checking the invariants), and what a state's canonical
fingerprint is.  The explorer visits states in breadth-first order, keeps one
fingerprint per distinct state with a pointer to the state it came from, and
stops at the first violation: because the search is breadth-first, the path
to it is a shortest one.  The path becomes a scenario that ``mmcheck replay``
reproduces.

Symmetry reduction lives in the fingerprint: a system that can rename CPUs,
process ids or frames without changing behaviour maps every state to the
least of its renamings, so the explorer stores one representative.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from lang.scenario import Scenario, dump
from properties.recording import counterexample_folder

S = TypeVar("S")
Op = TypeVar("Op")


class Violation(Exception):
    """A step broke the refinement or an invariant; ``reason`` says which and how."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class System(Protocol[S, Op]):
    """What the explorer needs to know about a system under check."""

    def initial(self) -> S:
        """The start state (a fresh copy each call)."""
        ...

    def enabled(self, state: S) -> Iterable[Op]:
        """Every operation the bound allows from ``state``."""
        ...

    def step(self, state: S, op: Op) -> S:
        """The successor of ``state`` under ``op`` (a new object); raise :class:`Violation` on a failure."""
        ...

    def fingerprint(self, state: S) -> Hashable:
        """A canonical, hashable form: equal for states that behave the same."""
        ...


@dataclass
class Stats:
    """What one exploration did."""

    explored: int = 0
    distinct: int = 0
    transitions: int = 0
    depth: int = 0
    exhausted: bool = False
    seconds: float = 0.0
    visited_bytes: int = 0
    stopped: str = ""  # "time" or "states" when a limit other than the depth ended the run

    @property
    def bound(self) -> str:
        """``exhausted``, or which bound ended the run."""
        if self.exhausted:
            return "exhausted"
        return {"time": "time limit reached", "states": "state limit reached"}.get(self.stopped, "bound reached")

    @property
    def rate(self) -> float:
        """Distinct states per second."""
        return self.distinct / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        return (
            f"explore: {self.distinct} distinct states ({self.explored} explored), {self.transitions} transitions, "
            f"depth {self.depth} ({self.bound}), {self.rate:,.0f} states/s, {self.seconds:.1f}s, "
            f"visited set ~{self.visited_bytes / 2**20:.1f} MiB (getsizeof estimate)"
        )


@dataclass
class Result(Generic[Op]):
    """The statistics, and the shortest failing path if one was found."""

    stats: Stats
    path: list[Op] | None = None
    reason: str = ""
    trail: list[str] = field(default_factory=list)


def explore(
    system: System[S, Op],
    max_depth: int,
    max_states: int | None = None,
    progress: Callable[[Stats], None] | None = None,
    progress_every: float = 5.0,
    time_limit: float | None = None,
    keep_states: int = 2000,
) -> Result[Op]:
    """Breadth-first search of ``system`` to ``max_depth`` operations (at most ``max_states``, ``time_limit`` s).

    A run stopped by ``max_states`` or ``time_limit`` has not exhausted the bound.  A system with a
    ``restore(path)`` method keeps at most ``keep_states`` states of the frontier in memory; the others are
    rebuilt from their path when their turn comes.  A system with a ``check(state)`` method has it called on
    each new distinct state (raising :class:`Violation`): invariants of the state alone need not be checked
    again for a state already seen.
    """
    start = time.perf_counter()
    stats = Stats()
    root = system.initial()
    root_key = system.fingerprint(root)
    restore: Callable[[list[Op]], S] | None = getattr(system, "restore", None)
    check: Callable[[S], None] | None = getattr(system, "check", None)
    if check is not None:
        check(root)
    # parent[key] = (parent key, op that led here); the root's parent is None.
    parent: dict[Hashable, tuple[Hashable, Op] | None] = {root_key: None}
    frontier: deque[tuple[S | None, Hashable, int]] = deque([(root, root_key, 0)])
    kept = 1
    last_report = start
    truncated = False
    while frontier:
        held, key, depth = frontier.popleft()
        if held is None:
            assert restore is not None
            state = restore(_path_to(parent, key))
        else:
            state = held
            kept -= 1
        stats.explored += 1
        stats.depth = max(stats.depth, depth)
        if depth >= max_depth:
            truncated = truncated or _has_new_successor(system, state, parent)
            continue
        for op in system.enabled(state):
            stats.transitions += 1
            try:
                successor = system.step(state, op)
            except Violation as violation:
                stats.seconds = time.perf_counter() - start
                stats.distinct = len(parent)
                stats.visited_bytes = _visited_size(parent)
                return Result(stats, [*_path_to(parent, key), op], violation.reason)
            succ_key = system.fingerprint(successor)
            if succ_key in parent:
                continue
            if check is not None:
                try:
                    check(successor)
                except Violation as violation:
                    stats.seconds = time.perf_counter() - start
                    stats.distinct = len(parent)
                    stats.visited_bytes = _visited_size(parent)
                    return Result(stats, [*_path_to(parent, key), op], violation.reason)
            parent[succ_key] = (key, op)
            if max_states is not None and len(parent) >= max_states:
                truncated = True
                stats.stopped = "states"
                frontier.clear()
                break
            if restore is None or kept < keep_states:
                frontier.append((successor, succ_key, depth + 1))
                kept += 1
            else:
                frontier.append((None, succ_key, depth + 1))
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            truncated = True
            stats.stopped = "time"
            break
        if progress is not None and time.perf_counter() - last_report >= progress_every:
            last_report = time.perf_counter()
            stats.seconds = last_report - start
            stats.distinct = len(parent)
            progress(stats)
    stats.seconds = time.perf_counter() - start
    stats.distinct = len(parent)
    stats.exhausted = not truncated
    stats.visited_bytes = _visited_size(parent)
    return Result(stats)


def _has_new_successor(system: System[S, Op], state: S, parent: dict[Hashable, tuple[Hashable, Op] | None]) -> bool:
    """True when a step from ``state`` leads outside the visited set (or fails): the bound cut something off."""
    for op in system.enabled(state):
        try:
            if system.fingerprint(system.step(state, op)) not in parent:
                return True
        except Violation:
            return True
    return False


def _path_to(parent: dict[Hashable, tuple[Hashable, Op] | None], key: Hashable) -> list[Op]:
    """The operations from the root to ``key``, following parent pointers."""
    ops: list[Op] = []
    link = parent[key]
    while link is not None:
        key, op = link
        ops.append(op)
        link = parent[key]
    ops.reverse()
    return ops


def _visited_size(parent: dict[Hashable, tuple[Hashable, Op] | None]) -> int:
    """An estimate of the visited set's bytes (``sys.getsizeof``): the dict, and for the last entry added its key,
    its link and the op in it, times the entries (keys of one system have one size; ops are shallow-sized)."""
    if not parent:
        return sys.getsizeof(parent)
    key, link = next(reversed(parent.items()))
    per_entry = sys.getsizeof(key)
    if link is not None:
        per_entry += sys.getsizeof(link) + sys.getsizeof(link[1])
    return sys.getsizeof(parent) + per_entry * len(parent)


class Replayable(System[S, Op], Protocol):
    """A system whose paths are scenarios."""

    def scenario(self, ops: list[Op], about: str) -> Scenario:
        """The path ``ops`` as a replayable scenario saying ``about``."""
        ...


def run_exploration(
    system: Replayable[S, Op],
    depth: int,
    max_states: int | None,
    name: str,
    progress: Callable[[Stats], None] | None = None,
    time_limit: float | None = None,
    progress_every: float = 5.0,
) -> tuple[Result[Op], Path | None]:
    """Explore; on a violation save the shortest path as a scenario and return its path."""
    result = explore(
        system, max_depth=depth, max_states=max_states, progress=progress, progress_every=progress_every,
        time_limit=time_limit,
    )  # fmt: skip
    if result.path is None:
        return result, None
    about = f"shortest counterexample found by the explorer ({name}): {result.reason}"
    return result, dump(system.scenario(result.path, about), counterexample_folder() / f"explore-{name}.json")
