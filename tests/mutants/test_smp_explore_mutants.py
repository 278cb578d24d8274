"""The SMP explorer finds every TLB-shootdown mutant, and the kernel-only one every COW mutant, with a shortest
counterexample that replays.

``nox -s mutants`` runs the same hunt (``proofs.hunt``); these are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lang.scenario import load
from proofs.smp_system import COW_HUNT_BOUNDS, hunt
from properties.mutants import Mutant
from properties.mutants.kernel import KERNEL_MUTANTS
from properties.mutants.tlb import TLB_MUTANTS
from properties.replay import replay

pytestmark = [pytest.mark.quality, pytest.mark.slow]

# The length of the shortest counterexample at the hunting bounds (breadth-first, so no shorter one exists there).
SHORTEST = {
    "free-before-flush": 3,
    "mprotect-no-remote-flush": 6,
    "freed-tables-skip-lazy": 4,
    "asid-reuse-no-gen-check": 5,
    "partial-flush-when-behind": 7,
    "fork-skips-parent-flush": 2,
    "invlpg-keeps-global": 4,
    "gather-holds-last-reference-only": 7,
}


# With the three setup ops (spawn, switch, mmap of two pages) counted.
SHORTEST_COW = {
    "dirty-cow": 6,
    "fork-no-wrprotect-parent": 5,
    "reuse-on-mapcount": 8,
    "zero-page-writable": 5,
    "munmap-leaks-refcount": 5,
    "vma-split-off-by-one": 4,
    "shared-write-copies": 5,
}


def test_every_mutant_has_an_expected_length() -> None:
    assert {m.name for m in TLB_MUTANTS} == set(SHORTEST)
    assert {m.name for m in KERNEL_MUTANTS} == set(SHORTEST_COW)


@pytest.mark.parametrize("mutant", TLB_MUTANTS, ids=[m.name for m in TLB_MUTANTS])
def test_smp_explorer_finds_tlb_mutant(mutant: Mutant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found with a counterexample of the shortest length, which diverges under the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    with mutant.applied():
        result, saved = hunt(mutant.name)
        assert result is not None and saved is not None, f"{mutant.name} survived the SMP explorer"
        assert replay(load(saved)).divergence is not None
    assert SHORTEST[mutant.name] == len(load(saved).ops), saved.read_text()
    assert replay(load(saved)).divergence is None


@pytest.mark.parametrize("mutant", KERNEL_MUTANTS, ids=[m.name for m in KERNEL_MUTANTS])
def test_kernel_explorer_finds_cow_mutant(mutant: Mutant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel layer alone (one CPU, from one process with two pages): found, diverging under the mutant only."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    with mutant.applied():
        result, saved = hunt(mutant.name, COW_HUNT_BOUNDS)
        assert result is not None and saved is not None, f"{mutant.name} survived the kernel explorer"
        assert replay(load(saved)).divergence is not None
    assert SHORTEST_COW[mutant.name] == len(load(saved).ops), saved.read_text()
    assert replay(load(saved)).divergence is None
