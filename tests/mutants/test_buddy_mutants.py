"""Classic buddy allocator bugs, injected into the implementation at run time, must be caught.

Each mutant replaces one function or method of :mod:`impl.buddy` (by
monkeypatching the module, so the lockstep runner builds the buggy
allocator); the ``ci``-profile buddy machine must refute it with a saved
counterexample of at most 8 operations that ``mmcheck replay`` reproduces.
The bugs are those of linux-mm.md's mutant table: the buddy computed with a
plus, a merge loop that stops one order early, a merge that ignores the
buddy's order, a split that keeps the upper half, and two MAX_ORDER
off-by-ones (B-30).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

import impl.buddy
from mmcheck.errors import MMCheckError, OrderOutOfRange
from mmcheck.replay import replay
from mmcheck.scenario import Scenario, load
from proofs.verdict import Status
from properties.buddy_machine import counterexample_path, run_machine

MAX_STEPS = 8


def buddy_plus(pfn: int, order: int) -> int:
    """The buddy as ``pfn + (1 << order)``: right for lower halves, wrong for upper ones."""
    return pfn + (1 << order)


class MergeStopsEarly(impl.buddy.BuddyAllocator):
    """``while (order < MAX_PAGE_ORDER - 1)``: blocks of max_order are never formed by merging."""

    def _merge(self, pfn: int, order: int) -> None:
        while order < self.max_order - 1:
            buddy = impl.buddy.find_buddy_pfn(pfn, order)
            if not self._is_buddy(buddy, order):
                break
            self._del_from_free_list(buddy, order)
            pfn = impl.buddy.combined_pfn(pfn, order)
            order += 1
        self._add_to_free_list(pfn, order)


class MergeIgnoresOrder(impl.buddy.BuddyAllocator):
    """``page_is_buddy`` without ``buddy_order(buddy) == order``: any free head merges."""

    def _is_buddy(self, pfn: int, order: int) -> bool:
        return pfn < self.frames and self._buddy[pfn] == 1


class SplitKeepsUpper(impl.buddy.BuddyAllocator):
    """``expand()`` that frees the lower halves and hands out the top of the block."""

    def _expand(self, pfn: int, low: int, high: int) -> int:
        while high > low:
            self._add_to_free_list(pfn, high - 1)
            pfn = impl.buddy.upper_half_pfn(pfn, high)
            high -= 1
        return pfn


class AllocSkipsMaxOrder(impl.buddy.BuddyAllocator):
    """``for (o = order; o < MAX_PAGE_ORDER; ...)``: the max_order list is never searched (spurious ENOMEM)."""

    def alloc(self, order: int) -> int | None:
        if not 0 <= order <= self.max_order:
            raise OrderOutOfRange(f"order {order} is out of range: allowed 0..{self.max_order}")
        for current in range(order, self.max_order):
            free_list = self._free_lists[current]
            if free_list:
                pfn, _ = free_list.popitem()
                self._buddy[pfn] = 0
                self.nr_free[current] -= 1
                pfn = self._expand(pfn, order, current)
                self._order[pfn] = order
                self._refcount[pfn] = 1
                return pfn
        return None


class MergePastMaxOrder(impl.buddy.BuddyAllocator):
    """``while (order <= MAX_PAGE_ORDER)``: two free max_order buddies merge into a block that cannot exist."""

    def _merge(self, pfn: int, order: int) -> None:
        while order <= self.max_order:
            buddy = impl.buddy.find_buddy_pfn(pfn, order)
            if not self._is_buddy(buddy, order):
                break
            self._del_from_free_list(buddy, order)
            pfn = impl.buddy.combined_pfn(pfn, order)
            order += 1
        if order > self.max_order:
            # The kernel would index free_area[] past its end; keep the block where the spec can see it.
            self._free_lists.append({})
            self.nr_free.append(0)
        self._add_to_free_list(pfn, order)


@dataclass(frozen=True)
class Mutant:
    """One injected bug: the attribute of :mod:`impl.buddy` it replaces and the replacement."""

    name: str
    attribute: str
    replacement: Callable[..., object]


MUTANTS = (
    Mutant("buddy computed as pfn + (1 << order)", "find_buddy_pfn", buddy_plus),
    Mutant("merge loop stops one order early", "BuddyAllocator", MergeStopsEarly),
    Mutant("merge ignores the buddy's order", "BuddyAllocator", MergeIgnoresOrder),
    Mutant("split keeps the upper half", "BuddyAllocator", SplitKeepsUpper),
    Mutant("MAX_ORDER off by one: alloc never searches max_order", "BuddyAllocator", AllocSkipsMaxOrder),
    Mutant("MAX_ORDER off by one: merge goes past max_order", "BuddyAllocator", MergePastMaxOrder),
)


def reproduces(scenario: Scenario) -> bool:
    """Replaying ``scenario`` diverges, or crashes the implementation (not a refusal of bad input)."""
    try:
        return replay(scenario).divergence is not None
    except MMCheckError:
        return False
    except Exception:
        return True


@pytest.mark.quality
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_ci_machine_catches_mutant_in_few_steps(
    mutant: Mutant, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ci-profile buddy machine refutes the mutant with a replayable counterexample of at most 8 steps."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    monkeypatch.setattr(impl.buddy, mutant.attribute, mutant.replacement)
    start = time.perf_counter()
    status, detail = run_machine(run_settings=settings(settings.get_profile("ci"), report_multiple_bugs=False))
    seconds = time.perf_counter() - start
    assert Status.REFUTED == status, detail
    saved = counterexample_path()
    assert saved.exists(), detail
    scenario = load(saved)
    with capsys.disabled():
        print(f"\n  mutant {mutant.name!r}: caught, {len(scenario.ops)} steps, {seconds:.1f}s")
    assert len(scenario.ops) <= MAX_STEPS, saved.read_text()
    assert reproduces(scenario), "the saved scenario must reproduce the failure"


def test_unmutated_allocator_passes_the_same_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: the real implementation survives the run that kills the mutants."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(run_settings=settings(settings.get_profile("ci"), report_multiple_bugs=False))
    assert Status.CONFIRMED == status, detail
