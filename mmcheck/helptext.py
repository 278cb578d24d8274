"""What each subcommand's ``--help`` ends with: its exit codes and one example.

Kept apart from :mod:`mmcheck.cli` so a new subcommand adds one entry here; ``tests/test_help.py`` checks
that every subcommand has one and that its example parses.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

COMMON = "2 bad input (a malformed scenario, an option out of range), one line naming it; 141 closed pipe; 130 Ctrl-C"

# subcommand -> (what exit code 1 means, or None when the command never exits 1; one example command)
HELP: dict[str, tuple[str | None, str]] = {
    "replay": (
        "a divergence, or a result other than expected_results",
        "mmcheck replay tests/scenarios/cow-basic-after-fork.json",
    ),
    "walk": (None, "mmcheck walk tests/scenarios/sdm-mmu-walk.json --va 0x1010 --kind write"),
    "explain": (
        "a divergence, or a result other than expected_results",
        "mmcheck explain tests/scenarios/cow-basic-after-fork.json",
    ),
    "explore": (
        "an invariant violated (the counterexample is saved)",
        "mmcheck explore --layer smp --cpus 2 --depth 6",
    ),
    "quiz": (None, "mmcheck quiz --topic cow --seed 3 -c"),
    "oracle": (
        "the oracle disagrees with the spec or the implementation",
        "mmcheck oracle qemu tests/scenarios/sdm-mmu-walk.json",
    ),
    "buddy": (None, "mmcheck buddy tests/scenarios/buddy-expand-merge.json"),
    "slab": (None, "mmcheck slab tests/scenarios/slab-object-caching.json --model impl"),
    "mutants": ("a mutant survived, or a detector misbehaved", "mmcheck mutants --layer buddy --jobs 2"),
    "draw": (None, "mmcheck draw tests/scenarios/cow-basic-after-fork.json --step 4 -o cow.svg"),
    "plot": (None, "mmcheck plot tests/scenarios/linux-kernel-cow-fork.json -o memory.png"),
    "report": (
        "the scenario stops at a divergence or an unexpected result",
        "mmcheck report tests/scenarios/cow-basic-after-fork.json -o cow.html",
    ),
    "lru": (None, "mmcheck lru tests/scenarios/pressure-page-life.json --model impl"),
    "new": (None, "mmcheck new kernel -o first.json"),
    "scenarios": (None, "mmcheck scenarios --kind slab"),
}  # fmt: skip


def epilog(name: str) -> str:
    """The text ``mmcheck NAME --help`` ends with."""
    failed, example = HELP[name]
    codes = ["0 success"] + ([f"1 {failed}"] if failed else []) + [COMMON]
    lines = textwrap.wrap("exit codes: " + "; ".join(codes), 79, subsequent_indent="  ")
    return "\n".join([*lines, "example:", f"  {example}"])


def add_epilogs(sub: argparse._SubParsersAction[Any]) -> None:
    """Give every subcommand its epilog (kept as written: two lines)."""
    for name, parser in sub.choices.items():
        if name in HELP:
            parser.epilog = epilog(name)
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
