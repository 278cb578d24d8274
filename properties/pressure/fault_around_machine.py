"""The memory-pressure refinement machine without fault-around, observing smaps after every step it draws.

``fault_around_bytes`` 4096 turns fault-around off (mm/memory.c
``should_fault_around``: a window of one page maps only the faulting page),
so every read fault on a file or shmem page is a fault of its own and the
page cache's neighbours stay unmapped until touched; the pressure machine
runs at the default of 64 KiB.  This machine runs the same programs at 4096
and adds one rule, ``/proc/PID/smaps_rollup`` of the running process (Rss,
Pss, the clean and dirty splits, Swap and SwapPss: fs/proc/task_mmu.c
``smaps_account``), compared in lockstep.  A failure is saved as
``counterexamples/fault_around_machine.json``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis.stateful import invariant, rule

from lang.pressure_ops import SmapsOp
from lang.scenario import Config
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.pressure import pressure_machine
from properties.pressure.pressure_machine import PressureMachine
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants

CONFIG = replace(pressure_machine.CONFIG, fault_around_bytes=4096)
CHECK_NAME = "pressure without fault-around, with smaps: impl refines L1 refines L0"


class FaultAroundOffMachine(PressureMachine):
    """:class:`PressureMachine` under :data:`CONFIG`, with smaps observed."""

    name = "fault_around_machine"
    config: Config = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    @rule()
    def observe_smaps(self) -> None:
        self.run(SmapsOp(self.running))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        if problems:
            path = save_counterexample(self.name, self.config, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


machinery.run_as(FaultAroundOffMachine, shrink_phase=False, examples_divisor=3)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(FaultAroundOffMachine))
