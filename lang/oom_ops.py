"""Scenario operations of the OOM killer: ``oom_score_adj``, ``oom_score``, the OOM sysctls, ``out_of_memory``.

::

    {"op": "oom_score_adj", "pid": 2, "value": -900}                 -> {"ok": true}
    {"op": "oom_score", "pid": 2}                                    -> {"oom_score": N, "oom_score_adj": A}
    {"op": "sysctl", "name": "vm.panic_on_oom", "value": 0}           -> {"ok": true}
    {"op": "out_of_memory", "pid": 2}
        -> {"oom_kill": {"pid", "points", "total_vm_kb", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb",
                         "pgtables_kb", "oom_score_adj", "message"}}
        or {"panic": reason, "report": what was printed before it}

``oom_score_adj`` is ``/proc/PID/oom_score_adj``: -1000..1000 (the kernel's EINVAL outside is a typed error
here).  ``sysctl`` writes ``vm.panic_on_oom`` (0..2) or ``vm.oom_kill_allocating_task`` (0..1).
``out_of_memory`` is what the page allocator calls when process ``pid``'s allocation failed after reclaim:
the global OOM killer (:mod:`spec.oom.badness`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import PARSERS, KernelOp, as_field
from lang.scenario import JsonField, Op, choice, integer, parse_choice, parse_int, register

OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
SYSCTL_RANGES = {"vm.panic_on_oom": (0, 2), "vm.oom_kill_allocating_task": (0, 1)}

ADJ = integer(OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX, "/proc/PID/oom_score_adj: -1000 never killed, 1000 first")
PARSERS.update({"adj": ADJ})


class OomOp(KernelOp):
    """Base of the OOM killer's operations (parsed like the kernel ops)."""


@register
@dataclass(frozen=True, slots=True)
class OomScoreAdj(OomOp):
    """Write ``value`` (-1000..1000) to ``/proc/PID/oom_score_adj``."""

    pid: int
    adj: int
    name: ClassVar[str] = "oom_score_adj"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        return (JsonField("pid", as_field(PARSERS["pid"])), JsonField("value", ADJ))

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        unknown = sorted(set(raw) - {"op", "pid", "value"})
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", "unknown key: allowed pid, value")
        for key in ("pid", "value"):
            if key not in raw:
                raise ScenarioError(f"{where}.{key}", "missing")
        return cls(PARSERS["pid"](raw["pid"], f"{where}.pid"), PARSERS["adj"](raw["value"], f"{where}.value"))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pid": self.pid, "value": self.adj}


@register
@dataclass(frozen=True, slots=True)
class OomScoreOp(OomOp):
    """Read ``/proc/PID/oom_score`` and ``/proc/PID/oom_score_adj``."""

    pid: int
    name: ClassVar[str] = "oom_score"


@register
@dataclass(frozen=True, slots=True)
class Sysctl(OomOp):
    """Write an OOM sysctl: ``vm.panic_on_oom`` (0..2) or ``vm.oom_kill_allocating_task`` (0..1)."""

    sysctl: str
    setting: int
    name: ClassVar[str] = "sysctl"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        values = ", ".join(f"{lo}..{hi} for {name}" for name, (lo, hi) in sorted(SYSCTL_RANGES.items()))
        return (
            JsonField("name", choice(sorted(SYSCTL_RANGES), "the sysctl written")),
            JsonField("value", integer(0, max(hi for _, hi in SYSCTL_RANGES.values()), f"the value: {values}")),
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        unknown = sorted(set(raw) - {"op", "name", "value"})
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", "unknown key: allowed name, value")
        for key in ("name", "value"):
            if key not in raw:
                raise ScenarioError(f"{where}.{key}", "missing")
        sysctl = parse_choice(raw["name"], f"{where}.name", sorted(SYSCTL_RANGES))
        lo, hi = SYSCTL_RANGES[sysctl]
        return cls(sysctl, parse_int(raw["value"], f"{where}.value", lo, hi))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "name": self.sysctl, "value": self.setting}


@register
@dataclass(frozen=True, slots=True)
class OutOfMemory(OomOp):
    """Process ``pid``'s allocation failed after reclaim: ``out_of_memory()`` for the whole machine."""

    pid: int
    name: ClassVar[str] = "out_of_memory"


OOM_OPS = (OomScoreAdj, OomScoreOp, Sysctl, OutOfMemory)
