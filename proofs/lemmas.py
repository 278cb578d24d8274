"""Z3 proofs over all inputs of the bit-level rules.

Each lemma states a property over 64-bit vectors and asks Z3 for a
counterexample: ``unsat`` confirms it, ``sat`` refutes it with a model, and a
timeout is unknown.
"""

from __future__ import annotations

import z3

from proofs.verdict import Status, Verdict, check, timed

TIMEOUT_MS = 30_000


def prove(claim: z3.BoolRef, timeout_ms: int = TIMEOUT_MS) -> tuple[Status, str]:
    """Confirmed when ``not claim`` is unsatisfiable; refuted with the model when it is not."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(z3.Not(claim))
    answer = solver.check()
    if answer == z3.unsat:
        return Status.CONFIRMED, ""
    if answer == z3.sat:
        return Status.REFUTED, f"counterexample: {solver.model()}"
    return Status.UNKNOWN, f"solver: {solver.reason_unknown()}"


def canonical_z3(va: z3.BitVecRef, levels: int) -> z3.BoolRef:
    """The SDM's definition: bits 63 .. width-1 all equal (Vol. 3A 4.5)."""
    width = 12 + 9 * levels
    top = z3.Extract(63, width - 1, va)
    return z3.Or(top == 0, top == z3.BitVecVal(-1, 64 - width + 1))


def split_join_z3(va: z3.BitVecRef, levels: int) -> z3.BitVecRef:
    """Indices and offset of ``va`` put back together with sign extension, in Z3 terms."""
    width = 12 + 9 * levels
    low = z3.Extract(width - 1, 0, va)
    return z3.SignExt(64 - width, low)


@check("z3", "address: split then join is the identity on canonical addresses (4- and 5-level)")
def split_join_identity() -> Verdict:
    def run() -> tuple[Status, str]:
        va = z3.BitVec("va", 64)
        claims = [z3.Implies(canonical_z3(va, n), split_join_z3(va, n) == va) for n in (4, 5)]
        return prove(z3.And(*claims))

    return timed("address: split then join is the identity on canonical addresses (4- and 5-level)", run)
