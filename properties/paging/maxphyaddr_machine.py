"""The hardware-layer refinement machine at the two ends of MAXPHYADDR: 36 and 52 physical-address bits.

Bits MAXPHYADDR..51 of a paging-structure entry are reserved, and a walk that
meets one set faults with RSVD (Intel SDM Vol. 3A 4.5.4 and Table 4-20; CPUID
leaf 80000008H gives MAXPHYADDR, at most 52).  The MMU machine runs at 46;
here the same programs run with 36 (the most bits reserved: an address bit
the strategies draw as valid at 46 is reserved) and with 52 (none reserved
below bit 52).  A failure is saved as ``counterexamples/<name>.json``.
"""

from __future__ import annotations

from dataclasses import replace

from lang.scenario import Config
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.paging import mmu_machine
from properties.paging.mmu_machine import MmuMachine
from properties.recording import RecordingLockstep

NARROW = replace(mmu_machine.CONFIG, maxphyaddr=36)
WIDE = replace(mmu_machine.CONFIG, maxphyaddr=52)
CHECK_NAME = "mmu at MAXPHYADDR 36 and 52: reserved bits at both ends"


class NarrowMmuMachine(MmuMachine):
    """:class:`MmuMachine` with MAXPHYADDR 36."""

    name = "narrow_mmu_machine"
    config: Config = NARROW

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)


class WideMmuMachine(NarrowMmuMachine):
    """:class:`MmuMachine` with MAXPHYADDR 52."""

    name = "wide_mmu_machine"
    config: Config = WIDE


machinery.run_as(NarrowMmuMachine, examples_divisor=4)
machinery.run_as(WideMmuMachine, examples_divisor=4)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """Both machines under the loaded profile; the first failure is the verdict."""

    return timed(CHECK_NAME, lambda: machinery.run_machines(NarrowMmuMachine, WideMmuMachine))
