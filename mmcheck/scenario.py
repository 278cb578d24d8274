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

from mmcheck.errors import ScenarioError

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
    before it flushes everything (Linux's ``tlb_single_page_flush_ceiling``).
    """

    frames: int
    cpus: int = 1
    levels: int = 4
    maxphyaddr: int = 46
    max_order: int = 10
    tlb_entries: int = 64
    flush_ceiling: int = 33

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "frames": (1, 1 << 24),
        "cpus": (1, 64),
        "levels": (4, 5),
        "maxphyaddr": (36, 52),
        "max_order": (0, 20),
        "tlb_entries": (0, 1 << 16),
        "flush_ceiling": (0, 1 << 20),
    }
    # Written only when they differ from the default, so scenarios from before they existed read the same.
    OPTIONAL: ClassVar[dict[str, int]] = {"tlb_entries": 64, "flush_ceiling": 33}

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


@register
@dataclass(frozen=True, slots=True)
class WritePhys(Op):
    """Store a 64-bit word at an aligned physical address."""

    pa: int
    value: int
    name: ClassVar[str] = "write_phys"

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


# The kernel layer's operations register themselves in OP_TYPES.
import mmcheck.kernel_ops  # noqa: E402, F401
