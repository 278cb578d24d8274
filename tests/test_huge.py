"""Hugetlb mappings (``huge``): the facts the scenario files cannot state, on spec and implementation alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.paging.tlb import HUGE, Tlb
from lang.errors import NotModelled
from lang.kernel_ops import Exit, Fork, Load, Mmap, Munmap, PagemapOp, PinOp, Spawn, Store, Switch
from lang.scenario import Config
from properties.drivers import Lockstep
from spec import memory as l0
from spec.mm.vma import Prot
from spec.paging.tlb import Tlb as SpecTlb
from spec.paging.tlb import TlbEntry, invlpg

CONFIG = Config(frames=2048, cpus=2, max_order=10)
H = 0x100000000000


def started(*ops: object) -> Lockstep:
    """A lockstep run of pid 1 running on CPU 0 with ``ops`` applied."""
    lockstep = Lockstep(CONFIG)
    for op in (Spawn(), Switch(0, 1), *ops):
        lockstep.apply(op)  # type: ignore[arg-type]
    return lockstep


def pfn(lockstep: Lockstep, pid: int, va: int) -> int:
    result = lockstep.apply(PagemapOp(pid, va))
    assert result["present"]
    return int(result["pfn"])


def test_cow_copies_while_shared_and_reuses_on_map_count_one() -> None:
    """hugetlb_wp: the parent's write while the child maps the page copies it; after exit the write reuses it."""
    run = started(Mmap(1, H, 1024, "rw-", False, True), Store(0, H, 1), Store(0, H + 0x200000, 2), Fork(1))
    first, second = pfn(run, 1, H), pfn(run, 1, H + 0x200000)
    run.apply(Store(0, H, 3))
    assert first != pfn(run, 1, H)
    assert first == pfn(run, 2, H)
    run.apply(Exit(2))
    run.apply(Store(0, H + 0x200000, 4))
    assert second == pfn(run, 1, H + 0x200000)


def test_a_subpage_reports_its_own_pfn_in_a_whole_order_9_block() -> None:
    """pagemap_hugetlb_range: subpage i of a 2 MiB page is the head's pfn + i, the head 512-aligned."""
    run = started(Mmap(1, H, 512, "r--", False, True), Load(0, H))
    head = pfn(run, 1, H)
    assert 0 == head % 512
    assert head + 511 == pfn(run, 1, H + 511 * 0x1000)


def test_the_implementation_maps_a_pd_entry_with_ps() -> None:
    """The real table: PML4 -> PDPT -> PD entry with PS=1 (bit 7) pointing at the 2 MiB frame; no PT."""
    run = started(Mmap(1, H, 512, "rw-", False, True), Store(0, H, 1))
    kernel = run.impl.kernel.kernel
    assert kernel is not None
    found = kernel._leaf_entry(kernel.procs[1].root, H >> 12)
    assert found is not None
    assert found[1] & 0x80 and found[1] & 0x1 and found[1] & 0x2


def test_pinning_a_hugetlb_page_is_refused_alike() -> None:
    """Not modelled (hugetlb_wp reuses on the map count): both sides raise NotModelled and change nothing."""
    run = started(Mmap(1, H, 512, "rw-", False, True), Store(0, H, 1))
    with pytest.raises(NotModelled):
        run.apply(PinOp(1, H))
    assert {"value": 1} == run.apply(Load(0, H))


def test_unmap_of_a_hugetlb_page_flushes_with_a_2_mib_stride() -> None:
    """flush_tlb_range with huge_page_shift: one INVLPG per 2 MiB page on each CPU running the mm."""
    run = started(Mmap(1, H, 1024, "rw-", False, True), Store(0, H, 1), Store(0, H + 0x200000, 2), Switch(1, 1))
    run.apply(Load(1, H + 0x1000))
    run.apply(Munmap(1, H, 1024))
    state = run.spec.kernel.kernel
    assert state is not None
    heads = (H >> 12, (H >> 12) + 512)
    assert [("invlpg", cpu, head) for cpu in (0, 1) for head in heads] == [
        (e.kind, e.cpu, e.value) for e in state.events if e.kind == "invlpg"
    ]


def test_one_2_mib_tlb_entry_serves_and_dies_with_any_of_its_pages() -> None:
    """Impl and spec TLBs: a 2 MiB entry covers its 512 pages; INVLPG of any of them drops it."""
    tlb = Tlb(4)
    tlb.fill(1, 0x200 + 7, 0x400 << 4 | HUGE)
    assert tlb.lookup(1, 0x200 + 300) == 0x400 << 4 | HUGE
    assert tlb.lookup(1, 0x400) is None
    tlb.invlpg(1, 0x200 + 511)
    assert tlb.lookup(1, 0x200) is None
    entry = TlbEntry(1, 0x200, 0x400, True, True, True, huge=True)
    assert frozenset() == invlpg(SpecTlb(frozenset({entry})), 1, 0x3FF).entries


def test_l0_rounds_the_length_up_and_refuses_a_cut_off_2_mib() -> None:
    """ksys_mmap_pgoff rounds up; hugetlb_vm_op_split refuses a cut inside a 2 MiB page (L0 alone)."""
    mem, _ = l0.spawn(l0.initial(1))
    mem, outcome = l0.mmap(mem, 1, H, 3, Prot.parse("rw-"), False, huge=True)
    assert "Ok()" == repr(outcome)
    assert 512 == len(mem.procs[1])
    assert "EINVAL" == getattr(l0.munmap(mem, 1, H, 3)[1], "name", None)
    assert 0 == len(l0.munmap(mem, 1, H, 512)[0].procs[1])


def test_an_empty_pool_at_fault_is_enomem_with_nothing_changed() -> None:
    """The documented abstraction: Linux gives SIGBUS (alloc_hugetlb_folio -ENOSPC -> VM_FAULT_SIGBUS, reserved
    pages aside); the model answers ENOMEM and changes nothing, on spec and implementation alike."""
    run = Lockstep(Config(frames=1024, cpus=1, max_order=10))
    for op in (Spawn(), Switch(0, 1), Mmap(1, H, 1024, "rw-", False, True), Store(0, H, 1)):
        run.apply(op)
    before = run.spec.kernel.kernel
    assert {"error": "ENOMEM"} == run.apply(Store(0, H + 0x200000, 2))
    after = run.spec.kernel.kernel
    assert before is not None and after is not None
    assert (before.pages, before.procs[1].leaves, before.buddy) == (after.pages, after.procs[1].leaves, after.buddy)
    assert {"value": 1} == run.apply(Load(0, H))


def test_a_cpu_reads_through_its_stale_2_mib_entry_until_its_ipi() -> None:
    """hugetlb-stale-read-during-munmap.json as the implementation runs it: two subpages read through CPU 1's one
    stale 2 MiB entry after the PMD is cleared, then a fault once the flush is done; the block freed as order 9."""
    from lang.scenario import load

    scenario = load(Path(__file__).parent / "scenarios" / "hugetlb-stale-read-during-munmap.json")
    run = Lockstep(scenario.config)
    results = [run.apply(op) for op in scenario.ops]
    assert ({"value": 9}, {"value": 0}) == (results[8], results[9])
    assert {"signal": "SIGSEGV", "error_code": 4} == results[-1]
    state = run.spec.kernel.kernel
    assert state is not None
    assert any(b.order == 9 for b in state.buddy.free)
