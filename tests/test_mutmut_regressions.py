"""Regression tests for holes that mutation testing of ``impl/`` found in the refinement harness.

Each test pins behaviour that the machines, at the small budget mutmut runs
them with, did not reach: the exact text of every refusal (an argument error
says what was wrong and what is allowed), the edges of each domain, a stale
``PageBuddy`` mark seen by a bad free, and entry bits at and above MAXPHYADDR.
docs/mutation-testing.md lists the survivors these close and the equivalent ones.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from impl.alloc.buddy import LIMIT_ORDER, BuddyAllocator
from impl.mm.vma import Vma, VmaList
from impl.paging.mmu import READ, Fault, Mmu
from impl.paging.physmem import PhysMem
from impl.paging.tlb import GLOBAL as TLB_GLOBAL
from impl.paging.tlb import G as TLB_G
from impl.paging.tlb import Tlb
from impl.slab.geometry import calculate_order, kmalloc_index
from impl.slab.slub import Slub
from impl.smp.shootdown import Smp
from lang.errors import MMCheckError, NotAllocated
from lang.hardware_ops import Access, AllocPages, FreePages, SetCpu, WritePhys
from lang.kernel_ops import KernelThread, Load, Mmap, Munmap, Spawn, Store, Switch
from lang.scenario import Config, Op, Scenario, parse_op
from properties.drivers import Lockstep
from properties.replay import replay


def allocator_with_pair() -> BuddyAllocator:
    """22 frames, max order 3; the order-1 block at pfn 0x14 allocated."""
    allocator = BuddyAllocator(22, 3)
    assert 0x14 == allocator.alloc(1)
    return allocator


def mmu_of(frames: int = 16, cpus: int = 2) -> Mmu:
    return Mmu(PhysMem(frames), cpus)


REFUSALS: list[tuple[str, Callable[[], object], str]] = [
    ("unknown cpu", lambda: mmu_of().cpu(2), "cpu 2 does not exist: allowed 0..1"),
    (
        "cr3 outside memory",
        lambda: mmu_of().set_cpu(0, cr3=0x10000, wp=False, smep=False, smap=False, ac=False, nxe=False, la57=False),
        "cr3 0x10000 must be a 4 KiB-aligned frame address inside memory (0x0 .. 0xf000)",
    ),
    (
        "va above 64 bits",
        lambda: mmu_of().access(0, 1 << 64, READ, True),
        "virtual address 0x10000000000000000 is not a 64-bit value",
    ),
    ("no frames", lambda: BuddyAllocator(0), "frames must be at least 1, got 0"),
    ("max order too big", lambda: BuddyAllocator(4, LIMIT_ORDER + 1), "max_order must be 0..52, got 53"),
    ("alloc order", lambda: BuddyAllocator(22, 3).alloc(4), "order 4 is out of range: allowed 0..3"),
    ("free order", lambda: BuddyAllocator(22, 3).free(0, 4), "order 4 is out of range: allowed 0..3"),
    (
        "free outside memory",
        lambda: BuddyAllocator(22, 3).free(20, 2),
        "block at pfn 0x14 of order 2 is outside memory: pfn + 2**order must be at most the frame count, 0x16",
    ),
    (
        "misaligned free",
        lambda: BuddyAllocator(22, 3).free(2, 2),
        "pfn 0x2 is not aligned to order 2: it must be a multiple of 4",
    ),
    (
        "double free",
        lambda: BuddyAllocator(22, 3).free(0, 0),
        "frame 0x0 is already free (in free block at 0x0 of order 3): only allocated blocks can be freed",
    ),
    (
        "wrong order",
        lambda: allocator_with_pair().free(0x14, 0),
        "block at pfn 0x14 was allocated with order 1: free it with that order",
    ),
    (
        "inside a block",
        lambda: allocator_with_pair().free(0x15, 0),
        "pfn 0x15 is inside the allocated block at 0x14 of order 1: free the block by its first pfn",
    ),
]


@pytest.mark.parametrize(("what", "call", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal_says_what_was_wrong_and_what_is_allowed(what: str, call: Callable[[], object], message: str) -> None:
    """Every argument error of the implementation has its exact message (the harness compares only classes)."""
    with pytest.raises(MMCheckError) as caught:
        call()
    assert message == str(caught.value)


def test_corrupt_metadata_is_reported_with_the_frame() -> None:
    """A frame in no block (metadata corrupted behind the allocator's back) is named, not silently skipped."""
    allocator = allocator_with_pair()
    allocator._refcount[0x14] = 0
    with pytest.raises(AssertionError, match="frame 0x15 lies in no block: the per-frame metadata is corrupt"):
        allocator.free(0x15, 0)


def test_smallest_domains_are_accepted() -> None:
    """One frame, and the largest order the allocator supports, are valid configurations."""
    one = BuddyAllocator(1, LIMIT_ORDER)
    assert 0 == one.alloc(0)
    assert one.alloc(0) is None
    lock = Lockstep(Config(frames=1, max_order=0))
    assert {"pfn": 0} == lock.apply(AllocPages(0))
    lock.apply(FreePages(0, 0))


def test_last_64_bit_address_is_translated_not_refused() -> None:
    """0xffff_ffff_ffff_ffff is a canonical address: it is walked (here: not present), not refused as bad input."""
    lock = Lockstep(Config(frames=16))
    result = lock.apply(Access(0, (1 << 64) - 1, "read", "user"))
    assert "fault" in result


def test_frame_absorbed_by_a_merge_is_not_taken_for_a_free_block() -> None:
    """Freeing the upper frame of an allocated pair is NotAllocated on both sides, even after it was merged once.

    Freeing 21 then 20 merges them, absorbing 21; a merge that left 21 marked
    ``PageBuddy`` would make the bad free below look like a double free.
    """
    lock = Lockstep(Config(frames=22, max_order=3))
    assert [{"pfn": 20}, {"pfn": 21}] == [lock.apply(AllocPages(0)), lock.apply(AllocPages(0))]
    lock.apply(FreePages(21, 0))
    lock.apply(FreePages(20, 0))
    assert {"pfn": 20} == lock.apply(AllocPages(1))
    assert {"error": "EINVAL"} == lock.apply(FreePages(21, 0))
    assert isinstance(lock.impl.buddy_error, NotAllocated)


def leaf_path(leaf: int) -> list[Op]:
    """4-level tables at frames 1-4 mapping va 0 to ``leaf`` (user, writable), CPU 0 pointed at them."""
    return [
        WritePhys(0x1000, 0x2007),
        WritePhys(0x2000, 0x3007),
        WritePhys(0x3000, 0x4007),
        WritePhys(0x4000, leaf),
        SetCpu(0, 0x1000),
    ]


@pytest.mark.parametrize(
    ("maxphyaddr", "bit", "expected"),
    [
        (46, 52, {"pa": "0x5000"}),  # bits 62:52 are ignored by the walker
        (52, 52, {"pa": "0x5000"}),  # and stay out of the address even when MAXPHYADDR is 52
        (46, 46, {"fault": {"vector": 14, "error_code": 0xD}}),  # bit MAXPHYADDR is reserved: #PF with RSVD
        (46, 51, {"fault": {"vector": 14, "error_code": 0xD}}),
    ],
)
def test_entry_bits_at_and_above_maxphyaddr(maxphyaddr: int, bit: int, expected: dict[str, object]) -> None:
    """A leaf with one bit set at or above MAXPHYADDR: reserved below 52, ignored from 52, in lockstep."""
    lock = Lockstep(Config(frames=16, maxphyaddr=maxphyaddr))
    for op in leaf_path(0x5007 | 1 << bit):
        lock.apply(op)
    assert expected == lock.apply(Access(0, 0x0, "read", "user"))


def test_default_maxphyaddr_is_the_scenario_default() -> None:
    """An Mmu built without MAXPHYADDR uses the scenario default (46): bit 46 of an entry is reserved."""
    mmu = Mmu(PhysMem(16), 1)
    for op in leaf_path(0x5007 | 1 << Config(frames=16).maxphyaddr):
        if isinstance(op, WritePhys):
            mmu.mem.write(op.pa, op.value)
    mmu.set_cpu(0, cr3=0x1000, wp=False, smep=False, smap=False, ac=False, nxe=False, la57=False)
    fault = mmu.access(0, 0x0, READ, True)
    assert isinstance(fault, Fault) and (14, 0xD) == (fault.vector, fault.error_code)


# --- the seeded sample of all of impl/ (docs/mutation-testing.md, "All of impl/: a sample") ---------------------


def scenario_of(config: Config, *raw: dict[str, object]) -> Scenario:
    return Scenario(config, tuple(parse_op(r, f"ops[{i}]") for i, r in enumerate(raw)))


SAMPLE_REFUSALS: list[tuple[str, Callable[[], object], str]] = [
    ("physmem without frames", lambda: PhysMem(0), "frames must be at least 1, got 0"),
    (
        "word outside memory",
        lambda: PhysMem(2).read(0x2000),
        "physical address 0x2000 is outside memory: allowed 0x0 .. 0x1ff8",
    ),
    ("word above 64 bits", lambda: PhysMem(2).write(0, 1 << 64), "does not fit a 64-bit word: allowed 0 .. 2**64-1"),
    ("word far above 64 bits", lambda: PhysMem(2).write(0, (1 << 65) - 1), "does not fit a 64-bit word"),
    (
        "kmalloc too large",
        lambda: slub_of().kmalloc(8193, 0),
        "kmalloc size 8193 is out of range: allowed 1..8192 (larger requests go to the page allocator)",
    ),
    ("empty cache", lambda: slub_of().create("c", 0, 0, False), "object size 0 is out of range: allowed 1..8192"),
    ("unknown smp cpu", lambda: smp_of(2).check_cpu(2), "cpu 2 does not exist: allowed 0..1"),
]


def slub_of() -> Slub:
    return Slub(BuddyAllocator(64, 5), PhysMem(64), 2)


def smp_of(cpus: int) -> Smp:
    lockstep = Lockstep(Config(frames=32, cpus=cpus))
    lockstep.apply(parse_op({"op": "spawn"}, "ops[0]"))
    smp = lockstep.impl.kernel.smp
    assert isinstance(smp, Smp)
    return smp


@pytest.mark.parametrize(("what", "call", "message"), SAMPLE_REFUSALS, ids=[r[0] for r in SAMPLE_REFUSALS])
def test_sample_refusals_say_what_was_wrong_and_what_is_allowed(
    what: str, call: Callable[[], object], message: str
) -> None:
    with pytest.raises(MMCheckError) as caught:
        call()
    assert message in str(caught.value), what


def test_an_unknown_pin_is_named_with_the_pins_held() -> None:
    """``read_pin`` of a pin never taken: the refusal names it and the pins that are held (none)."""
    lockstep = Lockstep(Config(frames=16))
    lockstep.apply(parse_op({"op": "spawn"}, "ops[0]"))
    kernel = lockstep.impl.kernel.kernel
    assert kernel is not None
    with pytest.raises(MMCheckError, match=r"pin 5 is not held: allowed \[\]"):
        kernel.read_pin(5)


def test_munmap_past_the_top_of_user_space_is_einval() -> None:
    """``do_vmi_munmap`` (mm/vma.c): ``len > TASK_SIZE - start`` is EINVAL, even with nothing mapped there."""
    top = (1 << 47) - 4096
    for model in ("spec", "impl"):
        results = replay(
            scenario_of(Config(frames=16), {"op": "spawn"}, {"op": "munmap", "pid": 1, "va": hex(top), "pages": 2}),
            model,
        ).results
        assert {"error": "EINVAL"} == results[-1], model


def test_panic_on_oom_2_is_the_compulsory_panic() -> None:
    """``check_panic_on_oom`` (mm/oom_kill.c): "Out of memory: compulsory panic_on_oom is enabled" at 2."""
    raw = [{"op": "spawn"}, {"op": "sysctl", "name": "vm.panic_on_oom", "value": 2}, {"op": "out_of_memory", "pid": 1}]
    for model in ("spec", "impl"):
        result = replay(scenario_of(Config(frames=32), *raw), model).results[-1]
        assert result["panic"] == "Out of memory: compulsory panic_on_oom is enabled", model


def test_an_untouched_frame_matches_its_snapshot() -> None:
    """The snapshot contract (``frame_snapshot`` / ``frame_matches``) holds for a frame never written: the frame
    cache of properties.frame_cache keeps an unchanged untouched frame's walk instead of recomputing it."""
    mem = PhysMem(4)
    snapshot = mem.frame_snapshot(2)
    assert mem.frame_matches(2, snapshot)
    assert mem.frame_matches(2, b"")
    mem.write(0x2008, 1)
    assert not mem.frame_matches(2, snapshot)
    assert mem.frame_matches(2, mem.frame_snapshot(2))


def test_tlb_replacement_is_least_recently_used_and_one_entry_caches() -> None:
    """The TLB's documented policy (impl/paging/tlb.py): a fill beyond capacity and ``evict`` drop the least
    recently used entry; a TLB of one entry still caches one translation."""
    tlb = Tlb(2)
    tlb.fill(1, 10, 0x10 << 4)
    tlb.fill(1, 11, 0x11 << 4)
    assert tlb.lookup(1, 10) is not None  # 11 is now the least recently used
    assert tlb.evict()
    assert tlb.lookup(1, 11) is None and tlb.lookup(1, 10) is not None
    one = Tlb(1)
    one.fill(1, 10, 0x10 << 4)
    assert one.lookup(1, 10) == 0x10 << 4
    one.fill(1, 11, 0x11 << 4)
    assert (one.lookup(1, 10), one.lookup(1, 11)) == (None, 0x11 << 4)


def test_tlb_global_entries_and_invpcid_types() -> None:
    """SDM Vol. 3A 4.10.2.4: a global entry serves every PCID; 4.10.4.1: INVPCID type 1 drops one PCID's
    non-global entries, type 3 every non-global entry, and both keep the global ones."""

    def filled() -> Tlb:
        tlb = Tlb(16)
        tlb.fill(1, 10, 0x10 << 4)
        tlb.fill(2, 10, 0x20 << 4)
        tlb.fill(1, 12, (0x12 << 4) | TLB_G)
        return tlb

    tlb = filled()
    assert tlb.lookup(3, 12) == (0x12 << 4) | TLB_G
    tlb.invpcid(1, 1)
    assert sorted(tlb.items()) == [(TLB_GLOBAL, 12, (0x12 << 4) | TLB_G), (2, 10, 0x20 << 4)]
    tlb = filled()
    tlb.invpcid(3)
    assert list(tlb.items()) == [(TLB_GLOBAL, 12, (0x12 << 4) | TLB_G)]


def test_kmalloc_8_is_served_by_kmalloc_8() -> None:
    """``__kmalloc_index`` (include/linux/slab.h): sizes 1..8 are index 3, kmalloc-8."""
    assert [3, 3, 4, 1, 2] == [kmalloc_index(n) for n in (1, 8, 9, 96, 192)]
    slub = slub_of()
    addr = slub.kmalloc(8, 0)
    assert addr is not None and slub.virt_to_slab(addr).cache.name == "kmalloc-8"


def test_the_fourth_waste_fraction_is_tried() -> None:
    """``calculate_order`` (mm/slub.c) tries waste fractions 1/16, 1/8, 1/4 and 1/2 at orders up to
    slub_max_order (3) before ``get_order(size)``: an 11,000-byte slot wastes 10,768 of 32 KiB at order 3,
    more than a quarter and at most a half, so the order is 3 (``get_order`` alone would give 2)."""
    assert 3 == calculate_order(11000, 2, 0, 10)


def test_slabinfo_tunables_are_zero() -> None:
    """SLUB has no tunables: ``get_slabinfo`` leaves limit, batchcount and sharedfactor 0, and ``cache_show``
    (mm/slab_common.c) prints them as ``: tunables    0    0    0``."""
    slub = slub_of()
    slub.kmalloc(64, 0)
    lines = slub.slabinfo().splitlines()[2:]
    assert lines and all(" : tunables    0    0    0 : slabdata " in line for line in lines)


def test_a_zero_page_written_back_leaves_nothing_on_disk() -> None:
    """A dirty shared file page that holds only zeros, written back (fsync), then read again after it left the
    cache: both sides read 0 and agree at every step."""
    raw = [
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "file_create", "file": "f", "pages": 1, "words": {"0x8": 5}},
        {"op": "mmap_file", "pid": 1, "va": "0x40000000", "pages": 1, "prot": "rw-", "file": "f", "shared": True},
        {"op": "store", "cpu": 0, "va": "0x40000008", "value": 0},
        {"op": "fsync", "file": "f"},
        {"op": "munmap", "pid": 1, "va": "0x40000000", "pages": 1},
        {"op": "reclaim", "pages": 4},
        {"op": "file_read", "file": "f", "offset": "0x8"},
    ]
    report = replay(scenario_of(Config(frames=32, cpus=1, max_order=3), *raw))
    assert report.divergence is None, report.divergence
    assert {"value": 0} == report.results[-1]


def test_a_cold_file_page_goes_to_the_inactive_file_list() -> None:
    """``MADV_COLD`` (mm/madvise.c ``madvise_cold_or_pageout_pte_range``, ``folio_deactivate``) moves a file page
    to the inactive file list, where reclaim without swap finds it; both sides agree on the list and on what
    reclaim then takes."""
    raw = [
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "file_create", "file": "f", "pages": 1, "words": {"0x8": 5}},
        {"op": "mmap_file", "pid": 1, "va": "0x40000000", "pages": 1, "prot": "r--", "file": "f", "shared": True},
        {"op": "load", "cpu": 0, "va": "0x40000008"},
        {"op": "madvise", "pid": 1, "va": "0x40000000", "pages": 1, "advice": "cold"},
        {"op": "reclaim", "pages": 1},
    ]
    report = replay(scenario_of(Config(frames=32, cpus=1, max_order=3), *raw))
    assert report.divergence is None, report.divergence


def test_a_freed_page_table_at_a_2_mib_boundary_interrupts_the_lazy_cpu() -> None:
    """munmap of the one page at 2 MiB frees the PT whose range starts at that page (the page at 4 MiB keeps the
    tables above it): the flight counts it as a freed table, so the CPU in lazy TLB mode gets the IPI too
    (``tlb_remove_table``'s ``tlb_flush_mmu`` with ``freed_tables``; the fix of CVE-2025-22045, 2ff6ddf19c0e)."""
    ops = [
        Spawn(),
        Switch(0, 1),
        Switch(1, 1),
        Mmap(1, 0x200000, 1, "rw-"),
        Mmap(1, 0x400000, 1, "rw-"),
        Store(0, 0x200000, 7),
        Store(0, 0x400000, 8),
        Load(1, 0x200000),
        KernelThread(1),
    ]
    lockstep = Lockstep(Config(frames=40, cpus=2))
    for op in ops:
        lockstep.apply(op)
    lockstep.apply(Munmap(1, 0x200000, 1))
    kernel = lockstep.spec.kernel.kernel  # type: ignore[union-attr]
    assert kernel is not None
    assert [("ipi", 0), ("ipi", 1)] == [(e.kind, e.cpu) for e in kernel.events if e.kind == "ipi"]


def test_anon_vma_reuse() -> None:
    """``find_mergeable_anon_vma`` / ``anon_vma_compatible`` (mm/rmap.c, mm/vma.c): a touching private neighbour's
    unforked anon_vma is reused when the flags other than the access rights match; a neighbour that differs in
    ``VM_ACCOUNT`` (a read-only private VMA without an anon_vma has none) gets an anon_vma of its own."""
    vmas = VmaList()
    first = Vma(0x100, 0x110, (True, True, False), False, anon=1)
    second = Vma(0x110, 0x120, (True, True, False), False)
    third = Vma(0x120, 0x130, (True, False, False), False)
    for vma in (first, second, third):
        vmas.insert(vma)
    vmas.prepare_anon(second)
    vmas.prepare_anon(third)
    assert (first.anon, second.anon, third.anon) == (1, 1, 2)


def test_a_fault_past_the_end_of_the_file_is_sigbus() -> None:
    """``filemap_fault`` (mm/filemap.c): a page at or past ``i_size`` is ``VM_FAULT_SIGBUS``, even inside the
    mapping; both sides say so."""
    raw = [
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "file_create", "file": "f", "pages": 1, "words": {"0x8": 5}},
        {"op": "mmap_file", "pid": 1, "va": "0x40000000", "pages": 2, "prot": "r--", "file": "f", "shared": True},
        {"op": "load", "cpu": 0, "va": "0x40001008"},
    ]
    for model in ("spec", "impl"):
        result = replay(scenario_of(Config(frames=32, cpus=1, max_order=3), *raw), model).results[-1]
        assert {"signal": "SIGBUS"} == result, model
