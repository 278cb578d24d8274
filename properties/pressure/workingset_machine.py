"""The memory-pressure refinement machine with workingset detection on (config ``workingset`` 1).

The same programs as :class:`~properties.pressure.pressure_machine.PressureMachine`, with refault-distance
detection of file pages (mm/workingset.c, :mod:`spec.pressure.workingset`): every eviction by reclaim or
``MADV_PAGEOUT`` and every activation ages the node's ``nonresident_age``, an evicted file page leaves a
shadow entry, and a ``read`` or fault that brings it back is a refault, put straight on the active list when
its distance is at most the workingset size.  One rule is added, a page of the shared file mapping paged out
and read back at once (a short refault distance: reclaim alone rarely gives one, as it deactivates the active
list before it evicts).  The lockstep runner compares the shadows, the age and the
counters (``workingset_refault_file``, ``workingset_activate_file``, also in every ``vmstat`` result) after
every operation, and the machine's invariant checks the L1 invariants, the workingset's included (shadows
only at uncached pages below their file's end).  A failure is saved as
``counterexamples/workingset_machine.json``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from lang.kernel_ops import Madvise
from lang.pressure_ops import FileRead
from lang.scenario import Config
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.pressure import pressure_machine
from properties.pressure.pressure_machine import PressureMachine
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants

CONFIG = replace(pressure_machine.CONFIG, workingset=1)
CHECK_NAME = "pressure with workingset detection (refault distance): impl refines L1 refines L0"


class WorkingsetMachine(PressureMachine):
    """:class:`PressureMachine` under :data:`CONFIG`."""

    name = "workingset_machine"
    config: Config = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    @rule(page=st.integers(0, 1))
    def refault_soon(self, page: int) -> None:
        """``MADV_PAGEOUT`` of a page of the shared file mapping, then ``read`` of it: a refault of distance one."""
        self.run(Madvise(self.running, pressure_machine.SHARED + page * 0x1000, 1, "pageout"))
        self.run(FileRead("f", page * 0x1000 + 8))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        if problems:
            path = save_counterexample(self.name, self.config, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


machinery.run_as(WorkingsetMachine, shrink_phase=False, examples_divisor=3)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(WorkingsetMachine))
