"""The buddy allocator: spec and implementation on the kernel's own examples, bad input, and the view."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.alloc.buddy import BuddyAllocator
from lang.errors import (
    BlockOutOfRange,
    BuddyError,
    ConfigError,
    DoubleFree,
    InvalidArgument,
    MisalignedBlock,
    NotAllocated,
    OrderOutOfRange,
    WrongOrder,
)
from lang.hardware_ops import AllocPages, BuddyInfo, FreePages
from lang.scenario import Config, Scenario, load, parse_op
from lang.verdict import Status
from mmcheck.cli import main
from mmcheck.views.buddyview import buddy_view, buddyinfo_line
from properties.abstraction import abstract_buddy
from properties.alloc.buddy_machine import BuddyMachine
from properties.drivers import DivergenceError, Lockstep
from properties.machinery import run_machine
from properties.minimise import minimise
from spec.alloc import buddy
from spec.alloc.buddy import Block, BuddyState, OutOfMemory

SCENARIOS = Path(__file__).parent / "scenarios"


def test_expand_example_in_the_spec() -> None:
    """Splitting order-3 [0..7] for order 1 keeps [0,1]; [4..7] goes to order 2 and [2,3] to order 1."""
    assert (Block(0, 1), (Block(4, 2), Block(2, 1))) == buddy.split_off(Block(0, 3), 1)
    state, given = buddy.alloc(buddy.initial(8, 3), 1)
    assert Block(0, 1) == given
    assert BuddyState(8, 3, frozenset({Block(4, 2), Block(2, 1)}), frozenset({Block(0, 1)})) == state


def test_expand_example_in_the_implementation() -> None:
    """The implementation's lists after the same split: order 2 holds pfn 4, order 1 holds pfn 2."""
    allocator = BuddyAllocator(8, 3)
    assert 0 == allocator.alloc(1)
    assert ([], [2], [4], []) == tuple(allocator.free_list(o) for o in range(4))
    assert [0, 1, 1, 0] == allocator.nr_free


def test_freeing_merges_back_to_one_block() -> None:
    """Freeing both order-0 halves and the order-1 block reforms the order-3 block (spec and impl)."""
    state = buddy.initial(8, 3)
    allocator = BuddyAllocator(8, 3)
    for order in (1, 0, 0):
        state, _ = buddy.alloc(state, order)
        allocator.alloc(order)
    for pfn, order in ((3, 0), (0, 1), (2, 0)):
        state = buddy.free(state, pfn, order)
        allocator.free(pfn, order)
    assert buddy.initial(8, 3) == state == abstract_buddy(allocator)


def test_buddyinfo_has_the_kernel_format() -> None:
    """``Node 0, zone   Normal`` then one ``%6lu `` column per order, 11 with the default max_order."""
    allocator = BuddyAllocator(1027)
    expected = "Node 0, zone   Normal      1      1      0      0      0      0      0      0      0      0      1 \n"
    assert expected == allocator.buddyinfo()
    assert expected == buddyinfo_line(buddy.free_counts(buddy.initial(1027))) + "\n"


def test_memory_that_is_not_a_power_of_two() -> None:
    """13 frames tile as 8 + 4 + 1; the last frame's buddy lies past the end and never merges."""
    state = buddy.initial(13, 3)
    assert frozenset({Block(0, 3), Block(8, 2), Block(12, 0)}) == state.free
    assert state == abstract_buddy(BuddyAllocator(13, 3))
    state, given = buddy.alloc(state, 0)
    assert Block(12, 0) == given
    assert buddy.initial(13, 3) == buddy.free(state, 12, 0)


def test_every_frame_allocated_then_freed_returns_the_initial_state() -> None:
    """Allocating all 13 frames one by one, then freeing them in another order, leaves nothing behind."""
    allocator = BuddyAllocator(13, 2)
    pfns = [allocator.alloc(0) for _ in range(13)]
    assert None is allocator.alloc(0)
    assert list(range(13)) == sorted(p for p in pfns if p is not None)
    for pfn in (5, 12, 0, 7, 3, 1, 11, 2, 9, 4, 10, 6, 8):
        allocator.free(pfn, 0)
    assert buddy.initial(13, 2) == abstract_buddy(allocator)


def test_merging_stops_at_max_order() -> None:
    """Two free buddies of max_order stay two blocks: there is no larger order."""
    state = buddy.initial(16, 2)
    state, given = buddy.alloc(state, 2)
    assert 4 == len(buddy.free(state, given.pfn, 2).free)
    allocator = BuddyAllocator(16, 2)
    pfn = allocator.alloc(2)
    assert pfn is not None
    allocator.free(pfn, 2)
    assert [0, 0, 4] == allocator.nr_free


def test_out_of_memory_is_an_outcome_and_changes_nothing() -> None:
    """With no block of the order or above free, alloc gives ENOMEM (spec) or None (impl)."""
    state, _ = buddy.alloc(buddy.initial(4, 2), 1)
    assert (state, OutOfMemory(2)) == buddy.alloc(state, 2)
    assert frozenset() == buddy.allowed_pfns(state, 2)
    allocator = BuddyAllocator(4, 2)
    allocator.alloc(1)
    assert None is allocator.alloc(2)


def test_spec_allows_any_sufficient_free_block() -> None:
    """The allowed answers are the first frames of all free blocks of the order or above."""
    state = buddy.initial(22, 3)
    assert frozenset({0x0, 0x8, 0x10, 0x14}) == buddy.allowed_pfns(state, 1)
    assert frozenset({0x0, 0x8}) == buddy.allowed_pfns(state, 3)
    after = buddy.alloc_at(state, 1, 0x8)
    assert Block(0x8, 1) in after.allocated
    assert {Block(0xC, 2), Block(0xA, 1)} <= after.free
    with pytest.raises(InvalidArgument):
        buddy.alloc_at(state, 1, 0x4)


def allocated_state() -> tuple[BuddyState, BuddyAllocator]:
    """22 frames, max_order 3, with blocks (0x14, 0) and (0x10, 1) allocated on both sides."""
    state = buddy.alloc_at(buddy.alloc_at(buddy.initial(22, 3), 0, 0x14), 1, 0x10)
    allocator = BuddyAllocator(22, 3)
    assert 0x14 == allocator.alloc(0)
    assert 0x10 == allocator.alloc(1)
    assert state == abstract_buddy(allocator)
    return state, allocator


BAD_FREES = [
    pytest.param(0x15, 0, DoubleFree, id="double free of a frame that is free"),
    pytest.param(0x0, 3, DoubleFree, id="free of a block never allocated"),
    pytest.param(0x10, 0, WrongOrder, id="wrong order (smaller)"),
    pytest.param(0x10, 2, WrongOrder, id="wrong order (larger)"),
    pytest.param(0x11, 0, NotAllocated, id="inside an allocated block"),
    pytest.param(0x11, 1, MisalignedBlock, id="misaligned"),
    pytest.param(0x16, 0, BlockOutOfRange, id="past the end of memory"),
    pytest.param(0x14, 2, BlockOutOfRange, id="block reaching past the end"),
    pytest.param(-1, 0, BlockOutOfRange, id="negative pfn"),
    pytest.param(0x0, 4, OrderOutOfRange, id="order above max_order"),
    pytest.param(0x0, -1, OrderOutOfRange, id="negative order"),
]


@pytest.mark.parametrize(("pfn", "order", "error"), BAD_FREES)
def test_bad_free_is_refused_with_its_own_error_and_changes_nothing(
    pfn: int, order: int, error: type[BuddyError]
) -> None:
    """Spec and implementation raise the same typed error and leave their state as it was."""
    state, allocator = allocated_state()
    counts = list(allocator.nr_free)
    with pytest.raises(error):
        buddy.free(state, pfn, order)
    with pytest.raises(error):
        allocator.free(pfn, order)
    assert state == abstract_buddy(allocator)
    assert counts == allocator.nr_free


def test_errors_say_what_is_allowed() -> None:
    """Messages name the problem and what to do instead."""
    state, _ = allocated_state()
    with pytest.raises(WrongOrder, match="allocated with order 1: free it with that order"):
        buddy.free(state, 0x10, 0)
    with pytest.raises(OrderOutOfRange, match=r"allowed 0\.\.3"):
        buddy.alloc(state, 4)


def test_bad_configuration_is_refused() -> None:
    """No memory, or a max_order out of range, is a configuration error on both sides."""
    for make in (lambda: buddy.initial(0), lambda: BuddyAllocator(0), lambda: BuddyAllocator(8, 53)):
        with pytest.raises(ConfigError):
            make()


def test_each_invariant_finds_its_violation() -> None:
    """Every named invariant reports a state built to break it, and passes a good one."""
    good = buddy.initial(8, 2)
    assert [] == buddy.violations(good)
    misaligned = BuddyState(8, 2, frozenset({Block(0, 2), Block(5, 1), Block(4, 0), Block(7, 0)}))
    assert buddy.aligned_violations(misaligned)
    overlapping = BuddyState(8, 2, frozenset({Block(0, 2), Block(2, 1), Block(4, 2)}))
    assert buddy.disjoint_violations(overlapping)
    uncoalesced = BuddyState(8, 2, frozenset({Block(0, 1), Block(2, 1), Block(4, 2)}))
    assert ["Block(pfn=0x0, order=1) and its buddy Block(pfn=0x2, order=1) are both free"] == (
        buddy.coalesced_violations(uncoalesced)
    )
    leaky = BuddyState(8, 2, frozenset({Block(0, 2)}))
    assert buddy.conservation_violations(leaky)
    assert buddy.counts_violations(good, (0, 0, 1))
    assert [] == buddy.counts_violations(good, (0, 0, 2))


blocks = st.builds(Block, st.integers(-2, 17), st.integers(0, 4))


@given(
    st.integers(1, 16),
    st.integers(0, 3),
    st.frozensets(blocks, max_size=8),
    st.frozensets(blocks, max_size=8),
)
@settings(max_examples=2000, deadline=None)
def test_well_formed_is_exactly_no_violations(
    frames: int, max_order: int, free: frozenset[Block], allocated: frozenset[Block]
) -> None:
    """The explorer's one-pass check agrees with the named invariants on arbitrary sets of blocks (mostly broken)."""
    state = BuddyState(frames, max_order, free, allocated)
    assert buddy.well_formed(state) == (not buddy.violations(state)), state


def test_well_formed_agrees_on_every_reachable_state_and_each_broken_one() -> None:
    """Every state of every conforming allocator over 8 frames is well formed; each state built to break one
    invariant is not."""
    from proofs.spec_explore import explore_spec
    from proofs.spec_systems import SpecBuddySystem
    from proofs.systems import BuddyBounds

    class Both(SpecBuddySystem):
        def check(self, state: BuddyState) -> list[str]:
            assert buddy.well_formed(state) == (not buddy.violations(state)), state
            return buddy.violations(state)

    result = explore_spec(Both(BuddyBounds(frames=8, max_order=2, max_alloc_order=2)), 50)
    assert result.path is None and result.stats.exhausted and result.stats.distinct > 100
    for broken in (
        BuddyState(8, 2, frozenset({Block(0, 2), Block(5, 1), Block(4, 0), Block(7, 0)})),
        BuddyState(8, 2, frozenset({Block(0, 2), Block(2, 1), Block(4, 2)})),
        BuddyState(8, 2, frozenset({Block(0, 1), Block(2, 1), Block(4, 2)})),
        BuddyState(8, 2, frozenset({Block(0, 2)})),
        BuddyState(8, 2, frozenset({Block(0, 2), Block(4, 2)}), frozenset({Block(4, 2)})),
        BuddyState(6, 3, frozenset({Block(0, 3)})),
    ):
        assert buddy.violations(broken) and not buddy.well_formed(broken), broken


def test_scenario_ops_round_trip() -> None:
    """The buddy ops parse from and print to the same JSON."""
    for op in (AllocPages(3), FreePages(0x10, 2), BuddyInfo()):
        assert op == parse_op(op.to_json(), "ops[0]")


def test_lockstep_adopts_the_implementation_choice() -> None:
    """The implementation may pick any allowed block; the spec continues from that choice."""
    lockstep = Lockstep(Config(frames=22, max_order=3))
    result = lockstep.apply(AllocPages(3))
    assert result["pfn"] in {0x0, 0x8}
    assert Block(result["pfn"], 3) in lockstep.spec.buddy.allocated


class HandsOutTheUpperHalf(BuddyAllocator):
    """Answers every request with pfn 4, the upper half of the first split of 8 frames."""

    def alloc(self, order: int) -> int | None:
        return 4


def test_lockstep_reports_a_choice_the_spec_does_not_allow() -> None:
    """An allocator that hands out the upper half of a split is a divergence at that op."""
    lockstep = Lockstep(Config(frames=8, max_order=3))
    lockstep.impl.buddy = HandsOutTheUpperHalf(8, 3)
    with pytest.raises(DivergenceError, match="not an allowed choice"):
        lockstep.apply(AllocPages(2))


def test_buddy_view_shows_blocks_after_each_step() -> None:
    """The teaching view lists free blocks with addresses, and names the error of a refused op."""
    lines = "\n".join(buddy_view(load(SCENARIOS / "buddy-expand-merge.json")))
    assert "order  1 (8 KiB): pfn 0x2 @ 0x2000-0x3fff" in lines
    assert "order  2 (16 KiB): pfn 0x4 @ 0x4000-0x7fff" in lines
    assert "refused, DoubleFree" in lines


def test_buddy_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``mmcheck buddy FILE --model impl`` prints the implementation's lists and exits 0."""
    assert 0 == main(["buddy", str(SCENARIOS / "buddy-expand-merge.json"), "--model", "impl"])
    assert "Node 0, zone   Normal      0      1      1      0 " in capsys.readouterr().out


def test_buddy_machine_fast_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A short run of the refinement machine finds nothing on the real implementation."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    fast = settings(max_examples=25, stateful_step_count=20, deadline=None, database=None, derandomize=True)
    status, detail = run_machine(BuddyMachine, fast)
    assert Status.CONFIRMED == status, detail


def test_scenario_wraps_results_from_both_sides() -> None:
    """A scenario's buddy results are JSON values (pfn as an integer)."""
    scenario = Scenario(Config(frames=4, max_order=2), (AllocPages(0), BuddyInfo()))
    lockstep = Lockstep(scenario.config)
    assert [{"pfn": 0}, {"free": [1, 1, 0]}] == [lockstep.apply(op) for op in scenario.ops]


def test_minimise_drops_operations_the_failure_does_not_need(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused frees in front of a bad allocation go; the allocation that diverges stays."""
    import impl.alloc.buddy

    monkeypatch.setattr(impl.alloc.buddy, "BuddyAllocator", HandsOutTheUpperHalf)
    junk = (FreePages(0, 0), AllocPages(0), FreePages(0, 1))
    scenario = Scenario(Config(frames=8, max_order=3), (*junk, AllocPages(2)))
    assert (AllocPages(2),) == minimise(scenario).ops


def test_minimise_leaves_a_passing_scenario_alone() -> None:
    """A scenario that does not fail is returned as it is."""
    scenario = Scenario(Config(frames=8, max_order=3), (AllocPages(0), FreePages(0, 0)))
    assert scenario == minimise(scenario)
