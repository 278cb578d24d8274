"""The memory-pressure, OOM and slab refinement machines run clean under the loaded profile (mutmut: 60
programs), so mutation testing of impl/pressure, impl/oom and impl/slab has machine tests to fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine

from lang.verdict import Status
from properties.machinery import run_machine
from properties.oom.oom_machine import OomMachine
from properties.pressure.pressure_machine import PressureMachine
from properties.slab.slab_machine import SlabMachine


@pytest.mark.parametrize("machine", [PressureMachine, OomMachine, SlabMachine], ids=lambda m: str(m.name))
def test_area_machine_finds_no_divergence(
    machine: type[RuleBasedStateMachine], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Implementation and spec agree on every program the profile tries."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(machine, settings(report_multiple_bugs=False))
    assert Status.CONFIRMED == status, detail
