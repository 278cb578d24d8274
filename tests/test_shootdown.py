"""The TLB-shootdown layer: hardware invalidations, switch_mm, flights in steps, the flush rule, event counts."""

from __future__ import annotations

import itertools
from pathlib import Path

import z3

from lang.kernel_ops import Fork, KernelRemap, KernelThread, Load, Madvise, Mmap, Munmap, Spawn, Step, Store, Switch
from lang.scenario import Config, load
from proofs.inductive import Z3_LOGIC
from properties.drivers import Lockstep
from spec.mm.invariants import violations
from spec.mm.vma import KERNEL_VA, KERNEL_WORD
from spec.paging.tlb import GLOBAL_PCID, Tlb, TlbEntry, fault_drop, invlpg, invpcid, mov_cr3, remember, remembers
from spec.smp import shootdown
from spec.smp.shootdown import flush_decision

BASE = 0x10000000


def entry(pcid: int, vpn: int) -> TlbEntry:
    return TlbEntry(pcid, vpn, 0x10, True, True, True)


def test_invlpg_drops_the_current_pcid_and_global_entries_only() -> None:
    tlb = Tlb(frozenset({entry(1, 5), entry(2, 5), entry(GLOBAL_PCID, 5), entry(1, 6)}), frozenset({(1, 9), (2, 9)}))
    assert Tlb(frozenset({entry(2, 5), entry(1, 6)}), frozenset({(2, 9)})) == invlpg(tlb, 1, 5)


def test_invpcid_types_and_cr3() -> None:
    tlb = Tlb(frozenset({entry(1, 5), entry(2, 5), entry(GLOBAL_PCID, 5)}))
    assert frozenset({entry(2, 5), entry(GLOBAL_PCID, 5)}) == invpcid(tlb, 0, 1, 5).entries
    assert frozenset({entry(2, 5), entry(GLOBAL_PCID, 5)}) == invpcid(tlb, 1, 1).entries
    assert frozenset() == invpcid(tlb, 2).entries
    assert frozenset({entry(GLOBAL_PCID, 5)}) == invpcid(tlb, 3).entries
    assert tlb == mov_cr3(tlb, 1, noflush=True)
    assert invpcid(tlb, 1, 1) == mov_cr3(tlb, 1, noflush=False)
    assert frozenset({entry(2, 5)}) == fault_drop(tlb, 1, 5).entries


def test_a_remembered_entry_allows_its_weaker_forms_and_nothing_more() -> None:
    """The old translation stands for every form with the same frame, size and PCID and fewer rights; any other
    frame, size, PCID or page, or a right it lacks, is not allowed; an invalidation drops the weaker forms too."""
    old = TlbEntry(2, 5, 0x10, writable=False, user=True, nx=True)
    tlb = remember(Tlb(), frozenset({old}), frozenset())
    assert remembers(tlb, old)
    assert remembers(tlb, TlbEntry(2, 5, 0x10, writable=False, user=False, nx=True))
    writable = TlbEntry(2, 5, 0x10, True, True, True)
    assert not remembers(tlb, writable), "a right the old translation lacks"
    assert not remembers(tlb, TlbEntry(2, 5, 0x10, False, True, False)), "executable, the old one was NX"
    assert not remembers(tlb, TlbEntry(2, 5, 0x11, False, True, True)), "another frame"
    assert not remembers(tlb, TlbEntry(3, 5, 0x10, False, True, True)), "another PCID"
    assert not remembers(tlb, TlbEntry(2, 6, 0x10, False, True, True)), "another page"
    assert not remembers(tlb, TlbEntry(2, 5, 0x10, False, True, True, huge=True)), "another size"
    strong = remember(Tlb(), frozenset({TlbEntry(2, 5, 0x10, True, True, False)}), frozenset())
    weakest = TlbEntry(2, 5, 0x10, False, False, True)
    assert remembers(strong, weakest)
    assert not remembers(invlpg(strong, 2, 5), weakest)
    assert not remembers(fault_drop(strong, 2, 5), weakest)


def test_the_flush_rule_agrees_on_ints_and_z3_terms() -> None:
    """The spec's decision function on small ints equals the same function evaluated by Z3."""
    for local, mm, gen, full in itertools.product(range(4), range(4), range(4), (False, True)):
        terms = flush_decision(z3.IntVal(local), z3.IntVal(mm), z3.IntVal(gen), z3.BoolVal(full), Z3_LOGIC)
        expected = tuple(z3.is_true(z3.simplify(t)) for t in terms)
        assert expected == flush_decision(local, mm, gen, full)


def run(config: Config, ops: list[object]) -> tuple[Lockstep, list[dict[str, object]]]:
    lockstep = Lockstep(config)
    return lockstep, [lockstep.apply(op) for op in ops]  # type: ignore[arg-type]


def munmap_counts(pages: int) -> tuple[int, int, int]:
    """IPIs, single-page flushes and full flushes of one munmap of ``pages`` written pages, 4 CPUs, 2 running."""
    config = Config(frames=pages + 40, cpus=4, max_order=3)
    ops: list[object] = [Spawn(), Switch(0, 1), Switch(1, 1), Mmap(1, BASE, pages, "rw-")]
    ops += [Store(0, BASE + i * 4096, 1) for i in range(pages)]
    lockstep, _ = run(config, ops)
    lockstep.apply(Munmap(1, BASE, pages))
    events = lockstep.spec.kernel.kernel.events  # type: ignore[union-attr]
    kinds = [e.kind for e in events]
    return kinds.count("ipi"), kinds.count("invlpg"), kinds.count("flush")


def test_munmap_interrupts_only_the_cpus_of_the_mask_and_flushes_fully_above_the_ceiling() -> None:
    assert (2, 2, 0) == munmap_counts(1)
    assert (2, 64, 0) == munmap_counts(32)
    assert (2, 0, 2) == munmap_counts(40)


def test_a_stale_entry_serves_loads_until_its_cpu_handles_the_ipi_and_frames_wait_for_the_flush() -> None:
    config = Config(frames=40, cpus=2)
    ops: list[object] = [Spawn(), Switch(0, 1), Switch(1, 1), Mmap(1, BASE, 1, "rw-"), Store(0, BASE, 7), Load(1, BASE)]
    lockstep, _ = run(config, ops)
    assert {"pending": 1} == lockstep.apply(Munmap(1, BASE, 1, background=True))
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None and [e.kind for e in kernel.events] == ["ipi", "ipi"]
    assert {"value": 7} == lockstep.apply(Load(1, BASE))
    assert {"stage": "flushed", "cpu": 0} == lockstep.apply(Step(1))
    assert {"value": 7} == lockstep.apply(Load(1, BASE))
    assert {"stage": "flushed", "cpu": 1} == lockstep.apply(Step(1))
    assert {"ok": True} == lockstep.apply(Step(1))
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None and ["free"] * 4 == [e.kind for e in kernel.events]  # the page and its 3 tables
    assert "signal" in lockstep.apply(Load(1, BASE))


GATHER_HOLDS = Path(__file__).parent / "scenarios" / "tlb-gather-holds-reference-until-flush.json"


def test_a_gather_holds_every_reference_it_dropped_until_its_flush() -> None:
    """pid 1's madvise gathers its reference to a COW-shared page; pid 2's munmap, returning first, drops the other
    one, and the frame stays allocated (refcount 1, the gather's) while CPUs 0 and 1 may still use their entries to
    it: no usable entry reaches a free frame at any op (``tlb_batch_pages_flush`` runs after the flush)."""
    scenario = load(GATHER_HOLDS)
    lockstep = Lockstep(scenario.config)
    pfn = None
    for index, op in enumerate(scenario.ops):
        lockstep.apply(op)
        kernel = lockstep.spec.kernel.kernel
        assert kernel is not None
        assert [] == violations(shootdown.settled(kernel)) + shootdown.violations(kernel), f"op {index}"
        if index == 5:
            pfn = kernel.procs[1].leaves[BASE >> 12].pfn
        if index == 9:
            assert pfn is not None and pfn not in shootdown.free_pfns(kernel)
            assert (1, 0) == (kernel.pages[pfn].refcount, kernel.pages[pfn].mapcount)
        if index == 13:
            assert pfn in shootdown.free_pfns(kernel) and "free" in [e.kind for e in kernel.events]


def test_a_write_fault_copies_a_page_a_gather_still_holds() -> None:
    """While pid 1's madvise holds its reference to the COW-shared page, pid 2's write fault sees refcount 2 and
    copies (``wp_can_reuse_anon_folio``, mm/memory.c) instead of reusing it."""
    config = Config(frames=40, cpus=2)
    ops: list[object] = [Spawn(), Switch(0, 1), Mmap(1, BASE, 1, "rw-"), Store(0, BASE, 7), Fork(1), Switch(1, 2)]
    lockstep, _ = run(config, ops)
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None
    shared = kernel.procs[2].leaves[BASE >> 12].pfn
    assert {"pending": 1} == lockstep.apply(Madvise(1, BASE, 1, "dontneed", background=True))
    assert {"ok": True} == lockstep.apply(Store(1, BASE, 9))
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None
    assert shared != kernel.procs[2].leaves[BASE >> 12].pfn, "copied, not reused"
    assert (1, 0) == (kernel.pages[shared].refcount, kernel.pages[shared].mapcount), "only the gather holds it"
    assert {"value": 9} == lockstep.apply(Load(1, BASE))


def test_a_lazy_cpu_is_skipped_unless_tables_are_freed_and_flushes_when_it_returns() -> None:
    config = Config(frames=40, cpus=2)
    ops: list[object] = [Spawn(), Switch(0, 1), Switch(1, 1), Mmap(1, BASE, 2, "rw-"), Store(1, BASE, 7)]
    ops += [KernelThread(1), Munmap(1, BASE, 1)]
    lockstep, _ = run(config, ops)
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None
    assert [("ipi", 0)] == [(e.kind, e.cpu) for e in kernel.events if e.kind == "ipi"]
    lockstep.apply(Switch(1, 1))
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None and [("flush", 1)] == [(e.kind, e.cpu) for e in kernel.events]
    lockstep.apply(KernelThread(1))
    lockstep.apply(Munmap(1, BASE, 2))
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None
    assert [0, 1] == [e.cpu for e in kernel.events if e.kind == "ipi"]
    assert 0 == kernel.cpus[1].loaded


def test_kernel_remap_interrupts_every_cpu_invlpgs_the_global_entry_then_frees_the_old_frame() -> None:
    """flush_tlb_kernel_range: IPIs to every CPU (lazy and idle too), INVLPG on each, and only then the free."""
    config = Config(frames=40, cpus=3)
    ops: list[object] = [Spawn(), Switch(0, 1), Switch(1, 1), Load(0, KERNEL_VA, "supervisor"), KernelThread(1)]
    lockstep, results = run(config, ops)
    assert {"value": KERNEL_WORD} == results[3]
    before = lockstep.spec.kernel.kernel
    assert before is not None
    assert {"ok": True} == lockstep.apply(KernelRemap())
    after = lockstep.spec.kernel.kernel
    assert after is not None and after.boot[1] != before.boot[1]
    vpn = KERNEL_VA >> 12
    expected = [("ipi", c, 0) for c in range(3)] + [("invlpg", c, vpn) for c in range(3)]
    assert [*expected, ("free", -1, before.boot[1])] == [(e.kind, e.cpu, e.value) for e in after.events]
    assert all(e.pcid != GLOBAL_PCID for tlb in after.tlbs for e in tlb.entries)
    assert {"value": KERNEL_WORD} == lockstep.apply(Load(0, KERNEL_VA, "supervisor"))


def test_kernel_remap_above_the_ceiling_flushes_everything_and_fails_cleanly_without_a_frame() -> None:
    lockstep, _ = run(Config(frames=40, cpus=2, flush_ceiling=0), [Spawn(), Switch(0, 1)])
    assert {"ok": True} == lockstep.apply(KernelRemap())
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None
    assert [("flush", 0, GLOBAL_PCID), ("flush", 1, GLOBAL_PCID)] == [
        (e.kind, e.cpu, e.value) for e in kernel.events if e.kind == "flush"
    ]
    lockstep, _ = run(Config(frames=7, cpus=2), [Spawn(), Switch(0, 1)])
    assert {"error": "ENOMEM"} == lockstep.apply(KernelRemap())
