"""The buddy Z3 lemmas confirm the real arithmetic and refute planted bugs in it."""

from __future__ import annotations

import pytest
import z3

import impl.alloc.buddy
from lang.verdict import Status
from proofs import buddy_lemmas
from proofs.buddy_lemmas import SIDES, BranchOnSymbol, Inputs, prove, sides_agree


@pytest.mark.parametrize("side", SIDES, ids=[s.name for s in SIDES])
@pytest.mark.parametrize("lemma", [lemma for _, lemma in buddy_lemmas.LEMMAS], ids=[t for t, _ in buddy_lemmas.LEMMAS])
def test_lemma_holds_for_the_code(side: buddy_lemmas.Arithmetic, lemma: object) -> None:
    """Each lemma is confirmed for every pfn < 2**52 and order <= 52, on both sides."""
    assert callable(lemma)
    assert Status.CONFIRMED == prove(lemma(side))[0]


def test_buddy_computed_with_plus_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pfn + (1 << order)`` breaks the involution and the agreement with the spec, with a counterexample."""
    monkeypatch.setattr(impl.alloc.buddy, "find_buddy_pfn", lambda pfn, order: pfn + (1 << order))
    status, detail = prove(buddy_lemmas.buddy_involution(SIDES[1]))
    assert Status.REFUTED == status
    assert "counterexample: order=" in detail
    assert Status.REFUTED == prove(sides_agree())[0]


def test_merge_keeping_the_order_bit_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A combined pfn of ``pfn | (1 << order)`` is not aligned to order+1."""
    monkeypatch.setattr(impl.alloc.buddy, "combined_pfn", lambda pfn, order: pfn | (1 << order))
    assert Status.REFUTED == prove(buddy_lemmas.merge_contains_both(SIDES[1]))[0]


def test_upper_half_off_by_one_order_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting with the parent's size (``pfn + (1 << order)``) gives a half outside the block."""
    monkeypatch.setattr(impl.alloc.buddy, "upper_half_pfn", lambda pfn, order: pfn + (1 << order))
    assert Status.REFUTED == prove(buddy_lemmas.split_halves(SIDES[1]))[0]


def test_branching_code_is_rejected_not_guessed() -> None:
    """A function that branches on a symbolic value cannot be proved by running it once."""
    x = Inputs()
    with pytest.raises(BranchOnSymbol):
        bool(x.pfn & 1)


def test_overflow_is_an_obligation() -> None:
    """A shift that leaves 128 bits makes the no-overflow obligation fail."""
    x = Inputs()
    _ = 1 << (x.order + 200)
    assert Status.REFUTED == prove(z3.Implies(x.domain(), x.no_overflow()))[0]
