"""The SMP refinement machine on CPUs without PCIDs (CR4.PCIDE=0): every switch to another mm flushes.

The rules, the start and the checks are those of
:class:`~properties.smp.smp_machine.SmpMachine`; only the configuration
differs: ``pcid`` is false, so each CPU keeps to ASID 0, tags every TLB entry
with PCID 0, and drops every non-global entry when it loads another address
space (Intel SDM Vol. 3A 4.10.4.1; ``choose_new_asid`` in arch/x86/mm/tlb.c
returns ASID 0 with a flush when ``X86_FEATURE_PCID`` is absent).  Switches
between processes on one CPU are where a stale entry of the previous mm would
show: the lockstep runner checks that every implementation TLB entry is one the
spec lets that CPU hold, and that the flush events agree.  The global kernel
entry survives the switches, and ``kernel_remap`` still has to drop it.
A failure is saved as ``counterexamples/nopcid_machine.json`` and minimised.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis.stateful import invariant

from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.recording import RecordingLockstep, save_counterexample
from properties.smp import smp_machine
from properties.smp.smp_machine import SmpMachine
from spec.smp import shootdown

CONFIG = replace(smp_machine.CONFIG, pcid=False)
CHECK_NAME = "smp without PCIDs: every switch flushes, TLBs within what the spec allows (3 CPUs, CR4.PCIDE=0)"


class NoPcidMachine(SmpMachine):
    """:class:`SmpMachine` under :data:`CONFIG`: the same programs on CPUs without PCIDs."""

    name = "nopcid_machine"
    examples_divisor = 2

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)

    @invariant()
    def invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = smp_machine.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The no-PCID SMP refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(NoPcidMachine))
