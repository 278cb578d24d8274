"""Scenario operation of transparent huge pages: the machine-wide policy in ``/sys/kernel/mm/transparent_hugepage``.

::

    {"op": "thp", "name": "enabled", "value": "madvise"}            -> {"ok": true}
    {"op": "thp", "name": "defrag", "value": "defer+madvise"}       -> {"ok": true}
    {"op": "thp", "name": "use_zero_page", "value": "0"}            -> {"ok": true}

``enabled`` is ``always``, ``madvise`` or ``never``; ``defrag`` is ``always``, ``defer``, ``defer+madvise``,
``madvise`` or ``never``; ``use_zero_page`` is ``0`` or ``1`` (Documentation/admin-guide/mm/transhuge.rst).
Per-VMA advice is the ``madvise`` op's ``"hugepage"`` and ``"nohugepage"`` (see :mod:`spec.mm.thp`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import KernelOp
from lang.scenario import Field, JsonField, Op, choice, parse_choice, register

THP_VALUES = {
    "enabled": ("always", "madvise", "never"),
    "defrag": ("always", "defer", "defer+madvise", "madvise", "never"),
    "use_zero_page": ("0", "1"),
}
_ALL_VALUES = tuple(dict.fromkeys(v for values in THP_VALUES.values() for v in values))


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


THP_OPS = (ThpSetting,)
