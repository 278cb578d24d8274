"""Slab ops on each side, and in lockstep.

Both sides run on the physical layer's buddy allocator (the one
``alloc_pages``/``free_pages`` use) and, for the implementation, its
simulated memory.  The slab state is made at the first slab op.  Refused
input becomes ``{"error": "EINVAL", "type": ERROR}``, so a scenario can
keep a double free as an op with its expected result.

In a scenario that boots the kernel the slab allocator runs on the kernel's
buddy, the same one: a slab's block is then a frame the kernel neither
maps nor frees, and the kernel's state holds every slab frame
(``Kernel.slab``, as ``account_slab`` in mm/slab.h counts them into
``NR_SLAB_UNRECLAIMABLE_B``) for /proc/meminfo's ``Slab`` and the no-leak
accounting.  Slab allocations here are ``GFP_NOWAIT``: a new slab that finds
no free block fails with ENOMEM and starts no reclaim (mm/page_alloc.c
``__alloc_pages_slowpath`` enters direct reclaim only with
``__GFP_DIRECT_RECLAIM``).

In lockstep the implementation runs first and reports its free choices (the
partial slab, the new slab's block and freelist); the spec checks them and
continues from them.  Then the slab state abstracted from the implementation
must equal the spec's, the implementation's counters must agree with its
lists, and every first word the spec knows must be in memory.  The words the
allocator writes into its own pages (free pointers, constructor marks) are
its business: the spec's memory takes them over for the frames that were
slab pages before or after the op, and must match the implementation's
everywhere else.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from impl.slab.slub import Slub
from lang import ops
from lang.errors import ConfigError, SlabError, UnknownCpu
from lang.scenario import Config, Result
from spec.alloc.buddy import BuddyState, OutOfMemory
from spec.paging.physmem import PhysMemory
from spec.slab import cache as spec_slab
from spec.slab import debug as spec_debug
from spec.slab.cache import NO_CHOICE, AllocChoice, SlabState

if TYPE_CHECKING:
    from impl.alloc.buddy import BuddyAllocator
    from impl.paging.physmem import PhysMem

REFUSED = (SlabError, UnknownCpu)
ENOMEM: Result = {"error": "ENOMEM"}
OK: Result = {"ok": True}


def refused(exc: Exception) -> Result:
    """The result of refused input: EINVAL, with the error's class."""
    return {"error": "EINVAL", "type": type(exc).__name__}


def addr_result(addr: int | OutOfMemory | None) -> Result:
    if addr is None or isinstance(addr, OutOfMemory):
        return ENOMEM
    return {"addr": hex(addr)}


class SpecSlabSide:
    """The spec's slab state, run on the spec runner's buddy."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state: SlabState | None = None

    def ensure(self) -> SlabState:
        if self.state is None:
            spec_slab.check_slab_config(self.config.max_order)
            self.state = spec_slab.initial(self.config.cpus, self.config.slub_min_objects)
        return self.state

    def apply(self, op: ops.SlabOp, buddy: BuddyState, choice: AllocChoice = NO_CHOICE) -> tuple[BuddyState, Result]:
        """Run ``op``; returns the new buddy state and the result."""
        state = self.ensure()
        try:
            state, buddy, result = self.step(state, buddy, op, choice)
        except REFUSED as exc:
            return buddy, refused(exc)
        self.state = state
        return buddy, result

    def frames(self) -> frozenset[int]:
        """The frames of every slab now."""
        return frozenset() if self.state is None else spec_slab.slab_frames(self.state)

    @staticmethod
    def step(
        state: SlabState, buddy: BuddyState, op: ops.SlabOp, choice: AllocChoice
    ) -> tuple[SlabState, BuddyState, Result]:
        if isinstance(op, ops.KmemCacheCreate):
            state, real = spec_slab.create(state, op.cache, op.size, op.align, op.ctor, frozenset(op.flags))
            return state, buddy, {"ok": True, "cache": real}
        if isinstance(op, ops.KmemCacheAlloc):
            state, buddy, addr = spec_slab.alloc(state, buddy, op.cache, op.cpu, choice)
            return state, buddy, addr_result(addr)
        if isinstance(op, ops.KmallocCache):
            state, buddy, addr = spec_slab.alloc(state, buddy, op.cache, op.cpu, choice, op.size)
            return state, buddy, addr_result(addr)
        if isinstance(op, ops.KmemFlip):
            return spec_debug.flip(state, op.addr, op.offset, op.mask), buddy, OK
        if isinstance(op, ops.ValidateSlabCache):
            state, buddy, errors = spec_debug.validate(state, buddy, op.cache)
            return state, buddy, {"errors": errors}
        if isinstance(op, ops.Kmalloc):
            state, buddy, addr = spec_slab.kmalloc(state, buddy, op.size, op.cpu, choice)
            return state, buddy, addr_result(addr)
        if isinstance(op, ops.KmemCacheFree | ops.Kfree):
            name = op.cache if isinstance(op, ops.KmemCacheFree) else None
            state, buddy = spec_slab.free(state, buddy, name, op.addr)
            return state, buddy, OK
        if isinstance(op, ops.KmemCacheShrink):
            state, buddy = spec_slab.shrink(state, buddy, op.cache)
            return state, buddy, OK
        if isinstance(op, ops.KmemCacheDestroy):
            state, buddy = spec_slab.destroy(state, buddy, op.cache)
            return state, buddy, OK
        if isinstance(op, ops.KmemWrite):
            return spec_slab.write_word(state, op.addr, op.value), buddy, OK
        if isinstance(op, ops.KmemRead):
            value = spec_slab.read_word(state, op.addr)
            return state, buddy, {"value": None if value is None else hex(value)}
        if isinstance(op, ops.SlabInfo):
            rows = [list(_row(r)) for r in spec_slab.slabinfo(state)]
            return state, buddy, {"slabinfo": rows}
        assert isinstance(op, ops.MemInfo)
        return state, buddy, {"meminfo": spec_slab.meminfo(state)}


def _row(info: spec_slab.SlabInfo) -> tuple[str | int, ...]:
    return (
        info.name,
        info.active_objs,
        info.num_objs,
        info.objsize,
        info.objperslab,
        info.pagesperslab,
        info.active_slabs,
        info.num_slabs,
    )


def parse_slabinfo(text: str) -> list[list[str | int]]:
    """The eight columns of each line of /proc/slabinfo (version 2.1)."""
    rows: list[list[str | int]] = []
    for line in text.splitlines()[2:]:
        fields = line.split()
        rows.append([fields[0], *map(int, fields[1:6]), int(fields[13]), int(fields[14])])
    return rows


def parse_meminfo(text: str) -> dict[str, int]:
    """``{"Slab": kB, ...}`` from /proc/meminfo lines."""
    return {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}


class ImplSlabSide:
    """The implementation's allocator, on the implementation runner's buddy and memory."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.slub: Slub | None = None

    def ensure(self, buddy: BuddyAllocator, mem: PhysMem) -> Slub:
        if self.slub is None:
            check_config(self.config)
            config = self.config
            self.slub = Slub(
                buddy, mem, config.cpus, config.slab_seed, config.slub_min_objects, bool(config.slab_freelist_random)
            )
        return self.slub

    def apply(self, op: ops.SlabOp, buddy: BuddyAllocator, mem: PhysMem) -> Result:
        slub = self.ensure(buddy, mem)
        slub.last_choice = (None, None, None)
        try:
            return self.step(slub, op)
        except REFUSED as exc:
            return refused(exc)

    @staticmethod
    def step(slub: Slub, op: ops.SlabOp) -> Result:
        if isinstance(op, ops.KmemCacheCreate):
            return {"ok": True, "cache": slub.create(op.cache, op.size, op.align, op.ctor, op.flags)}
        if isinstance(op, ops.KmemCacheAlloc):
            return addr_result(slub.alloc(op.cache, op.cpu))
        if isinstance(op, ops.KmallocCache):
            return addr_result(slub.alloc(op.cache, op.cpu, op.size))
        if isinstance(op, ops.KmemFlip):
            slub.flip(op.addr, op.offset, op.mask)
            return OK
        if isinstance(op, ops.ValidateSlabCache):
            return {"errors": slub.validate_slab_cache(op.cache)}
        if isinstance(op, ops.Kmalloc):
            return addr_result(slub.kmalloc(op.size, op.cpu))
        if isinstance(op, ops.KmemCacheFree | ops.Kfree):
            slub.free(op.cache if isinstance(op, ops.KmemCacheFree) else None, op.addr)
            return OK
        if isinstance(op, ops.KmemCacheShrink):
            slub.shrink(op.cache)
            return OK
        if isinstance(op, ops.KmemCacheDestroy):
            slub.destroy(op.cache)
            return OK
        if isinstance(op, ops.KmemWrite):
            slub.write_word(op.addr, op.value)
            return OK
        if isinstance(op, ops.KmemRead):
            return {"value": hex(slub.read_word(op.addr))}
        if isinstance(op, ops.SlabInfo):
            return {"slabinfo": parse_slabinfo(slub.slabinfo())}
        assert isinstance(op, ops.MemInfo)
        return {"meminfo": parse_meminfo(slub.meminfo())}

    def choice(self) -> AllocChoice:
        """What the last op chose, in the spec's terms."""
        if self.slub is None:
            return NO_CHOICE
        partial, pfn, freelist = self.slub.last_choice
        return AllocChoice(partial, pfn, freelist)

    def frames(self) -> frozenset[int]:
        """The frames of every slab now."""
        return frozenset(self.slub.page_slab) if self.slub is not None else frozenset()


def check_config(config: Config) -> None:
    """The implementation's own check that the buddy reaches ``slub_max_order``."""
    if config.max_order < 3:
        raise ConfigError(f"slab caches need max_order >= 3 (slub_max_order), got {config.max_order}")


def adopt_slab_words(memory: PhysMemory, mem: PhysMem, frames: frozenset[int]) -> PhysMemory:
    """``memory`` with the words of ``frames`` (the frames a slab op changed) taken from the implementation's
    memory ``mem``."""
    kept = dict(memory.words)
    for pfn in sorted(frames):
        base = pfn << 12
        for offset in range(0, 4096, 8):
            kept.pop(base + offset, None)
        kept.update((base + index * 8, v) for index, v in mem.frame_entries(pfn))
    return PhysMemory(memory.frames, MappingProxyType(kept))
