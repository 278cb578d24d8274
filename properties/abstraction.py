"""Abstraction functions: the spec state an implementation state stands for.

One function per implementation component.  The harness checks one
commuting square per operation: abstracting after the implementation's step
gives the state the spec's step reaches from the abstraction before it.
"""

from __future__ import annotations

from types import MappingProxyType

from impl.buddy import BuddyAllocator
from impl.mmu import Mmu
from impl.physmem import PhysMem
from spec.buddy import Block, BuddyState
from spec.mmu import MmuState
from spec.permissions import Control
from spec.physmem import PhysMemory


def abstract_memory(mem: PhysMem) -> PhysMemory:
    """The implementation's frames as the spec's map of non-zero words."""
    return PhysMemory(mem.frames, MappingProxyType(dict(mem.nonzero_words())))


def abstract_cpus(mmu: Mmu) -> tuple[Control, ...]:
    """Each implementation CPU's control registers as the spec's :class:`Control`."""
    return tuple(Control(c.cr3, c.wp, c.smep, c.smap, c.ac, c.nxe, c.la57) for c in mmu.cpus)


def abstract_mmu(mmu: Mmu) -> MmuState:
    """The whole hardware layer: memory, CPUs, MAXPHYADDR."""
    return MmuState(abstract_memory(mmu.mem), abstract_cpus(mmu), mmu.maxphyaddr)


def abstract_buddy(allocator: BuddyAllocator) -> BuddyState:
    """The allocator's free lists and allocated blocks as the spec's sets of blocks.

    Free blocks come from the free lists (what allocation actually uses), not
    from the per-frame flags; allocated ones from walking memory block by block.
    Costs one step per block, not per frame.
    """
    return BuddyState(
        allocator.frames,
        allocator.max_order,
        frozenset(Block(pfn, order) for pfn, order in allocator.free_blocks()),
        frozenset(Block(pfn, order) for pfn, order in allocator.allocated_blocks()),
    )
