"""Abstraction functions: the spec state an implementation state stands for.

One function per implementation component.  The harness checks one
commuting square per operation: abstracting after the implementation's step
gives the state the spec's step reaches from the abstraction before it.
"""

from __future__ import annotations

from types import MappingProxyType

from impl.mmu import Mmu
from impl.physmem import PhysMem
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
