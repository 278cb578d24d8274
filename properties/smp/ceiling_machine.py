"""The SMP refinement machine below the default flush ceiling: the full-flush paths of every shootdown.

Linux flushes a range page by page up to ``tlb_single_page_flush_ceiling``
pages (33 by default) and the whole TLB above it (``flush_tlb_mm_range`` and
``flush_tlb_kernel_range``, arch/x86/mm/tlb.c); with the ceiling at 0 even a
one-page kernel flush runs ``do_flush_tlb_all`` (INVPCID type 2, which drops
global translations too, Intel SDM Vol. 3A 4.10.4.1).  The SMP machine's
ranges are one or two pages, so at the default ceiling it never takes those
paths.  The rules, the start and the checks here are
:class:`~properties.smp.smp_machine.SmpMachine`'s; only ``flush_ceiling``
differs: 1 (a two-page change is flushed whole, a one-page change page by
page, the boundary on both sides) and 0 (every flush is a full one).
A failure is saved as ``counterexamples/<name>.json`` and minimised.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis.stateful import invariant

from lang.scenario import Config
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.recording import RecordingLockstep, save_counterexample
from properties.smp import smp_machine
from properties.smp.smp_machine import SmpMachine
from spec.smp import shootdown

CEILING_ONE = replace(smp_machine.CONFIG, flush_ceiling=1)
CEILING_ZERO = replace(smp_machine.CONFIG, flush_ceiling=0)
CHECK_NAME = "smp at flush ceilings 1 and 0: full flushes of ranges and of the kernel page (3 CPUs)"


class CeilingOneMachine(SmpMachine):
    """:class:`SmpMachine` with ``flush_ceiling`` 1: two-page changes flush everything, one-page ones do not."""

    name = "ceiling_one_machine"
    config: Config = CEILING_ONE

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    @invariant()
    def invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = smp_machine.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, self.config, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


class CeilingZeroMachine(CeilingOneMachine):
    """:class:`SmpMachine` with ``flush_ceiling`` 0: every shootdown and every kernel flush is a full flush."""

    name = "ceiling_zero_machine"
    config: Config = CEILING_ZERO


machinery.run_as(CeilingOneMachine, examples_divisor=4)
machinery.run_as(CeilingZeroMachine, examples_divisor=4)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """Both ceiling machines under the loaded profile; the first failure is the verdict."""

    return timed(CHECK_NAME, lambda: machinery.run_machines(CeilingOneMachine, CeilingZeroMachine))
