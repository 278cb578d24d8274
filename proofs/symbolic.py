"""Running the project's own Python functions on symbolic integers.

The lemmas of :mod:`proofs.lemmas` are about the code as written, not about a
transcription of it.  To get there, the real functions run with symbolic
arguments: a :class:`Sym` stands for a Python ``int`` and a :class:`SymBool`
for a ``bool``; their operators build Z3 terms instead of computing.

**Exact Python semantics.**  An ``int`` is modelled as a 128-bit two's
complement bit-vector.  Python's ``~ & | ^`` and ``>>`` act on negative ints
as on two's complement with endless sign extension, which a wide bit-vector
reproduces bit for bit, so those are exact.  ``+ - *`` and ``<<`` are exact
unless the result leaves 128 bits, so each of them records an *obligation*
(no signed overflow); a lemma proves the obligations along with its claim.
Comparisons are signed, as Python's are.

**Branches.**  When the code needs a plain ``bool`` from a symbolic value
(``if``, ``while``, ``and``, ``or``, ``not``, ``bool()``), the answer is not
known.  :func:`explore` runs the function once per sequence of answers,
depth first, as a symbolic executor such as CrossHair or KLEE does; each run
is a :class:`Path` with its condition, its result or the exception it raised,
and its obligations.  The path conditions are disjoint and cover every input.
A condition that Z3's simplifier reduces to a constant does not branch, so
code that tests known bits (a flag set in a constant) runs straight through.
Paths are not pruned by a solver: an infeasible path has an unsatisfiable
condition and makes a claim about it hold vacuously.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import z3

BITS = 128
_LOW = -(1 << (BITS - 1))
_HIGH = 1 << (BITS - 1)

T = TypeVar("T")


class SymbolicError(Exception):
    """The symbolic run cannot go on: too many paths, or a branch outside :func:`explore`."""


@dataclass(slots=True)
class _Run:
    """The decisions of one run: those forced by ``prefix``, then ``True`` for every new branch."""

    prefix: Sequence[bool]
    decisions: list[bool]
    conditions: list[z3.BoolRef]
    obligations: list[z3.BoolRef]


_ACTIVE: list[_Run] = []
MAX_DECISIONS = 256


def _current() -> _Run:
    if not _ACTIVE:
        raise SymbolicError("a symbolic value was branched on or overflow-checked outside explore()")
    return _ACTIVE[-1]


def decide(condition: z3.BoolRef) -> bool:
    """The Python ``bool`` of a symbolic condition on the current path (branching if undecided)."""
    simple = z3.simplify(condition)
    if z3.is_true(simple):
        return True
    if z3.is_false(simple):
        return False
    run = _current()
    k = len(run.decisions)
    if k >= MAX_DECISIONS:
        raise SymbolicError(f"more than {MAX_DECISIONS} branches on one path")
    choice = run.prefix[k] if k < len(run.prefix) else True
    run.decisions.append(choice)
    run.conditions.append(condition if choice else z3.Not(condition))
    return choice


def _oblige(condition: z3.BoolRef) -> None:
    if not z3.is_true(z3.simplify(condition)):
        _current().obligations.append(condition)


@dataclass(frozen=True, slots=True)
class Path(Generic[T]):
    """One run: the inputs on which it happens, what it returned or raised, what it must not overflow."""

    condition: z3.BoolRef
    result: T | None
    error: Exception | None
    obligations: z3.BoolRef


def explore(fn: Callable[[], T], max_paths: int = 4096) -> list[Path[T]]:
    """Every path of ``fn()`` over its symbolic inputs, depth first."""
    paths: list[Path[T]] = []
    prefix: list[bool] = []
    while True:
        run = _Run(prefix, [], [], [])
        _ACTIVE.append(run)
        result: T | None = None
        error: Exception | None = None
        try:
            result = fn()
        except SymbolicError:
            raise
        except Exception as exc:  # the path raised: a claim must show it cannot happen
            error = exc
        finally:
            _ACTIVE.pop()
        paths.append(Path(z3.And(*run.conditions), result, error, z3.And(*run.obligations)))
        if len(paths) > max_paths:
            raise SymbolicError(f"more than {max_paths} paths")
        flips = [i for i, d in enumerate(run.decisions) if d]
        if not flips:
            return paths
        prefix = [*run.decisions[: flips[-1]], False]


def on_every_path(paths: Sequence[Path[T]], claim: Callable[[T], z3.BoolRef]) -> z3.BoolRef:
    """On every path: no overflow, no exception, and ``claim`` holds of the result."""
    parts = []
    for path in paths:
        if path.error is not None:
            parts.append(z3.Not(path.condition))
        else:
            parts.append(z3.Implies(path.condition, z3.And(path.obligations, claim(cast(T, path.result)))))
    return z3.And(*parts)


def value(paths: Sequence[Path[T]], encode: Callable[[T], z3.ExprRef]) -> tuple[z3.ExprRef, z3.BoolRef]:
    """The result as one term (``If`` over the paths) and the condition that it is well defined.

    Well defined: the path taken did not raise and did not overflow.
    """
    defined = z3.And(*[z3.Implies(p.condition, p.obligations if p.error is None else z3.BoolVal(False)) for p in paths])
    normal = [p for p in paths if p.error is None]
    if not normal:
        raise SymbolicError(f"every path raised, e.g. {paths[0].error!r}")
    whole = encode(cast(T, normal[-1].result))
    for path in reversed(normal[:-1]):
        whole = z3.If(path.condition, encode(cast(T, path.result)), whole)
    return whole, defined


def term(x: object) -> z3.BitVecRef:
    """The bit-vector term of an ``int`` or :class:`Sym`."""
    if isinstance(x, Sym):
        return x.term
    if isinstance(x, int):
        if not _LOW <= x < _HIGH:
            raise SymbolicError(f"constant {x:#x} does not fit in {BITS} bits")
        return z3.BitVecVal(x, BITS)
    raise TypeError(f"not an int or Sym: {x!r}")


def truth(x: object) -> z3.BoolRef:
    """The Boolean term of a ``bool``, :class:`SymBool`, or the truth of an ``int``/:class:`Sym`."""
    if isinstance(x, SymBool):
        return x.term
    if isinstance(x, bool):
        return z3.BoolVal(x)
    return term(x) != 0


def unsigned(name: str, width: int = 64) -> Sym:
    """A fresh integer in ``0 .. 2**width - 1``."""
    return Sym(z3.ZeroExt(BITS - width, z3.BitVec(name, width)))


def flag(name: str) -> SymBool:
    """A fresh Boolean."""
    return SymBool(z3.Bool(name))


def _operand(x: object) -> z3.BitVecRef | None:
    if isinstance(x, Sym):
        return x.term
    if isinstance(x, int):
        return term(x)
    return None


class Sym:
    """A symbolic Python ``int`` (see the module docstring for the exactness argument)."""

    __slots__ = ("term",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, t: z3.BitVecRef) -> None:
        self.term = t

    def __repr__(self) -> str:
        return f"Sym({self.term})"

    def __bool__(self) -> bool:
        return decide(self.term != 0)

    def _binary(self, other: object, op: Callable[[z3.BitVecRef, z3.BitVecRef], z3.BitVecRef], rev: bool) -> Sym:
        o = _operand(other)
        if o is None:
            return cast(Sym, NotImplemented)
        a, b = (o, self.term) if rev else (self.term, o)
        return Sym(op(a, b))

    def __and__(self, other: object) -> Sym:
        return self._binary(other, lambda a, b: a & b, False)

    def __rand__(self, other: object) -> Sym:
        return self._binary(other, lambda a, b: a & b, True)

    def __or__(self, other: object) -> Sym:
        return self._binary(other, lambda a, b: a | b, False)

    def __ror__(self, other: object) -> Sym:
        return self._binary(other, lambda a, b: a | b, True)

    def __xor__(self, other: object) -> Sym:
        return self._binary(other, lambda a, b: a ^ b, False)

    def __rxor__(self, other: object) -> Sym:
        return self._binary(other, lambda a, b: a ^ b, True)

    def __invert__(self) -> Sym:
        return Sym(~self.term)

    def __neg__(self) -> Sym:
        _oblige(self.term != _LOW)
        return Sym(-self.term)

    def __add__(self, other: object) -> Sym:
        return self._binary(other, _add, False)

    def __radd__(self, other: object) -> Sym:
        return self._binary(other, _add, True)

    def __sub__(self, other: object) -> Sym:
        return self._binary(other, _sub, False)

    def __rsub__(self, other: object) -> Sym:
        return self._binary(other, _sub, True)

    def __mul__(self, other: object) -> Sym:
        return self._binary(other, _mul, False)

    def __rmul__(self, other: object) -> Sym:
        return self._binary(other, _mul, True)

    def __lshift__(self, other: object) -> Sym:
        return self._binary(other, _shl, False)

    def __rlshift__(self, other: object) -> Sym:
        return self._binary(other, _shl, True)

    def __rshift__(self, other: object) -> Sym:
        return self._binary(other, _shr, False)

    def __rrshift__(self, other: object) -> Sym:
        return self._binary(other, _shr, True)

    def _compare(self, other: object, op: Callable[[z3.BitVecRef, z3.BitVecRef], z3.BoolRef]) -> SymBool:
        o = _operand(other)
        if o is None:
            return cast(SymBool, NotImplemented)
        return SymBool(op(self.term, o))

    def __eq__(self, other: object) -> SymBool:  # type: ignore[override]
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other: object) -> SymBool:  # type: ignore[override]
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other: object) -> SymBool:
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other: object) -> SymBool:
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other: object) -> SymBool:
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other: object) -> SymBool:
        return self._compare(other, lambda a, b: a >= b)


def _add(a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
    _oblige(z3.And(z3.BVAddNoOverflow(a, b, True), z3.BVAddNoUnderflow(a, b)))
    return a + b


def _sub(a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
    _oblige(z3.And(z3.BVSubNoOverflow(a, b), z3.BVSubNoUnderflow(a, b, True)))
    return a - b


def _mul(a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
    _oblige(z3.And(z3.BVMulNoOverflow(a, b, True), z3.BVMulNoUnderflow(a, b)))
    return a * b


def _shl(a: z3.BitVecRef, n: z3.BitVecRef) -> z3.BitVecRef:
    # Python raises on a negative count; the bits shifted out must all be sign bits.
    _oblige(z3.And(n >= 0, n < BITS, (a << n) >> n == a))
    return a << n


def _shr(a: z3.BitVecRef, n: z3.BitVecRef) -> z3.BitVecRef:
    # Z3's >> is arithmetic, like Python's on ints of either sign.
    _oblige(n >= 0)
    return a >> n


class SymBool:
    """A symbolic Python ``bool``."""

    __slots__ = ("term",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, t: z3.BoolRef) -> None:
        self.term = t

    def __repr__(self) -> str:
        return f"SymBool({self.term})"

    def __bool__(self) -> bool:
        return decide(self.term)

    def __eq__(self, other: object) -> SymBool:  # type: ignore[override]
        if isinstance(other, (bool, SymBool)):
            return SymBool(self.term == truth(other))
        return NotImplemented

    def __ne__(self, other: object) -> SymBool:  # type: ignore[override]
        if isinstance(other, (bool, SymBool)):
            return SymBool(self.term != truth(other))
        return NotImplemented

    def __and__(self, other: object) -> SymBool:
        if isinstance(other, (bool, SymBool)):
            return SymBool(z3.And(self.term, truth(other)))
        return NotImplemented

    __rand__ = __and__

    def __or__(self, other: object) -> SymBool:
        if isinstance(other, (bool, SymBool)):
            return SymBool(z3.Or(self.term, truth(other)))
        return NotImplemented

    __ror__ = __or__
