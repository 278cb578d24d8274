"""Z3 proofs of the buddy arithmetic, run on the code itself, for every pfn below 2**52 and every order up to 52.

The pfn functions of :mod:`spec.alloc.buddy` and :mod:`impl.alloc.buddy`
(``buddy_pfn``/``find_buddy_pfn``, ``combined_pfn``, ``upper_half_pfn``,
``is_aligned``) take no branches, so they can be called with symbolic
arguments: a :class:`Sym` stands for a Python ``int`` and its operators build
Z3 bit-vector terms instead of computing.  Each lemma calls the real
function and asks Z3 for an input that breaks the claim: none (``unsat``)
confirms it for all inputs, a model refutes it, a timeout is unknown.

Python's ints are unbounded; here they are 128-bit two's complement
vectors.  ``~ & | ^`` are exact at any width; ``+ - <<`` are exact unless the
result leaves 128 bits, so each records an obligation that it does not, and
every lemma proves its obligations along with its claim.  A function that
branches on a symbolic value raises :class:`BranchOnSymbol` rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import ModuleType

import z3

import impl.alloc.buddy
import spec.alloc.buddy
from lang.verdict import Status, Verdict, check, timed

BITS = 128
PFN_BITS = 52
MAX_ORDER = 52
TIMEOUT_MS = 30_000


class BranchOnSymbol(TypeError):
    """A function under proof used a symbolic value as a ``bool``: it is not branch-free."""


class Obligations:
    """The no-overflow conditions the operations of one symbolic run depend on."""

    def __init__(self) -> None:
        self.conditions: list[z3.BoolRef] = []


class Sym:
    """A symbolic Python ``int``, as a 128-bit two's complement term."""

    __slots__ = ("obligations", "term")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, term: z3.BitVecRef, obligations: Obligations) -> None:
        self.term = term
        self.obligations = obligations

    def __repr__(self) -> str:
        return f"Sym({self.term})"

    def __bool__(self) -> bool:
        raise BranchOnSymbol(f"branch on the symbolic value {self.term}: only branch-free code can be proved here")

    def _of(self, other: object) -> z3.BitVecRef:
        if isinstance(other, Sym):
            return other.term
        if isinstance(other, int) and not isinstance(other, bool):
            return z3.BitVecVal(other, BITS)
        raise TypeError(f"a symbolic int meets {other!r}: only ints are modelled")

    def _lift(self, other: object, op: Callable[[z3.BitVecRef, z3.BitVecRef], z3.BitVecRef], rev: bool) -> Sym:
        o = self._of(other)
        a, b = (o, self.term) if rev else (self.term, o)
        return Sym(op(a, b), self.obligations)

    def _add(self, a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
        self.obligations.conditions.append(z3.And(z3.BVAddNoOverflow(a, b, True), z3.BVAddNoUnderflow(a, b)))
        return a + b

    def _sub(self, a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
        self.obligations.conditions.append(z3.And(z3.BVSubNoOverflow(a, b), z3.BVSubNoUnderflow(a, b, True)))
        return a - b

    def _shl(self, a: z3.BitVecRef, n: z3.BitVecRef) -> z3.BitVecRef:
        self.obligations.conditions.append(z3.And(n >= 0, n < BITS, (a << n) >> n == a))
        return a << n

    def __and__(self, other: object) -> Sym:
        return self._lift(other, lambda a, b: a & b, False)

    def __rand__(self, other: object) -> Sym:
        return self._lift(other, lambda a, b: a & b, True)

    def __or__(self, other: object) -> Sym:
        return self._lift(other, lambda a, b: a | b, False)

    def __ror__(self, other: object) -> Sym:
        return self._lift(other, lambda a, b: a | b, True)

    def __xor__(self, other: object) -> Sym:
        return self._lift(other, lambda a, b: a ^ b, False)

    def __rxor__(self, other: object) -> Sym:
        return self._lift(other, lambda a, b: a ^ b, True)

    def __invert__(self) -> Sym:
        return Sym(~self.term, self.obligations)

    def __add__(self, other: object) -> Sym:
        return self._lift(other, self._add, False)

    def __radd__(self, other: object) -> Sym:
        return self._lift(other, self._add, True)

    def __sub__(self, other: object) -> Sym:
        return self._lift(other, self._sub, False)

    def __rsub__(self, other: object) -> Sym:
        return self._lift(other, self._sub, True)

    def __lshift__(self, other: object) -> Sym:
        return self._lift(other, self._shl, False)

    def __rlshift__(self, other: object) -> Sym:
        return self._lift(other, self._shl, True)

    def __eq__(self, other: object) -> z3.BoolRef:
        return self.term == self._of(other)

    def __ne__(self, other: object) -> z3.BoolRef:
        return self.term != self._of(other)


def term(x: object) -> z3.BitVecRef:
    """The bit-vector term of a :class:`Sym` or an ``int``."""
    if isinstance(x, Sym):
        return x.term
    assert isinstance(x, int)
    return z3.BitVecVal(x, BITS)


def truth(x: object) -> z3.BoolRef:
    """A Boolean result of a function under proof (a Z3 term, or a constant ``bool``)."""
    if isinstance(x, bool):
        return z3.BoolVal(x)
    assert isinstance(x, z3.BoolRef), f"expected a Boolean term, got {x!r}"
    return x


class Inputs:
    """A symbolic pfn below ``2**52`` and order ``0 .. 52``, sharing one list of obligations."""

    def __init__(self) -> None:
        self.obligations = Obligations()
        self.pfn = Sym(z3.ZeroExt(BITS - 64, z3.BitVec("pfn", 64)), self.obligations)
        self.order = Sym(z3.ZeroExt(BITS - 64, z3.BitVec("order", 64)), self.obligations)

    def domain(self, low_order: int = 0) -> z3.BoolRef:
        """``pfn < 2**52`` and ``low_order <= order <= 52``."""
        return z3.And(
            z3.ULT(self.pfn.term, 1 << PFN_BITS),
            z3.UGE(self.order.term, low_order),
            z3.ULE(self.order.term, MAX_ORDER),
        )

    def no_overflow(self) -> z3.BoolRef:
        """Every ``+ - <<`` the code did stayed exact."""
        return z3.And(*self.obligations.conditions)


def prove(claim: z3.BoolRef, timeout_ms: int = TIMEOUT_MS) -> tuple[Status, str]:
    """Confirmed when ``not claim`` is unsatisfiable; refuted with the model when it is not."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(z3.Not(claim))
    answer = solver.check()
    if answer == z3.unsat:
        return Status.CONFIRMED, ""
    if answer == z3.sat:
        model = solver.model()
        shown = ", ".join(f"{d.name()}={model[d].as_long():#x}" for d in sorted(model.decls(), key=str))
        return Status.REFUTED, f"counterexample: {shown}"
    return Status.UNKNOWN, f"solver: {solver.reason_unknown()}"


class Arithmetic:
    """The four pfn functions of one side, under the names the lemmas use."""

    def __init__(self, module: ModuleType, buddy: str) -> None:
        self.name = module.__name__
        self.module = module
        self.buddy_attr = buddy

    def buddy(self, pfn: object, order: object) -> object:
        fn: Callable[[object, object], object] = getattr(self.module, self.buddy_attr)
        return fn(pfn, order)

    def combined(self, pfn: object, order: object) -> object:
        fn: Callable[[object, object], object] = self.module.combined_pfn
        return fn(pfn, order)

    def upper_half(self, pfn: object, order: object) -> object:
        fn: Callable[[object, object], object] = self.module.upper_half_pfn
        return fn(pfn, order)

    def aligned(self, pfn: object, order: object) -> z3.BoolRef:
        fn: Callable[[object, object], object] = self.module.is_aligned
        return truth(fn(pfn, order))


# Looked up at proof time, so the proofs cover whatever the modules hold when they run.
SIDES = (Arithmetic(spec.alloc.buddy, "buddy_pfn"), Arithmetic(impl.alloc.buddy, "find_buddy_pfn"))


def size(order: Sym) -> z3.BitVecRef:
    """``2**order`` as a term (the lemmas' own arithmetic, not the code's)."""
    return z3.BitVecVal(1, BITS) << order.term


def within(outer: z3.BitVecRef, outer_order: Sym, inner: z3.BitVecRef, inner_order: Sym) -> z3.BoolRef:
    """The block ``(inner, inner_order)`` lies inside ``(outer, outer_order)``."""
    return z3.And(z3.ULE(outer, inner), z3.ULE(inner + size(inner_order), outer + size(outer_order)))


def buddy_involution(side: Arithmetic) -> z3.BoolRef:
    """The buddy of the buddy is the block itself, and the buddy is another block of the same alignment."""
    x = Inputs()
    buddy = side.buddy(x.pfn, x.order)
    back = side.buddy(buddy, x.order)
    claim = z3.And(
        term(back) == x.pfn.term,
        term(buddy) != x.pfn.term,
        z3.Implies(side.aligned(x.pfn, x.order), side.aligned(buddy, x.order)),
    )
    return z3.Implies(x.domain(), z3.And(x.no_overflow(), claim))


def merge_contains_both(side: Arithmetic) -> z3.BoolRef:
    """For an aligned block, ``combined_pfn`` is aligned to order+1, is ``pfn & buddy``, and contains both halves."""
    x = Inputs()
    buddy = side.buddy(x.pfn, x.order)
    merged = side.combined(x.pfn, x.order)
    parent_order = x.order + 1
    claim = z3.And(
        side.aligned(merged, parent_order),
        term(merged) == x.pfn.term & term(buddy),
        within(term(merged), parent_order, x.pfn.term, x.order),
        within(term(merged), parent_order, term(buddy), x.order),
        term(side.combined(buddy, x.order)) == term(merged),
    )
    return z3.Implies(z3.And(x.domain(), side.aligned(x.pfn, x.order)), z3.And(x.no_overflow(), claim))


def split_halves(side: Arithmetic) -> z3.BoolRef:
    """Splitting an aligned block of order >= 1 gives two aligned, disjoint halves that tile it and are buddies."""
    x = Inputs()
    half_order = x.order - 1
    upper = side.upper_half(x.pfn, x.order)
    half = size(half_order)
    claim = z3.And(
        side.aligned(x.pfn, half_order),
        side.aligned(upper, half_order),
        term(upper) == x.pfn.term + half,
        term(upper) + half == x.pfn.term + size(x.order),
        term(side.buddy(x.pfn, half_order)) == term(upper),
        term(side.combined(upper, half_order)) == x.pfn.term,
    )
    return z3.Implies(z3.And(x.domain(1), side.aligned(x.pfn, x.order)), z3.And(x.no_overflow(), claim))


def sides_agree() -> z3.BoolRef:
    """The implementation's four functions equal the spec's on every input in the domain."""
    x = Inputs()
    spec_side, impl_side = SIDES
    claim = z3.And(
        term(spec_side.buddy(x.pfn, x.order)) == term(impl_side.buddy(x.pfn, x.order)),
        term(spec_side.combined(x.pfn, x.order)) == term(impl_side.combined(x.pfn, x.order)),
        spec_side.aligned(x.pfn, x.order) == impl_side.aligned(x.pfn, x.order),
    )
    y = Inputs()
    halves = term(spec_side.upper_half(y.pfn, y.order)) == term(impl_side.upper_half(y.pfn, y.order))
    return z3.And(
        z3.Implies(x.domain(), z3.And(x.no_overflow(), claim)),
        z3.Implies(y.domain(1), z3.And(y.no_overflow(), halves)),
    )


LEMMAS: tuple[tuple[str, Callable[[Arithmetic], z3.BoolRef]], ...] = (
    ("the buddy of the buddy is the block itself", buddy_involution),
    ("the merged block is aligned to order+1 and contains both buddies", merge_contains_both),
    ("a split gives aligned, disjoint halves that tile the block", split_halves),
)


def lemma_name(side: Arithmetic, text: str) -> str:
    return f"buddy ({side.name}): {text}, all pfn < 2**52, order <= 52"


def lemma_check(name: str, claim: Callable[[], z3.BoolRef]) -> None:
    """Register ``claim`` (built when the check runs) as the ``z3`` check ``name``."""

    def run() -> Verdict:
        return timed(name, lambda: prove(claim()))

    check("z3", name)(run)


def register() -> None:
    """Register every lemma for both sides, and the agreement of the two sides, as ``z3`` checks."""
    for side in SIDES:
        for text, lemma in LEMMAS:
            lemma_check(lemma_name(side, text), partial(lemma, side))
    lemma_check(
        "buddy: impl.alloc.buddy's pfn arithmetic equals spec.alloc.buddy's, all pfn < 2**52, order <= 52", sides_agree
    )


register()


def verdicts() -> list[Verdict]:
    """Run every buddy lemma now (for tests and the command line)."""
    from lang.verdict import CHECKS

    return [c.run() for c in CHECKS if c.name.startswith("buddy") and c.group == "z3"]
