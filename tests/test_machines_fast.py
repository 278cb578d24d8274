"""The kernel, hugetlb, transparent-huge-page, SMP, memory-pressure, OOM, memory cgroup and slab refinement
machines run clean under the loaded profile (mutmut: 60 programs), so mutation testing of every module of impl/
has machine tests to fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine

from lang.verdict import Status
from properties.machinery import run_machine
from properties.mm.huge_machine import HugeMachine
from properties.mm.kernel_machine import KernelMachine
from properties.mm.thp_machine import ThpMachine
from properties.oom.memcg_machine import MemcgMachine
from properties.oom.oom_machine import OomMachine
from properties.pressure.pressure_machine import PressureMachine
from properties.slab.slab_debug_machine import SlabDebugMachine
from properties.slab.slab_machine import SlabMachine
from properties.smp.smp_machine import SmpMachine

MACHINES = [
    KernelMachine,
    HugeMachine,
    ThpMachine,
    SmpMachine,
    PressureMachine,
    OomMachine,
    MemcgMachine,
    SlabMachine,
    SlabDebugMachine,
]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: str(m.name))
def test_machine_finds_no_divergence(
    machine: type[RuleBasedStateMachine], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Implementation, L1 and L0 agree on every program the profile tries."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(machine, settings(report_multiple_bugs=False))
    assert Status.CONFIRMED == status, detail
