"""The tlb_gen inductive proof holds for Linux's rule and fails for the classic mistakes."""

from __future__ import annotations

import z3

from lang.verdict import Status
from proofs.inductive import TOP, initial_satisfies, linux_decision, prove_buddy_inductive, prove_inductive


def test_linux_rule_is_inductive() -> None:
    assert Status.CONFIRMED == prove_inductive()[0]
    assert Status.CONFIRMED == initial_satisfies()[0]


def test_partial_flush_when_more_than_one_generation_behind_is_refuted() -> None:
    """Dropping ``new_tlb_gen == local + 1`` lets a CPU skip an older change's flush."""

    def behind(
        local: z3.ArithRef, mm: z3.ArithRef, gen: z3.ArithRef, full: z3.BoolRef
    ) -> tuple[z3.BoolRef, z3.BoolRef]:
        return z3.And(gen > local, local != mm), z3.And(z3.Not(full), gen == mm)

    status, detail = prove_inductive(behind)
    assert Status.REFUTED == status
    assert "counterexample to induction" in detail


def test_partial_flush_of_a_superseded_request_is_refuted() -> None:
    """Dropping ``new_tlb_gen == mm_tlb_gen`` flushes one page while a newer change is pending."""

    def stale(local: z3.ArithRef, mm: z3.ArithRef, gen: z3.ArithRef, full: z3.BoolRef) -> tuple[z3.BoolRef, z3.BoolRef]:
        return z3.And(gen > local, local != mm), z3.And(z3.Not(full), gen == local + 1)

    assert Status.REFUTED == prove_inductive(stale)[0]


def test_the_linux_rule_is_what_the_default_uses() -> None:
    assert prove_inductive(linux_decision) == prove_inductive()


def test_buddy_coalescing_is_inductive() -> None:
    assert (Status.CONFIRMED, "") == prove_buddy_inductive()


def test_buddy_merge_stopping_one_order_early_is_refuted() -> None:
    """A merge loop that stops below the top order leaves two free buddies (the 'early stop' bug)."""
    assert Status.REFUTED == prove_buddy_inductive(merge_top=TOP - 1)[0]


def test_buddy_computed_by_addition_is_refuted() -> None:
    """pfn + (1 << order) is the buddy only for a lower half; freeing an upper half merges the wrong block."""
    assert Status.REFUTED == prove_buddy_inductive(buddy_of=lambda index: index + 1)[0]
