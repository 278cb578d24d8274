"""Transparent huge pages: the policy, the per-VMA advice, and the facts scenario files cannot state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lang.errors import InvalidArgument, NotModelled, ScenarioError
from lang.kernel_ops import Exit, Fork, Load, Madvise, Mmap, Munmap, Spawn, Store, Switch
from lang.ops import SmapsOp, ThpSetting, VmstatOp
from lang.scenario import Config, parse_op
from properties.drivers import Lockstep
from spec.mm import invariants as kernel_invariants
from spec.mm import thp
from spec.mm.kernel import NO_THP, Kernel
from spec.smp import shootdown

CONFIG = Config(frames=2048, cpus=2, max_order=10)
H = 0x40000000


def started(*ops: object) -> Lockstep:
    """A lockstep run of pid 1 running on CPU 0 with ``ops`` applied."""
    lockstep = Lockstep(CONFIG)
    for op in (Spawn(), Switch(0, 1), *ops):
        lockstep.apply(op)  # type: ignore[arg-type]
    return lockstep


def vmas(run: Lockstep, pid: int = 1) -> list[tuple[int, int, str]]:
    """The spec's VMAs of ``pid`` as (start, end, THP advice)."""
    state = run.spec.kernel.kernel
    assert state is not None
    return [(v.start, v.end, v.thp) for v in state.procs[pid].vmas]


def test_the_policy_op_parses_only_the_values_of_its_file() -> None:
    """enabled takes always/madvise/never, use_zero_page 0/1: a value of another file is a typed error."""
    assert ThpSetting("enabled", "madvise") == parse_op({"op": "thp", "name": "enabled", "value": "madvise"}, "op")
    with pytest.raises(ScenarioError, match="always, madvise, never"):
        parse_op({"op": "thp", "name": "enabled", "value": "defer"}, "op")
    with pytest.raises(ScenarioError, match="0, 1"):
        parse_op({"op": "thp", "name": "use_zero_page", "value": "always"}, "op")


def test_a_bad_setting_through_the_api_changes_nothing() -> None:
    """set_policy raises on a name or value sysfs refuses, and the state is the value it was."""
    run = started()
    state = run.spec.kernel.kernel
    assert state is not None
    with pytest.raises(InvalidArgument, match="allowed enabled, defrag, use_zero_page"):
        thp.set_policy(state, "khugepaged", "1")
    with pytest.raises(InvalidArgument, match="allowed always"):
        thp.set_policy(state, "defrag", "sometimes")
    assert NO_THP == state.thp


def test_advice_splits_the_vma_and_merges_it_back() -> None:
    """MADV_HUGEPAGE on the middle of a VMA splits it in three; MADV_NOHUGEPAGE there leaves three (the flags
    differ from the neighbours'); clearing the neighbours too merges all of it into one VMA again."""
    page = 0x1000
    run = started(Mmap(1, H, 8, "rw-", False), Madvise(1, H + 2 * page, 2, "hugepage"))
    base = H >> 12
    assert [(base, base + 2, ""), (base + 2, base + 4, "hugepage"), (base + 4, base + 8, "")] == vmas(run)
    run.apply(Madvise(1, H + 2 * page, 2, "nohugepage"))
    assert [(base, base + 2, ""), (base + 2, base + 4, "nohugepage"), (base + 4, base + 8, "")] == vmas(run)
    run.apply(Madvise(1, H, 8, "nohugepage"))
    assert [(base, base + 8, "nohugepage")] == vmas(run)


def test_advice_over_a_hole_is_enomem_after_the_change() -> None:
    """madvise_walk_vmas: the mapped part takes the flag, the call answers ENOMEM."""
    run = started(Mmap(1, H, 4, "rw-", False))
    assert {"error": "ENOMEM"} == run.apply(Madvise(1, H, 5, "hugepage"))
    assert [(H >> 12, (H >> 12) + 4, "hugepage")] == vmas(run)


def test_advice_on_a_hugetlb_mapping_is_not_modelled() -> None:
    """A hugetlb VMA in the range is refused on both sides, naming what to do instead."""
    run = started(Mmap(1, H, 512, "rw-", False, True))
    with pytest.raises(NotModelled, match="advise normal mappings"):
        run.apply(Madvise(1, H, 512, "hugepage"))


def test_vmstat_shows_the_thp_counters_once_thp_is_on() -> None:
    """Before any THP setting vmstat has no thp_ keys; after enabled=always it has the three counters, at 0."""
    run = started()
    assert "thp_fault_alloc" not in run.apply(VmstatOp())
    run.apply(ThpSetting("enabled", "always"))
    counts = run.apply(VmstatOp())
    assert (0, 0, 0) == (counts["thp_fault_alloc"], counts["thp_fault_fallback"], counts["thp_split_pmd"])


def thp_run(*ops: object, config: Config = CONFIG) -> Lockstep:
    """A lockstep run with THP always on, pid 1 on CPU 0 with 2 MiB-aligned 4 MiB mapped at H, then ``ops``."""
    lockstep = Lockstep(config)
    for op in (ThpSetting("enabled", "always"), Spawn(), Switch(0, 1), Mmap(1, H, 1024, "rw-", False), *ops):
        lockstep.apply(op)  # type: ignore[arg-type]
    return lockstep


def spec_state(run: Lockstep) -> Kernel:
    state = run.spec.kernel.kernel
    assert state is not None
    return state


def test_a_write_fault_maps_one_pmd_of_an_aligned_order_9_block() -> None:
    """do_huge_pmd_anonymous_page: one 2 MiB leaf at the aligned page, its PT deposited, thp_fault_alloc 1, and
    every kernel invariant holds."""
    run = thp_run(Store(0, H + 0x5008, 9))
    state = spec_state(run)
    leaf = state.procs[1].leaves[H >> 12]
    assert leaf.huge and leaf.writable and leaf.dirty
    assert 0 == leaf.pfn % 512
    assert (1, (H >> 12) >> 9) in state.procs[1].tables
    assert 1 == run.apply(VmstatOp())["thp_fault_alloc"]
    assert {"value": 9} == run.apply(Load(0, H + 0x5008))
    assert [] == kernel_invariants.violations(shootdown.settled(state))


def test_a_read_fault_maps_the_huge_zero_page_and_a_write_splits_it() -> None:
    """A read maps the huge zero page read-only (no Rss); a write then splits its PMD into 512 zero-page entries
    and copies one 4 KiB page, in one fault."""
    run = thp_run(Load(0, H))
    state = spec_state(run)
    assert state.thp.zero_pfn == state.procs[1].leaves[H >> 12].pfn
    assert 0 == run.apply(SmapsOp(1))["Rss"]
    faults = run.apply(VmstatOp())["pgfault"]
    run.apply(Store(0, H + 0x3000, 4))
    counts = run.apply(VmstatOp())
    assert (faults + 1, 1) == (counts["pgfault"], counts["thp_split_pmd"])
    assert 4 == run.apply(SmapsOp(1))["Rss"]
    assert {"value": 0} == run.apply(Load(0, H + 0x4000))
    assert [] == kernel_invariants.violations(shootdown.settled(spec_state(run)))


def test_without_an_order_9_block_the_fault_falls_back_to_4_kib() -> None:
    """No free block of order 9 (max_order 8): thp_fault_fallback counts, a 4 KiB page is mapped."""
    run = thp_run(Store(0, H, 1), config=Config(frames=2048, cpus=2, max_order=8))
    counts = run.apply(VmstatOp())
    assert (0, 1) == (counts["thp_fault_alloc"], counts["thp_fault_fallback"])
    assert not spec_state(run).procs[1].leaves[H >> 12].huge


def test_a_partial_munmap_splits_the_pmd_and_keeps_the_rest() -> None:
    """munmap of the first page: the PMD splits into PTEs for the other 511 frames, contents kept, AnonHugePages 0."""
    run = thp_run(Store(0, H + 0x1000, 3))
    run.apply(Munmap(1, H, 1))
    assert {"value": 3} == run.apply(Load(0, H + 0x1000))
    smaps = run.apply(SmapsOp(1))
    assert (511 * 4, 0) == (smaps["Rss"], smaps["AnonHugePages"])
    assert 1 == run.apply(VmstatOp())["thp_split_pmd"]
    assert [] == kernel_invariants.violations(shootdown.settled(spec_state(run)))


def test_fork_write_protects_the_pmd_and_a_write_to_the_shared_thp_is_not_modelled() -> None:
    """copy_huge_pmd: both PMDs read-only and the THP shared; the COW split of a shared THP is refused alike."""
    run = thp_run(Store(0, H, 1), Fork(1))
    state = spec_state(run)
    parent, child = state.procs[1].leaves[H >> 12], state.procs[2].leaves[H >> 12]
    assert (False, False, parent.pfn) == (parent.writable, child.writable, child.pfn)
    with pytest.raises(NotModelled, match="split a THP only while one process maps it"):
        run.apply(Store(0, H, 2))
    assert replace(state, events=()) == spec_state(run)


def impl_rmap(run: Lockstep) -> dict[int, dict[int, tuple[int, int]]]:
    """The implementation's reverse map, after checking it against its page tables."""
    kernel = run.impl.kernel.kernel
    assert kernel is not None and kernel.rmap_problem() is None
    return kernel.rmap


def test_the_reverse_map_follows_a_thp_from_pmd_to_ptes() -> None:
    """A PMD leaf is not in the reverse map (a 2 MiB leaf, as hugetlb's), nor the child's copy at fork; the split
    at an munmap edge puts the 511 PTEs left in it, each frame at its own page; the huge zero page's split, the
    zero page at 511 pages and the copied page at the one written; exit empties it."""
    base = H >> 12
    run = thp_run(Store(0, H, 1), Fork(1))
    assert {} == impl_rmap(run)
    run.apply(Exit(2))
    head = spec_state(run).procs[1].leaves[base].pfn
    run.apply(Munmap(1, H + 0x1000, 1))
    rmap = impl_rmap(run)
    assert set(range(head, head + 512)) - {head + 1} == set(rmap)
    assert all(list(rmap[head + i].values()) == [(1, base + i)] for i in range(512) if i != 1)
    run.apply(Load(0, H + 0x200000))
    assert 511 == len(impl_rmap(run))
    run.apply(Store(0, H + 0x203000, 4))
    rmap = impl_rmap(run)
    written = spec_state(run).procs[1].leaves[base + 512 + 3].pfn
    kernel = run.impl.kernel.kernel
    assert kernel is not None
    zero = kernel.zero_pfn
    assert sorted(pid_vpn[1] for pid_vpn in rmap[zero].values()) == [base + 512 + i for i in range(512) if i != 3]
    assert [(1, base + 512 + 3)] == list(rmap[written].values())
    run.apply(Exit(1))
    assert {} == impl_rmap(run)


def test_a_thp_counts_its_512_pages_and_its_deposited_table_in_the_oom_score() -> None:
    """oom_badness reads get_mm_rss and mm_pgtables_bytes: a THP's PMD adds 512 pages to MM_ANONPAGES and its
    deposited PT one table (__do_huge_pmd_anonymous_page), on both sides; the split moves the 512 to the PTEs
    and the deposit into the tree, and the exit drops them all."""
    from lang.ops import OomScoreOp

    run = thp_run(Store(0, H, 1))
    before = run.apply(OomScoreOp(1))
    impl = run.impl.kernel.kernel
    assert impl is not None
    rss, swapents, tables = impl.mm_counts(1)
    assert (rss, swapents) == (512, 0) and tables == len(spec_state(run).procs[1].tables)
    run.apply(Munmap(1, H + 0x1000, 1))
    assert impl.mm_counts(1) == (511, 0, tables)
    assert run.apply(OomScoreOp(1))["oom_score"] <= before["oom_score"]
    run.apply(Exit(1))
    assert impl.mm_counts(1) == (0, 0, 0)
