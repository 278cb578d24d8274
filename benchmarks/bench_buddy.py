"""Alloc+free pairs per second of the buddy implementation and the spec, at 2**14 and 2**20 frames.

The workload is seeded and the same for both sides: a pool of live blocks
is filled first, then each pair allocates a block of a random order (small
orders far more often, as in a kernel) and frees a random live block.  The
spec takes its least choice, the implementation its own; both run the same
sequence of orders and victims.  Setting up memory is not timed.

Targets: the implementation's cost per pair flat within 1.5x from 2**14 to
2**20 frames (O(max_order) per operation), and at least 50x the spec's
throughput at 2**20.  Results print as a table and go to
``results/bench_buddy.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from impl.buddy import BuddyAllocator
from spec import buddy as spec_buddy

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
    """Fill the pool, then time ``pairs`` alloc+free pairs on :class:`impl.buddy.BuddyAllocator`."""
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
    """The same workload on the pure spec (:func:`spec.buddy.alloc` and :func:`spec.buddy.free`)."""
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


def table(rows: Sequence[tuple[Measurement, Measurement]]) -> list[str]:
    lines = [
        f"{'frames':>7} {'impl pairs/s':>13} {'impl us/pair':>13} {'spec pairs/s':>13} {'spec us/pair':>13} "
        f"{'impl/spec':>10}"
    ]
    for impl, spec in rows:
        ratio = impl.pairs_per_second / spec.pairs_per_second
        lines.append(
            f"{'2^' + str(impl.frames.bit_length() - 1):>7} {impl.pairs_per_second:13,.0f} "
            f"{impl.microseconds_per_pair:13.2f} {spec.pairs_per_second:13,.0f} {spec.microseconds_per_pair:13.1f} "
            f"{ratio:9.0f}x"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=20241)
    parser.add_argument("--impl-pairs", type=int, default=50_000)
    parser.add_argument("--spec-pairs", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3, help="impl runs per size; the fastest counts")
    parser.add_argument("--shifts", type=int, nargs="+", default=[14, 20], help="memory sizes as powers of two")
    parser.add_argument("--out", type=Path, default=Path("results/bench_buddy.json"))
    args = parser.parse_args(argv)
    print(
        f"bench_buddy: seed {args.seed}, {args.impl_pairs} impl pairs (best of {args.repeats}), "
        f"{args.spec_pairs} spec pairs, {LIVE} live blocks, max_order {MAX_ORDER}",
        flush=True,
    )
    work = Workload.make(args.seed, max(args.impl_pairs, args.spec_pairs))
    rows = []
    for shift in args.shifts:
        frames = 1 << shift
        impl = best_of(args.repeats, partial(run_impl, frames, work, args.impl_pairs))
        spec = run_spec(frames, work, args.spec_pairs)
        rows.append((impl, spec))
    for line in table(rows):
        print(line)
    flat = rows[-1][0].microseconds_per_pair / rows[0][0].microseconds_per_pair
    speedup = rows[-1][0].pairs_per_second / rows[-1][1].pairs_per_second
    flat_verdict = "met" if flat <= 1.5 else "MISSED"
    speed_verdict = "met" if speedup >= 50 else "MISSED"
    print(f"impl cost per pair, largest / smallest memory: {flat:.2f}x (target <= 1.5x: {flat_verdict})")
    print(f"impl / spec at the largest memory: {speedup:.0f}x (target >= 50x: {speed_verdict})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "seed": args.seed,
        "live_blocks": LIVE,
        "max_order": MAX_ORDER,
        "order_weights": ORDER_WEIGHTS,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "measurements": [
            {**asdict(m), "pairs_per_second": m.pairs_per_second, "us_per_pair": m.microseconds_per_pair}
            for pair in rows
            for m in pair
        ],
        "impl_flatness": flat,
        "impl_over_spec_at_largest": speedup,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
