"""The hardware view: physical memory and the CPUs that walk it.

This layer has no TLB: every access walks the tables in memory (TLBs come
with the SMP layer).  The state is a value; every operation returns a new
state and leaves its argument untouched.

The processor's A/D writes are the one place the hardware may choose
(see :mod:`spec.paging.walk`).  :func:`access` takes the least choice (only the
required bits); a harness that runs an implementation beside this spec checks
the implementation's choice with :func:`spec.paging.walk.ad_update_allowed` and then
continues from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lang.errors import AddressError, ConfigError, UnknownCpu
from lang.records import replace
from spec.paging.address import PAGE_SIZE
from spec.paging.permissions import Control, Kind, Mode
from spec.paging.physmem import PhysMemory
from spec.paging.walk import Outcome, Translation, apply_ad_updates, required_ad_updates, walk

DEFAULT_MAXPHYADDR = 46
MIN_MAXPHYADDR = 36
MAX_MAXPHYADDR = 52


@dataclass(frozen=True, slots=True)
class MmuState:
    """Physical memory, one :class:`Control` per CPU, and MAXPHYADDR."""

    memory: PhysMemory
    cpus: tuple[Control, ...]
    maxphyaddr: int = DEFAULT_MAXPHYADDR


def initial(frames: int, cpus: int, maxphyaddr: int = DEFAULT_MAXPHYADDR) -> MmuState:
    """Zeroed memory of ``frames`` frames; every CPU with CR3=0 and every control bit clear."""
    if frames < 1:
        raise ConfigError(f"frames must be at least 1, got {frames}")
    if cpus < 1:
        raise ConfigError(f"cpus must be at least 1, got {cpus}")
    if not MIN_MAXPHYADDR <= maxphyaddr <= MAX_MAXPHYADDR:
        raise ConfigError(f"maxphyaddr must be {MIN_MAXPHYADDR}..{MAX_MAXPHYADDR} (SDM 4.1.4), got {maxphyaddr}")
    if frames * PAGE_SIZE > 1 << maxphyaddr:
        raise ConfigError(f"{frames} frames do not fit below MAXPHYADDR={maxphyaddr}")
    return MmuState(PhysMemory(frames), (Control(),) * cpus, maxphyaddr)


def check_cpu(state: MmuState, cpu: int) -> None:
    """Raise :class:`UnknownCpu` unless ``cpu`` names one of the state's CPUs."""
    if not 0 <= cpu < len(state.cpus):
        raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(state.cpus) - 1}")


def write_phys(state: MmuState, pa: int, value: int) -> MmuState:
    """Store a 64-bit word at the aligned physical address ``pa``."""
    return replace(state, memory=state.memory.write(pa, value))


def read_phys(state: MmuState, pa: int) -> int:
    """Load the 64-bit word at the aligned physical address ``pa``."""
    return state.memory.read(pa)


def set_cpu(state: MmuState, cpu: int, ctl: Control) -> MmuState:
    """Load ``cpu``'s control registers.

    CR3 must name a 4 KiB-aligned table inside memory: MOV to CR3 with bits
    set above MAXPHYADDR raises #GP (SDM Vol. 3A 4.5.2), and the low twelve
    bits (PCID or PWT/PCD) are not modelled in this layer.
    """
    check_cpu(state, cpu)
    if ctl.cr3 % PAGE_SIZE:
        raise AddressError(f"cr3 {ctl.cr3:#x} is not 4 KiB aligned: it names the top table's frame")
    if not 0 <= ctl.cr3 < state.memory.size:
        raise AddressError(f"cr3 {ctl.cr3:#x} is outside memory: allowed 0x0 .. {state.memory.size - PAGE_SIZE:#x}")
    cpus = (*state.cpus[:cpu], ctl, *state.cpus[cpu + 1 :])
    return replace(state, cpus=cpus)


def access(state: MmuState, cpu: int, va: int, kind: Kind, mode: Mode) -> tuple[MmuState, Outcome]:
    """Perform one access on ``cpu``: the walk's outcome and memory with the required A/D bits."""
    check_cpu(state, cpu)
    if not 0 <= va < 1 << 64:
        raise AddressError(f"virtual address {va:#x} is not a 64-bit value")
    outcome = walk(state.memory, state.cpus[cpu], va, kind, mode, state.maxphyaddr)
    memory = apply_ad_updates(state.memory, required_ad_updates(outcome, kind))
    return replace(state, memory=memory), outcome


def read_virt(state: MmuState, cpu: int, va: int, mode: Mode) -> tuple[MmuState, Outcome, int | None]:
    """A 64-bit data read of the aligned linear address ``va``: the read :func:`access`, then the word it reaches.

    Returns the new state, the walk's outcome and the word read: None when the
    walk did not translate, or when it translated to a frame outside memory
    (the caller reports a machine check, as for a paging-structure entry
    outside memory).  A misaligned ``va`` is bad input: a 64-bit load of it
    would span two words (this model stores aligned words only).
    """
    check_cpu(state, cpu)
    if not 0 <= va < 1 << 64 or va & 7:
        raise AddressError(f"virtual address {va:#x} must be an 8-byte aligned 64-bit value for a word read")
    state, outcome = access(state, cpu, va, Kind.READ, mode)
    if not isinstance(outcome, Translation) or outcome.pa >= state.memory.size:
        return state, outcome, None
    return state, outcome, state.memory.read(outcome.pa)
