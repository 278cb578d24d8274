"""The MMU machine through the TLB: the implementation's fast path, ``Mmu.translate`` and ``Mmu.load``, refined.

A hardware scenario's accesses and word reads reach the implementation
through a TLB per CPU (:class:`properties.drivers.ImplRunner`: every store
to physical memory flushes every TLB; a control load flushes its CPU's when
CR3, the paging mode or what a cached entry means changes), so the MMU
machine already runs ``Mmu.translate``; but its programs store page-table
entries so often that few accesses hit.  This machine adds rules to the MMU
machine's:

- two accesses in a row to a mapped page: the first may fill its CPU's TLB,
  the second, of any kind and mode, then hits the entry the first filled (a
  write after a read hits an entry that does not cache D, and must walk to
  set it, Intel SDM Vol. 3A 4.8);
- two word reads (``read_virt``, ``Mmu.load``) through a mapped page, the
  second a hit served straight from memory;
- a control load that keeps CR3 and the paging mode but draws CR0.WP,
  CR4.SMEP/SMAP, EFLAGS.AC and EFER.NXE anew: the TLB keeps its entries (but
  for the changes the runner must flush on), and a hit must be judged by the
  rights it cached and the new controls exactly as the walk judges (SDM 4.6,
  4.10.2.2).

Everything runs in lockstep against the spec's walk, so a failure is an
ordinary scenario, saved as ``counterexamples/translate_machine.json``;
``mmcheck replay`` runs it through the same TLBs (the scenario's
``tlb_entries``).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.stateful import rule

from lang.hardware_ops import Access, ReadVirt, SetCpu, WritePhys
from lang.scenario import KINDS, MODES, Config
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.paging import mmu_machine
from properties.paging import strategies as gen
from properties.paging.mmu_machine import MmuMachine
from properties.recording import RecordingLockstep
from spec.paging.permissions import Kind, Mode
from spec.paging.walk import Translation, walk

US = 4  # an entry's U/S flag (SDM Vol. 3A Table 4-19)
ADDRESS_BITS = 0x000F_FFFF_FFFF_F000  # an entry's address field, bits 51:12 (SDM Vol. 3A Table 4-19)
Bits = tuple[bool, bool, bool, bool, bool]
CONTROL_BITS = st.tuples(*[st.booleans()] * 5)  # WP, SMEP, SMAP, AC, NXE
CHECK_NAME = "mmu through the TLB: hits after fills and after control changes give the walk's outcome"


class TranslateMachine(MmuMachine):
    """:class:`MmuMachine` with accesses and word reads that hit the TLB, and control loads that keep it."""

    name = "translate_machine"
    config: Config = mmu_machine.CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    @rule(
        cpu=gen.cpu_ids(),
        mapping=MmuMachine.mapped,
        offset=gen.page_offsets(),
        first=st.tuples(st.sampled_from(KINDS), st.sampled_from(MODES)),
        between=st.none() | CONTROL_BITS,
        then=st.tuples(st.sampled_from(KINDS), st.sampled_from(MODES)),
    )
    def hit(
        self,
        cpu: int,
        mapping: gen.PathMapping,
        offset: int,
        first: tuple[str, str],
        between: Bits | None,
        then: tuple[str, str],
    ) -> None:
        """Two accesses to a mapped page, perhaps with new controls between them: the second hits what the first
        filled."""
        va = mapping.address(self.control(cpu).levels, offset)
        self.run(Access(cpu, va, *first))
        if between is not None:
            self.change_controls(cpu, between)
        self.run(Access(cpu, va, *then))

    @rule(
        cpu=gen.cpu_ids(),
        mapping=gen.path_mappings(),
        frame=st.integers(0, gen.FRAMES - 1),
        word=st.integers(0, 511),
        value=st.integers(1, (1 << 64) - 1),
        between=st.none() | CONTROL_BITS,
        modes=st.tuples(st.sampled_from(MODES), st.sampled_from(MODES)),
    )
    def read_words(
        self,
        cpu: int,
        mapping: gen.PathMapping,
        frame: int,
        word: int,
        value: int,
        between: Bits | None,
        modes: tuple[str, str],
    ) -> None:
        """Map a path (a 4 KiB leaf onto ``frame``, inside memory), store a word in the page it reaches, then read
        the word twice through it: the first read may fill the TLB, the second is ``Mmu.load``'s hit (perhaps
        under new controls)."""
        ctl = self.control(cpu)
        if mapping.leaf_level == 1:
            mapping = replace(mapping, leaf=mapping.leaf & ~ADDRESS_BITS | frame << 12)
        for op in mapping.ops(ctl.cr3, ctl.levels, ctl.nxe):
            self.run(op)
        va = mapping.address(ctl.levels, word * 8)
        state = self.recorder.lockstep.spec.state
        reached = walk(state.memory, replace(ctl, smap=False), va, Kind.READ, Mode.SUPERVISOR, state.maxphyaddr)
        if isinstance(reached, Translation) and reached.pa < state.memory.size:
            self.run(WritePhys(reached.pa, value))
        self.run(ReadVirt(cpu, va, modes[0]))
        if between is not None:
            self.change_controls(cpu, between)
        self.run(ReadVirt(cpu, va, modes[1]))

    @rule(
        cpu=gen.cpu_ids(),
        mapping=gen.path_mappings(),
        offset=gen.page_offsets(),
        first=st.sampled_from(KINDS),
        ac=st.booleans(),
        then=st.sampled_from(KINDS),
    )
    def user_copy(self, cpu: int, mapping: gen.PathMapping, offset: int, first: str, ac: bool, then: str) -> None:
        """The kernel touching a user page the user just touched (``copy_from_user``/``copy_to_user``): a path
        with U/S set at every level, a user access that fills the TLB, CR4.SMAP on with EFLAGS.AC set (``stac``)
        or clear, then a supervisor access that hits the cached entry (SDM 4.6.1: explicit supervisor data
        accesses to user pages are allowed under SMAP only with AC=1)."""
        ctl = self.control(cpu)
        user = replace(mapping, links=tuple(link | US for link in mapping.links), leaf=mapping.leaf | US, flaw=None)
        for op in user.ops(ctl.cr3, ctl.levels, ctl.nxe):
            self.run(op)
        va = user.address(ctl.levels, offset)
        self.run(Access(cpu, va, first, "user"))
        self.run(SetCpu(cpu, ctl.cr3, wp=ctl.wp, smep=ctl.smep, smap=True, ac=ac, nxe=ctl.nxe, la57=ctl.levels == 5))
        self.run(Access(cpu, va, then, "supervisor"))

    @rule(cpu=gen.cpu_ids(), bits=CONTROL_BITS)
    def change_controls(self, cpu: int, bits: Bits) -> None:
        """New WP, SMEP, SMAP, AC and NXE on ``cpu``, its CR3 and paging mode kept."""
        ctl = self.control(cpu)
        wp, smep, smap, ac, nxe = bits
        self.run(SetCpu(cpu, ctl.cr3, wp=wp, smep=smep, smap=smap, ac=ac, nxe=nxe, la57=ctl.levels == 5))


machinery.run_as(TranslateMachine, examples_divisor=2)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The TLB-hit machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(TranslateMachine))
