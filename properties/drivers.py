"""Run scenario operations on the spec, on the implementation, or on both in lockstep.

The two sides share nothing but the operation vocabulary.  Each runner turns
its side's outcome into the same JSON-ready result (``{"pa": "0x..."}``,
``{"fault": {"vector": 14, "error_code": 7}}``, ...), and the lockstep runner
compares results op by op, checks the abstraction of the implementation's
state against the spec's after every op, and checks the implementation's
free choices (the A/D bits a faulting walk may set) against what the spec
allows, then lets the spec continue from the implementation's choice.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from impl.alloc import buddy as impl_buddy
from impl.paging.mmu import FETCH, READ, WRITE, Fault, Mmu, Translated
from impl.paging.physmem import PhysMem
from lang.errors import BuddyError, DisallowedChoice, MMCheckError
from lang.hardware_ops import Access, AllocPages, BuddyInfo, FreePages, ReadPhys, SetCpu, WritePhys
from lang.kernel_ops import KernelOp
from lang.scenario import Config, Op, Result
from lang.slab_ops import KmemRead, SlabOp
from properties.abstraction import abstract_buddy, abstract_kernel, abstract_memory, abstract_mmu
from properties.frame_cache import FrameCache
from properties.mm.driver import ImplKernelSide, L0Side, SpecKernelSide, kernel_difference, tlb_difference
from properties.slab.abstraction import abstract_slab, count_violations, debug_differences, words_differences
from properties.slab.driver import ImplSlabSide, SpecSlabSide, adopt_slab_words
from properties.smp.abstraction import abstract_smp
from spec.alloc import buddy as spec_buddy
from spec.mm.kernel import NO_CHOICES, Choices, Kernel
from spec.paging import mmu as spec_mmu
from spec.paging.permissions import Control, Kind, Mode
from spec.paging.walk import (
    VECTOR_GP,
    VECTOR_MC,
    VECTOR_PF,
    GeneralProtection,
    MachineCheck,
    Outcome,
    PageFault,
    Translation,
    ad_update_allowed,
)
from spec.slab.cache import NO_CHOICE as NO_SLAB_CHOICE
from spec.slab.cache import AllocChoice, SlabState

IMPL_KINDS = {"read": READ, "write": WRITE, "fetch": FETCH}


def fault_result(vector: int, error_code: int | None = None) -> Result:
    """``{"fault": {"vector": V}}``, with the error code for a #PF."""
    fault: dict[str, int] = {"vector": vector}
    if error_code is not None:
        fault["error_code"] = error_code
    return {"fault": fault}


def spec_outcome_result(outcome: Outcome) -> Result:
    """The JSON result of a spec walk outcome."""
    if isinstance(outcome, Translation):
        return {"pa": hex(outcome.pa)}
    if isinstance(outcome, PageFault):
        return fault_result(VECTOR_PF, outcome.error_code)
    if isinstance(outcome, GeneralProtection):
        return fault_result(VECTOR_GP)
    assert isinstance(outcome, MachineCheck)
    return fault_result(VECTOR_MC)


def impl_outcome_result(outcome: Translated | Fault) -> Result:
    """The JSON result of an implementation access."""
    if isinstance(outcome, Translated):
        return {"pa": hex(outcome.pa)}
    return fault_result(outcome.vector, outcome.error_code if outcome.vector == VECTOR_PF else None)


def control_of(op: SetCpu) -> Control:
    """The spec's control state that a ``set_cpu`` op loads."""
    return Control(op.cr3, op.wp, op.smep, op.smap, op.ac, op.nxe, op.la57)


BuddyOp = AllocPages | FreePages | BuddyInfo
EINVAL: Result = {"error": "EINVAL"}
ENOMEM: Result = {"error": "ENOMEM"}


def parse_buddyinfo(line: str) -> list[int]:
    """The counts of a ``/proc/buddyinfo`` line (``Node 0, zone   Normal      1      0 ...``)."""
    return [int(field) for field in line.split()[4:]]


class SpecRunner:
    """Runs operations on the pure spec, keeping the current state."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = spec_mmu.initial(config.frames, config.cpus, config.maxphyaddr)
        self.last_outcome: Outcome | None = None
        self.buddy = spec_buddy.initial(config.frames, config.max_order)
        self.buddy_error: BuddyError | None = None
        self.kernel = SpecKernelSide(config)
        self.slab = SpecSlabSide(config)

    def apply_slab(self, op: SlabOp, choice: AllocChoice = NO_SLAB_CHOICE) -> Result:
        """Run a slab op on the physical layer's buddy (the kernel's, once booted), taking the implementation's
        ``choice``; a booted kernel then holds the slab frames (:mod:`properties.slab.driver`)."""
        self.buddy, result = self.slab.apply(op, self.buddy, choice)
        if self.kernel.kernel is not None:
            self.kernel.adopt_slab(self.buddy, self.slab.frames())
        return result

    def apply_kernel(self, op: KernelOp, choices: Choices = NO_CHOICES) -> Result:
        """Run a kernel-layer op on L1, taking the implementation's frame ``choices`` by role."""
        before_boot = self.slab.frames() if self.kernel.kernel is None else frozenset()
        self.buddy = self.kernel.boot_if_needed(self.buddy, choices, before_boot)
        self.buddy, result = self.kernel.apply(op, self.buddy, choices)
        return result

    def apply(self, op: Op) -> Result:
        """Run ``op``; bad input raises and leaves :attr:`state` as it was."""
        if isinstance(op, KernelOp):
            return self.apply_kernel(op)
        if isinstance(op, SlabOp):
            return self.apply_slab(op)
        if isinstance(op, WritePhys):
            self.state = spec_mmu.write_phys(self.state, op.pa, op.value)
            return {"ok": True}
        if isinstance(op, ReadPhys):
            return {"value": hex(spec_mmu.read_phys(self.state, op.pa))}
        if isinstance(op, SetCpu):
            self.state = spec_mmu.set_cpu(self.state, op.cpu, control_of(op))
            return {"ok": True}
        if isinstance(op, Access):
            self.state, outcome = spec_mmu.access(self.state, op.cpu, op.va, Kind(op.kind), Mode(op.mode))
            self.last_outcome = outcome
            return spec_outcome_result(outcome)
        if isinstance(op, BuddyOp):
            self.buddy_error = None
            try:
                return self.apply_buddy(op)
            except BuddyError as exc:
                self.buddy_error = exc
                return EINVAL
        raise MMCheckError(f"the spec runner has no rule for {op.name!r}")

    def apply_buddy(self, op: BuddyOp) -> Result:
        """Run a buddy allocator op; a refused one raises :class:`BuddyError` (the caller's EINVAL)."""
        if isinstance(op, AllocPages):
            self.buddy, outcome = spec_buddy.alloc(self.buddy, op.order)
            return ENOMEM if isinstance(outcome, spec_buddy.OutOfMemory) else {"pfn": outcome.pfn}
        if isinstance(op, FreePages):
            self.buddy = spec_buddy.free(self.buddy, op.pfn, op.order)
            return {"ok": True}
        return {"free": list(spec_buddy.free_counts(self.buddy))}


class ImplRunner:
    """Runs operations on the implementation."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mem = PhysMem(config.frames)
        self.mmu = Mmu(self.mem, config.cpus, config.maxphyaddr)
        self.buddy = impl_buddy.BuddyAllocator(config.frames, config.max_order)
        self.buddy_error: BuddyError | None = None
        self.kernel = ImplKernelSide(config)
        self.slab = ImplSlabSide(config)

    def apply(self, op: Op) -> Result:
        """Run ``op``; bad input raises and leaves the implementation as it was."""
        if isinstance(op, KernelOp):
            before_boot = self.slab.frames() if self.kernel.kernel is None else frozenset()
            return self.kernel.apply(op, self.mmu, self.buddy, before_boot)
        if isinstance(op, SlabOp):
            result = self.slab.apply(op, self.buddy, self.mem)
            if self.kernel.kernel is not None:
                self.kernel.adopt_slab(self.slab.frames())
            return result
        if isinstance(op, WritePhys):
            self.mem.write(op.pa, op.value)
            return {"ok": True}
        if isinstance(op, ReadPhys):
            return {"value": hex(self.mem.read(op.pa))}
        if isinstance(op, SetCpu):
            self.mmu.set_cpu(
                op.cpu, cr3=op.cr3, wp=op.wp, smep=op.smep, smap=op.smap, ac=op.ac, nxe=op.nxe, la57=op.la57
            )
            return {"ok": True}
        if isinstance(op, Access):
            outcome = self.mmu.access(op.cpu, op.va, IMPL_KINDS[op.kind], op.mode == "user")
            return impl_outcome_result(outcome)
        if isinstance(op, BuddyOp):
            self.buddy_error = None
            try:
                return self.apply_buddy(op)
            except BuddyError as exc:
                self.buddy_error = exc
                return EINVAL
        raise MMCheckError(f"the implementation runner has no rule for {op.name!r}")

    def apply_buddy(self, op: BuddyOp) -> Result:
        """Run a buddy allocator op; a refused one raises :class:`BuddyError` (the caller's EINVAL)."""
        if isinstance(op, AllocPages):
            pfn = self.buddy.alloc(op.order)
            return ENOMEM if pfn is None else {"pfn": pfn}
        if isinstance(op, FreePages):
            self.buddy.free(op.pfn, op.order)
            return {"ok": True}
        return {"free": parse_buddyinfo(self.buddy.buddyinfo())}


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place where the implementation did not refine the spec."""

    index: int
    op: Op
    reason: str
    spec: Any
    impl: Any

    def describe(self) -> str:
        """One paragraph for a person."""
        return f"op {self.index} ({self.op.name}): {self.reason}\n  spec: {self.spec}\n  impl: {self.impl}"


class DivergenceError(AssertionError):
    """Raised by :class:`Lockstep` when the two sides disagree."""

    def __init__(self, divergence: Divergence) -> None:
        self.divergence = divergence
        super().__init__(divergence.describe())


class Lockstep:
    """Spec and implementation side by side, checked after every operation."""

    def __init__(self, config: Config) -> None:
        self.spec = SpecRunner(config)
        self.impl = ImplRunner(config)
        self.l0 = L0Side(config)
        self.index = 0
        self.frames = FrameCache(self.impl.mem)

    def apply(self, op: Op) -> Result:
        """Run ``op`` on both sides; raise :class:`DivergenceError` at the first disagreement.

        Bad input must raise the same error class on both sides and change
        neither; the error is then re-raised to the caller.  Any other
        exception (a crash of either side) is a divergence too, naming the
        file and line where it was raised.
        """
        index = self.index
        try:
            return self.apply_checked(op)
        except (DivergenceError, MMCheckError):
            raise
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
            reason = f"crashed with {type(exc).__name__}: {exc}"
            raise DivergenceError(Divergence(index, op, reason, "no exception", where)) from exc

    def apply_checked(self, op: Op) -> Result:
        """The body of :meth:`apply`, before crashes are turned into divergences."""
        index = self.index
        self.index += 1
        if isinstance(op, KernelOp):
            return self.apply_kernel(index, op)
        if isinstance(op, SlabOp):
            return self.apply_slab(index, op)
        before = self.spec.state
        before_buddy = self.spec.buddy
        spec_error = impl_error = None
        spec_result = impl_result = None
        try:
            spec_result = self.spec.apply(op)
        except MMCheckError as exc:
            spec_error = exc
        try:
            impl_result = self.impl.apply(op)
        except MMCheckError as exc:
            impl_error = exc
        if spec_error or impl_error:
            if type(spec_error) is not type(impl_error):
                raise DivergenceError(Divergence(index, op, "bad input handled differently", spec_error, impl_error))
            self.check_abstraction(index, op, before)
            assert spec_error is not None
            raise spec_error
        if isinstance(op, BuddyOp):
            self.check_buddy_refusal(index, op)
        if isinstance(op, AllocPages):
            assert spec_result is not None and impl_result is not None
            spec_result = self.adopt_alloc_choice(index, op, before_buddy, spec_result, impl_result)
        if spec_result != impl_result:
            raise DivergenceError(Divergence(index, op, "results differ", spec_result, impl_result))
        if isinstance(op, Access):
            self.adopt_ad_choice(index, op, before)
        self.check_abstraction(index, op, self.spec.state)
        assert spec_result is not None
        return spec_result

    def adopt_ad_choice(self, index: int, op: Access, before: spec_mmu.MmuState) -> None:
        """Check the implementation's A/D writes are allowed, then continue from them."""
        outcome = self.spec.last_outcome
        assert outcome is not None
        impl_memory = abstract_memory(self.impl.mem)
        if not ad_update_allowed(before.memory, impl_memory, outcome, Kind(op.kind)):
            allowed = spec_mmu.access(before, op.cpu, op.va, Kind(op.kind), Mode(op.mode))[0]
            raise DivergenceError(
                Divergence(index, op, "A/D bits written are not allowed", allowed.memory, impl_memory)
            )
        self.spec.state = spec_mmu.MmuState(impl_memory, self.spec.state.cpus, self.spec.state.maxphyaddr)

    def apply_slab(self, index: int, op: SlabOp) -> Result:
        """A slab op: the implementation first, then the spec with its choices; see :mod:`properties.slab.driver`.

        Memory is checked frame by frame: every frame the op changed must be a slab page before or after it
        (those the spec's memory takes over), so the rest of memory, equal before, is equal after.
        """
        mem = self.impl.mem
        before = self.impl.slab.frames()
        snapshot = {pfn: mem.frame_snapshot(pfn) for pfn in mem.written_frames()}
        spec_error = impl_error = None
        spec_result = impl_result = None
        try:
            impl_result = self.impl.apply(op)
        except MMCheckError as exc:
            impl_error = exc
        choice = self.impl.slab.choice()
        try:
            spec_result = self.spec.apply_slab(op, choice)
        except DisallowedChoice as exc:
            raise DivergenceError(Divergence(index, op, "slab choice not allowed", str(exc), choice)) from exc
        except MMCheckError as exc:
            spec_error = exc
        if spec_error or impl_error:
            if type(spec_error) is not type(impl_error):
                raise DivergenceError(Divergence(index, op, "bad input handled differently", spec_error, impl_error))
            assert spec_error is not None
            raise spec_error
        assert spec_result is not None and impl_result is not None
        if isinstance(op, KmemRead) and spec_result.get("value", "") is None and "value" in impl_result:
            spec_result = impl_result  # a word the rules leave open: any value is allowed
        if spec_result != impl_result:
            raise DivergenceError(Divergence(index, op, "results differ", spec_result, impl_result))
        frames = before | self.impl.slab.frames()
        written = set(snapshot) | set(mem.written_frames())
        changed = frozenset(pfn for pfn in written if not mem.frame_matches(pfn, snapshot.get(pfn, b"")))
        outside = sorted(changed - frames)
        if outside:
            where = ", ".join(hex(pfn) for pfn in outside)
            raise DivergenceError(Divergence(index, op, "memory differs", "no frame but slab pages written", where))
        if changed:
            memory = adopt_slab_words(self.spec.state.memory, mem, changed)
            self.spec.state = spec_mmu.MmuState(memory, self.spec.state.cpus, self.spec.state.maxphyaddr)
        self.check_buddy_abstraction(index, op)
        self.check_slab(index, op)
        return spec_result

    def check_slab(self, index: int, op: Op) -> None:
        """The implementation's slab allocator, abstracted, equals the spec's; its counters agree with its
        lists; memory holds every first word the spec knows."""
        slub, expected = self.impl.slab.slub, self.spec.slab.state
        if slub is None or expected is None:
            if (slub is None) != (expected is None):
                raise DivergenceError(Divergence(index, op, "only one side has a slab allocator", expected, slub))
            return
        actual = abstract_slab(slub, expected)
        if actual != expected:
            raise DivergenceError(Divergence(index, op, "slab allocator differs", *slab_difference(expected, actual)))
        problems = (
            count_violations(slub, actual) + words_differences(slub, expected.words) + debug_differences(slub, expected)
        )
        if problems:
            raise DivergenceError(Divergence(index, op, "slab implementation inconsistent", "", "; ".join(problems)))

    def apply_kernel(self, index: int, op: KernelOp) -> Result:
        """See :func:`_kernel_lockstep`."""
        return _kernel_lockstep(self, index, op)

    def check_kernel(self, index: int, op: Op) -> None:
        """The implementation kernel, abstracted, equals the L1 state; so do the buddy allocators."""
        expected, impl = self.spec.kernel.kernel, self.impl.kernel.kernel
        if (expected is None) != (impl is None):
            raise DivergenceError(Divergence(index, op, "only one side booted the kernel", expected, impl))
        if expected is not None and impl is not None:
            smp = self.impl.kernel.smp
            assert smp is not None
            actual = abstract_smp(abstract_kernel(impl, self.frames), smp)
            difference = None if equal_but_tlbs(expected, actual) else kernel_difference(expected, actual)
            if difference:
                raise DivergenceError(Divergence(index, op, "kernel state differs", *difference))
            mapped, counted = impl.page_tables_scan()  # one walk for both self-checks
            rmap = impl.rmap_problem(mapped)
            if rmap:
                raise DivergenceError(
                    Divergence(index, op, "the reverse map disagrees with the page tables", "(page tables)", rmap)
                )
            counters = impl.mm_counters_problem(counted)
            if counters:
                raise DivergenceError(
                    Divergence(index, op, "the mm counters disagree with the page tables", "(page tables)", counters)
                )
            extra = tlb_difference(expected, actual)
            if extra:
                raise DivergenceError(
                    Divergence(index, op, "a TLB holds a translation the spec does not allow", *extra)
                )
            if impl.buddy is self.impl.buddy:  # the kernel's allocator, just abstracted with it
                self.check_buddy_abstraction(index, op, actual.buddy)
                return
        self.check_buddy_abstraction(index, op)

    def check_abstraction(self, index: int, op: Op, expected: spec_mmu.MmuState) -> None:
        """The abstraction of the implementation's state equals the spec's state."""
        if self.impl.kernel.kernel is not None:
            self.check_kernel(index, op)
            return
        actual = abstract_mmu(self.impl.mmu)
        if actual.memory != expected.memory:
            raise DivergenceError(Divergence(index, op, "memory differs", expected.memory, actual.memory))
        if actual.cpus != expected.cpus:
            raise DivergenceError(Divergence(index, op, "control registers differ", expected.cpus, actual.cpus))
        self.check_buddy_abstraction(index, op)
        self.check_slab(index, op)

    def check_buddy_refusal(self, index: int, op: BuddyOp) -> None:
        """Both sides refused a buddy op with the same error, or neither did."""
        spec_error, impl_error = self.spec.buddy_error, self.impl.buddy_error
        if type(spec_error) is not type(impl_error):
            raise DivergenceError(Divergence(index, op, "bad input handled differently", spec_error, impl_error))

    def adopt_alloc_choice(
        self, index: int, op: AllocPages, before: spec_buddy.BuddyState, spec_result: Result, impl_result: Result
    ) -> Result:
        """Check the block the implementation handed out is one the spec allows, then continue from it.

        Returns the spec's result for that choice; ENOMEM on one side only is
        left to the comparison of results.
        """
        if "pfn" not in spec_result or "pfn" not in impl_result:
            return spec_result
        pfn = impl_result["pfn"]
        allowed = spec_buddy.allowed_pfns(before, op.order)
        if pfn not in allowed:
            choices = ", ".join(hex(p) for p in sorted(allowed))
            raise DivergenceError(
                Divergence(index, op, "allocated block is not an allowed choice", f"one of {choices}", hex(pfn))
            )
        self.spec.buddy = spec_buddy.alloc_at(before, op.order, pfn)
        return {"pfn": pfn}

    def check_buddy_abstraction(self, index: int, op: Op, actual: spec_buddy.BuddyState | None = None) -> None:
        """The implementation's free lists and allocated blocks, abstracted (``actual``, when the caller has just
        abstracted them), equal the spec's; so do the counts."""
        expected = self.spec.buddy
        actual = abstract_buddy(self.impl.buddy) if actual is None else actual
        if actual != expected:
            raise DivergenceError(Divergence(index, op, "buddy allocator differs", *buddy_difference(expected, actual)))
        counts = tuple(self.impl.buddy.nr_free)
        if spec_buddy.counts_violations(expected, counts):
            expected_counts = list(spec_buddy.free_counts(expected))
            raise DivergenceError(Divergence(index, op, "nr_free counts differ", expected_counts, list(counts)))


# The fields of the L1 state compared for equality: all but the TLBs (see kernel_difference).
_COMPARED = tuple(f.name for f in fields(Kernel) if f.name != "tlbs")


def equal_but_tlbs(expected: Kernel, actual: Kernel) -> bool:
    """``expected`` equals ``actual`` in every field but the TLBs: what :func:`kernel_difference` finds no
    difference in, without building two copies of the states first."""
    return all(getattr(expected, name) == getattr(actual, name) for name in _COMPARED)


def buddy_difference(expected: spec_buddy.BuddyState, actual: spec_buddy.BuddyState) -> tuple[str, str]:
    """What only the spec has and what only the implementation has, for a divergence report."""

    def only(mine: spec_buddy.BuddyState, theirs: spec_buddy.BuddyState) -> str:
        free = sorted(mine.free - theirs.free)
        allocated = sorted(mine.allocated - theirs.allocated)
        return f"free {free}, allocated {allocated} (not on the other side)"

    return only(expected, actual), only(actual, expected)


def slab_difference(expected: SlabState, actual: SlabState) -> tuple[str, str]:
    """The parts of two slab states that differ: caches, names, then the slabs that are not the same."""
    if expected.caches != actual.caches:
        mine = [c for c in expected.caches if c not in actual.caches]
        theirs = [c for c in actual.caches if c not in expected.caches]
        return f"caches {mine}", f"caches {theirs}"
    if expected.names != actual.names:
        return f"names {dict(expected.names)}", f"names {dict(actual.names)}"
    for part in ("freeptrs", "orig_sizes"):
        mine, theirs = getattr(expected, part), getattr(actual, part)
        if mine != theirs:
            keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))[:4]
            return (
                f"{part} {[(hex(k), mine.get(k)) for k in keys]}",
                f"{part} {[(hex(k), theirs.get(k)) for k in keys]}",
            )
    mine_slabs = sorted(set(expected.slabs.values()) - set(actual.slabs.values()), key=lambda s: s.pfn)
    their_slabs = sorted(set(actual.slabs.values()) - set(expected.slabs.values()), key=lambda s: s.pfn)
    return f"slabs {mine_slabs}", f"slabs {their_slabs}"


def _kernel_lockstep(lockstep: Lockstep, index: int, op: KernelOp) -> Result:
    """A kernel-layer op on both sides: the implementation first, then L1 with its frame choices.

    Then: same results (or the same error class, nothing changed), the
    abstraction of the implementation equals the L1 state, and L1's outcome
    is one the programmer's view (L0) allows.
    """
    spec_error = impl_error = None
    spec_result = impl_result = None
    try:
        impl_result = lockstep.impl.apply(op)
    except MMCheckError as exc:
        impl_error = exc
    choices = lockstep.impl.kernel.choices()
    try:
        spec_result = lockstep.spec.apply_kernel(op, choices)
    except DisallowedChoice as exc:
        raise DivergenceError(Divergence(index, op, "frame choice not allowed", str(exc), choices)) from exc
    except MMCheckError as exc:
        spec_error = exc
    if spec_error or impl_error:
        if type(spec_error) is not type(impl_error):
            raise DivergenceError(Divergence(index, op, "bad input handled differently", spec_error, impl_error))
        lockstep.check_kernel(index, op)
        assert spec_error is not None
        raise spec_error
    if spec_result != impl_result:
        raise DivergenceError(Divergence(index, op, "results differ", spec_result, impl_result))
    lockstep.check_kernel(index, op)
    outcome = lockstep.spec.kernel.last
    assert outcome is not None and spec_result is not None
    problem = lockstep.l0.check(op, outcome)
    if problem:
        raise DivergenceError(Divergence(index, op, "L1 does not refine L0", problem, spec_result))
    return spec_result
