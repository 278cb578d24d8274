"""``nox -s verify``: run every registered proof, contract and machine; one summary line.

The last line is ``verify: N passed, M failed``; unknown verdicts count as
failed and are listed before it.  Exit status 0 only when nothing failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from lang.verdict import CHECKS, Status, Verdict
from properties import profiles

# Modules that register checks on import, in the order they run.
CHECK_MODULES = (
    "proofs.lemmas",
    "proofs.contracts",
    "proofs.inductive",
    "properties.paging.mmu_machine",
    "proofs.buddy_lemmas",
    "properties.alloc.buddy_machine",
    "proofs.systems",
    "properties.mm.kernel_machine",
    "properties.smp.smp_machine",
    "properties.smp.nopcid_machine",
    "properties.smp.ceiling_machine",
    "properties.mm.huge_machine",
    "properties.slab.slab_machine",
    "properties.slab.slab_debug_machine",
    "properties.pressure.pressure_machine",
    "properties.paging.maxphyaddr_machine",
    "properties.mm.five_level_machine",
    "properties.pressure.fault_around_machine",
    "properties.oom.oom_machine",
    "properties.oom.memcg_machine",
    "properties.pressure.workingset_machine",
    "properties.pressure.slab_pressure_machine",
    "properties.mm.thp_machine",
)


def collect(groups: Sequence[str] | None) -> None:
    """Import the check modules so they register."""
    import importlib

    for name in CHECK_MODULES:
        importlib.import_module(name)
    if groups:
        CHECKS[:] = [c for c in CHECKS if c.group in groups]


def run_check(name: str) -> Verdict:
    """Run the registered check called ``name``; a crash is a failed check, reported as such."""
    chk = next(c for c in CHECKS if c.name == name)
    try:
        return chk.run()
    except Exception as exc:
        return Verdict(chk.name, Status.REFUTED, f"crashed: {type(exc).__name__}: {exc}")


def report(group: str, verdict: Verdict) -> None:
    """One line per check, with the counterexample or reason under a failure."""
    mark = {Status.CONFIRMED: "ok", Status.REFUTED: "FAIL", Status.UNKNOWN: "UNKNOWN"}[verdict.status]
    print(f"  [{group:9}] {mark:7} {verdict.name} ({verdict.seconds:.2f}s)", flush=True)
    if not verdict.passed and verdict.detail:
        for line in verdict.detail.splitlines():
            print(f"      {line}")


# Slow groups start first so the parallel run ends sooner.
GROUP_ORDER = {"machine": 0, "explore": 1, "crosshair": 2, "z3": 3}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify", description=__doc__)
    parser.add_argument("--profile", choices=profiles.PROFILES, default="ci")
    parser.add_argument("--group", action="append", help="only run checks of this group (repeatable)")
    parser.add_argument("-k", dest="pattern", help="only run checks whose name contains this")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="checks run in parallel (default: cores)")
    args = parser.parse_args(argv)
    profiles.load(args.profile)
    collect(args.group)
    names = [c.name for c in CHECKS]
    if len(set(names)) != len(names):
        raise SystemExit(f"verify: duplicate check names: {sorted(n for n in names if names.count(n) > 1)}")
    chosen = sorted(
        (c for c in CHECKS if not args.pattern or args.pattern in c.name),
        key=lambda c: GROUP_ORDER.get(c.group, len(GROUP_ORDER)),
    )
    groups = {c.name: c.group for c in chosen}
    start = time.perf_counter()
    jobs = max(1, min(args.jobs, len(chosen)))
    print(f"verify: profile {args.profile}, {len(chosen)} checks, {jobs} in parallel", flush=True)
    verdicts: list[Verdict] = []
    if jobs == 1:
        for chk in chosen:
            verdicts.append(run_check(chk.name))
            report(chk.group, verdicts[-1])
    else:
        # fork keeps the loaded profile and the registered checks in every worker.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(run_check, chk.name) for chk in chosen]
            for future in as_completed(futures):
                verdicts.append(future.result())
                report(groups[verdicts[-1].name], verdicts[-1])
    passed = sum(v.passed for v in verdicts)
    failed = len(verdicts) - passed
    unknown = [v.name for v in verdicts if v.status is Status.UNKNOWN]
    if unknown:
        print(f"unknown (not a pass): {', '.join(unknown)}")
    print(f"verify: wall time {time.perf_counter() - start:.1f}s")
    print(f"verify: {passed} passed, {failed} failed")
    return 1 if failed or not verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
