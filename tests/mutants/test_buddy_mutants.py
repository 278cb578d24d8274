"""Every buddy mutant of the catalogue makes the ``ci``-profile buddy machine fail with at most 8 operations.

Each mutant is applied only while its run lasts (see :mod:`.catalogue`).
The run is the one ``verify`` makes (:func:`properties.alloc.buddy_machine.run_machine`):
Hypothesis finds and shrinks a failing program, the saved scenario is
minimised, and it must replay to a failure under the mutant and pass
without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import settings

from lang.scenario import load
from lang.verdict import Status
from properties.alloc.buddy_machine import BuddyMachine, run_machine
from properties.machinery import counterexample_path
from properties.minimise import failure_kind
from properties.mutants import Mutant
from properties.mutants.buddy import BUDDY_MUTANTS

MAX_OPS = 8


def ci_settings() -> settings:
    """The ``ci`` profile, stopping at the first bug (as ``verify`` runs the machine)."""
    return settings(settings.get_profile("ci"), report_multiple_bugs=False)


@pytest.mark.quality
@pytest.mark.parametrize("mutant", BUDDY_MUTANTS, ids=[m.name for m in BUDDY_MUTANTS])
def test_ci_machine_catches_buddy_mutant(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refuted, with a counterexample of at most 8 operations that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with mutant.applied():
        status, detail = run_machine(run_settings=ci_settings())
    seconds = time.perf_counter() - start
    assert Status.REFUTED == status, f"{mutant.name} survived the ci buddy machine"
    saved = counterexample_path(BuddyMachine)
    assert saved.exists(), detail
    scenario = load(saved)
    with capsys.disabled():
        print(f"\n  {mutant.name:24} caught: {len(scenario.ops)} ops, {seconds:.1f}s ({detail.splitlines()[-1]})")
    assert len(scenario.ops) <= MAX_OPS, saved.read_text()
    with mutant.applied():
        assert failure_kind(scenario) is not None, "the saved scenario must fail under the mutant"
    assert failure_kind(scenario) is None, "the saved scenario must pass on the real implementation"


# The same run as verify's ci machine check; nox -s mutants and verify cover it, nox -s tests skips it.
@pytest.mark.slow
def test_unmutated_allocator_survives_the_same_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: without a mutant the same run finds nothing, so the failures above are the mutants'."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(run_settings=ci_settings())
    assert Status.CONFIRMED == status, detail
