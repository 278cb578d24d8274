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


def score(stats: dict[str, int]) -> tuple[int, int, int]:
    """(killed including timeouts, checked, not checked)."""
    killed = stats["killed"] + stats["timeout"] + stats.get("segfault", 0)
    checked = killed + stats["survived"] + stats.get("suspicious", 0)
    return killed, checked, stats["total"] - checked - stats.get("skipped", 0)


def main(path: Path = STATS) -> int:
    stats = json.loads(path.read_text())
    killed, checked, unchecked = score(stats)
    rate = 100.0 * killed / checked if checked else 0.0
    print(
        f"mutmut: {killed} killed of {checked} checked ({rate:.1f}%): {stats['killed']} failed a test, "
        f"{stats['timeout']} timed out, {stats['survived']} survived; {unchecked} not checked within the budget"
    )
    print("survivors: `mutmut results`; each is listed with its disposition in docs/mutation-testing.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else STATS))
