"""Scenario operation of memory compaction: ``echo 1 > /proc/sys/vm/compact_memory``.

::

    {"op": "compact_memory"}   -> {"migrated": 12, "unmovable": {"0x0": "kernel", "0x6": "page table"}}

A full compaction of the zone (mm/compaction.c ``compact_zone`` with ``order = -1``): the pages migrated, and
every allocated block the migration scanner met and could not move, by its first frame, with what holds it
(``kernel``, ``page table``, ``slab``, ``pinned``, ``huge page``, ``huge zero page``, ``page cache``,
``swap cache``, ``not on an LRU``, ``kernel allocation``: see :mod:`spec.mm.compaction`).  ``buddyinfo``
before and after shows what it gained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import KernelOp
from lang.scenario import JsonField, Op, register


@register
@dataclass(frozen=True, slots=True)
class CompactMemory(KernelOp):
    """Compact all memory, as writing 1 to ``/proc/sys/vm/compact_memory`` does."""

    name: ClassVar[str] = "compact_memory"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        return ()

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        unknown = sorted(set(raw) - {"op"})
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", "unknown key: compact_memory takes none")
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}


COMPACTION_OPS = (CompactMemory,)
