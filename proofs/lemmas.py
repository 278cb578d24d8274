"""Z3 proofs over all inputs of the MMU's bit-level rules, about the code as written.

Each lemma runs the real functions of ``spec/`` and ``impl/`` on symbolic
values (:mod:`proofs.symbolic`: every branch on an unknown value explored,
Python's integer semantics exact), states a claim over the results, and asks
Z3 for a counterexample: ``unsat`` confirms the claim, ``sat`` refutes it with
a model, and a timeout is unknown, never a pass.  What the code branches on
by identity (the access kind and mode, the paging depth, the table level) is
enumerated concretely; everything else is symbolic.

Every lemma takes the code under test as a parameter defaulting to the real
one, so the tests can hand it a broken variant and watch it be refuted.

The impl side runs :meth:`impl.paging.mmu.Mmu.access` itself over a
:class:`ScriptedMemory` whose reads return chosen (symbolic) entries, top
level first: the canonical check, the reserved-bit masks, the rights folding
and the permission decision are proved where they live, inside the walk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import z3

from impl.paging.mmu import FETCH, READ, WRITE, Cpu, Mmu
from impl.paging.physmem import PhysMem
from lang.verdict import Status, Verdict, check, timed
from proofs.symbolic import Sym, SymbolicError, SymBool, explore, flag, on_every_path, term, truth, unsigned, value
from spec.paging.address import is_canonical, join, level_shift, page_offset, split
from spec.paging.permissions import Control, Kind, Mode, Rights, access_allowed, combine, error_code
from spec.paging.pte import PS, RW, US, XD, A, D, P, Pte, decode, encode, has_reserved_bits, leaf_frame_base

TIMEOUT_MS = 30_000

KINDS = ((Kind.READ, READ), (Kind.WRITE, WRITE), (Kind.FETCH, FETCH))
MODES = ((Mode.USER, True), (Mode.SUPERVISOR, False))
CONTROL_FLAGS = ("wp", "smep", "smap", "ac", "nxe")
# A canonical address for both depths whose indices differ at every level.
VA = 0x7F12_3456_789A
MEMORY_SIZE = 1 << 40
FAULT_TAG = 1 << 100


def prove(claim: z3.BoolRef, timeout_ms: int = TIMEOUT_MS) -> tuple[Status, str]:
    """Confirmed when ``not claim`` is unsatisfiable; refuted with the model when it is not."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(z3.Not(claim))
    answer = solver.check()
    if answer == z3.unsat:
        return Status.CONFIRMED, ""
    if answer == z3.sat:
        return Status.REFUTED, f"counterexample: {format_model(solver.model())}"
    return Status.UNKNOWN, f"solver: {solver.reason_unknown()}"


def format_model(model: z3.ModelRef) -> str:
    """The model's inputs as ``name=value`` pairs, integers in hex, sorted by name."""
    pairs = []
    for decl in sorted(model.decls(), key=lambda d: d.name()):
        val = model[decl]
        text = hex(val.as_long()) if z3.is_bv_value(val) else str(val)
        pairs.append(f"{decl.name()}={text}")
    return ", ".join(pairs)


def first_failure(claims: Sequence[tuple[str, Callable[[], z3.BoolRef]]]) -> tuple[Status, str]:
    """Prove each labelled claim in turn; the first one not confirmed decides, labelled.

    A claim the symbolic runner could not build (too many paths) is unknown.
    """
    for label, build in claims:
        try:
            claim = build()
        except SymbolicError as exc:
            return Status.UNKNOWN, f"{label}: {exc}"
        status, detail = prove(claim)
        if status is not Status.CONFIRMED:
            return status, f"{label}: {detail}"
    return Status.CONFIRMED, ""


def sdm_canonical(va: z3.BitVecRef, levels: int) -> z3.BoolRef:
    """The SDM's rule on a 64-bit value: bits 63 .. width-1 all equal (Vol. 3A 4.5)."""
    width = 12 + 9 * levels
    top = z3.Extract(63, width - 1, va)
    return z3.And(z3.Extract(127, 64, va) == 0, z3.Or(top == 0, top == z3.BitVecVal(-1, 64 - width + 1)))


class ScriptedMemory:
    """Stands in for :class:`impl.paging.physmem.PhysMem`: the k-th read returns ``words[k]``, 0 after the last.

    Writes (the walker's A/D updates) are dropped; the lemmas using it are
    about the walk's decisions, which depend only on the entries met.
    """

    __slots__ = ("_reads", "_words", "size")

    def __init__(self, words: Sequence[int | Sym]) -> None:
        self._words = words
        self._reads = 0
        self.size = MEMORY_SIZE

    def read_unchecked(self, pa: object) -> int | Sym:
        word = self._words[self._reads] if self._reads < len(self._words) else 0
        self._reads += 1
        return word

    def write_unchecked(self, pa: object, word: object) -> None:
        pass


def run_access(
    mmu_class: type[Mmu],
    words: Sequence[int | Sym],
    va: int | Sym,
    kind: int,
    user: bool,
    flags: dict[str, Any],
    la57: bool,
    maxphyaddr: int | Sym = 46,
) -> object:
    """``Mmu.access`` of one CPU over a :class:`ScriptedMemory`, control bits possibly symbolic."""
    mmu = mmu_class(cast(PhysMem, ScriptedMemory(words)), 1, maxphyaddr=cast(int, maxphyaddr))
    mmu.set_cpu(0, cr3=0, wp=False, smep=False, smap=False, ac=False, nxe=False, la57=la57)
    for name, bit in flags.items():
        setattr(mmu.cpus[0], name, bit)
    return mmu.access(0, cast(int, va), kind, user)


def spec_control(flags: dict[str, Any], la57: bool = False) -> Control:
    """A spec :class:`Control` with these (possibly symbolic) bits."""
    return Control(**{name: flags.get(name, False) for name in CONTROL_FLAGS}, la57=la57)


def outcome_term(outcome: object) -> z3.BitVecRef:
    """An impl outcome as one term: a fault's tagged vector and code, or a translation's physical address."""
    fields = cast(Any, outcome)
    if hasattr(fields, "vector"):
        return fault_term(fields.vector, fields.error_code)
    return term(fields.pa)


def fault_term(vector: int, code: int | Sym) -> z3.BitVecRef:
    """The :func:`outcome_term` of a fault."""
    return term(FAULT_TAG | (vector << 32)) | term(code)


# -- addresses ----------------------------------------------------------------------------------------------------


SPLIT_JOIN = "address: split and join are inverse on canonical addresses (4- and 5-level)"


@check("z3", SPLIT_JOIN)
def split_join_inverse(
    split_fn: Callable[[int, int], tuple[tuple[int, ...], int]] = split,
    join_fn: Callable[[tuple[int, ...], int, int], int] = join,
) -> Verdict:
    """spec.paging.address: ``join(*split(va))`` is ``va`` for every canonical ``va``, and
    ``split(join(indices, offset))`` gives back any 9-bit indices and 12-bit offset,
    as a canonical address.

    Technique: the spec functions run on a symbolic 64-bit ``va`` (and symbolic
    indices and offset); Z3 proves the claim on every path.
    """

    def rejoin(levels: int) -> z3.BoolRef:
        va = unsigned("va")
        paths = explore(lambda: join_fn(*split_fn(cast(int, va), levels), levels))
        return z3.Implies(sdm_canonical(va.term, levels), on_every_path(paths, lambda r: term(r) == va.term))

    def resplit(levels: int) -> z3.BoolRef:
        indices = tuple(unsigned(f"index_l{level}", 9) for level in range(levels, 0, -1))
        offset = unsigned("offset", 12)

        def run() -> tuple[tuple[tuple[int, ...], int], int]:
            va = join_fn(cast(tuple[int, ...], indices), cast(int, offset), levels)
            return split_fn(va, levels), va

        def claim(result: tuple[tuple[tuple[int, ...], int], int]) -> z3.BoolRef:
            (got, off), va = result
            if len(got) != levels:
                return z3.BoolVal(False)
            same = [term(g) == i.term for g, i in zip(got, indices, strict=True)]
            return z3.And(*same, term(off) == offset.term, sdm_canonical(term(va), levels))

        return on_every_path(explore(run), claim)

    def run() -> tuple[Status, str]:
        return first_failure(
            [(f"{n}-level rejoin", partial(rejoin, n)) for n in (4, 5)]
            + [(f"{n}-level resplit", partial(resplit, n)) for n in (4, 5)]
        )

    return timed(SPLIT_JOIN, run)


SPEC_CANONICAL = "address: the spec's is_canonical is the SDM rule (bits 63..width-1 equal)"


@check("z3", SPEC_CANONICAL)
def spec_canonical_is_sdm_rule(canonical_fn: Callable[[int, int], bool] = is_canonical) -> Verdict:
    """spec.paging.address.is_canonical agrees with the SDM's rule (Vol. 3A 4.5) on every 64-bit value.

    Technique: the spec function runs on a symbolic ``va``; the rule is
    written in Z3 directly with ``Extract`` on bits 63 .. width-1.
    """

    def claim(levels: int) -> z3.BoolRef:
        va = unsigned("va")
        answer, defined = value(explore(lambda: canonical_fn(cast(int, va), levels)), truth)
        return z3.And(defined, answer == sdm_canonical(va.term, levels))

    return timed(SPEC_CANONICAL, lambda: first_failure([(f"{n}-level", partial(claim, n)) for n in (4, 5)]))


IMPL_CANONICAL = "address: Mmu.access raises #GP exactly on non-canonical addresses"


@check("z3", IMPL_CANONICAL)
def impl_canonical_check(mmu_class: type[Mmu] = Mmu) -> Verdict:
    """impl.paging.mmu.Mmu.access gives #GP (vector 13) exactly when the SDM rule says ``va`` is not canonical;
    any other address reaches the (empty) top-level table and takes a not-present #PF with the spec's
    error code (SDM Vol. 3A 4.5, 4.7).

    Technique: ``Mmu.access`` itself runs on a symbolic 64-bit ``va`` over
    memory whose entries are all zero, 4- and 5-level.
    """

    def claim(la57: bool) -> z3.BoolRef:
        levels = 5 if la57 else 4
        va = unsigned("va")
        paths = explore(lambda: run_access(mmu_class, [], va, READ, False, {}, la57))
        not_present = error_code(Kind.READ, Mode.SUPERVISOR, Control(la57=la57), present=False, reserved=False)
        expected = z3.If(sdm_canonical(va.term, levels), fault_term(14, not_present), fault_term(13, 0))
        return on_every_path(paths, lambda r: outcome_term(r) == expected)

    return timed(IMPL_CANONICAL, lambda: first_failure([(f"la57={x}", partial(claim, x)) for x in (False, True)]))


# -- page-table entries -------------------------------------------------------------------------------------------


PTE_ROUND_TRIP = "pte: decode and encode are inverse (every word, every well-formed Pte)"
PTE_FLAGS = ("present", "writable", "user", "pwt", "pcd", "accessed", "dirty", "ps", "global_", "xd")


@check("z3", PTE_ROUND_TRIP)
def pte_round_trip(
    decode_fn: Callable[[int], Pte] = decode,
    encode_fn: Callable[[Pte], int] = encode,
) -> Verdict:
    """spec.paging.pte: ``encode(decode(w)) == w`` for every 64-bit word, and ``decode(encode(p)) == p`` for every
    :class:`Pte` whose ``addr`` and ``ignored`` lie in their masks (SDM Vol. 3A 4.5, tables 4-15..4-20).

    Technique: the spec functions run on a symbolic word (1,024 paths, one per
    combination of the ten flag bits) and on a Pte with symbolic fields.
    """
    from spec.paging.pte import ADDRESS_MASK_52, IGNORED_MASK

    def word_first() -> z3.BoolRef:
        word = unsigned("word")
        paths = explore(lambda: encode_fn(decode_fn(cast(int, word))))
        return on_every_path(paths, lambda r: term(r) == word.term)

    def fields_first() -> z3.BoolRef:
        flags = {name: flag(name) for name in PTE_FLAGS}
        addr, ignored = unsigned("addr"), unsigned("ignored")
        pte = Pte(**cast(dict[str, Any], flags), addr=cast(int, addr), ignored=cast(int, ignored))

        def claim(got: Pte) -> z3.BoolRef:
            same = [truth(getattr(got, name)) == f.term for name, f in flags.items()]
            return z3.And(*same, term(got.addr) == addr.term, term(got.ignored) == ignored.term)

        well_formed = z3.And(addr.term & ~ADDRESS_MASK_52 == 0, ignored.term & ~IGNORED_MASK == 0)
        return z3.Implies(well_formed, on_every_path(explore(lambda: decode_fn(encode_fn(pte))), claim))

    return timed(
        PTE_ROUND_TRIP, lambda: first_failure([("encode(decode(w))", word_first), ("decode(encode(p))", fields_first)])
    )


RESERVED = "pte: Mmu.access's reserved-bit check is spec reserved_mask (levels 1-5, MAXPHYADDR 36-52, NXE)"


@check("z3", RESERVED)
def reserved_bits_agree(mmu_class: type[Mmu] = Mmu) -> Verdict:
    """For every 64-bit entry met at every level, every MAXPHYADDR from 36 to 52 and both values of
    EFER.NXE, ``Mmu.access`` takes a reserved-bit #PF exactly when the entry is present and
    spec.paging.pte.has_reserved_bits says so, with the spec's error code (SDM Vol. 3A 4.5.4, 4.7).

    Technique: ``Mmu.access`` runs over memory whose upper levels hold valid
    concrete entries and whose entry at the level under test is a symbolic
    word, with MAXPHYADDR and NXE symbolic; the spec's has_reserved_bits runs
    on the same symbols.
    """

    def claim(la57: bool, level: int) -> z3.BoolRef:
        levels = 5 if la57 else 4
        entry = unsigned("entry")
        maxphyaddr = unsigned("maxphyaddr", 6)
        nxe = flag("nxe")
        words: list[int | Sym] = [P | A | (0x1000 * lv) for lv in range(levels, level, -1)] + [entry]
        paths = explore(lambda: run_access(mmu_class, words, VA, READ, False, {"nxe": nxe}, la57, maxphyaddr))
        spec = explore(lambda: has_reserved_bits(cast(int, entry), level, cast(int, maxphyaddr), cast(bool, nxe)))
        reserved, defined = value(spec, truth)
        code = error_code(Kind.READ, Mode.SUPERVISOR, spec_control({"nxe": nxe}), present=True, reserved=True)
        expected_fault = z3.And(truth(entry & P), reserved)

        def agrees(outcome: object) -> z3.BoolRef:
            got = outcome_term(outcome)
            is_rsvd = z3.And(z3.Extract(127, 32, got) == z3.Extract(127, 32, fault_term(14, 0)), got & 0b1000 != 0)
            return z3.And(is_rsvd == expected_fault, z3.Implies(is_rsvd, got == fault_term(14, code)))

        in_range = z3.And(maxphyaddr.term >= 36, maxphyaddr.term <= 52)
        return z3.Implies(in_range, z3.And(defined, on_every_path(paths, agrees)))

    cases = [(la57, level) for la57 in (False, True) for level in range(5 if la57 else 4, 0, -1)]
    return timed(
        RESERVED,
        lambda: first_failure([(f"la57={x} level {lv}", partial(claim, x, lv)) for x, lv in cases]),
    )


# -- access rights ------------------------------------------------------------------------------------------------


RIGHTS = "permissions: Mmu.access's rights folding and decision are spec combine + access_allowed"
# (paging depth, level of the leaf): 4 KiB, 2 MiB and 1 GiB pages, and a 5-level walk.
SHAPES = ((4, 1), (4, 2), (4, 3), (5, 1))
ALL_RIGHTS = tuple(Rights(w, u, x) for w, u, x in itertools.product((False, True), repeat=3))


def rights_term(rights: Rights) -> z3.BitVecRef:
    """A :class:`Rights` value (fields possibly symbolic) as a 3-bit vector."""
    bits = [
        z3.If(truth(f), z3.BitVecVal(1, 3), z3.BitVecVal(0, 3)) for f in (rights.writable, rights.user, rights.no_exec)
    ]
    return (bits[0] << 2) | (bits[1] << 1) | bits[2]


def leaf_base(leaf: int) -> int:
    """A present, accessed, dirty leaf at ``leaf`` mapping the frame at ``1 << level_shift(leaf)``."""
    return P | A | D | (PS if leaf > 1 else 0) | (1 << level_shift(leaf))


@check("z3", RIGHTS)
def rights_agree(
    mmu_class: type[Mmu] = Mmu,
    combine_fn: Callable[[Rights, bool, bool, bool], Rights] = combine,
    allowed_fn: Callable[[Rights, Kind, Mode, Control], bool] = access_allowed,
) -> Verdict:
    """For every combination of R/W, U/S and XD on every level of a walk, every access kind and mode,
    and every value of CR0.WP, CR4.SMEP, CR4.SMAP, RFLAGS.AC and EFER.NXE, ``Mmu.access`` allows the
    access exactly when the spec does, reaches the spec's physical address, and otherwise raises the
    spec's protection #PF error code (SDM Vol. 3A 4.6.1, 4.7).  Walks: 4 KiB, 2 MiB and 1 GiB leaves
    under 4-level paging, and a 4 KiB leaf under 5-level paging.

    The spec's side is the walk's fold of :func:`combine` over the path from ``Rights()``, then
    :func:`access_allowed`, then :func:`error_code`.  XD is only set when NXE=1 (with NXE=0 it is a
    reserved bit, which :func:`reserved_bits_agree` covers).

    Technique: ``Mmu.access`` runs over memory whose entries have symbolic R/W, U/S and XD bits and
    symbolic control bits.  The spec's fold is a chain of 3-bit state variables: each step is
    :func:`combine` run once per concrete prior state (8) on the entry's symbolic flags, so no path
    splits on the spec side; :func:`access_allowed` and :func:`error_code` run per final state.
    In a counterexample ``entry_lN`` holds the R/W, U/S and XD bits of the level-N entry (its
    other bits are those of a fixed valid entry) and ``spec_rights_lN`` the spec's rights after
    it, as W, U, XD bits.
    """

    def claim(levels: int, leaf: int, kind: Kind, ikind: int, mode: Mode, user: bool) -> z3.BoolRef:
        flags = {name: flag(name) for name in CONTROL_FLAGS}
        ctl = spec_control(flags, la57=levels == 5)
        chosen = {lv: unsigned(f"entry_l{lv}") for lv in range(levels, leaf - 1, -1)}
        words: list[int | Sym] = []
        for lv, bits in chosen.items():
            base = leaf_base(leaf) if lv == leaf else P | A | (0x1000 * lv)
            words.append(Sym(term(base) | (bits.term & (RW | US | XD))))
        no_xd_without_nxe = z3.Or(flags["nxe"].term, z3.And(*[b.term & XD == 0 for b in chosen.values()]))

        # The spec's fold, one state variable per level.
        steps, decided = [], []
        state = rights_term(Rights())
        for lv, word in zip(chosen, words, strict=True):
            after = z3.BitVec(f"spec_rights_l{lv}", 3)
            entry_flags = [cast(bool, SymBool(truth(word & bit))) for bit in (RW, US, XD)]
            for prior in ALL_RIGHTS:
                step, defined = value(explore(partial(combine_fn, prior, *entry_flags)), rights_term)
                steps.append(z3.Implies(state == rights_term(prior), after == step))
                decided.append(z3.Implies(state == rights_term(prior), defined))
            state = after

        pa = leaf_frame_base(leaf_base(leaf), leaf, 46) | page_offset(VA, leaf)

        def expected_for(rights: Rights) -> Sym | int:
            if allowed_fn(rights, kind, mode, ctl):
                return pa
            return FAULT_TAG | (14 << 32) | error_code(kind, mode, ctl, present=True, reserved=False)

        expected: z3.BitVecRef = term(0)
        for final in ALL_RIGHTS:
            outcome, defined = value(explore(partial(expected_for, final)), term)
            expected = z3.If(state == rights_term(final), outcome, expected)
            decided.append(defined)
        paths = explore(lambda: run_access(mmu_class, words, VA, ikind, user, flags, levels == 5))
        return z3.Implies(
            z3.And(no_xd_without_nxe, *steps),
            z3.And(*decided, on_every_path(paths, lambda r: outcome_term(r) == expected)),
        )

    cases = [
        (f"{levels}-level, leaf at level {leaf}, {kind.value}, {mode.value}", (levels, leaf, kind, ikind, mode, user))
        for levels, leaf in SHAPES
        for kind, ikind in KINDS
        for mode, user in MODES
    ]
    return timed(RIGHTS, lambda: first_failure([(label, partial(claim, *args)) for label, args in cases]))


ERROR_CODES = "permissions: Mmu._code is spec error_code (every kind, mode, NXE, SMEP, cause)"
# How Mmu.access names the cause of a #PF to _code: (present, reserved) -> base bits.
CAUSES = {(False, False): 0, (True, False): 0b0001, (True, True): 0b1001}


@check("z3", ERROR_CODES)
def error_codes_agree(code_fn: Callable[[Cpu, int, bool, int], int] = Mmu._code) -> Verdict:
    """``Mmu._code`` equals spec.paging.permissions.error_code on its whole domain (SDM Vol. 3A 4.7).

    Technique: exhaustive enumeration; the domain is finite (3 kinds x 2 modes x
    NXE x SMEP x 3 causes = 72 cases).  The walk lemmas above check that
    ``Mmu.access`` passes the right cause for each kind of fault.
    """

    def run() -> tuple[Status, str]:
        for (kind, ikind), (mode, user), nxe, smep, ((present, reserved), base) in itertools.product(
            KINDS, MODES, (False, True), (False, True), CAUSES.items()
        ):
            cpu = Cpu()
            cpu.nxe, cpu.smep = nxe, smep
            want = error_code(kind, mode, Control(nxe=nxe, smep=smep), present=present, reserved=reserved)
            got = code_fn(cpu, ikind, user, base)
            if got != want:
                case = f"kind={kind.value}, mode={mode.value}, nxe={nxe}, smep={smep}"
                cause = f"present={present}, reserved={reserved}"
                return Status.REFUTED, f"counterexample: {case}, {cause}: impl {got:#x}, spec {want:#x}"
        return Status.CONFIRMED, ""

    return timed(ERROR_CODES, run)
