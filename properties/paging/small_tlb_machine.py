"""The translate machine with four CPUs and a one-entry TLB each: every fill of a new page evicts.

With ``tlb_entries`` 1 each fill past the first drops the least recently
used entry (:meth:`impl.paging.tlb.Tlb.fill`), so a hit is rare and an entry
must never outlive its eviction; with four CPUs each CPU's TLB is its own
(a control load or a fill on one CPU leaves the others' entries alone, and
the runner's flush on ``write_phys`` empties all four).  The rules and
checks are :class:`~properties.paging.translate_machine.TranslateMachine`'s,
plus control loads, accesses and word reads on any of the four CPUs (the
MMU machine's strategies draw CPUs 0 and 1).  A failure is saved as
``counterexamples/small_tlb_machine.json``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.stateful import rule

from lang.errors import AddressError, MMCheckError, UnknownCpu
from lang.hardware_ops import Access, ReadVirt, SetCpu
from lang.scenario import KINDS, MODES, Config, Op
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.paging import mmu_machine
from properties.paging import strategies as gen
from properties.paging.translate_machine import TranslateMachine

CPUS = 4
SMALL_TLB = replace(mmu_machine.CONFIG, cpus=CPUS, tlb_entries=1)
CHECK_NAME = "mmu through one-entry TLBs on four CPUs: evictions and per-CPU entries"


class SmallTlbMachine(TranslateMachine):
    """:class:`TranslateMachine` with 4 CPUs and a TLB of 1 entry on each."""

    name = "small_tlb_machine"
    config: Config = SMALL_TLB

    @rule(op=gen.set_cpus(cpus=CPUS))
    def set_any_cpu(self, op: SetCpu) -> None:
        self.run(op)

    @rule(
        cpu=st.integers(0, CPUS - 1),
        mapping=TranslateMachine.mapped,
        offsets=st.tuples(gen.page_offsets(), gen.page_offsets()),
        kinds=st.tuples(st.sampled_from(KINDS), st.sampled_from(KINDS)),
        mode=st.sampled_from(MODES),
    )
    def access_any_cpu(
        self, cpu: int, mapping: gen.PathMapping, offsets: tuple[int, int], kinds: tuple[str, str], mode: str
    ) -> None:
        """Two accesses to a mapped page on any CPU, then a word read: the read hits, or misses after an eviction."""
        levels = self.control(cpu).levels
        for offset, kind in zip(offsets, kinds, strict=True):
            self.run(Access(cpu, mapping.address(levels, offset), kind, mode))
        self.run(ReadVirt(cpu, mapping.address(levels, offsets[0] & ~7), mode))

    @rule(op=gen.bad_inputs(cpus=CPUS))
    def refuse_bad_input(self, op: Op) -> None:
        """The MMU machine's bad-input rule, with CPUs 2 and 3 existing."""
        unknown = isinstance(op, SetCpu | Access) and op.cpu >= CPUS
        expected: type[MMCheckError] = UnknownCpu if unknown else AddressError
        try:
            self.run(op)
        except MMCheckError as exc:
            if not isinstance(exc, expected):
                raise AssertionError(f"{op!r} raised {exc!r}, expected {expected.__name__}") from exc
        else:
            raise AssertionError(f"{op!r} is outside its domain but both sides accepted it")


machinery.run_as(SmallTlbMachine, examples_divisor=4)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The one-entry-TLB machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(SmallTlbMachine))
