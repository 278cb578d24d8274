"""Translation through the implementation's TLB (:meth:`impl.paging.mmu.Mmu.translate`) against the walker alone."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from hypothesis import given, settings

from impl.paging.mmu import READ, WRITE, Fault, Mmu, Translated
from impl.paging.physmem import PhysMem
from impl.paging.tlb import HUGE, Tlb, U, W
from lang.errors import AddressError
from lang.hardware_ops import Access, SetCpu, WritePhys
from lang.scenario import Scenario
from properties.drivers import IMPL_KINDS
from properties.paging.page_tables import mmu_scenarios


def outcome_key(outcome: Translated | Fault) -> tuple[str, int, int]:
    if isinstance(outcome, Translated):
        return ("pa", outcome.pa, 0)
    return ("fault", outcome.vector, outcome.error_code)


def loaded(mmu: Mmu, access: Callable[[], Translated | Fault | int]) -> tuple[str, int, int]:
    """What a load gives: the word, the fault, or a refusal of an address outside memory."""
    try:
        outcome = access()
        if isinstance(outcome, Translated):
            return ("word", mmu.mem.read(outcome.pa), 0)
    except AddressError:
        return ("outside memory", 0, 0)
    return ("word", outcome, 0) if isinstance(outcome, int) else outcome_key(outcome)


def mmu_of(scenario: Scenario) -> Mmu:
    config = scenario.config
    return Mmu(PhysMem(config.frames), config.cpus, config.maxphyaddr)


@settings(max_examples=150, deadline=None)
@given(mmu_scenarios())
def test_translate_through_the_tlb_gives_what_the_walk_gives(scenario: Scenario) -> None:
    """Every access twice (a miss, then a hit where the first succeeded): the same outcome and memory as the walker."""
    walker, cached = mmu_of(scenario), mmu_of(scenario)
    tlb = Tlb(8)
    for op in scenario.ops:
        if isinstance(op, WritePhys):
            for mmu in (walker, cached):
                mmu.mem.write(op.pa, op.value)
            tlb.invpcid(2)  # software invalidates after changing a paging-structure entry
        elif isinstance(op, SetCpu):
            for mmu in (walker, cached):
                mmu.set_cpu(
                    op.cpu, cr3=op.cr3, wp=op.wp, smep=op.smep, smap=op.smap, ac=op.ac, nxe=op.nxe, la57=op.la57
                )
            tlb.invpcid(2)  # the new controls come with a MOV to CR3, which flushes the TLB (SDM Vol. 3A 4.10.4.1)
        elif isinstance(op, Access):
            kind, user = IMPL_KINDS[op.kind], op.mode == "user"
            for _ in range(2):
                expected = walker.access(op.cpu, op.va, kind, user)
                actual = cached.translate(op.cpu, op.va, kind, user, tlb, 1)
                assert outcome_key(expected) == outcome_key(actual)
                assert list(walker.mem.nonzero_words()) == list(cached.mem.nonzero_words())
            if kind == READ and not op.va & 7:
                from_walk = loaded(walker, partial(walker.access, op.cpu, op.va, READ, user))
                assert from_walk == loaded(cached, partial(cached.load, op.cpu, op.va, user, tlb, 1))
                assert list(walker.mem.nonzero_words()) == list(cached.mem.nonzero_words())


def test_a_load_that_hits_does_not_walk() -> None:
    """After the first load fills the TLB, a load still translates with the page tables gone (no walk)."""
    mem = PhysMem(8)
    for table, entry in ((0x1000, 0x2007), (0x2000, 0x3007), (0x3000, 0x4007), (0x4000, 0x5007)):
        mem.write(table, entry)
    mmu = Mmu(mem, 1)
    mmu.set_cpu(0, cr3=0x1000, wp=True, smep=False, smap=False, ac=False, nxe=True, la57=False)
    tlb = Tlb(4)
    assert outcome_key(mmu.translate(0, 0x10, READ, True, tlb, 1)) == ("pa", 0x5010, 0)
    mem.write(0x1000, 0)  # the PML4 entry cleared without an invalidation: only the TLB still knows the page
    assert outcome_key(mmu.translate(0, 0x18, READ, True, tlb, 1)) == ("pa", 0x5018, 0)
    assert outcome_key(mmu.access(0, 0x18, READ, True)) == ("fault", 14, 0x4)


def test_a_write_that_hits_still_sets_dirty() -> None:
    """The TLB does not cache D: a write after a load sets D in the leaf (SDM 4.8)."""
    mem = PhysMem(8)
    for table, entry in ((0x1000, 0x2007), (0x2000, 0x3007), (0x3000, 0x4007), (0x4000, 0x5007)):
        mem.write(table, entry)
    mmu = Mmu(mem, 1)
    mmu.set_cpu(0, cr3=0x1000, wp=True, smep=False, smap=False, ac=False, nxe=True, la57=False)
    tlb = Tlb(4)
    mmu.translate(0, 0x10, READ, True, tlb, 1)
    assert not mem.read(0x4000) & 0x40
    assert outcome_key(mmu.translate(0, 0x10, WRITE, True, tlb, 1)) == ("pa", 0x5010, 0)
    assert mem.read(0x4000) & 0x40


def test_a_2mib_entry_translates_every_page_of_its_2mib() -> None:
    """A 2 MiB entry, as the kernel's CPUs fill them, gives the frame of the page within the 2 MiB, without a walk."""
    mmu = Mmu(PhysMem(8), 1)
    mmu.set_cpu(0, cr3=0x1000, wp=True, smep=False, smap=False, ac=False, nxe=True, la57=False)
    tlb = Tlb(4)
    tlb.fill(1, 0x200, (0x400 << 4) | W | U | HUGE)  # va 0x200000 .. 0x3fffff -> pa 0x400000 .. 0x5fffff
    assert outcome_key(mmu.translate(0, 0x203008, READ, True, tlb, 1)) == ("pa", 0x403008, 0)
    assert outcome_key(mmu.access(0, 0x203008, READ, True)) == ("fault", 14, 0x4)  # the tables are empty
