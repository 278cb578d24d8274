"""The MMU lemmas hold for the real code and are refuted, with a counterexample, for planted bugs.

A planted bug in the impl is a *mutant* of the real source: one line of
impl/paging/mmu.py replaced, the module executed afresh, its ``Mmu`` handed to the
lemma.  So each refutation below shows the lemma reading the code the impl runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import z3

import impl.paging.mmu
from lang.verdict import CHECKS, Status, Verdict
from proofs import contracts, lemmas
from proofs.symbolic import SymbolicError, explore, flag, on_every_path, term, truth, unsigned, value
from spec.paging import address, pte
from spec.paging.permissions import Rights


def mutant_mmu(old: str, new: str) -> type[impl.paging.mmu.Mmu]:
    """``Mmu`` from a copy of impl/paging/mmu.py with the one occurrence of ``old`` replaced by ``new``."""
    source = inspect.getsource(impl.paging.mmu)
    assert source.count(old) == 1, f"the mutated text must occur exactly once in impl/paging/mmu.py: {old!r}"
    module = ModuleType("impl.mmu_mutant")
    exec(compile(source.replace(old, new), "impl/mmu_mutant.py", "exec"), module.__dict__)
    mmu_class: type[impl.paging.mmu.Mmu] = module.Mmu
    return mmu_class


def assert_refuted(verdict: Verdict) -> None:
    assert Status.REFUTED == verdict.status, verdict
    assert "counterexample" in verdict.detail


Z3_CHECKS = [c for c in CHECKS if c.run.__module__ == "proofs.lemmas"]


@pytest.mark.parametrize("chk", Z3_CHECKS, ids=[c.name.split(":")[0] + ": " + c.run.__name__ for c in Z3_CHECKS])
def test_lemma_is_confirmed(chk: Any) -> None:
    """Every registered MMU lemma is confirmed for the real spec and impl."""
    verdict = chk.run()
    assert Status.CONFIRMED == verdict.status, verdict.detail


def test_all_mmu_lemmas_are_registered_in_the_z3_group() -> None:
    assert {c.group for c in Z3_CHECKS} == {"z3"}
    assert len(Z3_CHECKS) == 7


# -- addresses ----------------------------------------------------------------------------------------------------


def test_canonical_check_off_by_one_bit_is_refuted() -> None:
    """Sign bit taken one position too low: bit 46 instead of 47 under 4-level paging."""
    broken = mutant_mmu(
        "((va + (1 << (width - 1))) & _MASK64) >> width", "((va + (1 << (width - 2))) & _MASK64) >> width"
    )
    assert_refuted(lemmas.impl_canonical_check(broken))


def test_canonical_check_of_48_bits_under_la57_is_refuted() -> None:
    """The width of 4-level paging used for 5-level too."""
    assert_refuted(lemmas.impl_canonical_check(mutant_mmu("width = 57 if cpu.la57 else 48", "width = 48")))


def test_spec_canonical_with_the_wrong_top_bit_is_refuted() -> None:
    def off_by_one(va: int, levels: int) -> bool:
        top = va >> address.address_width(levels)
        return top == 0 or top == (1 << (64 - address.address_width(levels))) - 1

    assert_refuted(lemmas.spec_canonical_is_sdm_rule(off_by_one))


def test_join_without_sign_extension_is_refuted() -> None:
    def join_zero_extended(indices: tuple[int, ...], offset: int, levels: int) -> int:
        va = offset
        for level, index in zip(range(levels, 0, -1), indices, strict=True):
            va |= index << address.level_shift(level)
        return va

    assert_refuted(lemmas.split_join_inverse(join_fn=join_zero_extended))


def test_split_with_indices_bottom_up_is_refuted() -> None:
    def split_reversed(va: int, levels: int) -> tuple[tuple[int, ...], int]:
        indices, offset = address.split(va, levels)
        return indices[::-1], offset

    assert_refuted(lemmas.split_join_inverse(split_fn=split_reversed))


# -- page-table entries -------------------------------------------------------------------------------------------


def test_encode_dropping_ignored_bits_is_refuted() -> None:
    def encode_lossy(entry: pte.Pte) -> int:
        return pte.encode(entry) & ~pte.IGNORED_MASK

    assert_refuted(lemmas.pte_round_trip(encode_fn=encode_lossy))


def test_decode_with_xd_read_from_bit_62_is_refuted() -> None:
    def decode_wrong_xd(word: int) -> pte.Pte:
        entry = pte.decode(word)
        return pte.Pte(**{**{f: getattr(entry, f) for f in entry.__slots__}, "xd": bool(word & (1 << 62))})

    assert_refuted(lemmas.pte_round_trip(decode_fn=decode_wrong_xd))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("bad = rsvd | _PS", "bad = rsvd", id="PS not reserved in PML4E/PML5E"),
        pytest.param("(0 if cpu.nxe else _XD)", "0", id="XD not reserved without NXE"),
        pytest.param("3: ((1 << 30) - 1) & ~0x1FFF", "3: ((1 << 21) - 1) & ~0x1FFF", id="1 GiB leaf with 2 MiB mask"),
        pytest.param(
            "elif level > 1 and entry & _PS:", "elif level == 2 and entry & _PS:", id="1 GiB low bits unchecked"
        ),
        pytest.param("~((1 << maxphyaddr) - 1)", "~((1 << (maxphyaddr + 1)) - 1)", id="MAXPHYADDR off by one"),
        pytest.param("~((1 << maxphyaddr) - 1)", "~((1 << 52) - 1)", id="MAXPHYADDR ignored"),
    ],
)
def test_reserved_bit_mutant_is_refuted(old: str, new: str) -> None:
    assert_refuted(lemmas.reserved_bits_agree(mutant_mmu(old, new)))


# -- access rights ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("rights &= entry", "rights = entry", id="rights taken from the leaf only"),
        pytest.param("no_exec |= entry >> 63", "no_exec &= entry >> 63", id="XD ANDed instead of ORed"),
        pytest.param("no_exec |= entry >> 63", "no_exec = entry >> 63", id="XD from the leaf only"),
        pytest.param("or not cpu.wp", "or True", id="WP ignored"),
        pytest.param("if us and cpu.smap and not cpu.ac:", "if us and cpu.smap:", id="SMAP ignoring AC"),
        pytest.param("return not (us and cpu.smep) and", "return", id="SMEP ignored"),
        pytest.param("return bool(us and rights & _RW)", "return bool(us)", id="user write ignoring R/W"),
        pytest.param(
            "if kind == READ:\n                return bool(us)",
            "if kind == READ:\n                return True",
            id="user read of a supervisor page",
        ),
        pytest.param("(cpu.nxe or cpu.smep)", "cpu.nxe", id="I/D without SMEP"),
        pytest.param("| (va & offset_mask))", "| (va & 0xFFF))", id="huge-page offset of 12 bits"),
    ],
)
def test_rights_mutant_is_refuted(old: str, new: str) -> None:
    assert_refuted(lemmas.rights_agree(mutant_mmu(old, new)))


def test_spec_combine_that_ands_xd_is_refuted() -> None:
    """The lemma compares two sides: a wrong spec is caught as surely as a wrong impl."""

    def combine_and_xd(rights: Rights, writable: bool, user: bool, xd: bool) -> Rights:
        return Rights(rights.writable and writable, rights.user and user, rights.no_exec and xd)

    assert_refuted(lemmas.rights_agree(combine_fn=combine_and_xd))


def test_spec_combine_that_raises_is_refuted() -> None:
    """A spec step that raises is a failure, not a vacuous hypothesis."""

    def combine_strict(rights: Rights, writable: bool, user: bool, xd: bool) -> Rights:
        if not rights.writable and not writable:
            raise ValueError("already read-only")
        return Rights(rights.writable and writable, rights.user and user, rights.no_exec or xd)

    assert_refuted(lemmas.rights_agree(combine_fn=combine_strict))


def test_error_code_mutant_is_refuted() -> None:
    broken = mutant_mmu("(4 if user else 0)", "(4 if kind == WRITE else 0)")
    assert_refuted(lemmas.error_codes_agree(broken._code))


# -- verdicts -----------------------------------------------------------------------------------------------------


def test_solver_timeout_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the solver gives up (here: told it ran out of time), the verdict is unknown, not a pass."""
    monkeypatch.setattr(z3.Solver, "check", lambda self, *args: z3.unknown)
    monkeypatch.setattr(z3.Solver, "reason_unknown", lambda self: "timeout")
    x = z3.BitVec("x", 64)
    status, detail = lemmas.prove(x == x)
    assert Status.UNKNOWN == status
    assert "solver" in detail
    assert not Verdict("t", status).passed


def test_a_claim_with_too_many_paths_is_unknown() -> None:
    def many_paths() -> z3.BoolRef:
        x = unsigned("x", 16)
        return on_every_path(
            explore(lambda: [bool(x & (1 << i)) for i in range(16)], max_paths=100), lambda r: z3.BoolVal(True)
        )

    status, detail = lemmas.first_failure([("sixteen bits", many_paths)])
    assert Status.UNKNOWN == status
    assert "more than 100 paths" in detail


def test_prove_refutes_with_the_model() -> None:
    x = z3.BitVec("x", 8)
    assert (Status.REFUTED, "counterexample: x=0x0") == lemmas.prove(x != 0)


# -- the symbolic runner ------------------------------------------------------------------------------------------


def test_explore_visits_every_branch_once() -> None:
    x = unsigned("x", 8)

    def classify() -> int:
        if x < 10:
            return 0
        return 1 if x & 1 else 2

    paths = explore(classify)
    assert [0, 1, 2] == sorted(p.result for p in paths if p.result is not None)
    answer, _ = value(paths, term)
    solver = z3.Solver()
    solver.add(x.term == 13)
    assert z3.sat == solver.check()
    assert 1 == solver.model().eval(answer).as_long()


def test_overflow_is_an_obligation() -> None:
    """Python ints do not wrap; a sum leaving 128 bits fails its obligation."""
    x = unsigned("x", 127)
    paths = explore(lambda: x + x)
    assert Status.REFUTED == lemmas.prove(on_every_path(paths, lambda r: z3.BoolVal(True)))[0]


def test_a_path_that_raises_refutes_the_claim() -> None:
    x = unsigned("x", 8)

    def picky() -> int:
        if x == 7:
            raise ValueError("seven")
        return 0

    claim: Callable[[int], z3.BoolRef] = lambda r: z3.BoolVal(True)  # noqa: E731
    assert Status.REFUTED == lemmas.prove(on_every_path(explore(picky), claim))[0]


def test_python_semantics_of_negative_operands() -> None:
    """~, & and >> on negative values behave as Python's, checked on a few concrete values."""
    for concrete in (0, 1, 5, 0xFFFF_FFFF_FFFF_FFFF):
        x = unsigned("x")
        paths = explore(lambda x=x: ((~x) >> 3) & -16)
        answer, _ = value(paths, term)
        got = z3.simplify(z3.substitute(answer, (x.term, z3.BitVecVal(concrete, 128))))
        assert (((~concrete) >> 3) & -16) == got.as_signed_long()


def test_branching_outside_explore_is_an_error() -> None:
    with pytest.raises(SymbolicError):
        bool(flag("f"))


def test_truth_of_concrete_values() -> None:
    assert z3.is_true(z3.simplify(truth(True)))
    assert z3.is_false(z3.simplify(truth(0)))


# -- CrossHair contracts ------------------------------------------------------------------------------------------

BROKEN_COMBINE = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Rights:
    writable: bool = True
    user: bool = True
    no_exec: bool = False


def combine(rights: Rights, writable: bool, user: bool, xd: bool) -> Rights:
    """XD ANDed instead of ORed.

    post: __return__.no_exec or not rights.no_exec
    """
    return Rights(rights.writable and writable, rights.user and user, rights.no_exec and xd)
'''


def test_crosshair_confirms_the_permission_contracts() -> None:
    assert Status.CONFIRMED == contracts.crosshair_check(["spec.paging.permissions"])[0]


def test_crosshair_refutes_a_broken_contract(tmp_path: Path) -> None:
    module = tmp_path / "broken_rights.py"
    module.write_text(BROKEN_COMBINE)
    status, detail = contracts.crosshair_check([str(module)], per_condition_timeout=10)
    assert Status.REFUTED == status
    line = BROKEN_COMBINE.splitlines().index("    post: __return__.no_exec or not rights.no_exec") + 1
    assert f"broken_rights.py:{line}: error" in detail


def test_a_contract_without_a_verdict_is_unknown(tmp_path: Path) -> None:
    """A ``post:`` line CrossHair does not check (here in a class docstring) does not pass silently."""
    module = tmp_path / "unchecked.py"
    module.write_text('class Box:\n    """A box.\n\n    post: False\n    """\n')
    status, detail = contracts.crosshair_check([str(module)])
    assert Status.UNKNOWN == status
    assert "unchecked.py:4" in detail


def test_crosshair_missing_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contracts, "crosshair_available", lambda: False)
    status, detail = contracts.crosshair_check(["spec.paging.permissions"])
    assert Status.UNKNOWN == status
    assert "not installed" in detail


def test_crosshair_over_budget_is_unknown() -> None:
    status, detail = contracts.crosshair_check(["spec.paging.pte"], budget=0.5)
    assert Status.UNKNOWN == status
    assert "budget" in detail
