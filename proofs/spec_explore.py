"""The spec-level explorer: breadth-first over the L1 spec's own transition function, invariants at every state.

The lockstep explorer (:mod:`proofs.explore` with :mod:`proofs.systems`) runs
the spec, the implementation and L0 at every transition and compares them:
refinement at every interleaving, at about a millisecond a step.  This one
runs only the spec, which is pure: a state is an immutable L1 value whose
parts a step did not change are shared with its predecessor (no copies), a
successor is one call of the spec's step function, and the visited set keeps
a 128-bit digest of each state's canonical form (hash compaction) with a
pointer to the state it came from, so any state's path can be rebuilt.  Only
the frontier holds spec states.

What is checked at every distinct state is the spec's own invariants (the
buddy allocator's, the kernel's of the state the gathers will leave, the
shootdown invariants: no usable TLB entry of a free frame, generations,
entries granting no more than the page tables, ``mm_cpumask``).  The
implementation is checked afterwards: the paths the explorer reports, a
violation's and a seeded sample of the deepest ones, are replayed in
lockstep (spec, implementation, L0) by :mod:`proofs.spec_replay`, and each
is a scenario ``mmcheck replay`` reproduces.

Where the spec leaves a choice to the implementation, a system says how it
resolves it: the buddy system branches over every block the spec allows
(:func:`spec.alloc.buddy.allowed_pfns`), so its states are every state any
conforming allocator can reach; the SMP system takes the spec's least choice
of frame and no TLB hit (every access walks: what a TLB may still hold is in
the spec state, :func:`spec.smp.shootdown.may_hold`), so its states are those
of one deterministic resolution of the frame choices.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from proofs.explore import Stats

S = TypeVar("S")
Op = TypeVar("Op")
Op_co = TypeVar("Op_co", covariant=True)


class SpecSystem(Protocol[S, Op_co]):
    """What the spec explorer needs: a start, the successors of a state, a canonical key, the invariants."""

    def initial(self) -> S:
        """The start state."""
        ...

    def successors(self, state: S) -> Iterable[tuple[Op_co, S]]:
        """Every (op, successor) the bound allows from ``state``; ops the spec refuses, or that leave the state as
        it was, are left out."""
        ...

    def key(self, state: S) -> Hashable:
        """A canonical, hashable form: equal for states that behave the same."""
        ...

    def check(self, state: S) -> list[str]:
        """Every invariant ``state`` breaks (empty: none)."""
        ...


@dataclass
class SpecResult(Generic[Op]):
    """The statistics; the shortest path to a violation if one was found; a seeded sample of deepest paths."""

    stats: Stats
    path: list[Op] | None = None
    reason: str = ""
    deepest: list[list[Op]] = field(default_factory=list)


def explore_spec(
    system: SpecSystem[S, Op],
    max_depth: int,
    max_states: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[Stats], None] | None = None,
    progress_every: float = 5.0,
    sample: int = 20,
    seed: int = 0,
) -> SpecResult[Op]:
    """Breadth-first search of ``system`` to ``max_depth`` ops (at most ``max_states`` states, ``time_limit`` s).

    Stops at the first state that breaks an invariant: breadth-first, so its path is a shortest one.  Otherwise
    returns up to ``sample`` paths to the deepest states reached, drawn with ``seed``: from the deepest level, and
    when it has fewer states than ``sample``, from the levels above it in turn.

    The cyclic garbage collector is off during the search: the spec's values hold no cycles, so it would only walk
    the visited set and the frontier again and again as they grow (about a sixth of the time).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _explore_spec(system, max_depth, max_states, time_limit, progress, progress_every, sample, seed)
    finally:
        if collecting:
            gc.enable()


def _explore_spec(
    system: SpecSystem[S, Op],
    max_depth: int,
    max_states: int | None,
    time_limit: float | None,
    progress: Callable[[Stats], None] | None,
    progress_every: float,
    sample: int,
    seed: int,
) -> SpecResult[Op]:
    start = time.perf_counter()
    stats = Stats()
    root = system.initial()
    root_key = system.key(root)
    parent: dict[Hashable, tuple[Hashable, Op] | None] = {root_key: None}
    problems = system.check(root)
    if problems:
        stats.distinct = 1
        stats.seconds = time.perf_counter() - start
        return SpecResult(stats, [], f"the start state breaks its invariants: {problems}")
    level: list[tuple[S, Hashable]] = [(root, root_key)]
    levels: list[list[Hashable]] = [[root_key]]
    following: list[tuple[S, Hashable]] = []
    truncated = False
    last_report = start
    depth = 0
    key_of = system.key
    check = system.check
    # One object per distinct op: a system builds its ops afresh for each state, and the visited set keeps one
    # per state (an op with its fields is a few hundred bytes, more than the rest of the entry).
    interned: dict[Op, Op] = {}
    successors = system.successors
    while level:
        stats.depth = depth
        if depth >= max_depth:
            truncated = any(key_of(s) not in parent for state, _ in level for _, s in successors(state))
            break
        following = []
        for state, key in level:
            stats.explored += 1
            for op, successor in successors(state):
                stats.transitions += 1
                succ_key = key_of(successor)
                if succ_key in parent:
                    continue
                parent[succ_key] = (key, interned.setdefault(op, op))
                problems = check(successor)
                if problems:
                    stats.distinct = len(parent)
                    stats.depth = depth + 1
                    stats.seconds = time.perf_counter() - start
                    path = _path_to(parent, succ_key)
                    reason = f"op {len(path) - 1}: the L1 state breaks its invariants: {problems}"
                    return SpecResult(stats, path, reason)
                following.append((successor, succ_key))
                if max_states is not None and len(parent) >= max_states:
                    truncated = True
                    stats.stopped = "states"
                    break
            if stats.stopped:
                break
            now = time.perf_counter()
            if time_limit is not None and now - start >= time_limit:
                truncated = True
                stats.stopped = "time"
                break
            if progress is not None and now - last_report >= progress_every:
                last_report = now
                stats.seconds = now - start
                stats.distinct = len(parent)
                progress(stats)
        if stats.stopped or not following:
            break
        level = following
        levels.append([key for _, key in following])
        depth += 1
    stats.depth = depth
    stats.seconds = time.perf_counter() - start
    stats.distinct = len(parent)
    stats.exhausted = not truncated
    stats.visited_bytes = _visited_bytes(parent)
    if stats.stopped and following:
        levels.append([key for _, key in following])
    return SpecResult(stats, deepest=[_path_to(parent, key) for key in deepest(levels, sample, seed)])


def deepest(levels: list[list[Hashable]], sample: int, seed: int) -> list[Hashable]:
    """Up to ``sample`` keys, deepest level first, drawn at random (``seed``) within the level that runs out."""
    rng = random.Random(seed)
    chosen: list[Hashable] = []
    for keys in reversed(levels):
        room = sample - len(chosen)
        if room <= 0:
            break
        chosen += keys if len(keys) <= room else rng.sample(keys, room)
    return chosen


def _path_to(parent: dict[Hashable, tuple[Hashable, Op] | None], key: Hashable) -> list[Op]:
    ops: list[Op] = []
    link = parent[key]
    while link is not None:
        key, op = link
        ops.append(op)
        link = parent[key]
    ops.reverse()
    return ops


def _visited_bytes(parent: dict[Hashable, tuple[Hashable, Op] | None]) -> int:
    """The visited set's bytes by ``sys.getsizeof``: the dict, and per entry a key and a link (ops are shared)."""
    import sys

    if not parent:
        return sys.getsizeof(parent)
    key, link = next(reversed(parent.items()))
    return sys.getsizeof(parent) + (sys.getsizeof(key) + sys.getsizeof(link)) * len(parent)
