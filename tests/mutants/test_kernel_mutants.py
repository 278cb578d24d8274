"""Every kernel-layer mutant makes the ``ci`` kernel machine fail with at most 8 operations.

The mutants are the registry's (:mod:`properties.mutants.kernel`), applied
only while their run lasts.  The run is the one ``verify`` makes
(:func:`properties.mm.kernel_machine.run_machine`, on the shared runner): the
machine finds a failing program, the saved scenario is minimised by replay;
it must replay to a failure under the mutant and pass on the real
implementation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import settings

from lang.scenario import load
from lang.verdict import Status
from properties.minimise import failure_kind
from properties.mm.kernel_machine import counterexample_path, run_machine
from properties.mutants import Mutant
from properties.mutants.kernel import KERNEL_MUTANTS

MAX_OPS = 8


def ci_settings() -> settings:
    """The ``ci`` profile, stopping at the first bug (as ``verify`` runs the machine)."""
    return settings(settings.get_profile("ci"), report_multiple_bugs=False)


def test_the_four_classic_cow_bugs_and_the_issue_7_ones_are_registered() -> None:
    """Dirty COW, fork without write-protect, reuse on mapcount, zero page writable, and three address-space bugs."""
    expected = {
        "dirty-cow",
        "fork-no-wrprotect-parent",
        "reuse-on-mapcount",
        "zero-page-writable",
        "munmap-leaks-refcount",
        "vma-split-off-by-one",
        "shared-write-copies",
    }
    assert expected == {m.name for m in KERNEL_MUTANTS}
    assert {"cow"} == {m.layer for m in KERNEL_MUTANTS}


@pytest.mark.quality
@pytest.mark.parametrize("mutant", KERNEL_MUTANTS, ids=[m.name for m in KERNEL_MUTANTS])
def test_ci_kernel_machine_catches_mutant(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refuted, with a counterexample of at most 8 operations that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with mutant.applied():
        status, detail = run_machine(run_settings=ci_settings())
        saved = counterexample_path()
        assert Status.REFUTED == status, f"{mutant.name} survived the ci kernel machine"
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
def test_unmutated_kernel_survives_the_same_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: without a mutant the same run finds nothing, so the failures above are the mutants'."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(run_settings=ci_settings())
    assert Status.CONFIRMED == status, detail
