"""The TLB-shootdown mutants: the ``ci`` SMP machine must catch each with a counterexample of at most 10 operations.

``invlpg-keeps-global`` is among them: it is observable only through a kernel-mapping change
(``kernel_remap``) after a supervisor load filled the kernel page's global TLB entry.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import settings

from lang.scenario import Scenario, load
from lang.verdict import Status
from properties.machinery import counterexample_path
from properties.minimise import failure_kind
from properties.mutants.tlb import TLB_MUTANTS
from properties.smp.smp_machine import SmpMachine, run_machine

MAX_OPS = 10


def ci_settings() -> settings:
    return settings(settings.get_profile("ci"), report_multiple_bugs=False)


@pytest.mark.quality
@pytest.mark.parametrize("mutant", TLB_MUTANTS, ids=lambda m: m.name)
def test_ci_smp_machine_catches_mutant(
    mutant: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refuted, with a counterexample of at most 10 operations that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with mutant.applied():  # type: ignore[attr-defined]
        status, detail = run_machine(ci_settings())
        saved = counterexample_path(SmpMachine)
        assert Status.REFUTED == status, f"{mutant.name} survived the ci SMP machine"  # type: ignore[attr-defined]
        assert saved.exists(), detail
        scenario = load(saved)
        assert failure_kind(scenario) is not None, "the saved scenario must fail under the mutant"
    with capsys.disabled():
        print(f"\n  {mutant.name:28} caught: {len(scenario.ops)} ops, {time.perf_counter() - start:.1f}s")  # type: ignore[attr-defined]
    assert len(scenario.ops) <= MAX_OPS, saved.read_text()
    assert failure_kind(scenario) is None, "the saved scenario must pass on the real implementation"


def test_unmutated_smp_machine_finds_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: the same run without a mutant is confirmed, so the failures above are the mutants'."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(ci_settings())
    assert Status.CONFIRMED == status, detail


KERNEL_REMAP_SCENARIO = {
    "config": {"frames": 24, "cpus": 2},
    "ops": [
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "load", "cpu": 0, "va": "0xffffffff80000000", "mode": "supervisor"},
        {"op": "kernel_remap"},
        {"op": "load", "cpu": 0, "va": "0xffffffff80000000", "mode": "supervisor"},
    ],
}


def test_invlpg_keeping_global_entries_is_observable() -> None:
    """A global entry filled by a supervisor load survives the mutant's INVLPG in ``kernel_remap``, and only then."""
    mutant = next(m for m in TLB_MUTANTS if m.name == "invlpg-keeps-global")
    assert mutant.layer == "tlb"
    scenario = Scenario.from_json(KERNEL_REMAP_SCENARIO)
    assert failure_kind(scenario) is None
    with mutant.applied():
        kind = failure_kind(scenario)
    assert kind is not None and "kernel_remap" in kind, kind
