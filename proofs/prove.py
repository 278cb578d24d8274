"""``nox -s proofs``: the Z3 lemmas and the inductive proofs, each confirmed, refuted or unknown.

Runs every check that :mod:`proofs.lemmas`, :mod:`proofs.buddy_lemmas` and
:mod:`proofs.inductive` register, one line each, then
``proofs: C confirmed, R refuted, U unknown``.  Exit status 0 only when every
one is confirmed: a proof that timed out is unknown, and unknown is not a pass.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lang.verdict import CHECKS, Status

MODULES = ("proofs.lemmas", "proofs.buddy_lemmas", "proofs.inductive")
WORDS = {Status.CONFIRMED: "confirmed", Status.REFUTED: "refuted", Status.UNKNOWN: "unknown"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proofs", description=__doc__)
    parser.add_argument("-k", dest="pattern", help="only the proofs whose name contains this")
    args = parser.parse_args(argv)
    for name in MODULES:
        importlib.import_module(name)
    chosen = [c for c in CHECKS if c.run.__module__ in MODULES and (not args.pattern or args.pattern in c.name)]
    counts = dict.fromkeys(WORDS.values(), 0)
    for chk in chosen:
        verdict = chk.run()
        word = WORDS[verdict.status]
        counts[word] += 1
        print(f"  {word:9} {chk.name} ({verdict.seconds:.2f}s)", flush=True)
        if verdict.status is not Status.CONFIRMED and verdict.detail:
            for line in verdict.detail.splitlines():
                print(f"      {line}")
    print(f"proofs: {counts['confirmed']} confirmed, {counts['refuted']} refuted, {counts['unknown']} unknown")
    return 0 if chosen and counts["confirmed"] == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
