"""Every walk/permission mutant makes the ``ci``-profile mmu machine fail with at most 8 operations.

Each mutant is applied only while its run lasts (see :mod:`.catalogue`).
The run is the one ``verify`` makes (:func:`properties.paging.mmu_machine.run_machine`)
but for Hypothesis's shrink phase: it finds a failing program, the saved
scenario is minimised, and it must replay to a failure under the mutant and
pass without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from lang.scenario import load
from lang.verdict import Status
from properties.machinery import counterexample_path
from properties.minimise import failure_kind
from properties.mutants import Mutant
from properties.mutants.walk import WALK_MUTANTS
from properties.paging.mmu_machine import MmuMachine, run_machine

MAX_OPS = 8


def ci_settings() -> settings:
    """The ``ci`` profile's examples, stopping at the first bug, without Hypothesis's shrink phase.

    The examples tried are those ``verify`` tries, so a mutant is caught here
    exactly when ``verify`` would catch it.  Shrinking the program (10-40 s a
    mutant on 2 cores) is left to the scenario minimiser, which brings the
    saved counterexample to a 1-minimal one in milliseconds.
    """
    return settings(
        settings.get_profile("ci"), report_multiple_bugs=False, phases=[Phase.explicit, Phase.reuse, Phase.generate]
    )


@pytest.mark.quality
@pytest.mark.parametrize("mutant", WALK_MUTANTS, ids=[m.name for m in WALK_MUTANTS])
def test_ci_machine_catches_walk_mutant(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refuted, with a counterexample of at most 8 operations that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with mutant.applied():
        status, detail = run_machine(run_settings=ci_settings())
    seconds = time.perf_counter() - start
    assert Status.REFUTED == status, f"{mutant.name} survived the ci mmu machine"
    saved = counterexample_path(MmuMachine)
    assert saved.exists(), detail
    scenario = load(saved)
    with capsys.disabled():
        print(f"\n  {mutant.name:24} caught: {len(scenario.ops)} ops, {seconds:.1f}s ({detail.splitlines()[-1]})")
    assert len(scenario.ops) <= MAX_OPS, saved.read_text()
    with mutant.applied():
        assert failure_kind(scenario) is not None, "the saved scenario must fail under the mutant"
    assert failure_kind(scenario) is None, "the saved scenario must pass on the real implementation"


@pytest.mark.parametrize("mutant", WALK_MUTANTS, ids=[m.name for m in WALK_MUTANTS])
def test_mutant_patch_still_applies(mutant: Mutant) -> None:
    """Each patch matches the shipped source exactly (a stale patch would test nothing) and swaps the code in."""
    owner, attribute = mutant.patch.owner, mutant.patch.attribute  # type: ignore[attr-defined]
    shipped = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    with mutant.applied():
        patched = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        assert patched is not shipped
    assert shipped is (vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute))


# The same run as verify's ci machine check; nox -s mutants and verify cover it, nox -s tests skips it.
@pytest.mark.slow
def test_unmutated_walker_survives_the_same_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: without a mutant the same run finds nothing, so the failures above are the mutants'."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(run_settings=ci_settings())
    assert Status.CONFIRMED == status, detail
