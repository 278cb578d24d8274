"""The kernel-layer refinement machine with 5-level paging (``levels: 5``, CR4.LA57=1).

With LA57 the walk starts at a PML5 table and a linear address has 57
significant bits (Intel SDM Vol. 3A 4.5); the kernel builds one more level of
page table per address space (``p4d`` is a real level, arch/x86/include/asm/
pgtable_64_types.h), so fork copies, munmap frees and the no-leak accounting
count one more table.  The rules, the start and the checks are
:class:`~properties.mm.kernel_machine.KernelMachine`'s; only ``levels``
differs.  A failure is saved as ``counterexamples/five_level_machine.json``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis.stateful import invariant

from lang.scenario import Config
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.mm import kernel_machine
from properties.mm.kernel_machine import KernelMachine
from properties.recording import RecordingLockstep, save_counterexample

CONFIG = replace(kernel_machine.CONFIG, levels=5)
CHECK_NAME = "kernel with 5-level paging: implementation refines L1, L1 refines L0"


class FiveLevelMachine(KernelMachine):
    """:class:`KernelMachine` under :data:`CONFIG`."""

    name = "five_level_machine"
    config: Config = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_machine.violations(state)
        if problems:
            path = save_counterexample(self.name, self.config, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


machinery.run_as(FiveLevelMachine, shrink_phase=False, examples_divisor=3)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The 5-level kernel machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(FiveLevelMachine))
