"""The refinement machine of the hardware layer: the implementation's MMU against the spec's.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` with
random stores of page-table entries (one word, or a whole well-formed path
from a CPU's root table to a 4 KiB, 2 MiB or 1 GiB leaf), loads of control
registers, accesses and loads of words back, and with bad input.  After
every operation the lockstep runner has checked that both sides gave the
same result, that the implementation's A/D writes are among those the spec
allows, and that the abstraction of the implementation's memory and CPUs
equals the spec's state.  The first disagreement raises
:class:`~properties.drivers.DivergenceError`; the operations that led to it,
after shrinking, are saved as ``counterexamples/mmu_machine.json`` and
minimised (:mod:`properties.minimise`); ``mmcheck replay`` reproduces it.

:func:`refinement` registers the machine as a ``verify`` check: it runs under
whichever Hypothesis profile is loaded (``verify`` loads ``ci``).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, rule

from lang.errors import AddressError, MMCheckError, UnknownCpu
from lang.hardware_ops import Access, ReadPhys, SetCpu, WritePhys
from lang.scenario import KINDS, MODES, Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.paging import strategies as gen
from properties.recording import RecordingLockstep
from spec.paging.permissions import Control

CONFIG = Config(frames=gen.FRAMES, cpus=gen.CPUS, maxphyaddr=gen.MAXPHYADDR)
CHECK_NAME = "mmu: implementation refines the spec"


def expected_error(op: Op) -> type[MMCheckError]:
    """The error a bad operation from :func:`properties.paging.strategies.bad_inputs` must raise."""
    if isinstance(op, SetCpu | Access) and op.cpu >= CONFIG.cpus:
        return UnknownCpu
    return AddressError


class MmuMachine(RuleBasedStateMachine):
    """Random programs over page-table memory, control state and accesses, run in lockstep."""

    name = "mmu_machine"
    mapped: Bundle[gen.PathMapping] = Bundle("mapped")

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)

    def run(self, op: Op) -> Result:
        """Run ``op`` on both sides (raises at the first divergence)."""
        return self.recorder.apply(op)

    def control(self, cpu: int) -> Control:
        """``cpu``'s current control registers (both sides agree on them, or a divergence was raised)."""
        return self.recorder.lockstep.spec.state.cpus[cpu]

    @initialize(op=st.one_of(st.none(), gen.set_cpus(cpus=1), gen.set_cpus(cpus=1)))
    def start_cpu(self, op: SetCpu | None) -> None:
        """Begin, usually, with CPU 0's control bits set at random (shrinks to the reset state)."""
        if op is not None:
            self.run(op)

    @rule(op=gen.write_entries())
    def write_entry(self, op: WritePhys) -> None:
        self.run(op)

    @rule(
        target=mapped,
        cpu=gen.cpu_ids(),
        mapping=gen.path_mappings(),
        offset=gen.page_offsets(),
        kind=st.sampled_from(KINDS),
        mode=st.sampled_from(MODES),
    )
    def map_path(self, cpu: int, mapping: gen.PathMapping, offset: int, kind: str, mode: str) -> gen.PathMapping:
        """Write a well-formed path from ``cpu``'s root table to a leaf, then access through it."""
        ctl = self.control(cpu)
        for op in mapping.ops(ctl.cr3, ctl.levels, ctl.nxe):
            self.run(op)
        self.run(Access(cpu, mapping.address(ctl.levels, offset), kind, mode))
        return mapping

    @rule(op=gen.set_cpus())
    def set_cpu(self, op: SetCpu) -> None:
        self.run(op)

    @rule(
        cpu=gen.cpu_ids(),
        path=gen.index_paths(),
        offset=gen.page_offsets(),
        follow=st.sampled_from((True, True, True, False)),
        flip=gen.sign_flips(),
        kind=st.sampled_from(KINDS),
        mode=st.sampled_from(MODES),
    )
    def access(
        self, cpu: int, path: tuple[int, ...], offset: int, follow: bool, flip: int | None, kind: str, mode: str
    ) -> None:
        """Access an address whose walk follows present entries (``follow``) or takes ``path`` as it is."""
        ctl = self.control(cpu)
        if follow:
            words = self.recorder.lockstep.spec.state.memory.words
            path = gen.present_path(words, ctl.cr3, ctl.levels, path)
        self.run(Access(cpu, gen.virtual_address(path, offset, ctl.levels, flip), kind, mode))

    @rule(
        cpu=gen.cpu_ids(),
        mapping=mapped,
        offset=gen.page_offsets(),
        kind=st.sampled_from(KINDS),
        mode=st.sampled_from(MODES),
    )
    def access_mapped(self, cpu: int, mapping: gen.PathMapping, offset: int, kind: str, mode: str) -> None:
        self.run(Access(cpu, mapping.address(self.control(cpu).levels, offset), kind, mode))

    @rule(op=gen.read_entries())
    def read_back(self, op: ReadPhys) -> None:
        self.run(op)

    @rule(op=gen.bad_inputs())
    def refuse_bad_input(self, op: Op) -> None:
        # Lockstep has already checked both sides raised the same error class and changed nothing.
        try:
            self.run(op)
        except MMCheckError as exc:
            if not isinstance(exc, expected_error(op)):
                raise AssertionError(f"{op!r} raised {exc!r}, expected {expected_error(op).__name__}") from exc
        else:
            raise AssertionError(f"{op!r} is outside its domain but both sides accepted it")


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The hardware-layer refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(MmuMachine))
