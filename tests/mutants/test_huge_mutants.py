"""Every hugetlb mutant makes the ``ci`` hugetlb machine fail with a short counterexample.

The mutants are the registry's (:mod:`properties.mutants.huge`), applied
only while their run lasts.  The run is the one ``verify`` makes
(:func:`properties.mm.huge_machine.run_machine`): the machine finds a failing
program, the saved scenario is minimised by replay; it must replay to a
failure under the mutant and pass on the real implementation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import settings

from lang.scenario import load
from lang.verdict import Status
from properties.minimise import failure_kind
from properties.mm.huge_machine import counterexample_path, run_machine
from properties.mutants import MUTANTS, Mutant
from properties.mutants.huge import HUGE_MUTANTS

MAX_OPS = 10


def ci_settings() -> settings:
    """The ``ci`` profile, stopping at the first bug (as ``verify`` runs the machine)."""
    return settings(settings.get_profile("ci"), report_multiple_bugs=False)


def test_the_hugetlb_mutants_are_registered() -> None:
    """Fork without write-protect, DONTNEED rounding up, unaligned split, order-0 free, INVLPG of the first page only:
    in the catalogue, layer huge."""
    expected = {
        "hugetlb-fork-no-wrprotect",
        "hugetlb-dontneed-rounds-up",
        "hugetlb-split-unaligned",
        "hugetlb-freed-order-0",
        "hugetlb-invlpg-head-only",
    }
    assert expected == {m.name for m in HUGE_MUTANTS}
    assert {"huge"} == {m.layer for m in HUGE_MUTANTS}
    assert set(HUGE_MUTANTS) <= set(MUTANTS)


@pytest.mark.quality
@pytest.mark.parametrize("mutant", HUGE_MUTANTS, ids=[m.name for m in HUGE_MUTANTS])
def test_ci_huge_machine_catches_mutant(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refuted, with a counterexample of at most 10 operations that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with mutant.applied():
        status, detail = run_machine(run_settings=ci_settings())
        saved = counterexample_path()
        assert Status.REFUTED == status, f"{mutant.name} survived the ci hugetlb machine"
        assert saved.exists(), detail
        scenario = load(saved)
        assert failure_kind(scenario) is not None, "the saved scenario must fail under the mutant"
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  {mutant.name:28} caught: {len(scenario.ops)} ops, {seconds:.1f}s")
    assert len(scenario.ops) <= MAX_OPS, saved.read_text()
    assert failure_kind(scenario) is None, "the saved scenario must pass on the real implementation"


# The same run as verify's ci machine check; nox -s mutants and verify cover it, nox -s tests skips it.
@pytest.mark.slow
def test_unmutated_hugetlb_survives_the_same_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: without a mutant the same run finds nothing, so the failures above are the mutants'."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(run_settings=ci_settings())
    assert Status.CONFIRMED == status, detail
