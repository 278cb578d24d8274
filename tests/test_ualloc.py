"""The user-space allocator area: the malloc scenarios replay, the contract's rules refuse what they should."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lang import ualloc_ops as uops
from lang.errors import MMCheckError, ScenarioError, UnknownPointer
from lang.scenario import load, loads
from properties.replay import replay
from properties.ualloc.driver import UallocSide
from spec.ualloc import contract

SCENARIOS = Path(__file__).parent / "scenarios" / "malloc"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.json")), ids=lambda p: p.stem)
@pytest.mark.parametrize("model", ["both", "impl"])
def test_malloc_scenarios_replay_with_glibcs_answers(path: Path, model: str) -> None:
    scenario = load(path)
    report = replay(scenario, model)
    assert report.ok, report.divergence
    assert scenario.expected_results is not None
    assert report.results == list(scenario.expected_results)


def test_the_spec_alone_says_it_does_not_choose_placements() -> None:
    scenario = load(SCENARIOS / "malloc-mmap-threshold.json")
    with pytest.raises(MMCheckError, match="allowed"):
        replay(scenario, "spec")


def test_a_call_naming_no_allocation_is_refused_and_changes_nothing() -> None:
    side = UallocSide()
    side.apply(uops.Malloc(10))
    side.apply(uops.Free(0))
    before = side.state
    with pytest.raises(UnknownPointer, match="not an earlier malloc"):
        side.apply(uops.Free(1))  # op 1 is the free, it returned no pointer
    assert side.state == before and side.calls == 2


def test_a_store_offset_must_be_a_word() -> None:
    with pytest.raises(ScenarioError, match="multiple of 8"):
        loads('{"config": {"frames": 4}, "ops": [{"op": "heap_write", "call": 0, "offset": 4, "value": 1}]}')


def test_the_contract_finds_overlap_misalignment_and_blocks_outside_the_heap() -> None:
    state = contract.initial(0x10000)
    state = replace(state, brk=0x11000)
    a = contract.Block(0, "heap", 0x10010, 0x18, 0x18)
    b = contract.Block(1, "heap", 0x10020, 0x18, 0x10)
    c = contract.Block(2, "heap", 0x10ff8, 0x18, 0x8)
    problems = contract.contract_problems(replace(state, blocks=(a, b, c)))
    assert any("overlap" in p for p in problems)
    assert any("outside the heap" in p for p in problems)
    assert any("aligned" in p for p in problems)
    assert contract.contract_problems(replace(state, blocks=(a,))) == ()


def test_the_contract_allows_mmap_only_at_the_threshold_and_raises_it_on_free() -> None:
    state = replace(contract.initial(0x10000), brk=0x31000)
    small = contract.Answer("mmapped", 0x7000_0010, 0x1FF0, (0x7000_0000, 0x2000), 0x31000)
    assert "below the mmap threshold" in (contract.answer_problem(state, uops.Malloc(0x1000), small) or "")
    big = contract.Answer("mmapped", 0x7000_0010, 200_688, (0x7000_0000, 200_704), 0x31000)
    assert contract.answer_problem(state, uops.Malloc(200_000), big) is None
    state = contract.step(state, 0, uops.Malloc(200_000), big)
    freed = contract.step(state, 1, uops.Free(0), contract.Answer("none", brk=0x31000))
    assert freed.params.mmap_threshold == 200_704 and freed.blocks == ()
    kept = contract.freed_mapping_problem(state, uops.Free(0), frozenset({(0x7000_0000, 200_704)}))
    assert kept is not None and "still mapped" in kept


def test_an_abort_is_allowed_only_on_a_dead_pointer_or_a_corrupted_heap() -> None:
    state = replace(contract.initial(0x10000), brk=0x31000)
    live = contract.Block(0, "heap", 0x10010, 0x18, 0x18)
    state = replace(state, blocks=(live,))
    abort = contract.Answer("none", brk=0x31000, abort="free(): invalid pointer")
    assert contract.answer_problem(state, uops.Free(0), abort) is not None
    assert contract.answer_problem(state, uops.Free(5), abort) is None
    corrupted = contract.step(state, 1, uops.HeapWrite(0, -8, 0x41), contract.Answer("none", brk=0x31000))
    assert corrupted.corrupted
    assert contract.answer_problem(corrupted, uops.Free(0), abort) is None


def test_an_abort_after_a_corruption_puts_the_heap_back() -> None:
    """After a store past a block, a call glibc aborts deep inside (the corrupted top) changes nothing."""
    from impl.ualloc.ptmalloc import Process

    process = Process()
    process.apply(uops.Malloc(24))
    heap = process.heap
    process.apply(uops.HeapWrite(0, heap.top + 8 - process.returned[0], (1 << 64) - 1))
    before = process.heap.clone()
    answer = process.apply(uops.Malloc(1 << 20))
    assert answer.abort == "malloc(): corrupted top size"
    after = process.heap
    assert (after.head, after.foot, after.bins, after.tcache, after.brk) == (
        before.head, before.foot, before.bins, before.tcache, before.brk
    )
    clone = after.clone()
    after.bins[1].append(12345)
    assert clone.bins[1] == [] and before.bins[1] == []


def test_the_free_of_a_fastbin_sized_chunk_never_moves_the_break() -> None:
    """The seed's wrong answer, refused: a small chunk's free gives nothing back (tcache or fastbin)."""
    state = replace(contract.initial(0x10000), brk=0x31000)
    small = contract.Block(0, "heap", 0x10010, 0x18, 0x18)
    state = replace(state, blocks=(small,))
    trimmed = contract.Answer("none", brk=0x30000)
    assert "neither consolidate nor trim" in (contract.answer_problem(state, uops.Free(0), trimmed) or "")
    assert contract.answer_problem(state, uops.Free(0), contract.Answer("none", brk=0x31000)) is None
    no_fastbins = contract.step(state, 1, uops.Mallopt("M_MXFAST", 0), contract.Answer("none", brk=0x31000, ret=1))
    assert contract.answer_problem(no_fastbins, uops.Free(0), trimmed) is None
