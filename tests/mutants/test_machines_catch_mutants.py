"""Every catalogued mutant is caught by its layer's refinement machine, as ``mmcheck mutants`` runs it.

One test over the catalogue: for each mutant, the machine detectors of its
layer (:data:`proofs.hunt.DETECTORS`) run in the ``ci`` profile with the
mutant applied.  The machine must refute it and save a counterexample of at
most :data:`MAX_OPS` operations (after minimisation by replay) that fails
under the mutant and passes on the real implementation.  The baselines run
the same machines without a mutant, so the failures are the mutants'.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lang.scenario import Scenario, load
from lang.verdict import Status
from proofs.hunt import DETECTORS, Detector
from properties.minimise import failure_kind
from properties.mutants import MUTANTS, Mutant
from properties.mutants.huge import HUGE_MUTANTS
from properties.mutants.kernel import KERNEL_MUTANTS
from properties.mutants.memcg import MEMCG_MUTANTS
from properties.mutants.oom import OOM_MUTANTS
from properties.mutants.pressure import PRESSURE_MUTANTS
from properties.mutants.thp import THP_MUTANTS
from properties.mutants.tlb import TLB_MUTANTS
from properties.mutants.workingset import WORKINGSET_MUTANTS

# The longest counterexample each machine may need, after minimisation.
# The slab machine's programs start with three kmem_cache_create ops, the slab_debug machine's with five.
MAX_OPS = {
    "mmu-machine": 8,
    "buddy-machine": 8,
    "kernel-machine": 8,
    "smp-machine": 10,
    "huge-machine": 10,
    "slab-machine": 14,
    "slab-debug-machine": 16,
    "nopcid-machine": 10,
    "pressure-machine": 20,
    "ceiling-one-machine": 10,
    "ceiling-zero-machine": 10,
    "fault-around-machine": 20,
    "oom-machine": 10,
    "workingset-machine": 20,
    "slab-pressure-machine": 10,
    "thp-machine": 10,
    "memcg-machine": 20,
}


def machine_detectors(layer: str) -> tuple[Detector, ...]:
    return tuple(d for d in DETECTORS.get(layer, ()) if d.kind == "machine")


CASES = [(m, d) for m in MUTANTS for d in machine_detectors(m.layer)]
MACHINES = list({d.name: d for _, d in CASES}.values())


def test_every_mutant_has_a_machine_and_every_machine_a_bound() -> None:
    """No layer is hunted by the model checker or the proofs alone, and no machine runs without an op limit."""
    assert [] == [m.name for m in MUTANTS if not machine_detectors(m.layer)]
    assert sorted(MAX_OPS) == sorted(d.name for d in MACHINES)


@pytest.mark.quality
@pytest.mark.parametrize(("mutant", "detector"), CASES, ids=[f"{d.name}-{m.name}" for m, d in CASES])
def test_machine_catches_mutant(
    mutant: Mutant,
    detector: Detector,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refuted, with a short counterexample that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with mutant.applied():
        status, saved, detail = detector.run(mutant)
        assert Status.REFUTED == status, f"{mutant.name} survived the ci {detector.name}"
        assert saved is not None, detail
        scenario = load(saved)
        assert failure_kind(scenario) is not None, "the saved scenario must fail under the mutant"
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  {mutant.name:28} caught by {detector.name}: {len(scenario.ops)} ops, {seconds:.1f}s")
    assert len(scenario.ops) <= MAX_OPS[detector.name], saved.read_text()
    assert failure_kind(scenario) is None, "the saved scenario must pass on the real implementation"


# The same runs as verify's ci machine checks; nox -s mutants and verify cover them, nox -s tests skips them.
@pytest.mark.slow
@pytest.mark.parametrize("detector", MACHINES, ids=[d.name for d in MACHINES])
def test_unmutated_machine_finds_nothing(detector: Detector, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: without a mutant the same run is confirmed."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, _, detail = detector.run(MUTANTS[0])
    assert Status.CONFIRMED == status, detail


def test_the_classic_cow_and_address_space_bugs_are_registered() -> None:
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


def test_the_hugetlb_mutants_are_registered() -> None:
    """Fork without write-protect, DONTNEED rounding up, unaligned split, order-0 free, INVLPG of the head only."""
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


def test_the_pressure_mutants_are_registered() -> None:
    """Dirty page dropped, one mapper unmapped, swap count leak, no flush, writable swap-in, minor swap fault,
    MemAvailable without page cache, promotion without reference, fault-around past the VMA's end."""
    expected = {
        "dirty-shared-dropped",
        "unmap-first-mapper-only",
        "swap-count-leak",
        "swapout-no-tlb-flush",
        "swapin-writable-shared",
        "swapin-counted-minor",
        "memavailable-no-pagecache",
        "promote-unreferenced",
        "fault-around-past-vma-end",
    }
    assert expected == {m.name for m in PRESSURE_MUTANTS}
    assert {"pressure"} == {m.layer for m in PRESSURE_MUTANTS}
    assert set(PRESSURE_MUTANTS) <= set(MUTANTS)


def test_the_oom_mutants_are_registered() -> None:
    """Badness without swap or page tables, adj unscaled or multiplied first, -1000 or init eligible, the first
    of a tie kept, the victim's memory kept, adj not inherited, the allocating task killed at -1000."""
    expected = {
        "badness-ignores-swap",
        "badness-ignores-pgtables",
        "adj-unscaled",
        "adj-multiplied-first",
        "min-adj-eligible",
        "init-killable",
        "tie-first-wins",
        "victim-memory-kept",
        "adj-not-inherited",
        "allocating-task-at-min-killed",
    }
    assert expected == {m.name for m in OOM_MUTANTS}
    assert {"oom"} == {m.layer for m in OOM_MUTANTS}
    assert set(OOM_MUTANTS) <= set(MUTANTS)


def test_the_workingset_mutants_are_registered() -> None:
    """Shadows kept past a truncation, the refault distance compared with the active file list alone."""
    assert {"shadow-kept-after-truncate", "refault-ignores-anon"} == {m.name for m in WORKINGSET_MUTANTS}
    assert {"workingset"} == {m.layer for m in WORKINGSET_MUTANTS}
    assert set(WORKINGSET_MUTANTS) <= set(MUTANTS)


def test_the_memcg_mutants_are_registered() -> None:
    """An uncharge missed, the group OOM scanning outside the group or scaled by the machine, failcnt not
    counted, the parent's limit ignored, oom_kill counted on the wrong group."""
    expected = {
        "memcg-leak",
        "memcg-victim-outside-group",
        "memcg-domain-machine-total",
        "memcg-failcnt-not-incremented",
        "memcg-hierarchy-ignored",
        "memcg-oom-kill-counted-on-limit-group",
    }
    assert expected == {m.name for m in MEMCG_MUTANTS}
    assert {"memcg"} == {m.layer for m in MEMCG_MUTANTS}
    assert set(MEMCG_MUTANTS) <= set(MUTANTS)


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


def test_the_thp_mutants_are_registered() -> None:
    """The THP layer's mutants are in the catalogue, hunted by the THP machine."""
    names = {m.name for m in MUTANTS}
    assert {m.name for m in THP_MUTANTS} <= names
    assert {
        "thp-huge-zero-dirty-cow",
        "thp-reuse-shared",
        "thp-split-no-flush",
        "thp-pmd-misaligned",
        "thp-split-keeps-anon-huge-pages",
        "thp-fork-no-wrprotect",
        "thp-deposit-leaked",
        "thp-split-drops-dirty",
        "thp-madvise-no-split",
    } == {m.name for m in THP_MUTANTS}
    assert {"thp"} == {m.layer for m in THP_MUTANTS}
