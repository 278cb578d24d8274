"""``nox -s modelcheck``: the explorers at bounds larger than ``verify``'s, within a time budget.

Each run prints the explorer's one-line summary.  An *exhaustive* run must
visit every reachable state of its bound within its share of the budget (a
bound not exhausted is not a pass); a *search* run goes breadth-first to a
depth and reports how far it got (depth-limited: no proof, but no violation
within it).  Any violation is saved as a scenario (``mmcheck replay``) and
fails the session.

The spec explorer's runs (:mod:`proofs.spec_explore`, the L1 spec alone) go
further than the lockstep explorer's: verify's SMP bound, then 2 CPUs x 2
processes x 1 page and x 2 pages with fork, munmap, mprotect and madvise in
flight, each to exhaustion or its share of the budget; the path to a violation
and a sample of the deepest paths are replayed in lockstep (spec,
implementation, L0) and saved as scenarios (:mod:`proofs.spec_replay`), and a
replay that diverges fails the session; they run on every core (``--workers``).  A table of every run follows (states,
transitions, diameter, seconds, exhausted or not); the last line is
``modelcheck: N passed, M failed``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from lang.scenario import Op
from proofs import smp_system
from proofs.explore import Result, Stats, run_exploration
from proofs.progress import Meter
from proofs.smp_system import SmpSystem
from proofs.spec_replay import explore_and_replay
from proofs.spec_systems import SpecSmpSystem

# A run: its time limit, the progress callback, how often (seconds) to call it, and the processes it may use.
Runner = Callable[[float, Callable[[Stats], None], float, int], tuple[Result[Op], Path | None]]


@dataclass(frozen=True)
class Run:
    """One exploration: what it covers, how to run it within a time limit, whether it must exhaust its bound."""

    name: str
    run: Runner
    exhaustive: bool


def smp_run(bounds: smp_system.SmpBounds, depth: int, name: str) -> Runner:
    """The lockstep explorer (one process)."""
    return lambda limit, progress, every, workers: run_exploration(
        SmpSystem(bounds), depth, None, name, progress=progress, time_limit=limit, progress_every=every
    )


def spec_smp_run(bounds: smp_system.SmpBounds, name: str, sample: int = 3) -> Runner:
    """The spec explorer over ``bounds`` to exhaustion (or the time limit), its reported paths replayed in lockstep:
    the saved scenario of the violation, or of the first replay that diverged, is the failure.  On ``workers``
    processes (:mod:`proofs.spec_parallel`)."""

    def run(
        limit: float, progress: Callable[[Stats], None], every: float, workers: int
    ) -> tuple[Result[Op], Path | None]:
        checked = explore_and_replay(
            SpecSmpSystem(bounds),
            10_000,
            name,
            time_limit=limit,
            progress=progress,
            progress_every=every,
            sample=sample,
            workers=workers,
        )
        found = checked.result
        if found.path is not None:
            return Result(found.stats, found.path, found.reason), checked.replays[0][2]
        if checked.diverged:
            label, replayed, file = checked.diverged[0]
            assert replayed.divergence is not None
            reason = f"the lockstep replay of {label} diverged: {replayed.divergence.describe()}"
            return Result(found.stats, list(replayed.ops), reason), file
        return Result(found.stats), None

    return run


SMP_BOUNDS = replace(smp_system.VERIFY_BOUNDS, prots=("r--", "rw-"))
SEARCH_BOUNDS, SEARCH_DEPTH = smp_system.HUNT_BOUNDS[0][0], 7
RUNS = (
    Run(f"smp, {SMP_BOUNDS.describe()}: every reachable state", smp_run(SMP_BOUNDS, 200, "smp-exhaustive"), True),
    Run(
        f"smp, {SEARCH_BOUNDS.describe()}: breadth-first to depth {SEARCH_DEPTH}",
        smp_run(SEARCH_BOUNDS, SEARCH_DEPTH, "smp-search"),
        False,
    ),
    Run(
        f"spec explorer, smp, {SMP_BOUNDS.describe()}: every reachable state",
        spec_smp_run(SMP_BOUNDS, "smp-verify"),
        True,
    ),
    Run(
        f"spec explorer, smp, {smp_system.SMALL_BOUNDS.describe()}: to exhaustion or the budget",
        spec_smp_run(smp_system.SMALL_BOUNDS, "smp-2x2x1"),
        False,
    ),
    Run(
        f"spec explorer, smp, {smp_system.RATE_BOUNDS.describe()}: to exhaustion or the budget",
        spec_smp_run(smp_system.RATE_BOUNDS, "smp-2x2x2"),
        False,
    ),
)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """The session; ``console`` (standard output by default) decides whether a progress display is drawn."""
    parser = argparse.ArgumentParser(prog="modelcheck", description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0, help="total time budget, shared equally by the runs")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for the spec explorer's runs (default: one per core)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers: {args.workers}; allowed 1 or more")
    share = args.minutes * 60 / len(RUNS)
    print(f"modelcheck: {len(RUNS)} runs, {share:.0f}s each", flush=True)

    failed = 0
    table: list[tuple[str, Stats]] = []
    for number, run in enumerate(RUNS, 1):
        print(f"  {run.name}", flush=True)
        meter = Meter(f"run {number}/{len(RUNS)}", "states", budget=share, console=console)

        def progress(stats: Stats, meter: Meter = meter) -> None:
            meter.quiet(f"    ... {stats.distinct} states, depth {stats.depth}, {stats.rate:,.0f} states/s")
            meter.update(stats.distinct, f"depth {stats.depth}")

        with meter:
            result, saved = run.run(share, progress, 0.25 if meter.live else 5.0, args.workers)
            meter.update(result.stats.distinct, "done")
        print(f"    {result.stats.summary()}", flush=True)
        table.append((run.name.split(":")[0], result.stats))
        if saved is not None:
            failed += 1
            print(f"    FAIL after {len(result.path or [])} ops: {result.reason}\n    counterexample: {saved}")
        elif run.exhaustive and not result.stats.exhausted:
            failed += 1
            print("    FAIL: not exhausted within the budget (not a pass)")
        else:
            print("    ok" + ("" if result.stats.exhausted else " (depth-limited search, no violation)"))
    print_table(table)
    print(f"modelcheck: {len(RUNS) - failed} passed, {failed} failed")
    return 1 if failed else 0


def print_table(table: list[tuple[str, Stats]]) -> None:
    """One line a run: states, transitions, diameter (the depth of the deepest state), seconds, exhausted."""
    print("run | states | transitions | diameter | seconds | exhausted")
    for number, (name, stats) in enumerate(table, 1):
        exhausted = "yes" if stats.exhausted else f"no ({stats.bound})"
        print(
            f"{number}. {name} | {stats.distinct:,} | {stats.transitions:,} | {stats.depth} | {stats.seconds:.1f} | "
            f"{exhausted}"
        )


if __name__ == "__main__":
    sys.exit(main())
