"""The refinement machine of the slab allocator: SLUB's caches, slabs and freelists against the spec's value.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` with
every slab op on small memories: caches made (some merging into others,
some with a constructor), objects allocated from them and from kmalloc on
each CPU, freed the right way and the wrong ways, written and read, caches
shrunk and destroyed, and pages taken from the same buddy with
``alloc_pages`` so allocations run out of memory.  Objects go into a bundle
and frees draw from it without consuming, so an object is freed twice, or
after its slab was discarded and the memory reused: the spec decides what
the answer must be and the lockstep runner checks the implementation gives
the same one, chose what the spec allows, and holds the same state, its
freelists decoded from the free objects in memory.

The machine's invariant checks the spec state itself (:mod:`spec.slab.invariants`):
objects inside disjoint slabs, acyclic freelists through free objects of
their own slab, counts, every slab page an allocated buddy block and every
allocated block a slab or a block the machine took with ``alloc_pages``.
A failure is saved as ``counterexamples/slab_machine.json``.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, MultipleResults, RuleBasedStateMachine, initialize, invariant, multiple, rule

from lang.errors import SlabError
from lang.hardware_ops import AllocPages, FreePages
from lang.scenario import Config, Op, Result
from lang.slab_ops import (
    Kfree,
    Kmalloc,
    KmemCacheAlloc,
    KmemCacheCreate,
    KmemCacheDestroy,
    KmemCacheFree,
    KmemCacheShrink,
    KmemRead,
    KmemWrite,
    MemInfo,
    SlabInfo,
)
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.recording import RecordingLockstep, save_counterexample
from spec.alloc.buddy import Block
from spec.slab import cache as spec_slab
from spec.slab import invariants

# Small memories.  slub_min_objects=1 gives slabs of one to a few objects, so slabs fill, empty and are
# discarded within a few steps; the default (from the CPU count) gives the kernel's own geometry.  One config
# shuffles new freelists (CONFIG_SLAB_FREELIST_RANDOM): the spec allows any order and checks the one chosen.
CONFIGS = (
    Config(frames=40, cpus=2, max_order=3, slub_min_objects=1, slab_seed=1),
    Config(frames=64, cpus=1, max_order=4, slab_seed=0x5EED, slab_freelist_random=1),
    Config(frames=24, cpus=2, max_order=3, slub_min_objects=2),
)
NAMES = ("a", "b", "c")
ALLOC_NAMES = (*NAMES, "kmalloc-2k", "kmalloc-96", "nope")
SIZES = (24, 100, 104, 1500, 2048, 3000, 4096)
KMALLOC_SIZES = (1, 16, 65, 96, 97, 129, 192, 1024, 1025, 2048, 4096, 8192, 0, 8193)
CHECK_NAME = "slab: implementation refines the spec (caches, alloc, free, shrink, destroy, bad frees)"


class SlabMachine(RuleBasedStateMachine):
    """Random slab operations, good and bad, run in lockstep on the spec and the implementation."""

    name = "slab_machine"
    objects: Bundle[int] = Bundle("objects")
    pages: Bundle[Block] = Bundle("pages")

    def __init__(self) -> None:
        super().__init__()
        self.recorder: RecordingLockstep | None = None
        self.held: set[Block] = set()
        self.allocated: list[int] = []

    @initialize(
        config=st.sampled_from(CONFIGS),
        sizes=st.tuples(*(st.sampled_from(SIZES) for _ in NAMES)),
        ctors=st.tuples(*(st.booleans() for _ in NAMES)),
    )
    def boot(self, config: Config, sizes: tuple[int, ...], ctors: tuple[bool, ...]) -> None:
        """Every name starts as a cache (equal sizes merge: the later name becomes an alias)."""
        self.recorder = RecordingLockstep(self.name, config)
        for name, size, ctor in zip(NAMES, sizes, ctors, strict=True):
            self.run(KmemCacheCreate(name, size, 0, ctor))

    def run(self, op: Op) -> Result:
        assert self.recorder is not None
        return self.recorder.apply(op)

    @property
    def cpus(self) -> int:
        assert self.recorder is not None
        return self.recorder.config.cpus

    def cpu_for(self, drawn: int) -> int:
        """A CPU of this machine for a draw of 0..3; 3 stands for one that does not exist."""
        return self.cpus if drawn == 3 else drawn % self.cpus

    def owner(self, addr: int) -> str:
        """A name of the cache the object at ``addr`` belongs to now ("a" when it is in no slab)."""
        state = self.recorder.lockstep.spec.slab.state if self.recorder else None
        if state is None:
            return "a"
        try:
            real = spec_slab.slab_of(state, addr).cache
        except SlabError:
            return "a"
        return next((n for n, r in sorted(state.names.items()) if r == real), real)

    @rule(size=st.sampled_from(SIZES), align=st.sampled_from((0, 8, 64, 3)), ctor=st.booleans())
    def create(self, size: int, align: int, ctor: bool) -> None:
        """Create a cache under the first name not in use (the last name again, a duplicate, when all are)."""
        state = self.recorder.lockstep.spec.slab.state if self.recorder else None
        names = state.names if state is not None else {}
        name = next((n for n in NAMES if n not in names), NAMES[-1])
        self.run(KmemCacheCreate(name, size, align, ctor))

    def alloc_from(self, name: str, cpu: int) -> MultipleResults[int] | int:
        result = self.run(KmemCacheAlloc(name, self.cpu_for(cpu)))
        if "addr" not in result:
            return multiple()
        self.allocated.append(int(result["addr"], 16))
        return self.allocated[-1]

    # Bursts fill several slabs and then empty them, so the partial list grows to min_partial and past it.
    @rule(target=objects, count=st.sampled_from((3, 7)))
    def alloc_burst(self, count: int) -> MultipleResults[int]:
        got = [self.alloc_from(NAMES[0], 0) for _ in range(count)]
        return multiple(*(a for a in got if isinstance(a, int)))

    @rule(count=st.sampled_from((2, 8)), stride=st.sampled_from((1, 2)))
    def free_burst(self, count: int, stride: int) -> None:
        """Free up to ``count`` of the most recent allocations, every ``stride``-th one."""
        chosen = self.allocated[::-stride][:count]
        self.allocated = [a for a in self.allocated if a not in chosen]
        for addr in chosen:
            self.run(KmemCacheFree(self.owner(addr), addr))

    # Allocation has three rules, so it is drawn three times as often as any other op: slabs fill up.
    @rule(target=objects, cpu=st.integers(0, 3))
    def alloc(self, cpu: int) -> MultipleResults[int] | int:
        return self.alloc_from(NAMES[0], cpu)

    @rule(target=objects, name=st.sampled_from(NAMES), cpu=st.integers(0, 1))
    def alloc_named(self, name: str, cpu: int) -> MultipleResults[int] | int:
        return self.alloc_from(name, cpu)

    @rule(target=objects, name=st.sampled_from(ALLOC_NAMES), cpu=st.integers(0, 1))
    def alloc_any(self, name: str, cpu: int) -> MultipleResults[int] | int:
        return self.alloc_from(name, cpu)

    @rule(target=objects, size=st.sampled_from(KMALLOC_SIZES), cpu=st.integers(0, 1))
    def kmalloc(self, size: int, cpu: int) -> MultipleResults[int] | int:
        result = self.run(Kmalloc(size, self.cpu_for(cpu)))
        if "addr" not in result:
            return multiple()
        self.allocated.append(int(result["addr"], 16))
        return self.allocated[-1]

    @rule(addr=objects)
    def free(self, addr: int) -> None:
        self.run(KmemCacheFree(self.owner(addr), addr))

    @rule(addr=objects)
    def free_again(self, addr: int) -> None:
        self.run(KmemCacheFree(self.owner(addr), addr))

    @rule(addr=objects)
    def kfree(self, addr: int) -> None:
        self.run(Kfree(addr))

    @rule(addr=objects, name=st.sampled_from(ALLOC_NAMES))
    def free_into_any_cache(self, addr: int, name: str) -> None:
        self.run(KmemCacheFree(name, addr))

    @rule(addr=objects, delta=st.sampled_from((8, -8, 16, 4096, -(1 << 40))))
    def free_bad_address(self, addr: int, delta: int) -> None:
        self.run(Kfree(max(0, addr + delta)))

    @rule(addr=objects, value=st.sampled_from((0, 1, 0xDEAD)))
    def write(self, addr: int, value: int) -> None:
        self.run(KmemWrite(addr, value))

    @rule(addr=objects)
    def read(self, addr: int) -> None:
        self.run(KmemRead(addr))

    @rule(name=st.sampled_from(NAMES))
    def shrink(self, name: str) -> None:
        self.run(KmemCacheShrink(name))

    @rule(name=st.sampled_from((*NAMES, "kmalloc-2k")))
    def destroy(self, name: str) -> None:
        self.run(KmemCacheDestroy(name))

    @rule()
    def observe(self) -> None:
        self.run(SlabInfo())
        self.run(MemInfo())

    @rule(target=pages, order=st.integers(0, 3))
    def alloc_pages(self, order: int) -> MultipleResults[Block] | Block:
        result = self.run(AllocPages(order))
        if "pfn" not in result:
            return multiple()
        self.held.add(Block(result["pfn"], order))
        return Block(result["pfn"], order)

    @rule(block=pages)
    def free_pages(self, block: Block) -> None:
        if block not in self.held:
            return  # freed already: it may be a slab's block by now, and freeing that is not the slab's bug
        self.run(FreePages(block.pfn, block.order))
        self.held.discard(block)

    @invariant()
    def spec_state_is_well_formed(self) -> None:
        if self.recorder is None or self.recorder.lockstep.spec.slab.state is None:
            return
        spec = self.recorder.lockstep.spec
        assert spec.slab.state is not None
        problems = invariants.violations(spec.slab.state, spec.buddy, frozenset(self.held))
        if problems:
            recorder = self.recorder
            path = save_counterexample(self.name, recorder.config, recorder.ops, "; ".join(problems))
            raise AssertionError(f"the spec state breaks its invariants: {problems} (counterexample: {path})")


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The slab allocator refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(SlabMachine))
