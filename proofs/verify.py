"""``nox -s verify``: run every registered proof, contract and machine; one summary line.

The last line is ``verify: N passed, M failed``; unknown verdicts count as
failed and are listed before it.  Exit status 0 only when nothing failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from proofs.verdict import CHECKS, Status, Verdict
from properties import profiles

# Modules that register checks on import, in the order they run.
CHECK_MODULES = (
    "proofs.lemmas",
    "proofs.contracts",
    "proofs.inductive",
    "properties.mmu_machine",
)


def collect(groups: Sequence[str] | None) -> None:
    """Import the check modules so they register."""
    import importlib

    for name in CHECK_MODULES:
        importlib.import_module(name)
    if groups:
        CHECKS[:] = [c for c in CHECKS if c.group in groups]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify", description=__doc__)
    parser.add_argument("--profile", choices=profiles.PROFILES, default="ci")
    parser.add_argument("--group", action="append", help="only run checks of this group (repeatable)")
    parser.add_argument("-k", dest="pattern", help="only run checks whose name contains this")
    args = parser.parse_args(argv)
    profiles.load(args.profile)
    collect(args.group)
    start = time.perf_counter()
    verdicts: list[Verdict] = []
    print(f"verify: profile {args.profile}, {len(CHECKS)} checks", flush=True)
    for chk in CHECKS:
        if args.pattern and args.pattern not in chk.name:
            continue
        try:
            verdict = chk.run()
        except Exception as exc:  # a crashing check is a failed check, reported as such
            verdict = Verdict(chk.name, Status.REFUTED, f"crashed: {type(exc).__name__}: {exc}")
        verdicts.append(verdict)
        mark = {Status.CONFIRMED: "ok", Status.REFUTED: "FAIL", Status.UNKNOWN: "UNKNOWN"}[verdict.status]
        print(f"  [{chk.group:9}] {mark:7} {verdict.name} ({verdict.seconds:.2f}s)", flush=True)
        if not verdict.passed and verdict.detail:
            for line in verdict.detail.splitlines():
                print(f"      {line}")
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
