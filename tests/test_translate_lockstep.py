"""The lockstep implementation runs hardware accesses and word reads through its TLBs, invalidated as software must.

:class:`properties.drivers.ImplRunner` answers ``access`` with ``Mmu.translate``
and ``read_virt`` with ``Mmu.load`` through one TLB per CPU; these tests pin
the invalidations that keep the walk (the spec) the answer, and the word
read's results and refusals on both sides.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lang.errors import AddressError, UnknownCpu
from lang.hardware_ops import Access, ReadVirt, SetCpu, WritePhys
from lang.scenario import Config, Scenario
from properties.drivers import Lockstep
from properties.replay import replay

CONFIG = Config(frames=16, cpus=2)
XD = 1 << 63
# PML4 at 0x0, PDPT at 0x1000, PD at 0x2000, PT at 0x3000; va 0 maps frame 4 (user, writable, XD).
TABLES = [WritePhys(0x0, 0x1007), WritePhys(0x1000, 0x2007), WritePhys(0x2000, 0x3007)]
LEAF = WritePhys(0x3000, 0x4007 | XD)


def run(ops: list[object], config: Config = CONFIG) -> tuple[Lockstep, list[object]]:
    lockstep = Lockstep(config)
    return lockstep, [lockstep.apply(op) for op in ops]  # type: ignore[arg-type]


def test_an_access_fills_the_cpus_tlb_and_a_store_empties_every_tlb() -> None:
    lockstep, _ = run([*TABLES, LEAF, SetCpu(0, 0, nxe=True), Access(0, 0x10, "read", "user")])
    assert [(0, 0, 0x4 << 4 | 0b1110)] == list(lockstep.impl.tlbs[0].items())  # W, U, NX
    assert [] == list(lockstep.impl.tlbs[1].items())
    lockstep.apply(WritePhys(0x800, 0))
    assert [] == list(lockstep.impl.tlbs[0].items())


def test_clearing_nxe_drops_entries_that_cached_xd() -> None:
    """With NXE=0 bit 63 is reserved: the walk faults with RSVD (0xf for a user write), so the cached entry of the
    read before must not answer (its protection #PF would be 0x7)."""
    ops = [*TABLES, LEAF, SetCpu(0, 0, nxe=True), Access(0, 0x10, "read", "user"), SetCpu(0, 0, nxe=False)]
    lockstep, _ = run(ops)
    assert [] == list(lockstep.impl.tlbs[0].items())
    assert {"fault": {"vector": 14, "error_code": 0xF}} == lockstep.apply(Access(0, 0x10, "write", "user"))


def test_control_changes_that_keep_the_meaning_keep_the_entries() -> None:
    """WP, SMAP and AC changes keep the TLB (a hit is judged by the new controls); a hit under SMAP with AC=1
    reads a user page, with AC=0 faults."""
    ops = [
        *TABLES,
        LEAF,
        SetCpu(0, 0, nxe=True),
        Access(0, 0x10, "read", "user"),
        SetCpu(0, 0, True, False, True, True, True),
    ]
    lockstep, _ = run(ops)
    assert 1 == len(list(lockstep.impl.tlbs[0].items()))
    assert {"pa": "0x4010"} == lockstep.apply(Access(0, 0x10, "read", "supervisor"))
    lockstep.apply(SetCpu(0, 0, True, False, True, False, True))
    assert {"fault": {"vector": 14, "error_code": 1}} == lockstep.apply(Access(0, 0x10, "read", "supervisor"))


def test_setting_smep_or_changing_cr3_flushes_the_cpu() -> None:
    ops = [*TABLES, LEAF, SetCpu(0, 0, nxe=True), Access(0, 0x10, "read", "user"), SetCpu(0, 0, smep=True, nxe=True)]
    lockstep, _ = run(ops)
    assert [] == list(lockstep.impl.tlbs[0].items())
    lockstep.apply(Access(0, 0x10, "read", "user"))
    lockstep.apply(SetCpu(0, 0x5000, smep=True, nxe=True))
    assert [] == list(lockstep.impl.tlbs[0].items())


def test_read_virt_reads_the_word_through_the_tlb_and_faults_like_an_access() -> None:
    word = WritePhys(0x4010, 0xDEADBEEF)
    ops = [*TABLES, LEAF, word, SetCpu(0, 0, nxe=True), ReadVirt(0, 0x10), ReadVirt(0, 0x10), ReadVirt(0, 0x18)]
    _, results = run(ops)
    assert [{"value": "0xdeadbeef"}, {"value": "0xdeadbeef"}, {"value": "0x0"}] == results[-3:]
    _, results = run([*TABLES, LEAF, SetCpu(0, 0, nxe=True), ReadVirt(0, 0x10, "supervisor")])
    assert {"value": "0x0"} == results[-1]
    _, results = run([*TABLES, SetCpu(0, 0, nxe=True), ReadVirt(0, 0x10)])
    assert {"fault": {"vector": 14, "error_code": 4}} == results[-1]


@pytest.mark.parametrize("tlb_entries", [0, 64])
def test_read_virt_of_a_frame_outside_memory_is_a_machine_check(tlb_entries: int) -> None:
    ops = [*TABLES, WritePhys(0x3000, 0x99007), SetCpu(0, 0), ReadVirt(0, 0x10), ReadVirt(0, 0x10)]
    _, results = run(ops, replace(CONFIG, tlb_entries=tlb_entries))
    assert [{"fault": {"vector": 18}}] * 2 == results[-2:]


@pytest.mark.parametrize(
    ("op", "error"),
    [(ReadVirt(0, 0x14), AddressError), (ReadVirt(0, 1 << 64), AddressError), (ReadVirt(2, 0), UnknownCpu)],
)
def test_read_virt_refuses_bad_input_on_both_sides_and_changes_nothing(op: ReadVirt, error: type[Exception]) -> None:
    lockstep, _ = run([*TABLES, LEAF, SetCpu(0, 0, nxe=True)])
    with pytest.raises(error):
        lockstep.apply(op)
    assert [] == list(lockstep.impl.tlbs[0].items())


def test_a_scenario_with_read_virt_round_trips_and_replays() -> None:
    ops = [*TABLES, LEAF, WritePhys(0x4010, 7), SetCpu(0, 0, nxe=True), ReadVirt(0, 0x10, "user")]
    scenario = Scenario.from_json(Scenario(CONFIG, tuple(ops)).to_json())
    assert tuple(ops) == scenario.ops
    report = replay(scenario)
    assert report.divergence is None
    assert {"value": "0x7"} == report.results[-1]
