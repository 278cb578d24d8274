"""QEMU's x86 page walker as an oracle: the shared example, then generated page tables, differentially."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcheck import qemu_oracle
from mmcheck.scenario import load

MISSING = qemu_oracle.missing_tools()
pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(MISSING is not None, reason=f"QEMU oracle unavailable: {MISSING}"),
]

SCENARIOS = Path(__file__).parent / "scenarios"


def test_sdm_example_runs_on_qemu_as_expected() -> None:
    """The SDM walk example gives its recorded results on QEMU (success without the physical address)."""
    scenario = load(SCENARIOS / "sdm-mmu-walk.json")
    assert scenario.expected_results is not None
    run = qemu_oracle.run(scenario)
    expected = [{"pa": None} if "pa" in want else want for want in scenario.expected_results]
    assert expected == run.results
    assert qemu_oracle.compare(scenario, run).agree
