"""The mutmut score: kill rate of the mutants of ``impl/`` from ``mutants/mutmut-cicd-stats.json``.

A mutant that made the tests time out counts as killed (the tests noticed
it); one mutmut never reached before the time budget ran out counts as not
checked and is left out of the rate, but is reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STATS = Path("mutants/mutmut-cicd-stats.json")
KILLED_CODES = {1, 3, -24, 24, 152, 255, 36, -11, -9}  # a failing test, a timeout (SIGXCPU), a crash
SURVIVED, NO_TESTS, NOT_CHECKED = 0, {5, 33}, None


def score(stats: dict[str, int]) -> tuple[int, int, int]:
    """(killed including timeouts, checked, not checked)."""
    killed = stats["killed"] + stats["timeout"] + stats.get("segfault", 0)
    checked = killed + stats["survived"] + stats.get("suspicious", 0)
    return killed, checked, stats["total"] - checked - stats.get("skipped", 0)


def module_rates(mutants: Path) -> list[tuple[str, int, int, int, int, int]]:
    """Per module of ``impl/``, from mutmut's ``<module>.py.meta`` files: (module, total, killed, survived,
    no test reaches it, not checked within the budget)."""
    rows = []
    for meta in sorted(mutants.glob("impl/**/*.py.meta")):
        codes = list(json.loads(meta.read_text())["exit_code_by_key"].values())
        killed = sum(code in KILLED_CODES for code in codes)
        survived = sum(code == SURVIVED for code in codes)
        untested = sum(code in NO_TESTS for code in codes)
        unchecked = sum(code is NOT_CHECKED for code in codes)
        module = str(meta.relative_to(mutants)).removesuffix(".meta")
        rows.append((module, len(codes), killed, survived, untested, unchecked))
    return rows


def module_lines(mutants: Path) -> list[str]:
    """One line per module: killed of checked (the rate), survivors, mutants no selected test reaches, unchecked."""
    lines = []
    for module, total, killed, survived, untested, unchecked in module_rates(mutants):
        checked = killed + survived
        rate = f"{100.0 * killed / checked:5.1f}%" if checked else "    -"
        lines.append(
            f"  {module:24} {killed:4} killed of {checked:4} checked {rate}; {survived} survived, "
            f"{untested} reached by no test, {unchecked} not checked (of {total})"
        )
    return lines


def main(path: Path = STATS) -> int:
    stats = json.loads(path.read_text())
    killed, checked, unchecked = score(stats)
    rate = 100.0 * killed / checked if checked else 0.0
    print(
        f"mutmut: {killed} killed of {checked} checked ({rate:.1f}%): {stats['killed']} failed a test, "
        f"{stats['timeout']} timed out, {stats['survived']} survived; {unchecked} not checked within the budget"
    )
    print("per module:")
    print("\n".join(module_lines(path.parent)))
    print("survivors: `mutmut results`; each is listed with its disposition in docs/mutation-testing.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else STATS))
