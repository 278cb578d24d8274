"""Known bugs, on record until they are fixed: each scenario here still fails, and says why.

``strict=True``: the day a fix makes one pass, the test fails, so the scenario
moves to ``tests/scenarios/`` with the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lang.scenario import load
from properties.replay import replay

KNOWN = Path(__file__).parent / "known-bugs"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known bug in the L0 refinement (properties/mm/driver.py L0Side): it keeps only the view before the "
        "first change in flight, so a stale TLB entry filled between two changes in flight is reported as a "
        "divergence; keeping one view per change made the candidates grow too fast on long programs"
    ),
)
def test_stale_entry_between_two_changes_in_flight_is_explained() -> None:
    report = replay(load(KNOWN / "tlb-stale-entry-between-two-changes-in-flight.json"))
    assert report.ok, report.divergence or report.expected_mismatch
