"""The operations of the hardware and buddy layers: physical memory, CPU controls, accesses, the buddy.

Each op declares its JSON fields (``FIELDS``, parsed by :meth:`lang.scenario.Op.from_json`) and writes itself
back (``to_json``); registering it adds it to the vocabulary
:func:`lang.scenario.parse_op` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.scenario import BOOLEAN, KINDS, LAYER_NAMES, MODES, Field, Op, choice, integer, register

LAYER_NAMES["machine"] = "a machine-level op (physical memory, CPU registers or the buddy allocator)"

PA = integer(meaning="physical address of a 64-bit word (8-byte aligned, inside memory)")
WORD = integer(meaning="a 64-bit value")
CPU = integer(0, 63, "the CPU (below the config's cpus)")


@register
@dataclass(frozen=True, slots=True)
class WritePhys(Op):
    """Store a 64-bit word at an aligned physical address."""

    pa: int
    value: int
    name: ClassVar[str] = "write_phys"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {"pa": PA, "value": WORD}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pa": hex(self.pa), "value": hex(self.value)}


@register
@dataclass(frozen=True, slots=True)
class ReadPhys(Op):
    """Load the 64-bit word at an aligned physical address."""

    pa: int
    name: ClassVar[str] = "read_phys"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {"pa": PA}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pa": hex(self.pa)}


CONTROL_BITS = ("wp", "smep", "smap", "ac", "nxe", "la57")
# What each bit does, for the docs: Intel SDM Vol. 3A 4.1.3 (paging-mode modifiers) and 4.6 (access rights).
CONTROL_MEANINGS = {
    "wp": "CR0.WP: supervisor writes obey read-only pages",
    "smep": "CR4.SMEP: no supervisor fetches from user pages",
    "smap": "CR4.SMAP: no supervisor data accesses to user pages (explicit ones: unless RFLAGS.AC)",
    "ac": "RFLAGS.AC: lifts SMAP for explicit supervisor data accesses",
    "nxe": "EFER.NXE: the XD bit (bit 63) is honoured",
    "la57": "CR4.LA57: five-level paging",
}


@register
@dataclass(frozen=True, slots=True)
class SetCpu(Op):
    """Load a CPU's CR3 and control bits (CR0.WP, CR4.SMEP/SMAP/LA57, RFLAGS.AC, EFER.NXE).

    Every bit must be given: a scenario states the whole control state.
    """

    cpu: int
    cr3: int
    wp: bool = False
    smep: bool = False
    smap: bool = False
    ac: bool = False
    nxe: bool = False
    la57: bool = False
    name: ClassVar[str] = "set_cpu"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "cpu": CPU,
        "cr3": integer(meaning="CR3: the top page table's physical address (and PCID bits)"),
        **{bit: BOOLEAN.means(CONTROL_MEANINGS[bit]) for bit in CONTROL_BITS},
    }

    def to_json(self) -> dict[str, Any]:
        bits = {key: getattr(self, key) for key in CONTROL_BITS}
        return {"op": self.name, "cpu": self.cpu, "cr3": hex(self.cr3), **bits}


@register
@dataclass(frozen=True, slots=True)
class Access(Op):
    """One memory access by a CPU: a read, write or fetch in user or supervisor mode."""

    cpu: int
    va: int
    kind: str = "read"
    mode: str = "user"
    name: ClassVar[str] = "access"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "cpu": CPU,
        "va": integer(meaning="the linear address accessed"),
        "kind": choice(KINDS, "what the access does"),
        "mode": choice(MODES, "the privilege it runs at"),
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cpu": self.cpu, "va": hex(self.va), "kind": self.kind, "mode": self.mode}


@register
@dataclass(frozen=True, slots=True)
class ReadVirt(Op):
    """A 64-bit data read by a CPU through a linear address: the word it reaches, or the access's fault.

    The read is an ``access`` of kind ``read`` (the same walk, faults and
    accessed flags) followed by a load of the word at the physical address it
    gives.  ``va`` must be 8-byte aligned (words are 64-bit).  A translation
    to a frame outside memory gives a machine check, as a walk reading a
    paging-structure entry outside memory does.  Result ``{"value": "0x..."}``
    or ``{"fault": {...}}``.
    """

    cpu: int
    va: int
    mode: str = "user"
    name: ClassVar[str] = "read_virt"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "cpu": CPU,
        "va": integer(meaning="the linear address read (8-byte aligned)"),
        "mode": choice(MODES, "the privilege it runs at"),
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cpu": self.cpu, "va": hex(self.va), "mode": self.mode}


MAX_ORDER_FIELD = 63
ORDER = integer(0, MAX_ORDER_FIELD, "the block is 2**order frames (above the config's max_order: EINVAL)")


@register
@dataclass(frozen=True, slots=True)
class AllocPages(Op):
    """Allocate ``2**order`` physically contiguous frames from the buddy allocator.

    Result ``{"pfn": N}`` (the first frame), ``{"error": "ENOMEM"}`` when no
    free block is large enough, ``{"error": "EINVAL"}`` for an order above
    ``max_order``.
    """

    order: int
    name: ClassVar[str] = "alloc_pages"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {"order": ORDER}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "order": self.order}


@register
@dataclass(frozen=True, slots=True)
class FreePages(Op):
    """Return the block of ``2**order`` frames at ``pfn`` to the buddy allocator.

    Result ``{"ok": true}``, or ``{"error": "EINVAL"}`` when it is not an
    allocated block of that order (double free, wrong order, misaligned, outside memory).
    """

    pfn: int
    order: int
    name: ClassVar[str] = "free_pages"
    layer: ClassVar[str] = "machine"
    FIELDS: ClassVar[Mapping[str, Field]] = {"pfn": integer(meaning="the block's first frame number"), "order": ORDER}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pfn": hex(self.pfn), "order": self.order}


@register
@dataclass(frozen=True, slots=True)
class BuddyInfo(Op):
    """Read the free block counts per order, as ``/proc/buddyinfo`` shows them: ``{"free": [n0, n1, ...]}``."""

    name: ClassVar[str] = "buddyinfo"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}
