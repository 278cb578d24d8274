"""The spec explorer on every core: breadth-first, the visited set partitioned by fingerprint over processes.

Each of ``workers`` processes owns the states whose fingerprint falls in its
part (:func:`owner`): it alone keeps their entries of the visited set (the
fingerprint and the link to the state each came from), checks their invariants
when one is first reached, and expands them.  The search runs level by level,
as :func:`proofs.spec_explore.explore_spec` does:

1. *expand*: every worker runs the spec's step function on each state of its
   frontier; a successor it owns is looked up in its part at once, any other is
   put in the batch for its owner (one batch per owner, pickled in one go, so
   the parts two successors share are sent once);
2. *deliver*: the coordinating process hands each owner the batches addressed
   to it; the owner keeps the successors it has not seen, checks their
   invariants and makes them its next frontier.

So every distinct state is checked exactly once, by its owner, and an exhausted
search reaches exactly the states, transitions and depth of the sequential one
(tested).  A violation found on a level ends the search after that level, its
path a shortest one; when several workers find one on that level, the one with
the least fingerprint is reported (the sequential search reports the first in
its order: another path of the same length).  The deepest paths are sampled
from the deepest level as the sequential search samples them.

Workers are forked (the system is inherited, not sent); states go between them
pickled, with the spec's read-only mappings (``MappingProxyType``) pickled as
their items (:func:`register_pickling`).  Fingerprints do not depend on how a
state's parts are shared (:data:`proofs.smp_system.MARSHAL_VERSION`), so a
state rebuilt by its owner keeps its key.
"""

from __future__ import annotations

import copyreg
import gc
import multiprocessing
import pickle
import sys
import time
from collections.abc import Callable, Hashable
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any, TypeVar

from proofs.explore import Stats
from proofs.spec_explore import SpecResult, SpecSystem, deepest, explore_spec

S = TypeVar("S")
Op = TypeVar("Op")

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads structured keys (the buddy system's bit sets) evenly


def owner(key: Hashable, workers: int) -> int:
    """The worker that owns the state of fingerprint ``key``: bytes by their first eight, anything else by its
    hash, spread by a multiplication (keys that differ in high bits alone land apart)."""
    h = int.from_bytes(key[:8], "little") if isinstance(key, bytes) else hash(key) & _MASK
    return (((h * _GOLDEN) & _MASK) >> 32) % workers


def _proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _reduce_proxy(mapping: MappingProxyType[Any, Any]) -> tuple[Callable[..., Any], tuple[dict[Any, Any]]]:
    return _proxy, (dict(mapping),)


def register_pickling() -> None:
    """Let :mod:`pickle` carry the spec's read-only mappings (as a mapping of the same items)."""
    copyreg.pickle(MappingProxyType, _reduce_proxy)


KNOWN_LIMIT = 2_000_000
"""How many keys of other workers' states a worker remembers having offered (then it forgets them all)."""


class _Worker:
    """One part of the visited set, its frontier and its counts."""

    def __init__(self, system: SpecSystem[Any, Any], index: int, workers: int) -> None:
        self.system = system
        self.index = index
        self.workers = workers
        self.parent: dict[Hashable, tuple[Hashable, Any] | None] = {}
        self.frontier: list[tuple[Any, Hashable]] = []
        self.levels: list[list[Hashable]] = []
        self.interned: dict[Any, Any] = {}
        self.violation: tuple[Hashable, list[str]] | None = None
        self.following: list[tuple[Any, Hashable]] = []
        # Successors owned elsewhere, by owner: key -> (state, parent key, op), offered to the owner by key first.
        self.pending: list[dict[Hashable, tuple[Any, Hashable, Any]]] = [{} for _ in range(workers)]
        # Keys offered to their owners on earlier levels: the owners hold them now, so they are not offered again.
        self.known: set[Hashable] = set()
        self.claimed: set[Hashable] = set()

    def admit(
        self, state: Any, key: Hashable, link: tuple[Hashable, Any] | None, into: list[tuple[Any, Hashable]]
    ) -> None:
        """A successor this worker owns: kept and checked if new."""
        if key in self.parent:
            return
        if link is not None:
            link = (link[0], self.interned.setdefault(link[1], link[1]))
        self.parent[key] = link
        problems = self.system.check(state)
        if problems and (self.violation is None or key < self.violation[0]):  # type: ignore[operator]
            self.violation = (key, problems)
        into.append((state, key))

    def expand(self, deadline: float | None, probe: bool) -> tuple[int, int, bool, bool, list[bytes]]:
        """Expand the frontier: (explored, transitions, stopped by the deadline, a new state of this part seen
        (probe: nothing kept), for each worker the pickled keys of the successors offered to it)."""
        system, me, workers, parent, known = self.system, self.index, self.workers, self.parent, self.known
        key_of = system.key
        pending = self.pending = [{} for _ in range(workers)]
        following: list[tuple[Any, Hashable]] = []
        explored = transitions = 0
        stopped = fresh = False
        for position, (state, key) in enumerate(self.frontier):
            if deadline is not None and position % 16 == 0 and time.monotonic() >= deadline:
                stopped = True
                break
            explored += 1
            for op, successor in system.successors(state):
                transitions += 1
                succ_key = key_of(successor)
                where = owner(succ_key, workers)
                if where == me:
                    if succ_key not in parent:
                        fresh = True
                        if not probe:
                            self.admit(successor, succ_key, (key, op), following)
                elif succ_key not in known and succ_key not in pending[where]:
                    pending[where][succ_key] = (successor, key, op)
        self.following = following
        offers = [b"" if not pending[w] else _dumps(list(pending[w])) for w in range(workers)]
        return explored, transitions, stopped, fresh, offers

    def claim(self, offers: list[bytes], probe: bool) -> tuple[bool, list[bytes]]:
        """The keys other workers offer (one list each, in worker order): for each, the positions of those this part
        has not seen and no earlier offer of this level claimed; whether any was new."""
        parent, claimed = self.parent, self.claimed
        grants = []
        fresh = False
        for offer in offers:
            granted = []
            for position, key in enumerate(pickle.loads(offer) if offer else ()):
                if key not in parent and key not in claimed:
                    granted.append(position)
                    if not probe:
                        claimed.add(key)
            fresh = fresh or bool(granted)
            grants.append(_dumps(granted) if granted else b"")
        return fresh, grants

    def send(self, grants: list[bytes]) -> list[bytes]:
        """The granted successors, pickled in one batch per owner; every offered key is known from now on."""
        batches = []
        known = self.known
        if len(known) > KNOWN_LIMIT:
            known.clear()
        for where, granted in enumerate(grants):
            offered = self.pending[where]
            if not granted:
                batches.append(b"")
            else:
                items = list(offered.items())
                batches.append(_dumps([(items[i][0], items[i][1]) for i in pickle.loads(granted)]))
            known.update(offered)
        self.pending = [{} for _ in range(self.workers)]
        return batches

    def deliver(self, batches: list[bytes]) -> tuple[int, bytes | None]:
        """Take the successors sent here (each new: its owner granted it once): (states owned, the violation)."""
        following = self.following
        for batch in batches:
            for key, (state, parent_key, op) in pickle.loads(batch):
                self.admit(state, key, (parent_key, op), following)
        self.frontier = following
        self.levels.append([key for _, key in following])
        self.following = []
        self.claimed = set()
        found = None if self.violation is None else _dumps(self.violation)
        return len(self.parent), found

    def deepest(self, sample: int) -> list[list[Hashable]]:
        """This part's keys of the deepest levels, deepest first, until ``sample`` are given (enough for any
        draw the coordinator makes)."""
        out: list[list[Hashable]] = []
        given = 0
        for keys in reversed(self.levels):
            if given >= sample:
                break
            out.append(keys)
            given += len(keys)
        return out


def _dumps(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _serve(system: SpecSystem[Any, Any], index: int, workers: int, conn: Connection) -> None:
    register_pickling()
    gc.disable()  # as in the sequential search: the spec's values hold no cycles
    worker = _Worker(system, index, workers)
    while True:
        command, args = conn.recv()
        if command == "root":
            if args is not None:
                state, key = args
                worker.admit(state, key, None, worker.following)
            conn.send(worker.deliver([]))
        elif command == "expand":
            conn.send(worker.expand(*args))
        elif command == "claim":
            conn.send(worker.claim(*args))
        elif command == "send":
            conn.send(worker.send(args))
        elif command == "deliver":
            conn.send(worker.deliver(args))
        elif command == "link":
            conn.send(worker.parent[args])
        elif command == "deepest":
            conn.send(worker.deepest(args))
        elif command == "bytes":
            conn.send(_visited_bytes(worker.parent) + 16 * len(worker.known))
        else:
            conn.send(None)
            return


def _visited_bytes(parent: dict[Hashable, tuple[Hashable, Any] | None]) -> int:
    if not parent:
        return sys.getsizeof(parent)
    key, link = next(reversed(parent.items()))
    return sys.getsizeof(parent) + (sys.getsizeof(key) + sys.getsizeof(link)) * len(parent)


def explore_parallel(
    system: SpecSystem[S, Op],
    max_depth: int,
    workers: int,
    max_states: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[Stats], None] | None = None,
    progress_every: float = 5.0,
    sample: int = 20,
    seed: int = 0,
) -> SpecResult[Op]:
    """:func:`proofs.spec_explore.explore_spec` over ``workers`` processes (1: the sequential search itself).

    ``max_states`` is checked after each level (a level may pass it); ``time_limit`` within a level.  The start
    state's invariants are checked here, every other state's by its owner."""
    if workers < 1:
        raise ValueError(f"workers: {workers}; allowed 1 or more")
    if workers == 1:
        return explore_spec(system, max_depth, max_states, time_limit, progress, progress_every, sample, seed)
    register_pickling()
    start = time.perf_counter()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    context = multiprocessing.get_context("fork")
    conns: list[Connection] = []
    processes = []
    for index in range(workers):
        mine, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(system, index, workers, theirs), daemon=True)
        process.start()
        theirs.close()
        conns.append(mine)
        processes.append(process)
    try:
        report = (progress, progress_every)
        return _coordinate(system, conns, start, deadline, max_depth, max_states, report, sample, seed)
    finally:
        for conn in conns:
            try:
                conn.send(("stop", None))
                conn.recv()
            except (EOFError, OSError):
                pass
            conn.close()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _coordinate(
    system: SpecSystem[S, Op],
    conns: list[Connection],
    start: float,
    deadline: float | None,
    max_depth: int,
    max_states: int | None,
    report: tuple[Callable[[Stats], None] | None, float],
    sample: int,
    seed: int,
) -> SpecResult[Op]:
    workers = len(conns)
    progress, every = report
    last_report = start
    stats = Stats()
    root = system.initial()
    root_key = system.key(root)
    problems = system.check(root)
    if problems:
        stats.distinct = 1
        stats.seconds = time.perf_counter() - start
        return SpecResult(stats, [], f"the start state breaks its invariants: {problems}")
    for index, conn in enumerate(conns):
        conn.send(("root", (root, root_key) if index == owner(root_key, workers) else None))
    for conn in conns:
        conn.recv()
    stats.distinct = 1
    depth = 0
    truncated = False
    while True:
        stats.depth = depth
        probe = depth >= max_depth
        for conn in conns:
            conn.send(("expand", (deadline, probe)))
        expanded = [conn.recv() for conn in conns]
        fresh = any(e[3] for e in expanded)
        stopped = any(e[2] for e in expanded)
        if not probe:
            stats.explored += sum(e[0] for e in expanded)
            stats.transitions += sum(e[1] for e in expanded)
        for target, conn in enumerate(conns):
            conn.send(("claim", ([e[4][target] for e in expanded], probe)))
        claims = [conn.recv() for conn in conns]  # claims[owner][1][sender]: the positions granted
        fresh = fresh or any(c[0] for c in claims)
        if probe:
            truncated = fresh
            break
        for sender, conn in enumerate(conns):
            conn.send(("send", [claims[target][1][sender] for target in range(workers)]))
        sent = [conn.recv() for conn in conns]
        for target, conn in enumerate(conns):
            conn.send(("deliver", [batches[target] for batches in sent if batches[target]]))
        delivered = [conn.recv() for conn in conns]
        stats.distinct = sum(d[0] for d in delivered)
        found = [pickle.loads(d[1]) for d in delivered if d[1] is not None]
        if found:
            key, problems = min(found, key=lambda f: f[0])
            stats.depth = depth + 1
            stats.seconds = time.perf_counter() - start
            path = _path_to(conns, key)
            return SpecResult(stats, path, f"op {len(path) - 1}: the L1 state breaks its invariants: {problems}")
        if stopped:
            truncated, stats.stopped = True, "time"
            break
        if not fresh:
            break
        depth += 1
        now = time.perf_counter()
        if progress is not None and now - last_report >= every:
            last_report = now
            stats.seconds = now - start
            progress(stats)
        if max_states is not None and stats.distinct >= max_states:
            truncated, stats.stopped = True, "states"
            break
    stats.seconds = time.perf_counter() - start
    stats.exhausted = not truncated
    for conn in conns:
        conn.send(("bytes", None))
    stats.visited_bytes = sum(conn.recv() for conn in conns)
    levels = _merged_levels(conns, sample)
    return SpecResult(stats, deepest=[_path_to(conns, key) for key in deepest(levels, sample, seed)])


def _merged_levels(conns: list[Connection], sample: int) -> list[list[Hashable]]:
    """The deepest levels' keys over all parts, shallowest first (as :func:`deepest` reads them)."""
    for conn in conns:
        conn.send(("deepest", sample))
    parts = [conn.recv() for conn in conns]
    merged: list[list[Hashable]] = []
    for level in range(max((len(p) for p in parts), default=0)):
        merged.append(sorted(key for p in parts if level < len(p) for key in p[level]))
    merged.reverse()
    return [keys for keys in merged if keys]


def _path_to(conns: list[Connection], key: Hashable) -> list[Any]:
    workers = len(conns)
    ops: list[Any] = []
    while True:
        conn = conns[owner(key, workers)]
        conn.send(("link", key))
        link = conn.recv()
        if link is None:
            break
        key, op = link
        ops.append(op)
    ops.reverse()
    return ops
