"""Alloc+free pairs per second of the buddy implementation and the spec, at memories from 2**14 to 2**20 frames.

The workload is seeded and the same for both sides: a pool of live blocks
is filled first, then each pair allocates a block of a random order (small
orders far more often, as in a kernel) and frees a random live block.  The
spec takes its least choice, the implementation its own; both run the same
sequence of orders and victims.  Setting up memory is not timed.

Targets: the implementation's cost per pair flat within 1.5x from 2**14 to
2**20 frames (O(max_order) per operation), and at least 50x the spec's
throughput at 2**20.  :mod:`benchmarks.run` reports them (``nox -s bench``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from impl.alloc.buddy import BuddyAllocator
from spec.alloc import buddy as spec_buddy

ORDER_WEIGHTS = {0: 40.0, 1: 20.0, 2: 15.0, 3: 10.0, 4: 6.0, 5: 4.0, 6: 2.0, 7: 1.5, 8: 1.0, 9: 0.5}
LIVE = 256
MAX_ORDER = 10


@dataclass(frozen=True, slots=True)
class Workload:
    """The orders to allocate and, for each pair, which live block to free (as a fraction of the pool)."""

    seed: int
    orders: tuple[int, ...]
    victims: tuple[float, ...]

    @classmethod
    def make(cls, seed: int, pairs: int) -> Workload:
        rng = random.Random(seed)
        orders = tuple(rng.choices(list(ORDER_WEIGHTS), weights=list(ORDER_WEIGHTS.values()), k=LIVE + pairs))
        return cls(seed, orders, tuple(rng.random() for _ in range(pairs)))


@dataclass(frozen=True, slots=True)
class Measurement:
    side: str
    frames: int
    pairs: int
    seconds: float
    enomem: int

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds

    @property
    def microseconds_per_pair(self) -> float:
        return 1e6 * self.seconds / self.pairs


def run_impl(frames: int, work: Workload, pairs: int) -> Measurement:
    """Fill the pool, then time ``pairs`` alloc+free pairs on :class:`impl.alloc.buddy.BuddyAllocator`."""
    allocator = BuddyAllocator(frames, MAX_ORDER)
    live: list[tuple[int, int]] = []
    for order in work.orders[:LIVE]:
        pfn = allocator.alloc(order)
        if pfn is not None:
            live.append((pfn, order))
    alloc, free = allocator.alloc, allocator.free
    enomem = 0
    start = time.perf_counter()
    for i in range(pairs):
        order = work.orders[LIVE + i]
        pfn = alloc(order)
        if pfn is None:
            enomem += 1
        else:
            live.append((pfn, order))
        k = int(work.victims[i] * len(live))
        live[k], live[-1] = live[-1], live[k]
        victim_pfn, victim_order = live.pop()
        free(victim_pfn, victim_order)
    return Measurement("impl", frames, pairs, time.perf_counter() - start, enomem)


def run_spec(frames: int, work: Workload, pairs: int) -> Measurement:
    """The same workload on the pure spec (:func:`spec.alloc.buddy.alloc` and :func:`spec.alloc.buddy.free`)."""
    state = spec_buddy.initial(frames, MAX_ORDER)
    live: list[tuple[int, int]] = []
    for order in work.orders[:LIVE]:
        state, got = spec_buddy.alloc(state, order)
        if isinstance(got, spec_buddy.Block):
            live.append((got.pfn, order))
    enomem = 0
    start = time.perf_counter()
    for i in range(pairs):
        order = work.orders[LIVE + i]
        state, got = spec_buddy.alloc(state, order)
        if isinstance(got, spec_buddy.Block):
            live.append((got.pfn, order))
        else:
            enomem += 1
        k = int(work.victims[i] * len(live))
        live[k], live[-1] = live[-1], live[k]
        victim_pfn, victim_order = live.pop()
        state = spec_buddy.free(state, victim_pfn, victim_order)
    return Measurement("spec", frames, pairs, time.perf_counter() - start, enomem)


def best_of(repeats: int, run: Callable[[], Measurement]) -> Measurement:
    """The fastest of ``repeats`` runs (the least disturbed by other work on the machine)."""
    return min((run() for _ in range(repeats)), key=lambda m: m.seconds)


def measure(
    frames: int, work: Workload, impl_pairs: int, spec_pairs: int, repeats: int
) -> tuple[Measurement, Measurement]:
    """The implementation (fastest of ``repeats`` runs) and the spec on the same workload at ``frames`` frames."""
    impl = best_of(repeats, partial(run_impl, frames, work, impl_pairs))
    return impl, run_spec(frames, work, spec_pairs)
