"""CPUs without PCIDs (``config.pcid`` false, CR4.PCIDE=0): the rules on both sides, the scenarios, the mutants.

Without PCIDs every TLB entry is PCID 0's, a MOV to CR3 drops every non-global
entry (Intel SDM Vol. 3A 4.10.4.1), and Linux's ``choose_new_asid`` returns
ASID 0 with a flush whenever the mm changes (arch/x86/mm/tlb.c).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from impl.paging.tlb import GLOBAL, G
from impl.paging.tlb import Tlb as ImplTlb
from impl.smp import shootdown as impl_shootdown
from impl.smp.shootdown import CpuTlbState
from lang.errors import ScenarioError
from lang.kernel_ops import KernelThread, Load, Mmap, Spawn, Store, Switch
from lang.scenario import Config, Op, Scenario, load
from proofs.explore import explore
from proofs.smp_system import SETUP, SmpBounds, SmpSystem
from properties.drivers import Lockstep
from properties.minimise import failure_kind
from properties.mutants import by_name
from properties.replay import replay
from spec.mm.vma import KERNEL_VA
from spec.paging.tlb import GLOBAL_PCID, Tlb, TlbEntry, mov_cr3
from spec.smp import shootdown
from spec.smp.state import CpuTlb, Slot, asid_pcid

BASE = 0x10000000
SCENARIOS = Path(__file__).parent / "scenarios"
SWITCH = SCENARIOS / "tlb-nopcid-switch-flushes-old-mm.json"
GLOBAL_SURVIVES = SCENARIOS / "tlb-nopcid-global-kernel-entry-survives-switch.json"
NOPCID = Config(frames=40, cpus=1, pcid=False)


def entry(pcid: int, vpn: int) -> TlbEntry:
    return TlbEntry(pcid, vpn, 0x10, True, True, True)


# --- the config ---------------------------------------------------------------------------------


def test_pcid_is_written_only_when_false() -> None:
    """Existing scenarios read and write as before; ``"pcid": false`` round-trips."""
    assert "pcid" not in Config(frames=4).to_json()
    assert False is Config(frames=4, pcid=False).to_json()["pcid"]
    assert Config(frames=4, pcid=False) == Config.from_json({"frames": 4, "pcid": False})
    assert Config(frames=4) == Config.from_json({"frames": 4, "pcid": True})


@pytest.mark.parametrize("raw", [0, 1, "false", None])
def test_a_pcid_that_is_not_a_boolean_is_an_error_naming_it(raw: object) -> None:
    with pytest.raises(ScenarioError, match=r"config\.pcid"):
        Config.from_json({"frames": 4, "pcid": raw})


# --- the spec -----------------------------------------------------------------------------------


def test_spec_mov_cr3_without_pcide_drops_every_non_global_entry() -> None:
    """With PCIDE=0, MOV to CR3 keeps only global entries, whatever bit 63 and the PCID say; with PCIDE=1 as before."""
    tlb = Tlb(frozenset({entry(0, 5), entry(1, 5), entry(GLOBAL_PCID, 6)}), frozenset({(0, 9)}))
    kept = Tlb(frozenset({entry(GLOBAL_PCID, 6)}))
    assert kept == mov_cr3(tlb, 0, noflush=False, pcide=False)
    assert kept == mov_cr3(tlb, 0, noflush=True, pcide=False)
    assert tlb == mov_cr3(tlb, 0, noflush=True)


def test_spec_choose_new_asid_without_pcids_is_asid_0_with_a_flush() -> None:
    """Even a slot that holds the mm at its current generation is not reused; ``next_asid`` is untouched."""
    state = CpuTlb(asid=0, slots=(Slot(1, 3),) + (Slot(),) * 5, pcide=False)
    assert (0, True, 1) == shootdown.choose_new_asid(state, 1, 3)
    assert (0, False, 1) == shootdown.choose_new_asid(CpuTlb(slots=state.slots), 1, 3)


def test_spec_pcid_is_0_for_every_asid_without_pcids() -> None:
    assert [0] * 6 == [asid_pcid(False, asid) for asid in range(6)]
    assert [1, 2, 3, 4, 5, 6] == [asid_pcid(True, asid) for asid in range(6)]
    assert 0 == CpuTlb(asid=3, pcide=False).pcid


def spec_after(ops: Sequence[Op], config: Config = NOPCID) -> Lockstep:
    """Both sides in lockstep after ``ops``."""
    lockstep = Lockstep(config)
    for op in ops:
        lockstep.apply(op)
    return lockstep


def test_spec_switch_flushes_the_old_mm_and_keeps_the_global_entry() -> None:
    """A switch to another mm records a flush of PCID 0; the old mm's entry is no longer one the CPU may hold, the
    global kernel entry still is."""
    ops = [Spawn(), Spawn(), Switch(0, 1), Mmap(1, BASE, 1, "rw-"), Store(0, BASE, 7), Load(0, KERNEL_VA, "supervisor")]
    lockstep = spec_after([*ops, Switch(0, 2)])
    k = lockstep.spec.kernel.kernel
    assert k is not None
    assert [("flush", 0, 0)] == [(e.kind, e.cpu, e.value) for e in k.events]
    assert (0, 2) == (k.cpus[0].asid, k.cpus[0].slots[0].ctx_id)
    pfn = k.procs[1].leaves[BASE >> 12].pfn
    assert not shootdown.may_hold(k, 0, TlbEntry(0, BASE >> 12, pfn, True, True, True))
    kernel = k.kernel_leaves[KERNEL_VA >> 12]
    assert shootdown.may_hold(k, 0, TlbEntry(GLOBAL_PCID, KERNEL_VA >> 12, kernel.pfn, False, False, kernel.nx))


def test_spec_switch_back_to_a_current_slot_still_flushes() -> None:
    """With PCIDs the way back to pid 1 reuses its slot without a flush; without PCIDs it flushes again."""
    ops = [Spawn(), Spawn(), Switch(0, 1), Switch(0, 2), Switch(0, 1)]
    with_pcid = spec_after(ops, Config(frames=40, cpus=1)).spec.kernel.kernel
    without = spec_after(ops).spec.kernel.kernel
    assert with_pcid is not None and without is not None
    assert [] == [e for e in with_pcid.events if e.kind == "flush"]
    assert [("flush", 0, 0)] == [(e.kind, e.cpu, e.value) for e in without.events]


def test_spec_returning_from_a_kernel_thread_flushes_only_if_the_mm_moved() -> None:
    """Lazy TLB without PCIDs: back to the same mm, no flush when its generation did not move."""
    lockstep = spec_after([Spawn(), Switch(0, 1), KernelThread(0), Switch(0, 1)])
    k = lockstep.spec.kernel.kernel
    assert k is not None and [] == list(k.events)


# --- the implementation -------------------------------------------------------------------------


def test_impl_mov_cr3_without_pcide_drops_every_non_global_entry() -> None:
    tlb = ImplTlb(8)
    tlb.fill(0, 5, 0x10 << 4)
    tlb.fill(0, 6, 0x11 << 4 | G)
    tlb.mov_cr3(0, noflush=True, pcide=False)
    assert [(GLOBAL, 6, 0x11 << 4 | G)] == list(tlb.items())
    tlb.fill(1, 5, 0x10 << 4)
    tlb.mov_cr3(1, noflush=True)
    assert 2 == len(list(tlb.items())), "with PCIDE=1 the no-flush bit keeps everything"


def test_impl_choose_new_asid_without_pcids_is_asid_0_with_a_flush() -> None:
    state = CpuTlbState(pcide=False)
    state.slots[0] = [1, 3]
    assert (0, True) == impl_shootdown.choose_new_asid(state, 1, 3)
    assert (1, 0) == (state.next_asid, state.pcid)
    assert (0, False) == impl_shootdown.choose_new_asid(CpuTlbState(), 0, 0)


def test_impl_switch_leaves_only_the_global_entry() -> None:
    """After the switch to pid 2 the implementation's TLB holds the kernel's global entry and nothing else."""
    ops = [Spawn(), Spawn(), Switch(0, 1), Mmap(1, BASE, 1, "rw-"), Store(0, BASE, 7), Load(0, KERNEL_VA, "supervisor")]
    lockstep = spec_after([*ops, Switch(0, 2)])
    smp = lockstep.impl.kernel.smp
    assert smp is not None
    assert [(GLOBAL, KERNEL_VA >> 12)] == [(pcid, vpn) for pcid, vpn, _ in smp.tlbs[0].items()]
    assert [("flush", 0, 0)] == smp.events
    assert all(not state.pcide and state.asid == 0 for state in smp.cpu_tlb)


# --- scenarios and mutants ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [SWITCH, GLOBAL_SURVIVES], ids=lambda p: p.stem)
def test_the_scenarios_run_without_pcids(path: Path) -> None:
    scenario = load(path)
    assert scenario.config.pcid is False
    assert failure_kind(scenario) is None


def flushes(config: Config, scenario: Scenario) -> int:
    """The flush events of ``scenario``'s ops run under ``config``, each result checked against the recorded one."""
    lockstep, count = Lockstep(config), 0
    for op, want in zip(scenario.ops, scenario.expected_results or (), strict=True):
        assert want == lockstep.apply(op)
        count += sum(e.kind == "flush" for e in lockstep.spec.kernel.kernel.events)  # type: ignore[union-attr]
    return count


def test_with_pcids_only_a_new_asid_flushes() -> None:
    """The same results with PCIDs, where only the first switch to each mm flushes (a new ASID); without them each
    of the four switches does."""
    scenario = load(SWITCH)
    assert 2 == flushes(Config(frames=40, cpus=1), scenario)
    assert 4 == flushes(NOPCID, scenario)


@pytest.mark.parametrize("name", ["nopcid-flush-kern-pcid", "nopcid-asid-slots-reused"])
def test_each_pcid_mutant_breaks_the_switch_scenario(name: str) -> None:
    scenario = load(SWITCH)
    with by_name(name).applied():
        assert failure_kind(scenario) is not None


def test_the_kern_pcid_flush_lets_the_new_mm_read_the_old_ones_page() -> None:
    """The implementation alone under the mutant: pid 2, with nothing mapped, reads pid 1's 7 through the kept entry."""
    scenario = load(SWITCH)
    assert {"signal": "SIGSEGV", "error_code": 4} == replay(scenario, "impl").results[6]
    with by_name("nopcid-flush-kern-pcid").applied():
        assert {"value": 7} == replay(scenario, "impl").results[6]


def test_reused_asid_slots_let_the_old_mm_read_the_new_ones_page() -> None:
    """Under the mutant pid 1, back on CPU 0, reads pid 2's 9 through the entry its current slot kept."""
    scenario = load(SWITCH)
    assert {"value": 7} == replay(scenario, "impl").results[10]
    with by_name("nopcid-asid-slots-reused").applied():
        assert {"value": 9} == replay(scenario, "impl").results[10]


# --- the explorer -------------------------------------------------------------------------------


def test_the_explorer_exhausts_a_small_bound_without_pcids() -> None:
    """Two processes switching on one CPU with munmap and mprotect in flight: every reachable state checked."""
    bounds = SmpBounds(
        cpus=1, procs=2, pages=1, frames=14, fork=False, evict=False, syscalls=("munmap",), pcid=False, setup=SETUP[:2]
    )
    assert "no PCIDs" in bounds.describe()
    result = explore(SmpSystem(bounds), max_depth=6)
    assert result.path is None, result.reason
    assert result.stats.distinct > 20
