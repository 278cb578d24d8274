"""Systems for the explorer: the spec and the implementation in lockstep, over a bounded vocabulary.

A state is a :class:`properties.drivers.Lockstep` (the spec state and the
implementation side by side); a step copies it and applies one op, so every
transition is checked exactly as ``mmcheck replay`` checks it.  A divergence
becomes a :class:`proofs.explore.Violation`; bad input that both sides reject
alike leaves the state as it was and adds no transition.

The fingerprint pairs the spec state with the implementation's concrete
choices that the spec does not fix (the order of each free list decides which
block the next allocation hands out), so two states are merged only when both
sides will behave the same from there on.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from lang.errors import MMCheckError
from lang.hardware_ops import AllocPages, BuddyInfo, FreePages
from lang.scenario import Config, Op, Scenario
from lang.verdict import Status, Verdict, check, timed
from proofs import smp_system
from proofs.explore import Stats, Violation, run_exploration
from proofs.smp_system import SmpBounds, SmpSystem, clone
from properties.drivers import DivergenceError, Lockstep

LAYERS = ("buddy", "smp")


@dataclass(frozen=True)
class BuddyBounds:
    """The bounded buddy vocabulary: orders up to ``max_alloc_order``, and a double free of each freed block."""

    frames: int = 16
    max_order: int = 3
    max_alloc_order: int = 2
    bad_frees: bool = True


class BuddySystem:
    """The buddy allocator, spec and implementation in lockstep."""

    def __init__(self, bounds: BuddyBounds) -> None:
        self.bounds = bounds
        self.config = Config(frames=bounds.frames, max_order=bounds.max_order)

    def initial(self) -> Lockstep:
        return Lockstep(self.config)

    def enabled(self, state: Lockstep) -> Iterable[Op]:
        for order in range(self.bounds.max_alloc_order + 1):
            yield AllocPages(order)
        for block in sorted(state.spec.buddy.allocated):
            yield FreePages(block.pfn, block.order)
            if self.bounds.bad_frees and block.order > 0:
                yield FreePages(block.pfn, block.order - 1)  # the wrong order: must be refused alike
        yield BuddyInfo()

    def step(self, state: Lockstep, op: Op) -> Lockstep:
        successor = clone(state)
        try:
            successor.apply(op)
        except DivergenceError as exc:
            raise Violation(exc.divergence.describe()) from exc
        except MMCheckError:
            return state
        return successor

    def fingerprint(self, state: Lockstep) -> Hashable:
        impl = state.impl.buddy
        lists = tuple(tuple(impl.free_list(order)) for order in range(self.bounds.max_order + 1))
        return state.spec.buddy, lists

    def scenario(self, ops: list[Op], about: str) -> Scenario:
        """The path to a violation as a replayable scenario."""
        return Scenario(self.config, tuple(ops), about=about)


# 10 frames make a tail that is not a power of two; max_order 2 below the memory size lets merges stop at the top.
VERIFY_BOUNDS = BuddyBounds(frames=10, max_order=2, max_alloc_order=1)
VERIFY_NAME = "explore: buddy, every reachable state of 10 frames (allocations of order 0-1, max_order 2), lockstep"


@check("explore", VERIFY_NAME)
def explore_buddy() -> Verdict:
    def run() -> tuple[Status, str]:
        result, saved = run_exploration(BuddySystem(VERIFY_BOUNDS), depth=40, max_states=None, name="buddy")
        if saved is not None:
            return Status.REFUTED, f"{result.reason}\nshortest counterexample ({len(result.path or [])} ops): {saved}"
        if not result.stats.exhausted:
            return Status.UNKNOWN, f"bound reached before exhausting: {result.stats.summary()}"
        return Status.CONFIRMED, result.stats.summary()

    return timed(VERIFY_NAME, run)


def smp_rate(seconds: float, bounds: SmpBounds | None = None) -> Stats:
    """The SMP explorer run for about ``seconds`` (default bounds: :data:`proofs.smp_system.RATE_BOUNDS`):
    its :class:`~proofs.explore.Stats`, whose ``rate`` is distinct states per second."""
    return smp_system.rate(seconds, bounds)


VERIFY_SMP_NAME = (
    f"explore: smp, every reachable state of {smp_system.VERIFY_BOUNDS.describe()} "
    f"(depth {smp_system.VERIFY_DEPTH}), lockstep and shootdown invariants"
)


@check("explore", VERIFY_SMP_NAME)
def explore_smp() -> Verdict:
    def run() -> tuple[Status, str]:
        system = SmpSystem(smp_system.VERIFY_BOUNDS)
        result, saved = run_exploration(
            system, depth=smp_system.VERIFY_DEPTH, max_states=None, name="smp", time_limit=smp_system.VERIFY_BUDGET
        )
        if saved is not None:
            return Status.REFUTED, f"{result.reason}\nshortest counterexample ({len(result.path or [])} ops): {saved}"
        if not result.stats.exhausted:
            return Status.UNKNOWN, f"not exhausted within {smp_system.VERIFY_BUDGET:.0f}s: {result.stats.summary()}"
        return Status.CONFIRMED, result.stats.summary()

    return timed(VERIFY_SMP_NAME, run)
