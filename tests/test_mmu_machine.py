"""The mmu refinement machine runs clean under the loaded profile, and its check reports a verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import Phase, settings
from mutants.catalogue import SourcePatch

from impl.paging.mmu import Mmu
from lang.scenario import load
from lang.verdict import CHECKS, Status
from properties.machinery import counterexample_path, run_machine
from properties.paging.mmu_machine import CHECK_NAME, MmuMachine, refinement
from properties.replay import replay


def test_mmu_machine_finds_no_divergence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Implementation and spec agree on every program the profile tries (dev: 50 programs of 30 steps)."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(MmuMachine, settings(report_multiple_bugs=False))
    assert Status.CONFIRMED == status, detail


def test_refuted_run_names_a_saved_minimised_counterexample(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a planted walker bug the run is refuted and points at a short replayable scenario.

    Hypothesis's shrink phase is skipped to keep the test fast; the minimiser
    still cuts the saved scenario down.
    """
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    bug = SourcePatch(Mmu, "access", (("update = _A | _D if kind == WRITE else _A", "update = _A | _D"),))
    fast = settings(report_multiple_bugs=False, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    with bug.applied():
        status, detail = run_machine(MmuMachine, fast)
    assert Status.REFUTED == status
    assert str(counterexample_path(MmuMachine)) in detail
    scenario = load(counterexample_path(MmuMachine))
    assert len(scenario.ops) <= 8
    assert replay(scenario).divergence is None, "the planted bug is gone, so the scenario replays clean"


def test_machine_is_a_verify_check() -> None:
    """``verify --group machine`` runs the refinement machine under its check name."""
    assert ("machine", refinement) in {(c.group, c.run) for c in CHECKS if c.name == CHECK_NAME}
