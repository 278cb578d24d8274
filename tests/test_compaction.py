"""Compaction and migration: the seed's puzzle, what moves and what does not, and the flush before the free."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.alloc.buddy import BuddyAllocator
from lang.errors import InvalidArgument, NotAllocated
from lang.kernel_ops import Fork, Load, Mmap, Munmap, PagemapOp, PinOp, Spawn, Store, Switch
from lang.ops import CompactMemory
from lang.scenario import Config, load
from properties.drivers import Lockstep
from properties.replay import replay
from spec.alloc import buddy

SCENARIOS = Path(__file__).parent / "scenarios"
CONFIG = Config(frames=128, cpus=2, max_order=6)
A = 0x10000000


def fragmented(*extra: object, pages: int = 100) -> Lockstep:
    """pid 1 on CPUs 0 and 1 with ``pages`` pages written, every other one unmapped from the top down, then
    ``extra``."""
    run = Lockstep(CONFIG)
    ops: list[object] = [Spawn(), Switch(0, 1), Switch(1, 1), Mmap(1, A, pages, "rw-", False)]
    ops += [Store(0, A + 0x1000 * i, i + 1) for i in range(pages)]
    ops += [Munmap(1, A + 0x1000 * i, 1) for i in reversed(range(1, pages, 2))]
    for op in (*ops, *extra):
        run.apply(op)  # type: ignore[arg-type]
    return run


def test_the_seeds_puzzle_compaction_makes_the_thp_fault_succeed() -> None:
    """Free memory but no order-9 block: the THP fault falls back; after compact_memory buddyinfo has one and the
    next THP fault gets it."""
    scenario = load(SCENARIOS / "compaction-thp-fallback.json")
    report = replay(scenario)
    assert report.divergence is None
    infos = [r["free"] for op, r in zip(scenario.ops, report.results, strict=True) if op.name == "buddyinfo"]
    vmstats = [r for op, r in zip(scenario.ops, report.results, strict=True) if op.name == "vmstat"]
    assert infos[0][9] == 0 and sum(n << o for o, n in enumerate(infos[0])) >= 512
    assert infos[1][9] == 1
    assert [(0, 1), (1, 1)] == [(v["thp_fault_alloc"], v["thp_fault_fallback"]) for v in vmstats]


def test_pinned_pages_stop_compaction_and_are_named() -> None:
    """The pinned variant: compact_memory names the pinned frames among the unmovable, no order-9 block forms."""
    scenario = load(SCENARIOS / "compaction-thp-fallback-pinned.json")
    report = replay(scenario)
    assert report.divergence is None
    compacted = next(r for op, r in zip(scenario.ops, report.results, strict=True) if op.name == "compact_memory")
    assert {"0x2", "0x6"} == {pfn for pfn, why in compacted["unmovable"].items() if why == "pinned"}
    infos = [r["free"] for op, r in zip(scenario.ops, report.results, strict=True) if op.name == "buddyinfo"]
    assert infos[1][9] == 0


def test_compaction_moves_only_movable_pages_and_keeps_contents_and_dirty_bits() -> None:
    """Every page keeps its words; a pinned page and every page table keep their frames; a migrated page's entry
    keeps its dirty bit; the pages end up above the free frames the scanners gathered."""
    run = fragmented(PinOp(1, A + 0x1000 * 4))
    state = run.spec.kernel.kernel
    assert state is not None
    before = dict(state.procs[1].leaves)
    tables = dict(state.procs[1].tables)
    result = run.apply(CompactMemory())
    assert result["migrated"] > 0
    after = run.spec.kernel.kernel
    assert after is not None
    leaves = after.procs[1].leaves
    assert before.keys() == leaves.keys()
    assert before[(A >> 12) + 4].pfn == leaves[(A >> 12) + 4].pfn
    assert tables == dict(after.procs[1].tables)
    assert all(leaves[v].dirty == before[v].dirty for v in before)
    assert any(leaves[v].pfn != before[v].pfn for v in before)
    kept = range(0, 100, 2)
    assert [{"value": i + 1} for i in kept] == [run.apply(Load(1, A + 0x1000 * i)) for i in kept]


def test_a_migrated_page_is_freed_only_after_every_cpu_flushed() -> None:
    """The old frame's free event comes after the IPI to the other CPU running the mm, for every migrated page."""
    run = fragmented()
    run.apply(CompactMemory())
    state = run.spec.kernel.kernel
    assert state is not None
    kinds = [e.kind for e in state.events]
    assert kinds.count("free") > 0
    frees = [i for i, kind in enumerate(kinds) if kind == "free"]
    ipis = [i for i, kind in enumerate(kinds) if kind == "ipi"]
    assert len(ipis) >= len(frees)
    assert all(any(j < i for j in ipis) for i in frees)


def test_a_page_shared_by_fork_moves_for_both_processes() -> None:
    """A COW-shared page is remapped in both mms to the same new frame, and both still read it."""
    run = fragmented(Fork(1), Switch(1, 2))
    state = run.spec.kernel.kernel
    assert state is not None
    before = {v: leaf.pfn for v, leaf in state.procs[1].leaves.items()}
    run.apply(CompactMemory())
    after = run.spec.kernel.kernel
    assert after is not None
    moved = [v for v, pfn in before.items() if after.procs[1].leaves[v].pfn != pfn]
    assert moved
    for vpn in moved[:3]:
        va = vpn << 12
        assert run.apply(PagemapOp(1, va))["pfn"] == run.apply(PagemapOp(2, va))["pfn"] != before[vpn]
        value = (va - A) // 0x1000 + 1
        assert [{"value": value}, {"value": value}] == [run.apply(Load(0, va)), run.apply(Load(1, va))]


def test_isolate_frame_agrees_and_refuses_a_used_frame() -> None:
    """Taking one frame out of a free block leaves the same free blocks in spec and implementation."""
    state = buddy.initial(64, 6)
    impl = BuddyAllocator(64, 6)
    for pfn in (37, 0, 63, 12):
        state = buddy.isolate_frame(state, pfn)
        impl.isolate_frame(pfn)
        assert sorted((b.pfn, b.order) for b in state.free) == sorted(impl.free_blocks())
        assert [] == buddy.violations(state)
    with pytest.raises(InvalidArgument, match="not free"):
        buddy.isolate_frame(state, 37)
    with pytest.raises(NotAllocated, match="not free"):
        impl.isolate_frame(37)
