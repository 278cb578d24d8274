"""The refinement machine of the buddy allocator: the implementation's free lists against the spec's free set.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` with
``alloc_pages`` and ``free_pages`` operations on a small
memory whose size is not a power of two, so the tail forms smaller blocks
whose buddies lie past the end.  Allocated blocks go into a bundle; frees
draw from it without consuming, so a block may be freed twice, or after it
was merged and handed out again: whatever happens, the spec decides what the
answer must be (``{"ok": true}`` or EINVAL) and the lockstep runner checks the
implementation gives the same one.  Other rules free blocks with the wrong
order and arbitrary (pfn, order) pairs, most of them misaligned or outside
memory.

After every operation the lockstep runner has checked that both sides gave
the same result (for ``alloc_pages``: that the implementation's block is one
the spec allows, then continued the spec from it), refused bad input with the
same error class, and that the implementation's free lists and allocated
blocks, abstracted, equal the spec's state, with the same ``nr_free`` counts.
The machine's invariant then checks the spec state itself: aligned, disjoint,
fully coalesced, free plus allocated covering every frame once.  The
operations that led to a failure, after shrinking, are saved as
``counterexamples/buddy_machine.json`` for ``mmcheck replay``, and
:func:`properties.machinery.run_machine` minimises that file (:mod:`properties.minimise`).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from lang.hardware_ops import AllocPages, FreePages
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.recording import RecordingLockstep, save_counterexample
from spec.alloc import buddy as spec_buddy
from spec.alloc.buddy import Block

# Small memories, none a power of two: 22 = 8 + 8 + 4 + 2 frames with blocks of up to order 3.  The first is
# the one shrinking moves towards.
CONFIGS = (
    Config(frames=22, max_order=3),
    Config(frames=13, max_order=2),
    Config(frames=7, max_order=0),
)
TOP_ORDER = max(c.max_order for c in CONFIGS)
CHECK_NAME = "buddy: implementation refines the spec (alloc, free, merge, bad frees)"


class BuddyMachine(RuleBasedStateMachine):
    """Random allocations and frees, good and bad, run in lockstep on the spec and the implementation."""

    name = "buddy_machine"
    blocks: Bundle[Block] = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        self.recorder: RecordingLockstep | None = None

    @initialize(config=st.sampled_from(CONFIGS))
    def boot(self, config: Config) -> None:
        self.recorder = RecordingLockstep(self.name, config)

    def run(self, op: Op) -> Result:
        """Run ``op`` on both sides; raises at the first divergence (a crash of either side is one, saved too)."""
        assert self.recorder is not None
        return self.recorder.apply(op)

    @property
    def spec_state(self) -> spec_buddy.BuddyState:
        """The spec's allocator state (equal to the implementation's, abstracted, or a divergence was raised)."""
        assert self.recorder is not None
        return self.recorder.lockstep.spec.buddy

    @property
    def max_order(self) -> int:
        assert self.recorder is not None
        return self.recorder.config.max_order

    def order_for(self, drawn: int) -> int:
        """A drawn order for this memory: ``TOP_ORDER + 1`` stands for one above ``max_order``, others are capped."""
        return self.max_order + 1 if drawn > TOP_ORDER else min(drawn, self.max_order)

    @rule(target=blocks, drawn=st.integers(0, TOP_ORDER + 1))
    def alloc(self, drawn: int) -> MultipleResults[Block] | Block:
        order = self.order_for(drawn)
        result = self.run(AllocPages(order))
        if "pfn" in result:
            return Block(result["pfn"], order)
        return multiple()

    @rule(block=blocks)
    def free(self, block: Block) -> None:
        self.run(FreePages(block.pfn, block.order))

    @rule(block=blocks, delta=st.sampled_from((-1, 1)))
    def free_with_wrong_order(self, block: Block, delta: int) -> None:
        self.run(FreePages(block.pfn, max(0, block.order + delta)))

    @rule(pfn=st.integers(0, max(c.frames for c in CONFIGS) + 1), drawn=st.integers(0, TOP_ORDER + 1))
    def free_anything(self, pfn: int, drawn: int) -> None:
        self.run(FreePages(pfn, self.order_for(drawn)))

    @invariant()
    def spec_state_is_well_formed(self) -> None:
        if self.recorder is None:
            return
        problems = spec_buddy.violations(self.spec_state)
        if problems:
            recorder = self.recorder
            path = save_counterexample(self.name, recorder.config, recorder.ops, "; ".join(problems))
            raise AssertionError(f"the spec state breaks its invariants: {problems} (counterexample: {path})")


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The buddy allocator refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(BuddyMachine))
