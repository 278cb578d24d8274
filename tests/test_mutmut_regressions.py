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
from impl.paging.mmu import READ, Fault, Mmu
from impl.paging.physmem import PhysMem
from lang.errors import MMCheckError, NotAllocated
from lang.hardware_ops import Access, AllocPages, FreePages, SetCpu, WritePhys
from lang.scenario import Config, Op
from properties.drivers import Lockstep


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
