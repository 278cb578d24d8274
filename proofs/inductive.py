"""Inductive invariants proved with Z3: I(s) and T(s, s') imply I(s').

Where a protocol's state fits integers, booleans and arrays, its transition
relation is written here over Z3 terms and the key invariant is checked to
be inductive.  ``unsat`` of ``I(s) and T(s, s') and not I(s')`` confirms it;
a model is a counterexample to induction (reported as refuted, with the
state that breaks it); a timeout is unknown.

The transition functions take the protocol's decision rule as a parameter,
so the tests can hand in a broken rule and watch the proof fail; the default
is the spec's own function evaluated on Z3 terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import z3

from lang.verdict import Status, Verdict, check, timed
from proofs.lemmas import TIMEOUT_MS
from spec.smp.shootdown import Logic, flush_decision

PAGES = 3


@dataclass(frozen=True)
class GenState:
    """One CPU's view of one mm under Linux's TLB generation protocol.

    - ``mm_gen``: ``mm->context.tlb_gen``, bumped by every flush request;
    - ``local``: ``cpu_tlbstate.ctxs[asid].tlb_gen``, the generation this CPU has caught up to;
    - ``chg[p]``: the generation of the last change to page ``p``'s translation (0: never changed);
    - ``page_of``: which page the change of each generation touched (the flush request's range);
    - ``stale[p]``: the CPU may still hold a translation of ``p`` from before its last change.
    """

    mm_gen: z3.ArithRef
    local: z3.ArithRef
    chg: tuple[z3.ArithRef, ...]
    page_of: z3.ArrayRef
    stale: tuple[z3.BoolRef, ...]


def fresh(tag: str) -> GenState:
    """A state of fresh Z3 constants named with ``tag``."""
    return GenState(
        z3.Int(f"mm_gen{tag}"),
        z3.Int(f"local{tag}"),
        tuple(z3.Int(f"chg{p}{tag}") for p in range(PAGES)),
        z3.Array(f"page_of{tag}", z3.IntSort(), z3.IntSort()),
        tuple(z3.Bool(f"stale{p}{tag}") for p in range(PAGES)),
    )


def gen_invariant(s: GenState) -> z3.BoolRef:
    """A stale translation exists only for a change this CPU has not caught up to.

    With ``local <= mm_gen`` (the WARN_ON_ONCE in arch/x86/mm/tlb.c
    flush_tlb_func) and the bookkeeping facts that tie each page's last
    change to its generation.
    """
    facts = [0 <= s.local, s.local <= s.mm_gen]
    for p in range(PAGES):
        facts += [
            0 <= s.chg[p],
            s.chg[p] <= s.mm_gen,
            z3.Implies(s.chg[p] > 0, s.page_of[s.chg[p]] == p),
            z3.Implies(s.stale[p], s.chg[p] > s.local),
        ]
    return z3.And(*facts)


# decide(local, mm_gen, request_gen, full_request) -> (do_anything, partial_ok)
Decision = Callable[[z3.ArithRef, z3.ArithRef, z3.ArithRef, z3.BoolRef], tuple[z3.BoolRef, z3.BoolRef]]


Z3_LOGIC = Logic(z3.And, z3.Not)


def linux_decision(
    local: z3.ArithRef, mm_gen: z3.ArithRef, gen: z3.ArithRef, full: z3.BoolRef
) -> tuple[z3.BoolRef, z3.BoolRef]:
    """The spec's own rule, :func:`spec.smp.shootdown.flush_decision` (``flush_tlb_func``, arch/x86/mm/tlb.c),
    applied to Z3 terms: the function the kernel spec runs is the one proved inductive."""
    act, partial = flush_decision(local, mm_gen, gen, full, Z3_LOGIC)
    return act, partial


def gen_transition(s: GenState, t: GenState, decide: Decision) -> z3.BoolRef:
    """One step: a page's translation changes, or this CPU handles a flush request, or it caches."""
    change = z3.Or(
        *[
            z3.And(
                t.mm_gen == s.mm_gen + 1,
                t.local == s.local,
                t.chg[p] == t.mm_gen,
                t.page_of == z3.Store(s.page_of, t.mm_gen, p),
                *[t.chg[q] == s.chg[q] for q in range(PAGES) if q != p],
                # the CPU may hold the old translation of p; others keep their state
                *[t.stale[q] == s.stale[q] for q in range(PAGES) if q != p],
            )
            for p in range(PAGES)
        ]
    )
    gen, full = z3.Int("request_gen"), z3.Bool("request_full")
    act, partial = decide(s.local, s.mm_gen, gen, full)
    target = s.page_of[gen]
    handle = z3.And(
        1 <= gen,
        gen <= s.mm_gen,
        t.mm_gen == s.mm_gen,
        t.page_of == s.page_of,
        *[t.chg[p] == s.chg[p] for p in range(PAGES)],
        t.local == z3.If(act, s.mm_gen, s.local),
        *[
            t.stale[p] == z3.If(act, z3.If(partial, z3.And(s.stale[p], target != p), False), s.stale[p])
            for p in range(PAGES)
        ],
    )
    return z3.Or(change, handle)


def prove_inductive(decide: Decision = linux_decision, timeout_ms: int = TIMEOUT_MS) -> tuple[Status, str]:
    """Is :func:`gen_invariant` inductive under :func:`gen_transition` with this decision rule?"""
    s, t = fresh(""), fresh("'")
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(gen_invariant(s), gen_transition(s, t, decide), z3.Not(gen_invariant(t)))
    answer = solver.check()
    if answer == z3.unsat:
        return Status.CONFIRMED, ""
    if answer == z3.sat:
        return Status.REFUTED, f"counterexample to induction: {solver.model()}"
    return Status.UNKNOWN, f"solver: {solver.reason_unknown()}"


def initial_satisfies(decide: Decision = linux_decision) -> tuple[Status, str]:
    """The start state (nothing changed, nothing stale, generations 0) satisfies the invariant."""
    s = fresh("0")
    init = z3.And(s.mm_gen == 0, s.local == 0, *[c == 0 for c in s.chg], *[z3.Not(b) for b in s.stale])
    solver = z3.Solver()
    solver.add(init, z3.Not(gen_invariant(s)))
    return (Status.CONFIRMED, "") if solver.check() == z3.unsat else (Status.REFUTED, str(solver.model()))


NAME = "tlb_gen: stale translations only for changes not yet caught up (inductive, flush_tlb_func rule)"


@check("z3", NAME)
def tlb_gen_inductive() -> Verdict:
    def run() -> tuple[Status, str]:
        base = initial_satisfies()
        return base if base[0] is not Status.CONFIRMED else prove_inductive()

    return timed(NAME, run)


# --- Buddy coalescing -------------------------------------------------------------------------------------------
#
# A memory of FRAMES frames and orders 0..TOP.  free[o] and alloc[o] are bit
# vectors with bit i set when block (i << o, o) is a free block or an allocated
# block.  Z3 checks that allocation (any free block of order >= the request,
# split as mm/page_alloc.c expand() does, keeping the lowest part) and freeing
# (the __free_one_page merge loop) preserve: every frame in exactly one block,
# and no two free buddies of one order below TOP.

FRAMES = 8
TOP = 2
Vectors = tuple[z3.BitVecRef, ...]


def bit(vector: z3.BitVecRef, index: z3.BitVecRef | int) -> z3.BoolRef:
    return z3.Extract(0, 0, z3.LShR(vector, index)) == 1


def with_bit(vector: z3.BitVecRef, index: z3.BitVecRef | int, value: bool) -> z3.BitVecRef:
    mask = z3.BitVecVal(1, FRAMES) << index
    return vector | mask if value else vector & ~mask


def buddy_vectors(tag: str) -> tuple[Vectors, Vectors]:
    free = tuple(z3.BitVec(f"free{o}{tag}", FRAMES) for o in range(TOP + 1))
    alloc = tuple(z3.BitVec(f"alloc{o}{tag}", FRAMES) for o in range(TOP + 1))
    return free, alloc


def buddy_invariant(free: Vectors, alloc: Vectors) -> z3.BoolRef:
    """Each frame lies in exactly one block (free or allocated); no block index past the memory; fully coalesced."""
    facts = []
    for o in range(TOP + 1):
        beyond = FRAMES >> o
        facts += [z3.LShR(free[o], beyond) == 0, z3.LShR(alloc[o], beyond) == 0]
    for frame in range(FRAMES):
        covering = [z3.If(bit(v[o], frame >> o), 1, 0) for v in (free, alloc) for o in range(TOP + 1)]
        facts.append(z3.Sum(covering) == 1)
    for o in range(TOP):
        for j in range(0, FRAMES >> o, 2):
            facts.append(z3.Not(z3.And(bit(free[o], j), bit(free[o], j + 1))))
    return z3.And(*facts)


BuddyOf = Callable[[z3.BitVecRef], z3.BitVecRef]


def linux_buddy(index: z3.BitVecRef) -> z3.BitVecRef:
    """__find_buddy_pfn (mm/internal.h): flip the bit of the order, here bit 0 of the block index."""
    return index ^ 1


def free_step(
    free: Vectors, alloc: Vectors, order: int, index: z3.BitVecRef, buddy_of: BuddyOf, merge_top: int
) -> tuple[z3.BoolRef, Vectors, Vectors]:
    """Free allocated block ``(index, order)``: the __free_one_page merge loop (mm/page_alloc.c), unrolled."""
    pre = z3.And(z3.ULT(index, FRAMES >> order), bit(alloc[order], index))
    new_alloc = tuple(with_bit(v, index, False) if o == order else v for o, v in enumerate(alloc))
    cur = list(free)
    done: z3.BoolRef = z3.BoolVal(False)
    idx = index
    for k in range(order, merge_top):
        buddy = buddy_of(idx)
        merge = z3.And(z3.Not(done), z3.ULT(buddy, FRAMES >> k), bit(cur[k], buddy))
        stop = z3.And(z3.Not(done), z3.Not(merge))
        cur[k] = z3.If(merge, with_bit(cur[k], buddy, False), z3.If(stop, with_bit(cur[k], idx, True), cur[k]))
        done = z3.Or(done, stop)
        idx = z3.If(merge, z3.LShR(idx, 1), idx)
    cur[merge_top] = z3.If(done, cur[merge_top], with_bit(cur[merge_top], idx, True))
    return pre, tuple(cur), new_alloc


def alloc_step(
    free: Vectors, alloc: Vectors, order: int, source: int, index: z3.BitVecRef
) -> tuple[z3.BoolRef, Vectors, Vectors]:
    """Allocate from free block ``(index, source)``: expand() returns each upper half, keeps the lowest part."""
    pre = z3.And(z3.ULT(index, FRAMES >> source), bit(free[source], index))
    cur = [with_bit(v, index, False) if o == source else v for o, v in enumerate(free)]
    for level in range(source - 1, order - 1, -1):
        upper = (index << (source - level)) + 1
        cur[level] = with_bit(cur[level], upper, True)
    new_alloc = tuple(with_bit(v, index << (source - order), True) if o == order else v for o, v in enumerate(alloc))
    return pre, tuple(cur), new_alloc


def prove_buddy_inductive(
    buddy_of: BuddyOf = linux_buddy, merge_top: int = TOP, timeout_ms: int = TIMEOUT_MS
) -> tuple[Status, str]:
    """Is :func:`buddy_invariant` preserved by every alloc and free (for every order and block)?"""
    free, alloc = buddy_vectors("")
    index = z3.BitVec("block", FRAMES)
    steps = [free_step(free, alloc, o, index, buddy_of, merge_top) for o in range(TOP + 1)]
    steps += [alloc_step(free, alloc, o, k, index) for o in range(TOP + 1) for k in range(o, TOP + 1)]
    for number, (pre, new_free, new_alloc) in enumerate(steps):
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        solver.add(buddy_invariant(free, alloc), pre, z3.Not(buddy_invariant(new_free, new_alloc)))
        answer = solver.check()
        if answer == z3.sat:
            model = solver.model()
            shown = {str(d): model[d] for d in model.decls()}
            return Status.REFUTED, f"counterexample to induction (step {number}): {shown}"
        if answer != z3.unsat:
            return Status.UNKNOWN, f"solver: {solver.reason_unknown()} (step {number})"
    initial_free = tuple(z3.BitVecVal((1 << (FRAMES >> TOP)) - 1 if o == TOP else 0, FRAMES) for o in range(TOP + 1))
    empty = tuple(z3.BitVecVal(0, FRAMES) for _ in range(TOP + 1))
    solver = z3.Solver()
    solver.add(z3.Not(buddy_invariant(initial_free, empty)))
    if solver.check() != z3.unsat:
        return Status.REFUTED, "the initial state (all memory free in top-order blocks) breaks the invariant"
    return Status.CONFIRMED, ""


BUDDY_NAME = f"buddy: alloc and free keep blocks disjoint, covering and fully coalesced ({FRAMES} frames, inductive)"


@check("z3", BUDDY_NAME)
def buddy_coalescing_inductive() -> Verdict:
    return timed(BUDDY_NAME, prove_buddy_inductive)
