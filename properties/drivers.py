"""Run scenario operations on the spec, on the implementation, or on both in lockstep.

The two sides share nothing but the operation vocabulary.  Each runner turns
its side's outcome into the same JSON-ready result (``{"pa": "0x..."}``,
``{"fault": {"vector": 14, "error_code": 7}}``, ...), and the lockstep runner
compares results op by op, checks the abstraction of the implementation's
state against the spec's after every op, and checks the implementation's
free choices (the A/D bits a faulting walk may set) against what the spec
allows, then lets the spec continue from the implementation's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from impl.mmu import FETCH, READ, WRITE, Fault, Mmu, Translated
from impl.physmem import PhysMem
from mmcheck.errors import MMCheckError
from mmcheck.scenario import Access, Config, Op, ReadPhys, Result, SetCpu, WritePhys
from properties.abstraction import abstract_memory, abstract_mmu
from spec import mmu as spec_mmu
from spec.permissions import Control, Kind, Mode
from spec.walk import (
    VECTOR_GP,
    VECTOR_MC,
    VECTOR_PF,
    GeneralProtection,
    MachineCheck,
    Outcome,
    PageFault,
    Translation,
    ad_update_allowed,
)

IMPL_KINDS = {"read": READ, "write": WRITE, "fetch": FETCH}


def fault_result(vector: int, error_code: int | None = None) -> Result:
    """``{"fault": {"vector": V}}``, with the error code for a #PF."""
    fault: dict[str, int] = {"vector": vector}
    if error_code is not None:
        fault["error_code"] = error_code
    return {"fault": fault}


def spec_outcome_result(outcome: Outcome) -> Result:
    """The JSON result of a spec walk outcome."""
    if isinstance(outcome, Translation):
        return {"pa": hex(outcome.pa)}
    if isinstance(outcome, PageFault):
        return fault_result(VECTOR_PF, outcome.error_code)
    if isinstance(outcome, GeneralProtection):
        return fault_result(VECTOR_GP)
    assert isinstance(outcome, MachineCheck)
    return fault_result(VECTOR_MC)


def impl_outcome_result(outcome: Translated | Fault) -> Result:
    """The JSON result of an implementation access."""
    if isinstance(outcome, Translated):
        return {"pa": hex(outcome.pa)}
    return fault_result(outcome.vector, outcome.error_code if outcome.vector == VECTOR_PF else None)


def control_of(op: SetCpu) -> Control:
    """The spec's control state that a ``set_cpu`` op loads."""
    return Control(op.cr3, op.wp, op.smep, op.smap, op.ac, op.nxe, op.la57)


class SpecRunner:
    """Runs operations on the pure spec, keeping the current state."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = spec_mmu.initial(config.frames, config.cpus, config.maxphyaddr)
        self.last_outcome: Outcome | None = None

    def apply(self, op: Op) -> Result:
        """Run ``op``; bad input raises and leaves :attr:`state` as it was."""
        if isinstance(op, WritePhys):
            self.state = spec_mmu.write_phys(self.state, op.pa, op.value)
            return {"ok": True}
        if isinstance(op, ReadPhys):
            return {"value": hex(spec_mmu.read_phys(self.state, op.pa))}
        if isinstance(op, SetCpu):
            self.state = spec_mmu.set_cpu(self.state, op.cpu, control_of(op))
            return {"ok": True}
        if isinstance(op, Access):
            self.state, outcome = spec_mmu.access(self.state, op.cpu, op.va, Kind(op.kind), Mode(op.mode))
            self.last_outcome = outcome
            return spec_outcome_result(outcome)
        raise MMCheckError(f"the spec runner has no rule for {op.name!r}")


class ImplRunner:
    """Runs operations on the implementation."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mem = PhysMem(config.frames)
        self.mmu = Mmu(self.mem, config.cpus, config.maxphyaddr)

    def apply(self, op: Op) -> Result:
        """Run ``op``; bad input raises and leaves the implementation as it was."""
        if isinstance(op, WritePhys):
            self.mem.write(op.pa, op.value)
            return {"ok": True}
        if isinstance(op, ReadPhys):
            return {"value": hex(self.mem.read(op.pa))}
        if isinstance(op, SetCpu):
            self.mmu.set_cpu(
                op.cpu, cr3=op.cr3, wp=op.wp, smep=op.smep, smap=op.smap, ac=op.ac, nxe=op.nxe, la57=op.la57
            )
            return {"ok": True}
        if isinstance(op, Access):
            outcome = self.mmu.access(op.cpu, op.va, IMPL_KINDS[op.kind], op.mode == "user")
            return impl_outcome_result(outcome)
        raise MMCheckError(f"the implementation runner has no rule for {op.name!r}")


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place where the implementation did not refine the spec."""

    index: int
    op: Op
    reason: str
    spec: Any
    impl: Any

    def describe(self) -> str:
        """One paragraph for a person."""
        return f"op {self.index} ({self.op.name}): {self.reason}\n  spec: {self.spec}\n  impl: {self.impl}"


class DivergenceError(AssertionError):
    """Raised by :class:`Lockstep` when the two sides disagree."""

    def __init__(self, divergence: Divergence) -> None:
        self.divergence = divergence
        super().__init__(divergence.describe())


class Lockstep:
    """Spec and implementation side by side, checked after every operation."""

    def __init__(self, config: Config) -> None:
        self.spec = SpecRunner(config)
        self.impl = ImplRunner(config)
        self.index = 0

    def apply(self, op: Op) -> Result:
        """Run ``op`` on both sides; raise :class:`DivergenceError` at the first disagreement.

        Bad input must raise the same error class on both sides and change
        neither; the error is then re-raised to the caller.
        """
        index = self.index
        self.index += 1
        before = self.spec.state
        spec_error = impl_error = None
        spec_result = impl_result = None
        try:
            spec_result = self.spec.apply(op)
        except MMCheckError as exc:
            spec_error = exc
        try:
            impl_result = self.impl.apply(op)
        except MMCheckError as exc:
            impl_error = exc
        if spec_error or impl_error:
            if type(spec_error) is not type(impl_error):
                raise DivergenceError(Divergence(index, op, "bad input handled differently", spec_error, impl_error))
            self.check_abstraction(index, op, before)
            assert spec_error is not None
            raise spec_error
        if spec_result != impl_result:
            raise DivergenceError(Divergence(index, op, "results differ", spec_result, impl_result))
        if isinstance(op, Access):
            self.adopt_ad_choice(index, op, before)
        self.check_abstraction(index, op, self.spec.state)
        assert spec_result is not None
        return spec_result

    def adopt_ad_choice(self, index: int, op: Access, before: spec_mmu.MmuState) -> None:
        """Check the implementation's A/D writes are allowed, then continue from them."""
        outcome = self.spec.last_outcome
        assert outcome is not None
        impl_memory = abstract_memory(self.impl.mem)
        if not ad_update_allowed(before.memory, impl_memory, outcome, Kind(op.kind)):
            allowed = spec_mmu.access(before, op.cpu, op.va, Kind(op.kind), Mode(op.mode))[0]
            raise DivergenceError(
                Divergence(index, op, "A/D bits written are not allowed", allowed.memory, impl_memory)
            )
        self.spec.state = spec_mmu.MmuState(impl_memory, self.spec.state.cpus, self.spec.state.maxphyaddr)

    def check_abstraction(self, index: int, op: Op, expected: spec_mmu.MmuState) -> None:
        """The abstraction of the implementation's state equals the spec's state."""
        actual = abstract_mmu(self.impl.mmu)
        if actual.memory != expected.memory:
            raise DivergenceError(Divergence(index, op, "memory differs", expected.memory, actual.memory))
        if actual.cpus != expected.cpus:
            raise DivergenceError(Divergence(index, op, "control registers differ", expected.cpus, actual.cpus))
