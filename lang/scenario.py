"""Scenarios: a configuration and a list of operations, stored as JSON.

One vocabulary for every layer: the CLI replays scenarios, the checkers write
their counterexamples as scenarios, the tests keep them as regressions.  A
file looks like::

    {"config": {"frames": 16, "cpus": 1},
     "ops": [{"op": "write_phys", "pa": "0x1000", "value": "0x2007"},
             {"op": "access", "cpu": 0, "va": "0x1010", "kind": "read", "mode": "user"}],
     "expected_results": [{"ok": true}, {"pa": "0x100010"}]}

Addresses and 64-bit values may be JSON integers or hex strings.  Parsing
checks every field and names the one that is wrong (``ops[3].va``); it never
guesses a missing or malformed value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lang.errors import ScenarioError

Result = dict[str, Any]

KINDS = ("read", "write", "fetch")
MODES = ("user", "supervisor")


def parse_int(raw: object, where: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    """An integer given as a JSON number or a ``"0x..."``/decimal string, within ``lo..hi``."""
    if isinstance(raw, bool):
        raise ScenarioError(where, f"expected an integer, got {raw!r}")
    if isinstance(raw, str):
        try:
            value = int(raw, 0)
        except ValueError:
            raise ScenarioError(where, f"expected an integer or hex string, got {raw!r}") from None
    elif isinstance(raw, int):
        value = raw
    else:
        raise ScenarioError(where, f"expected an integer or hex string, got {raw!r}")
    if not lo <= value <= hi:
        raise ScenarioError(where, f"{value:#x} is out of range: allowed {lo:#x} .. {hi:#x}")
    return value


def parse_bool(raw: object, where: str) -> bool:
    """A JSON boolean, nothing else."""
    if not isinstance(raw, bool):
        raise ScenarioError(where, f"expected true or false, got {raw!r}")
    return raw


def parse_choice(raw: object, where: str, allowed: Sequence[str]) -> str:
    """One of the ``allowed`` strings."""
    if raw not in allowed:
        raise ScenarioError(where, f"expected one of {', '.join(allowed)}, got {raw!r}")
    assert isinstance(raw, str)
    return raw


def hex_or_int(value: int) -> str | int:
    """How a scenario writes numbers: hex strings for addresses and words."""
    return hex(value)


@dataclass(frozen=True, slots=True)
class Config:
    """Machine size and features.  ``frames`` is physical memory in 4 KiB frames.

    ``tlb_entries`` is each CPU's TLB capacity in the implementation (0: no
    TLB); ``flush_ceiling`` the most pages a shootdown flushes one by one
    before it flushes everything (Linux's ``tlb_single_page_flush_ceiling``); ``swap`` the number of
    swap slots (0: no swap).
    """

    frames: int
    cpus: int = 1
    levels: int = 4
    maxphyaddr: int = 46
    max_order: int = 10
    tlb_entries: int = 64
    flush_ceiling: int = 33
    swap: int = 0

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "frames": (1, 1 << 24),
        "cpus": (1, 64),
        "levels": (4, 5),
        "maxphyaddr": (36, 52),
        "max_order": (0, 20),
        "tlb_entries": (0, 1 << 16),
        "flush_ceiling": (0, 1 << 20),
        "swap": (0, 1 << 16),
    }
    # Written only when they differ from the default, so scenarios from before they existed read the same.
    OPTIONAL: ClassVar[dict[str, int]] = {"tlb_entries": 64, "flush_ceiling": 33, "swap": 0}

    @classmethod
    def from_json(cls, raw: object, where: str = "config") -> Config:
        """Check and build a config; unknown keys are errors, not ignored."""
        if not isinstance(raw, Mapping):
            raise ScenarioError(where, f"expected an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls.LIMITS))
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", f"unknown key: allowed {', '.join(cls.LIMITS)}")
        if "frames" not in raw:
            raise ScenarioError(f"{where}.frames", "missing: the number of 4 KiB physical frames")
        values = {key: parse_int(raw[key], f"{where}.{key}", *cls.LIMITS[key]) for key in cls.LIMITS if key in raw}
        return cls(**values)

    def to_json(self) -> dict[str, int]:
        """The config as a scenario writes it (every field, so replays are exact)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if self.OPTIONAL.get(f.name) != getattr(self, f.name)
        }


class Op:
    """Base of every scenario operation.  Subclasses are frozen dataclasses."""

    name: ClassVar[str]

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


OP_TYPES: dict[str, type[Op]] = {}
_OpT = TypeVar("_OpT", bound=type[Op])


def register(cls: _OpT) -> _OpT:
    """Add an operation class to the vocabulary under its ``name``."""
    OP_TYPES[cls.name] = cls
    return cls


def require(raw: Mapping[str, object], key: str, where: str, parse: Callable[[object, str], Any]) -> Any:
    """Parse a required field ``key`` of an operation."""
    if key not in raw:
        raise ScenarioError(f"{where}.{key}", "missing")
    return parse(raw[key], f"{where}.{key}")


def check_keys(raw: Mapping[str, object], where: str, allowed: Sequence[str]) -> None:
    """Reject keys an operation does not know, naming the ones it does."""
    unknown = sorted(set(raw) - set(allowed) - {"op"})
    if unknown:
        raise ScenarioError(f"{where}.{unknown[0]}", f"unknown key: allowed {', '.join(allowed)}")


def parse_op(raw: object, where: str) -> Op:
    """One operation object, dispatched on its ``op`` field."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(where, f"expected an object, got {type(raw).__name__}")
    name = raw.get("op")
    if name not in OP_TYPES:
        raise ScenarioError(f"{where}.op", f"unknown operation {name!r}: allowed {', '.join(sorted(OP_TYPES))}")
    assert isinstance(name, str)
    return OP_TYPES[name].from_json(raw, where)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A configuration, the operations to run, and optionally the results they must give."""

    config: Config
    ops: tuple[Op, ...]
    expected_results: tuple[Result, ...] | None = None
    about: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object) -> Scenario:
        """Check and build a scenario from parsed JSON.

        The ``{"scenario": {...}, "expected_results": [...]}`` wrapping of
        annotated example files is accepted as well as the flat form.
        """
        if not isinstance(raw, Mapping):
            raise ScenarioError("scenario", f"expected an object, got {type(raw).__name__}")
        about = raw.get("about", "")
        expected = raw.get("expected_results")
        extra = {k: v for k, v in raw.items() if k not in {"scenario", "config", "ops", "expected_results", "about"}}
        if "scenario" in raw:
            inner = raw["scenario"]
            if not isinstance(inner, Mapping):
                raise ScenarioError("scenario", "expected an object with config and ops")
            raw = inner
            expected = raw.get("expected_results", expected)
        if "config" not in raw:
            raise ScenarioError("config", "missing: a scenario needs a config and a list of ops")
        config = Config.from_json(raw["config"])
        raw_ops = raw.get("ops")
        if not isinstance(raw_ops, list):
            raise ScenarioError("ops", "missing or not a list of operations")
        ops = tuple(parse_op(op, f"ops[{i}]") for i, op in enumerate(raw_ops))
        if expected is not None:
            if not isinstance(expected, list) or len(expected) != len(ops):
                raise ScenarioError("expected_results", f"expected a list of {len(ops)} results, one per op")
            expected = tuple(expected)
        return cls(config, ops, expected, str(about), extra)

    def to_json(self) -> dict[str, Any]:
        """The scenario as a JSON-ready object (the flat form)."""
        out: dict[str, Any] = {}
        if self.about:
            out["about"] = self.about
        out["config"] = self.config.to_json()
        out["ops"] = [op.to_json() for op in self.ops]
        if self.expected_results is not None:
            out["expected_results"] = list(self.expected_results)
        out.update(self.extra)
        return out


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file."""
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ScenarioError(str(path), f"not valid JSON: {exc}") from None
    return Scenario.from_json(raw)


def dump(scenario: Scenario, path: str | Path) -> Path:
    """Write a scenario file (pretty-printed, stable key order) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(scenario.to_json(), indent=1) + "\n")
    return target

