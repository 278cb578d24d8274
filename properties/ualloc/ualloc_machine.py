"""The refinement machine of the user-space allocator: the ptmalloc model against the allocator's contract.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` through ``malloc``, ``calloc``,
``realloc`` and ``free`` of sizes from every part of glibc's malloc (tcache and fastbin sizes, small and
large bins, requests around ``M_MMAP_THRESHOLD`` and its dynamic raise), ``malloc_trim`` and ``mallopt``,
a large buffer freed and allocated again, a realloc growing into the free chunk after it, and what
programs get wrong: a double free right after a free (glibc 2.29's tcache key catches it) followed by two
allocations of that size, and the heap corruptions of three classic exploits, each one store
(``heap_write``) then the call that would use it: House of Force (the top chunk's size word set to -1,
then a large malloc: "malloc(): corrupted top size"), a chunk's own size word made unaligned before its
free ("free(): invalid size"), and a use-after-free store growing a chunk of the unsorted bin over its
live neighbour ("malloc(): mismatching next->prev_size (unsorted)").  After a corruption only ``mallopt``
runs; the contract then asks only that the allocator abort or keep its blocks apart.

After every operation the lockstep runner (:mod:`properties.ualloc.driver`) has checked the answer is
one the contract allows, the contract itself (aligned, disjoint, inside the heap or a mapping, contents
kept), that a freed mapping is gone, and the model's invariants (the heap walk, the bins, coalescing, no
leaked chunk).  A failure is saved as ``counterexamples/ualloc_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from lang.errors import MMCheckError
from lang.scenario import Config, Op, Result
from lang.ualloc_ops import Calloc, Free, HeapWrite, Malloc, MallocTrim, Mallopt, Realloc
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep

CONFIG = Config(frames=64)
CHECK_NAME = "ualloc: the ptmalloc model keeps the allocator's contract and glibc's placement rules"
SIZES = st.one_of(
    st.integers(0, 128),
    st.integers(129, 1100),
    st.sampled_from((1200, 2000, 5000, 20000, 70000)),
    st.sampled_from((126 * 1024, 130 * 1024, 200 * 1024, 300 * 1024)),
)
MALLOPTS = st.sampled_from(
    (
        ("M_MXFAST", 0),
        ("M_MXFAST", 160),
        ("M_MXFAST", 200),
        ("M_TRIM_THRESHOLD", 0),
        ("M_TOP_PAD", 0),
        ("M_MMAP_THRESHOLD", 4096),
        ("M_MMAP_THRESHOLD", 256 * 1024),
        ("M_MMAP_MAX", 0),
    )
)


class UallocMachine(RuleBasedStateMachine):
    """Allocations and frees of every size class, trims, mallopt, a double free and three heap exploits."""

    name = "ualloc_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.live: list[int] = []
        self.corrupted = False

    def run(self, op: Op) -> Result | None:
        """Run ``op`` on the model and the contract; refused input is None."""
        try:
            return self.recorder.apply(op)
        except DivergenceError:
            raise
        except MMCheckError:
            return None

    def allocate(self, op: Op) -> int | None:
        """Run an allocating op; the call index of the block it returned, kept live, or None."""
        call = len(self.recorder.ops)
        result = self.run(op)
        if result and result.get("ptr"):
            self.live.append(call)
            return call
        return None

    def heap_block(self) -> int | None:
        """A live block on the heap (not mmapped), the latest."""
        process = self.recorder.lockstep.ualloc.process
        for call in reversed(self.live):
            mem = process.returned[call]
            if mem and not process.heap.is_mmapped(mem - 16):
                return call
        return None

    @precondition(lambda self: not self.corrupted)
    @rule(size=SIZES)
    def malloc(self, size: int) -> None:
        self.allocate(Malloc(size))

    @precondition(lambda self: not self.corrupted)
    @rule(count=st.integers(0, 4), size=SIZES)
    def calloc(self, count: int, size: int) -> None:
        self.allocate(Calloc(count, size))

    @precondition(lambda self: not self.corrupted and bool(self.live))
    @rule(i=st.integers(0, 63))
    def free(self, i: int) -> None:
        self.run(Free(self.live.pop(i % len(self.live))))

    @precondition(lambda self: not self.corrupted and bool(self.live))
    @rule(i=st.integers(0, 63), size=st.one_of(st.just(0), SIZES))
    def realloc(self, i: int, size: int) -> None:
        self.allocate(Realloc(self.live.pop(i % len(self.live)), size))

    @precondition(lambda self: not self.corrupted)
    @rule(pad=st.sampled_from((0, 0, 4096, 128 * 1024)))
    def trim(self, pad: int) -> None:
        self.run(MallocTrim(pad))

    @rule(setting=MALLOPTS)
    def mallopt(self, setting: tuple[str, int]) -> None:
        self.run(Mallopt(*setting))

    @precondition(lambda self: not self.corrupted)
    @rule(size=st.integers(0, 1000))
    def double_free(self, size: int) -> None:
        """free twice in a row, then two mallocs of the size: one chunk handed out twice if the second free
        was taken."""
        call = self.allocate(Malloc(size))
        if call is None:
            return
        self.live.remove(call)
        self.run(Free(call))
        self.run(Free(call))
        self.allocate(Malloc(size))
        self.allocate(Malloc(size))

    @precondition(lambda self: not self.corrupted)
    @rule(size=st.sampled_from((140_000, 200_000, 1 << 20)))
    def buffer_again(self, size: int) -> None:
        """A large buffer allocated, freed and allocated again: the free raised the threshold past its chunk, so
        the second comes from the heap (or stays mapped above 32 MiB's DEFAULT_MMAP_THRESHOLD_MAX)."""
        first = self.allocate(Malloc(size))
        if first is None:
            return
        self.live.remove(first)
        self.run(Free(first))
        self.allocate(Malloc(size))

    @precondition(lambda self: not self.corrupted)
    @rule(size=st.sampled_from((0xF8, 0x3F8)), grow=st.sampled_from((0x100, 0x4F0)))
    def realloc_forward(self, size: int, grow: int) -> None:
        """realloc of a block whose next chunk is free in a bin (freed past the tcache): it grows in place."""
        block = self.allocate(Malloc(size))
        after = self.allocate(Malloc(0x500))
        self.allocate(Malloc(24))
        if block is None or after is None:
            return
        self.live.remove(after)
        self.run(Free(after))
        self.live.remove(block)
        self.allocate(Realloc(block, size + grow))

    @precondition(lambda self: not self.corrupted and self.heap_block() is not None)
    @rule(size=st.sampled_from((64 * 1024, 1 << 20)))
    def house_of_force(self, size: int) -> None:
        """The top chunk's size word set to -1 by an overflow from a heap block, then a large malloc."""
        call = self.heap_block()
        assert call is not None
        heap = self.recorder.lockstep.ualloc.process.heap
        offset = heap.top + 8 - heap_pointer(self, call)
        self.corrupted = True
        self.run(HeapWrite(call, offset, (1 << 64) - 1))
        self.allocate(Malloc(size))

    @precondition(lambda self: not self.corrupted)
    @rule(grow=st.sampled_from((0x18, 0x28)))
    def invalid_size_free(self, grow: int) -> None:
        """A chunk's own size word grown by an unaligned amount, the chunk freed, its grown size asked for."""
        first = self.allocate(Malloc(24))
        self.allocate(Malloc(24))
        if first is None:
            return
        self.corrupted = True
        self.run(HeapWrite(first, -8, (0x20 + grow) | 1))
        self.live.remove(first)
        self.run(Free(first))
        self.allocate(Malloc(0x20 + grow - 8))

    @precondition(lambda self: not self.corrupted)
    @rule(over=st.sampled_from((0x20, 0x40)))
    def unsorted_overlap(self, over: int) -> None:
        """A freed chunk of the unsorted bin grown by a store over its live neighbour, then its size asked."""
        victim = self.allocate(Malloc(0x500))
        self.allocate(Malloc(over - 8))
        if victim is None:
            return
        self.live.remove(victim)
        self.run(Free(victim))
        self.corrupted = True
        self.run(HeapWrite(victim, -8, (0x510 + over) | 1))
        self.allocate(Malloc(0x510 + over - 16))


def heap_pointer(machine: UallocMachine, call: int) -> int:
    """The pointer the model returned to ``call``."""
    return machine.recorder.lockstep.ualloc.process.returned[call]


machinery.run_as(UallocMachine, shrink_phase=False)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(UallocMachine))
