"""The page walk: from a linear address to a physical address or a fault.

The processor checks the address is canonical (#GP otherwise), then reads
one entry per level starting at the table CR3 names.  At each level a clear
P bit ends the walk with a not-present #PF; a set reserved bit ends it with a
reserved-bit #PF.  A leaf (a PTE, or a PDE/PDPTE with PS=1) ends the walk;
the rights collected on the way then decide whether the access is allowed
(Intel SDM Vol. 3A 4.5 and 4.6, error code 4.7).

The processor also writes to the tables: it sets A in every entry it uses
and D in the leaf of a write (SDM 4.8).  For a successful access both are
required.  For a faulting access the SDM leaves open whether the entries
walked before the fault get A, so :func:`allowed_ad_updates` allows either;
D is never set by a faulting access, nor by a read or a fetch.  The same
freedom holds for the entries used before a walk ran off the end of memory.

A walk that would read an entry beyond the end of physical memory has no
architectural answer; this model reports it as a machine check (vector 18).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from spec.paging.address import LEVEL_NAMES, WORD_SIZE, is_canonical, page_offset, table_index
from spec.paging.permissions import Control, Kind, Mode, Rights, access_allowed, combine, error_code
from spec.paging.physmem import PhysMemory
from spec.paging.pte import RW, US, XD, A, D, has_reserved_bits, is_leaf, leaf_frame_base, next_table_base
from spec.paging.pte import P as PRESENT

VECTOR_GP = 13
VECTOR_PF = 14
VECTOR_MC = 18


@dataclass(frozen=True, slots=True)
class Step:
    """One entry read during a walk: where it was, what it held, the rights after it."""

    level: int
    entry_pa: int
    entry: int
    rights: Rights

    @property
    def table(self) -> str:
        """Name of the table this entry belongs to (``"PML4"``, ``"PT"``, ...)."""
        return LEVEL_NAMES[self.level]


@dataclass(frozen=True, slots=True)
class Translation:
    """A successful access: ``va`` reaches ``pa`` through a leaf at ``level``."""

    va: int
    pa: int
    level: int
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class PageFault:
    """#PF (vector 14) with its error code; CR2 receives ``va``.

    ``used`` counts the entries of ``steps`` the processor used (present and
    without reserved bits); only those may receive A.
    """

    va: int
    error_code: int
    steps: tuple[Step, ...]
    used: int


@dataclass(frozen=True, slots=True)
class GeneralProtection:
    """#GP (vector 13): the address is not canonical, paging is not consulted."""

    va: int


@dataclass(frozen=True, slots=True)
class MachineCheck:
    """An entry to read lies outside physical memory (this model's vector 18).

    ``steps`` are the entries read before it, all present and valid: the
    processor used them, so like a faulting walk it may have set their A bits.
    """

    va: int
    pa: int
    steps: tuple[Step, ...] = ()


Outcome = Translation | PageFault | GeneralProtection | MachineCheck


def walk(mem: PhysMemory, ctl: Control, va: int, kind: Kind, mode: Mode, maxphyaddr: int) -> Outcome:
    """Translate ``va`` for an access of ``kind`` in ``mode`` under ``ctl``."""
    if not is_canonical(va, ctl.levels):
        return GeneralProtection(va)
    steps: list[Step] = []
    rights = Rights()
    table = ctl.cr3
    for level in range(ctl.levels, 0, -1):
        entry_pa = table + table_index(va, level) * WORD_SIZE
        if not mem.contains(entry_pa):
            return MachineCheck(va, entry_pa, tuple(steps))
        entry = mem.read(entry_pa)
        if not entry & PRESENT:
            steps.append(Step(level, entry_pa, entry, rights))
            code = error_code(kind, mode, ctl, present=False, reserved=False)
            return PageFault(va, code, tuple(steps), used=len(steps) - 1)
        if has_reserved_bits(entry, level, maxphyaddr, ctl.nxe):
            steps.append(Step(level, entry_pa, entry, rights))
            code = error_code(kind, mode, ctl, present=True, reserved=True)
            return PageFault(va, code, tuple(steps), used=len(steps) - 1)
        rights = combine(rights, bool(entry & RW), bool(entry & US), bool(entry & XD))
        steps.append(Step(level, entry_pa, entry, rights))
        if is_leaf(entry, level):
            return finish(va, kind, mode, ctl, level, tuple(steps), maxphyaddr)
        table = next_table_base(entry, maxphyaddr)
    raise AssertionError("unreachable: level 1 entries are always leaves")


def finish(
    va: int, kind: Kind, mode: Mode, ctl: Control, level: int, steps: tuple[Step, ...], maxphyaddr: int
) -> Translation | PageFault:
    """Apply the rights of a complete walk to the access (SDM 4.6)."""
    leaf = steps[-1]
    if not access_allowed(leaf.rights, kind, mode, ctl):
        code = error_code(kind, mode, ctl, present=True, reserved=False)
        return PageFault(va, code, steps, used=len(steps))
    pa = leaf_frame_base(leaf.entry, level, maxphyaddr) | page_offset(va, level)
    return Translation(va, pa, level, steps)


def required_ad_updates(outcome: Outcome, kind: Kind) -> dict[int, int]:
    """Bits the processor must set: A on every entry of a successful walk, D on its leaf for a write."""
    updates: dict[int, int] = {}
    if isinstance(outcome, Translation):
        for step in outcome.steps:
            updates[step.entry_pa] = updates.get(step.entry_pa, 0) | A
        if kind is Kind.WRITE:
            leaf = outcome.steps[-1].entry_pa
            updates[leaf] |= D
    return updates


def allowed_ad_updates(outcome: Outcome, kind: Kind) -> dict[int, int]:
    """Bits the processor may set: the required ones, plus A on entries a faulting or aborted walk used."""
    updates = required_ad_updates(outcome, kind)
    used: tuple[Step, ...] = ()
    if isinstance(outcome, PageFault):
        used = outcome.steps[: outcome.used]
    elif isinstance(outcome, MachineCheck):
        used = outcome.steps
    for step in used:
        updates[step.entry_pa] = updates.get(step.entry_pa, 0) | A
    return updates


def ad_update_allowed(before: PhysMemory, after: PhysMemory, outcome: Outcome, kind: Kind) -> bool:
    """True when ``after`` is ``before`` with all required and only allowed A/D bits set."""
    if before.frames != after.frames:
        return False
    required = required_ad_updates(outcome, kind)
    allowed = allowed_ad_updates(outcome, kind)
    changed = set(before.words) | set(after.words)
    for pa in changed | set(required):
        old, new = before.words.get(pa, 0), after.words.get(pa, 0)
        if new & old != old or (new ^ old) & ~allowed.get(pa, 0):
            return False
        if new & required.get(pa, 0) != required.get(pa, 0):
            return False
    return True


def apply_ad_updates(mem: PhysMemory, updates: Mapping[int, int]) -> PhysMemory:
    """Memory after the processor's A/D writes."""
    return mem.set_bits(updates) if updates else mem
