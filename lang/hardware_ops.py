"""The operations of the hardware and buddy layers: physical memory, CPU controls, accesses, the buddy.

Each op parses and checks its own fields (``from_json``) and writes itself
back (``to_json``); registering it adds it to the vocabulary
:func:`lang.scenario.parse_op` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.scenario import (
    KINDS,
    LAYER_NAMES,
    MODES,
    Op,
    check_keys,
    parse_bool,
    parse_choice,
    parse_int,
    register,
    require,
)

LAYER_NAMES["machine"] = "a machine-level op (physical memory, CPU registers or the buddy allocator)"


@register
@dataclass(frozen=True, slots=True)
class WritePhys(Op):
    """Store a 64-bit word at an aligned physical address."""

    pa: int
    value: int
    name: ClassVar[str] = "write_phys"
    layer: ClassVar[str] = "machine"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> WritePhys:
        check_keys(raw, where, ("pa", "value"))
        return cls(require(raw, "pa", where, parse_int), require(raw, "value", where, parse_int))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pa": hex(self.pa), "value": hex(self.value)}


@register
@dataclass(frozen=True, slots=True)
class ReadPhys(Op):
    """Load the 64-bit word at an aligned physical address."""

    pa: int
    name: ClassVar[str] = "read_phys"
    layer: ClassVar[str] = "machine"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> ReadPhys:
        check_keys(raw, where, ("pa",))
        return cls(require(raw, "pa", where, parse_int))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pa": hex(self.pa)}


CONTROL_BITS = ("wp", "smep", "smap", "ac", "nxe", "la57")


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

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> SetCpu:
        check_keys(raw, where, ("cpu", "cr3", *CONTROL_BITS))
        bits = {key: require(raw, key, where, parse_bool) for key in CONTROL_BITS}
        cpu = require(raw, "cpu", where, lambda r, w: parse_int(r, w, 0, 63))
        return cls(cpu, require(raw, "cr3", where, parse_int), **bits)

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

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Access:
        check_keys(raw, where, ("cpu", "va", "kind", "mode"))
        return cls(
            require(raw, "cpu", where, lambda r, w: parse_int(r, w, 0, 63)),
            require(raw, "va", where, parse_int),
            require(raw, "kind", where, lambda r, w: parse_choice(r, w, KINDS)),
            require(raw, "mode", where, lambda r, w: parse_choice(r, w, MODES)),
        )

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cpu": self.cpu, "va": hex(self.va), "kind": self.kind, "mode": self.mode}


MAX_ORDER_FIELD = 63


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

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> AllocPages:
        check_keys(raw, where, ("order",))
        return cls(require(raw, "order", where, lambda r, w: parse_int(r, w, 0, MAX_ORDER_FIELD)))

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

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> FreePages:
        check_keys(raw, where, ("pfn", "order"))
        return cls(
            require(raw, "pfn", where, parse_int),
            require(raw, "order", where, lambda r, w: parse_int(r, w, 0, MAX_ORDER_FIELD)),
        )

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pfn": hex(self.pfn), "order": self.order}


@register
@dataclass(frozen=True, slots=True)
class BuddyInfo(Op):
    """Read the free block counts per order, as ``/proc/buddyinfo`` shows them: ``{"free": [n0, n1, ...]}``."""

    name: ClassVar[str] = "buddyinfo"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> BuddyInfo:
        check_keys(raw, where, ())
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}
