"""Scenario operation of transparent huge pages: the machine-wide policy in ``/sys/kernel/mm/transparent_hugepage``.

::

    {"op": "thp", "name": "enabled", "value": "madvise"}            -> {"ok": true}
    {"op": "thp", "name": "defrag", "value": "defer+madvise"}       -> {"ok": true}
    {"op": "thp", "name": "use_zero_page", "value": "0"}            -> {"ok": true}
    {"op": "khugepaged_limit", "name": "max_ptes_none", "value": 256}  -> {"ok": true}
    {"op": "khugepaged", "pid": 1}           -> {"collapsed": 1, "scan": {"0x40000000": "succeeded"}}

``enabled`` is ``always``, ``madvise`` or ``never``; ``defrag`` is ``always``, ``defer``, ``defer+madvise``,
``madvise`` or ``never``; ``use_zero_page`` is ``0`` or ``1`` (Documentation/admin-guide/mm/transhuge.rst).
``khugepaged_limit`` writes ``khugepaged/max_ptes_none``, ``max_ptes_swap`` or ``max_ptes_shared`` in the same
directory: 0 .. 511 (mm/khugepaged.c ``max_ptes_none_store`` and its siblings).  Per-VMA advice is the ``madvise`` op's
``"hugepage"`` and ``"nohugepage"`` (see :mod:`spec.mm.thp`); ``"collapse"`` is ``MADV_COLLAPSE``.

``khugepaged`` is one full scan of a process's mm by khugepaged: the number of THPs it made and the result of
every aligned 2 MiB it scanned, by address, under the kernel's tracepoint names (see :mod:`spec.mm.khugepaged`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import PID, KernelOp
from lang.scenario import Field, JsonField, Op, choice, integer, parse_choice, register

THP_VALUES = {
    "enabled": ("always", "madvise", "never"),
    "defrag": ("always", "defer", "defer+madvise", "madvise", "never"),
    "use_zero_page": ("0", "1"),
}
_ALL_VALUES = tuple(dict.fromkeys(v for values in THP_VALUES.values() for v in values))
KHUGEPAGED_LIMITS = ("max_ptes_none", "max_ptes_swap", "max_ptes_shared")


@register
@dataclass(frozen=True, slots=True)
class ThpSetting(KernelOp):
    """Write ``value`` to ``/sys/kernel/mm/transparent_hugepage/<name>`` (``enabled``, ``defrag``,
    ``use_zero_page``)."""

    setting: str
    value: str
    name: ClassVar[str] = "thp"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        values = "; ".join(f"{name}: {', '.join(allowed)}" for name, allowed in THP_VALUES.items())
        value: Field = choice(_ALL_VALUES, f"the value written ({values})")
        return (JsonField("name", choice(tuple(THP_VALUES), "the sysfs file written")), JsonField("value", value))

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        unknown = sorted(set(raw) - {"op", "name", "value"})
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", "unknown key: allowed name, value")
        for key in ("name", "value"):
            if key not in raw:
                raise ScenarioError(f"{where}.{key}", "missing")
        setting = parse_choice(raw["name"], f"{where}.name", tuple(THP_VALUES))
        return cls(setting, parse_choice(raw["value"], f"{where}.value", THP_VALUES[setting]))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "name": self.setting, "value": self.value}


@register
@dataclass(frozen=True, slots=True)
class Khugepaged(KernelOp):
    """One full scan of process ``pid``'s mm by khugepaged, collapsing what its limits allow."""

    pid: int
    name: ClassVar[str] = "khugepaged"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        return (JsonField("pid", PID.means("the process whose mm khugepaged scans")),)

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        unknown = sorted(set(raw) - {"op", "pid"})
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", "unknown key: allowed pid")
        if "pid" not in raw:
            raise ScenarioError(f"{where}.pid", "missing")
        return cls(PID(raw["pid"], f"{where}.pid"))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pid": self.pid}


@register
@dataclass(frozen=True, slots=True)
class KhugepagedLimit(KernelOp):
    """Write ``value`` to ``/sys/kernel/mm/transparent_hugepage/khugepaged/<name>`` (``max_ptes_none``,
    ``max_ptes_swap``, ``max_ptes_shared``)."""

    limit: str
    value: int
    name: ClassVar[str] = "khugepaged_limit"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        return (
            JsonField("name", choice(KHUGEPAGED_LIMITS, "the khugepaged sysfs file written")),
            JsonField("value", integer(0, 511, "the limit, in PTEs of one 2 MiB range")),
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        unknown = sorted(set(raw) - {"op", "name", "value"})
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", "unknown key: allowed name, value")
        fields = dict(zip(("name", "value"), cls.json_fields(), strict=True))
        for key in fields:
            if key not in raw:
                raise ScenarioError(f"{where}.{key}", "missing")
        limit = fields["name"].field(raw["name"], f"{where}.name")
        return cls(limit, fields["value"].field(raw["value"], f"{where}.value"))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "name": self.limit, "value": self.value}


THP_OPS = (ThpSetting, Khugepaged, KhugepagedLimit)
