"""A seeded, stratified sample of mutmut's mutants of ``impl/``: the kill rate of each module within a budget.

All of ``impl/`` makes more than 4,000 mutants; at a few seconds each that is hours on a 2-core machine.  An
estimate of each module's kill rate needs far fewer: this runner draws ``--per-module`` mutants of every
module (all of them where a module has fewer), with a fixed ``--seed``, runs only those (``mutmut run
NAMES``, through :mod:`proofs.mutmut_run`'s budget and progress display), and reports per module the killed
of the sampled, with a 95% Wilson score interval for the module's rate, and the survivors by name (``mutmut
show NAME`` prints each one's diff).

The names come from mutmut's own listing: the ``mutants/<module>.py.meta`` files mutmut writes when it
generates the mutants (``exit_code_by_key``).  With no ``mutants/`` yet, a first ``mutmut run`` on a
pattern that names no mutant generates them and collects mutmut's test statistics (which tests reach which
function) without running a mutant; the sample's run reuses both.  Results stay in the ``.meta`` files, so a
later run with the same seed skips the mutants already checked (mutmut's own cache).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from proofs import mutmut_run
from properties.mutants.mutmut_stats import KILLED_CODES, NO_TESTS, SURVIVED

MUTANTS = Path("mutants")
NO_MUTANT = "impl.__no_mutant_has_this_name__"


def listing(mutants: Path = MUTANTS) -> dict[str, dict[str, int | None]]:
    """Every mutant by module (``impl/x/y.py``): its name and mutmut's exit code (None: not run yet)."""
    out: dict[str, dict[str, int | None]] = {}
    for meta in sorted(mutants.glob("impl/**/*.py.meta")):
        module = str(meta.relative_to(mutants)).removesuffix(".meta")
        out[module] = dict(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def sample(names: dict[str, dict[str, int | None]], per_module: int, seed: int) -> dict[str, list[str]]:
    """``per_module`` names of each module, drawn without replacement by a generator seeded with ``seed`` and
    the module's path (so one module's sample does not depend on the others')."""
    if per_module <= 0:
        raise ValueError(f"--per-module must be at least 1, not {per_module}")
    chosen: dict[str, list[str]] = {}
    for module, codes in sorted(names.items()):
        keys = sorted(codes)
        rng = random.Random(f"{seed}:{module}")
        chosen[module] = sorted(rng.sample(keys, min(per_module, len(keys))))
    return chosen


def wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval for a rate observed as ``killed`` of ``n``."""
    if n == 0:
        return (0.0, 1.0)
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class ModuleRate:
    module: str
    total: int
    sampled: int
    killed: int
    survived: tuple[str, ...]
    untested: tuple[str, ...]
    unchecked: int

    def line(self) -> str:
        checked = self.killed + len(self.survived)
        low, high = wilson(self.killed, checked)
        rate = f"{100.0 * self.killed / checked:5.1f}% [{100 * low:5.1f}, {100 * high:5.1f}]" if checked else "-"
        return (
            f"  {self.module:28} {self.killed:3} killed of {checked:3} checked {rate};"
            f" {len(self.survived)} survived, {len(self.untested)} reached by no test,"
            f" {self.unchecked} not checked (sample of {self.sampled} from {self.total})"
        )


def rates(names: dict[str, dict[str, int | None]], chosen: dict[str, list[str]]) -> list[ModuleRate]:
    """Per module, how the sampled mutants ended."""
    out = []
    for module, keys in chosen.items():
        codes = [names[module][k] for k in keys]
        out.append(
            ModuleRate(
                module,
                len(names[module]),
                len(keys),
                sum(c in KILLED_CODES for c in codes),
                tuple(k for k, c in zip(keys, codes, strict=True) if c == SURVIVED),
                tuple(k for k, c in zip(keys, codes, strict=True) if c in NO_TESTS),
                sum(c is None for c in codes),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proofs.mutmut_sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-module", type=int, default=40, help="mutants drawn from each module (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds for the sample's run (default 1800)")
    parser.add_argument("--children", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--json", type=Path, help="also write the per-module figures here")
    args = parser.parse_args(argv)
    if not listing():
        # Generates the mutants and collects the test statistics, then stops: no mutant has that name.
        print("mutmut: generating the mutants of impl/ and collecting which tests reach them")
        subprocess.run(["mutmut", "run", NO_MUTANT], check=False, capture_output=True)
    names = listing()
    if not names:
        print("mutmut generated no mutants of impl/ (see [tool.mutmut] in pyproject.toml)", file=sys.stderr)
        return 2
    chosen = sample(names, args.per_module, args.seed)
    todo = [k for module, keys in chosen.items() for k in keys if names[module][k] is None]
    if todo:
        mutmut_run.main(["--budget", str(args.budget), "--children", str(args.children), "--", *todo])
    names = listing()
    table = rates(names, chosen)
    print(f"mutmut sample (seed {args.seed}, {args.per_module} a module): kill rate with its 95% interval")
    for row in table:
        print(row.line())
    killed = sum(r.killed for r in table)
    checked = killed + sum(len(r.survived) for r in table)
    print(f"  all sampled: {killed} killed of {checked} checked")
    for row in table:
        for name in row.survived:
            print(f"  survived: {name}")
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in table], indent=2, default=list) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
