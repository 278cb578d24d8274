"""Systems for the spec explorer (:mod:`proofs.spec_explore`): the buddy allocator's and the SMP kernel's L1 spec.

Each has the vocabulary of its lockstep counterpart (:class:`proofs.systems.BuddySystem`,
:class:`proofs.smp_system.SmpSystem`), the spec's step function, a canonical key
and the spec's invariants.  Ops the spec refuses (bad input: a free of the wrong
order) and ops that leave the spec state as it was (``buddyinfo``, ``tlb_evict``:
the spec's TLB is what a CPU *may* hold, which an eviction does not change) add no
transition; the lockstep replay of the reported paths still runs them where
they occur.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import replace

from lang.errors import MMCheckError
from lang.hardware_ops import AllocPages, FreePages
from lang.scenario import Config, Op, Result
from proofs import smp_system
from proofs.smp_system import SmpBounds, digest, kernel_key, kernel_pids, ranks
from proofs.systems import BuddyBounds
from properties.drivers import Lockstep
from properties.mm.driver import spec_step
from spec.alloc import buddy
from spec.alloc.buddy import BuddyState
from spec.mm.invariants import violations as kernel_violations
from spec.mm.kernel import NO_CHOICES, Kernel
from spec.smp import shootdown

# A buddy move: the op and, for an allocation, the block the spec picked (None for a free).
Pick = tuple[Op, int | None]


class SpecBuddySystem:
    """The buddy allocator's spec (:mod:`spec.alloc.buddy`): every allocation branches over every block the spec
    allows (:func:`~spec.alloc.buddy.allowed_pfns`), so the states are those of every conforming allocator."""

    def __init__(self, bounds: BuddyBounds) -> None:
        self.bounds = bounds
        self.config = Config(frames=bounds.frames, max_order=bounds.max_order)
        self.setup: tuple[Op, ...] = ()
        self.allocs = tuple(AllocPages(order) for order in range(bounds.max_alloc_order + 1))
        self.width = 2 * (bounds.max_order + 1)

    def initial(self) -> BuddyState:
        return buddy.initial(self.bounds.frames, self.bounds.max_order)

    def successors(self, state: BuddyState) -> Iterator[tuple[Pick, BuddyState]]:
        # Blocks in (pfn, order) order, sorted on tuples (Block's generated comparisons are slower).
        free = sorted((b.pfn, b.order) for b in state.free)
        for order, op in enumerate(self.allocs):
            for pfn, block_order in free:
                if block_order >= order:
                    yield (op, pfn), buddy.alloc_at(state, order, pfn)
        for pfn, order in sorted((b.pfn, b.order) for b in state.allocated):
            yield (FreePages(pfn, order), None), buddy.free(state, pfn, order)

    def lockstep_op(self, pick: Pick, renaming: dict[int, int]) -> Op:
        """The op to run in lockstep: a free names the block the implementation handed out for the spec's."""
        op, _ = pick
        if isinstance(op, FreePages):
            return FreePages(renaming.pop(op.pfn, op.pfn), op.order)
        return op

    def observe(self, pick: Pick, result: Result, renaming: dict[int, int]) -> None:
        """After an allocation in lockstep: remember which block the implementation chose for the spec's pick."""
        op, pfn = pick
        if isinstance(op, AllocPages) and pfn is not None and "pfn" in result:
            renaming[pfn] = int(result["pfn"])

    def key(self, state: BuddyState) -> Hashable:
        """One int: a bit per block, at ``2 * (pfn * (max_order + 1) + order)``, plus one when allocated (the blocks
        tile memory, so the bits name the state; an int compares in C, where two sets of blocks compare block by
        block)."""
        width = self.width
        return sum(1 << (b.pfn * width + 2 * b.order) for b in state.free) + sum(
            2 << (b.pfn * width + 2 * b.order) for b in state.allocated
        )

    def check(self, state: BuddyState) -> list[str]:
        """The spec's invariants: :func:`~spec.alloc.buddy.well_formed` first, the messages only when it fails."""
        return [] if buddy.well_formed(state) else buddy.violations(state)

    def start(self) -> Lockstep:
        return Lockstep(self.config)


class SpecSmpSystem:
    """The SMP kernel layer's L1 spec (:mod:`spec.mm.kernel`, :mod:`spec.smp.shootdown`) over :class:`SmpBounds`.

    The state is the spec's :class:`~spec.mm.kernel.Kernel`; a step is
    :func:`properties.mm.driver.spec_step` with no choices (the least frame, every access walks); the key is the
    digest of :func:`proofs.smp_system.kernel_key` (pids, flights, pins and TLB generations renamed as the
    lockstep explorer renames them, without the implementation's and L0's parts); the invariants are the
    kernel's of the state the gathers will leave and the shootdown invariants, as
    :meth:`proofs.smp_system.SmpSystem.check` checks them.
    """

    def __init__(self, bounds: SmpBounds) -> None:
        self.bounds = bounds
        self.config = bounds.config
        self.setup = bounds.setup
        self.windows = smp_system.windows(bounds)
        self.spec_bounds = replace(bounds, evict=False)

    def initial(self) -> Kernel:
        """The spec state after :attr:`SmpBounds.setup`, run in lockstep (checked) like the lockstep explorer's."""
        state = self.start()
        if state.spec.kernel.kernel is None:
            state.spec.kernel.boot_if_needed(state.spec.buddy, NO_CHOICES)
        k = state.spec.kernel.kernel
        assert k is not None
        return replace(k, events=()) if k.events else k

    def successors(self, state: Kernel) -> Iterator[tuple[Op, Kernel]]:
        for op in smp_system.vocabulary(self.spec_bounds, self.windows, state, _never):
            try:
                successor, _ = spec_step(state, op, NO_CHOICES)  # type: ignore[arg-type]
            except MMCheckError:
                continue
            if successor.events:
                successor = replace(successor, events=())
            yield op, successor

    def key(self, state: Kernel) -> Hashable:
        pid = ranks(kernel_pids(state))
        flight = ranks(state.flights)
        pin = ranks(state.pins)
        form = kernel_key(state, pid, flight, pin)
        return digest(form)

    def check(self, state: Kernel) -> list[str]:
        return kernel_violations(shootdown.settled(state)) + shootdown.violations(state)

    def start(self) -> Lockstep:
        """The lockstep run after :attr:`SmpBounds.setup`: where a replay of a path starts."""
        state = Lockstep(self.config)
        for op in self.bounds.setup:
            state.apply(op)
        return state

    def lockstep_op(self, op: Op, renaming: dict[int, int]) -> Op:
        """Ops name no frames: the same op runs in lockstep."""
        return op

    def observe(self, op: Op, result: Result, renaming: dict[int, int]) -> None:
        """Nothing to rename."""


def _never(cpu: int) -> bool:
    return False
