"""``nox -s modelcheck``: the explorers at bounds larger than ``verify``'s, within a time budget.

Each run prints the explorer's one-line summary.  An *exhaustive* run must
visit every reachable state of its bound within its share of the budget (a
bound not exhausted is not a pass); a *search* run goes breadth-first to a
depth and reports how far it got (depth-limited: no proof, but no violation
within it).  Any violation is saved as a scenario (``mmcheck replay``) and
fails the session.  The last line is ``modelcheck: N passed, M failed``.
"""

from __future__ import annotations

import argparse
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

# A run: its time limit, the progress callback, and how often (seconds) to call it.
Runner = Callable[[float, Callable[[Stats], None], float], tuple[Result[Op], Path | None]]


@dataclass(frozen=True)
class Run:
    """One exploration: what it covers, how to run it within a time limit, whether it must exhaust its bound."""

    name: str
    run: Runner
    exhaustive: bool


def smp_run(bounds: smp_system.SmpBounds, depth: int, name: str) -> Runner:
    return lambda limit, progress, every: run_exploration(
        SmpSystem(bounds), depth, None, name, progress=progress, time_limit=limit, progress_every=every
    )


SMP_BOUNDS = replace(smp_system.VERIFY_BOUNDS, prots=("r--", "rw-"))
SEARCH_BOUNDS, SEARCH_DEPTH = smp_system.HUNT_BOUNDS[0][0], 7
RUNS = (
    Run(f"smp, {SMP_BOUNDS.describe()}: every reachable state", smp_run(SMP_BOUNDS, 200, "smp-exhaustive"), True),
    Run(
        f"smp, {SEARCH_BOUNDS.describe()}: breadth-first to depth {SEARCH_DEPTH}",
        smp_run(SEARCH_BOUNDS, SEARCH_DEPTH, "smp-search"),
        False,
    ),
)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """The session; ``console`` (standard output by default) decides whether a progress display is drawn."""
    parser = argparse.ArgumentParser(prog="modelcheck", description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0, help="total time budget, shared equally by the runs")
    args = parser.parse_args(argv)
    share = args.minutes * 60 / len(RUNS)
    print(f"modelcheck: {len(RUNS)} runs, {share:.0f}s each", flush=True)

    failed = 0
    for number, run in enumerate(RUNS, 1):
        print(f"  {run.name}", flush=True)
        meter = Meter(f"run {number}/{len(RUNS)}", "states", budget=share, console=console)

        def progress(stats: Stats, meter: Meter = meter) -> None:
            meter.quiet(f"    ... {stats.distinct} states, depth {stats.depth}, {stats.rate:,.0f} states/s")
            meter.update(stats.distinct, f"depth {stats.depth}")

        with meter:
            result, saved = run.run(share, progress, 0.25 if meter.live else 5.0)
            meter.update(result.stats.distinct, "done")
        print(f"    {result.stats.summary()}", flush=True)
        if saved is not None:
            failed += 1
            print(f"    FAIL after {len(result.path or [])} ops: {result.reason}\n    counterexample: {saved}")
        elif run.exhaustive and not result.stats.exhausted:
            failed += 1
            print("    FAIL: not exhausted within the budget (not a pass)")
        else:
            print("    ok" + ("" if result.stats.exhausted else " (depth-limited search, no violation)"))
    print(f"modelcheck: {len(RUNS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
