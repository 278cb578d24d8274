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
guesses a missing or malformed value.  Unknown and duplicate keys are errors.

Sizes are bounded, so a file that parses also fits the machine: see
:data:`MAX_FILE_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_OPS`, :data:`MAX_INT_TEXT`
and the per-scenario totals declared with :func:`limit_total`.
"""

from __future__ import annotations

import codecs
import json
import math
import reprlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lang.errors import ConfigError, ScenarioError

Result = dict[str, Any]

KINDS = ("read", "write", "fetch")
MODES = ("user", "supervisor")

MAX_FILE_BYTES = 64 << 20
"""The largest scenario file read, in bytes (64 MiB)."""
MAX_DEPTH = 32
"""The deepest nesting of JSON arrays and objects in a scenario (the top-level object is depth 1)."""
MAX_OPS = 100_000
"""The most operations in one scenario."""
MAX_INT_TEXT = 80
"""The longest integer written as a string (``"0x..."``); a JSON number may have at most this many digits."""
MAX_CONTAINERS = 1 << 20
"""The most ``{`` and ``[`` in a scenario file (counted in its strings too): the JSON objects and arrays it may
hold, some 400 bytes each once read (a 64 MiB file of small objects would take 1.5 GiB)."""
MAX_STRINGS = 1 << 22
"""The most strings (``"`` pairs, keys included) in a scenario file, some 60 bytes each once read."""
MAX_NUMBERS = 1 << 22
"""The most JSON numbers in a scenario file, some 40 bytes each once read (counted as the file is parsed)."""
SHOWN = 80
"""The most characters of an offending value an error message shows."""

TOP_KEYS = ("about", "config", "ops", "expected_results", "scenario")
"""The keys of a scenario object, flat or wrapping one in ``scenario``."""
WRAPPED_KEYS = ("config", "ops", "expected_results")
"""The keys of the object inside ``{"scenario": {...}}``."""
RECORDED_KEYS = (
    "mutant",
    "divergence",
    "first_disagreement",
    "abstraction",
    "qemu_results",
    "linux_observations",
    "spec_observations",
    "impl_observations",
)
"""Top-level keys the checkers and oracles record beside a scenario (kept in :attr:`Scenario.extra`)."""

_shortener = reprlib.Repr()
_shortener.maxlevel = 3
_shortener.maxstring = SHOWN
_shortener.maxother = SHOWN
_shortener.maxlong = SHOWN


def cut(text: str, limit: int = SHOWN) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def shown(raw: object) -> str:
    """A value as an error message shows it: its ``repr``, about :data:`SHOWN` characters at most."""
    if isinstance(raw, str):
        text = repr(raw[:SHOWN])
        if len(raw) > SHOWN or len(text) > SHOWN + 2:
            return f"{text[:SHOWN]}\N{HORIZONTAL ELLIPSIS} ({len(raw)} characters)"
        return text
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 256:
        return f"an integer of {raw.bit_length()} bits"
    try:
        return cut(_shortener.repr(raw))
    except RecursionError:
        return f"a deeply nested {type(raw).__name__}"


def number(value: int) -> str:
    """An integer as error messages show it: in hex, or its size when it has more than 256 bits."""
    return hex(value) if value.bit_length() <= 256 else f"an integer of {value.bit_length()} bits"


def parse_int(raw: object, where: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    """An integer given as a JSON number or a ``"0x..."``/decimal string, within ``lo..hi``."""
    if isinstance(raw, bool):
        raise ScenarioError(where, f"expected an integer, got {shown(raw)}")
    if isinstance(raw, str):
        if len(raw) > MAX_INT_TEXT:
            raise ScenarioError(
                where, f"expected an integer or hex string of at most {MAX_INT_TEXT} characters, got {shown(raw)}"
            )
        try:
            value = int(raw, 0)
        except ValueError:
            raise ScenarioError(where, f"expected an integer or hex string, got {shown(raw)}") from None
    elif isinstance(raw, int):
        value = raw
    else:
        raise ScenarioError(where, f"expected an integer or hex string, got {shown(raw)}")
    if not lo <= value <= hi:
        raise ScenarioError(where, f"{number(value)} is out of range: allowed {lo:#x} .. {hi:#x}")
    return value


def parse_bool(raw: object, where: str) -> bool:
    """A JSON boolean, nothing else."""
    if not isinstance(raw, bool):
        raise ScenarioError(where, f"expected true or false, got {shown(raw)}")
    return raw


def parse_choice(raw: object, where: str, allowed: Sequence[str]) -> str:
    """One of the ``allowed`` strings."""
    if raw not in allowed:
        raise ScenarioError(where, f"expected one of {', '.join(allowed)}, got {shown(raw)}")
    assert isinstance(raw, str)
    return raw


INT_TEXT_PATTERN = r"^\s*[-+]?(0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|[1-9](_?[0-9])*|0(_?0)*)\s*$"
"""The integers a string may spell (Python's ``int(text, 0)``: hex ``0x``, octal ``0o``, binary ``0b``, decimal)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One JSON field of an operation: its parser, and what it allows as JSON Schema and as a phrase for the docs.

    A field is called like the parser it wraps (``field(raw, where)``), so ops parse with it directly;
    :mod:`lang.schema` writes the docs' field tables and ``docs/scenario.schema.json`` from the same objects.
    """

    parse: Callable[[object, str], Any]
    schema: Mapping[str, Any]
    allowed: str
    meaning: str = ""

    def __call__(self, raw: object, where: str) -> Any:
        return self.parse(raw, where)

    def means(self, meaning: str) -> Field:
        """The same field, described as ``meaning`` in the docs."""
        return Field(self.parse, self.schema, self.allowed, meaning)


def integer(lo: int = 0, hi: int = (1 << 64) - 1, meaning: str = "") -> Field:
    """An integer field in ``lo..hi``: a JSON number or a string such as ``"0x1000"`` (see :func:`parse_int`).

    The schema bounds JSON numbers; a string's value is checked when the scenario is read.
    """
    spelled = {"type": "string", "maxLength": MAX_INT_TEXT, "pattern": INT_TEXT_PATTERN}
    allowed = f"{lo} .. {hi}" if hi < 1 << 20 else f"{lo} .. {hi:#x}"
    return Field(
        lambda raw, where: parse_int(raw, where, lo, hi),
        {"anyOf": [{"type": "integer", "minimum": lo, "maximum": hi}, spelled]},
        f"integer {allowed}",
        meaning,
    )


BOOLEAN = Field(parse_bool, {"type": "boolean"}, "true or false")


def choice(allowed: Sequence[str], meaning: str = "") -> Field:
    """One of the strings ``allowed``."""
    names = tuple(allowed)
    return Field(
        lambda raw, where: parse_choice(raw, where, names),
        {"enum": list(names)},
        "one of " + ", ".join(f'`"{name}"`' for name in names),
        meaning,
    )


def pattern(regex: str, parse: Callable[[object, str], Any], allowed: str, meaning: str = "") -> Field:
    """A string field matching ``regex``, parsed by ``parse``."""
    return Field(parse, {"type": "string", "pattern": regex}, allowed, meaning)


REQUIRED: Any = object()
"""The default of a field that must be given (see :class:`JsonField`)."""


@dataclass(frozen=True, slots=True)
class JsonField:
    """A key of an operation's JSON object: the key, its field, and its default (:data:`REQUIRED`: none)."""

    key: str
    field: Field
    default: object = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def hex_or_int(value: int) -> str | int:
    """How a scenario writes numbers: hex strings for addresses and words."""
    return hex(value)


@dataclass(frozen=True, slots=True)
class Config:
    """Machine size and features.  ``frames`` is physical memory in 4 KiB frames.

    ``tlb_entries`` is each CPU's TLB capacity in the implementation (0: no
    TLB); ``flush_ceiling`` the most pages a shootdown flushes one by one
    before it flushes everything (Linux's ``tlb_single_page_flush_ceiling``).
    ``slab_seed`` seeds each slab cache's freelist-pointer secret (``s->random``);
    ``slub_min_objects`` is the ``slab_min_objects=`` boot parameter (0: from the CPU count);
    ``slab_freelist_random`` 1 shuffles new slabs' freelists in the implementation (CONFIG_SLAB_FREELIST_RANDOM).
    ``pcid`` is whether the CPUs have PCIDs (CR4.PCIDE=1, Linux's
    ``X86_FEATURE_PCID``); without them every MOV to CR3 drops all non-global
    TLB entries and Linux keeps one ASID (Intel SDM Vol. 3A 4.10.4.1,
    arch/x86/mm/tlb.c ``choose_new_asid``).
    ``swap`` is the number of swap slots (0: no swap).
    ``fault_around_bytes`` is Linux's debugfs ``fault_around_bytes``: how much a read fault on a file or shmem
    mapping maps around the faulting page from the page cache (mm/memory.c ``do_fault_around``); a power of two
    multiple of 4096 up to ``PTRS_PER_PTE`` pages (2 MiB, ``fault_around_bytes_set``), 4096 for none.  Linux
    rounds other values down (``rounddown_pow_of_two``); a config must give one it keeps as written.
    ``workingset`` 1 turns on refault-distance detection for file pages (mm/workingset.c, the two-list LRU's:
    :mod:`spec.pressure.workingset`); 0, the default, leaves a reclaimed page no shadow entry.
    ``nodes`` is the number of NUMA nodes (:mod:`spec.numa.topology`): each gets ``frames / nodes`` frames (a
    multiple of ``2**max_order``) and ``cpus / nodes`` CPUs, in order; ``distances`` is their distance table as
    ``numactl --hardware`` prints it, one row per node (default: 10 to itself, 20 to the others).
    """

    frames: int
    cpus: int = 1
    levels: int = 4
    maxphyaddr: int = 46
    max_order: int = 10
    tlb_entries: int = 64
    flush_ceiling: int = 33
    slab_seed: int = 0
    slub_min_objects: int = 0
    slab_freelist_random: int = 0
    pcid: bool = True
    swap: int = 0
    fault_around_bytes: int = 65536
    workingset: int = 0
    nodes: int = 1
    distances: tuple[tuple[int, ...], ...] | None = None

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "frames": (1, 1 << 24),
        "cpus": (1, 64),
        "levels": (4, 5),
        "maxphyaddr": (36, 52),
        "max_order": (0, 20),
        "tlb_entries": (0, 1 << 16),
        "flush_ceiling": (0, 1 << 20),
        "slab_seed": (0, (1 << 64) - 1),
        "slub_min_objects": (0, 32767),
        "slab_freelist_random": (0, 1),
        "swap": (0, 1 << 16),
        "fault_around_bytes": (4096, 512 * 4096),
        "workingset": (0, 1),
        "nodes": (1, 8),
    }
    FLAGS: ClassVar[tuple[str, ...]] = ("pcid",)  # true or false, not numbers
    MEANINGS: ClassVar[dict[str, str]] = {
        "frames": "physical memory in 4 KiB frames",
        "cpus": "the number of CPUs",
        "levels": "paging levels: 4, or 5 (LA57)",
        "maxphyaddr": "physical address width in bits (CPUID.80000008H:EAX[7:0])",
        "max_order": "the buddy allocator's largest order (Linux's MAX_PAGE_ORDER)",
        "tlb_entries": "each CPU's TLB capacity in the implementation (0: no TLB)",
        "flush_ceiling": "the most pages a shootdown flushes one by one (tlb_single_page_flush_ceiling)",
        "slab_seed": "seeds each slab cache's freelist-pointer secret (s->random)",
        "slub_min_objects": "the slab_min_objects= boot parameter (0: from the CPU count)",
        "slab_freelist_random": "1: the implementation shuffles new slabs' freelists (CONFIG_SLAB_FREELIST_RANDOM)",
        "pcid": "whether the CPUs have PCIDs (CR4.PCIDE=1)",
        "swap": "swap slots (0: no swap)",
        "fault_around_bytes": "bytes a read fault on a file or shmem mapping maps around it (4096: off)",
        "workingset": "1: a file page read back soon after reclaim goes straight to the active list (mm/workingset.c)",
        "nodes": "NUMA nodes, each with frames/nodes frames and cpus/nodes CPUs",
        "distances": "the nodes' distance table, rows as numactl --hardware prints them (default 10/20)",
    }
    """What each key means, for the docs (:mod:`lang.schema`)."""
    # Written only when they differ from the default, so scenarios from before they existed read the same.
    OPTIONAL: ClassVar[dict[str, int | bool]] = {
        "tlb_entries": 64,
        "flush_ceiling": 33,
        "slab_seed": 0,
        "slub_min_objects": 0,
        "slab_freelist_random": 0,
        "pcid": True,
        "swap": 0,
        "fault_around_bytes": 65536,
        "workingset": 0,
        "nodes": 1,
    }

    @classmethod
    def from_json(cls, raw: object, where: str = "config") -> Config:
        """Check and build a config; unknown keys are errors, not ignored."""
        if not isinstance(raw, Mapping):
            raise ScenarioError(where, f"expected an object, got {type(raw).__name__}")
        allowed = (*cls.LIMITS, *cls.FLAGS, "distances")
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ScenarioError(f"{where}.{unknown[0]}", f"unknown key: allowed {', '.join(allowed)}")
        if "frames" not in raw:
            raise ScenarioError(f"{where}.frames", "missing: the number of 4 KiB physical frames")
        numbers = {key: parse_int(raw[key], f"{where}.{key}", *cls.LIMITS[key]) for key in cls.LIMITS if key in raw}
        pcid = parse_bool(raw["pcid"], f"{where}.pcid") if "pcid" in raw else True
        around = numbers.get("fault_around_bytes", 65536)
        if around & (around - 1) or around % 4096:
            raise ScenarioError(
                f"{where}.fault_around_bytes",
                f"{around} is not a power of two multiple of 4096: allowed 4096 (no fault-around), 8192, ..., 2097152",
            )
        distances = parse_distances(raw["distances"], f"{where}.distances") if "distances" in raw else None
        try:
            return cls(**numbers, pcid=pcid, distances=distances)
        except ConfigError as exc:
            raise ScenarioError(f"{where}.nodes" if "node" in str(exc) else where, str(exc)) from None

    def __post_init__(self) -> None:
        around = self.fault_around_bytes
        if not 4096 <= around <= 512 * 4096 or around & (around - 1):
            raise ConfigError(
                f"fault_around_bytes {around} is not a power of two from 4096 (no fault-around) to 2097152"
            )
        if self.nodes > 1:
            per = self.frames // self.nodes
            if self.frames % self.nodes or per % (1 << self.max_order):
                raise ConfigError(
                    f"{self.frames} frames do not split into {self.nodes} nodes of a multiple of "
                    f"2**max_order = {1 << self.max_order} frames: give frames = nodes * k * 2**max_order"
                )
            if self.cpus % self.nodes:
                raise ConfigError(f"{self.cpus} CPUs do not split evenly into {self.nodes} nodes")
        if self.distances is not None:
            rows = self.distances
            if len(rows) != self.nodes or any(len(r) != self.nodes for r in rows):
                raise ConfigError(f"distances must be {self.nodes} rows of {self.nodes} numbers, one per node")
            for i, row in enumerate(rows):
                for j, d in enumerate(row):
                    if (i == j and d != 10) or (i != j and not 10 < d <= 254):
                        raise ConfigError(
                            f"distances[{i}][{j}] is {d}: a node is at 10 from itself and 11..254 from the others"
                        )

    @property
    def fault_around_pages(self) -> int:
        """``fault_around_pages``: the pages a read fault maps around itself (1: none)."""
        return self.fault_around_bytes >> 12

    def to_json(self) -> dict[str, Any]:
        """The config as a scenario writes it (every field, so replays are exact)."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "distances" and self.OPTIONAL.get(f.name) != getattr(self, f.name)
        }
        if self.distances is not None:
            out["distances"] = [list(row) for row in self.distances]
        return out


def parse_distances(raw: object, where: str) -> tuple[tuple[int, ...], ...]:
    """A distance table: a list of rows, each a list of numbers 10..254."""
    if not isinstance(raw, list) or not all(isinstance(row, list) for row in raw):
        raise ScenarioError(where, "expected a list of rows, each a list of distances (10 on the diagonal)")
    return tuple(
        tuple(parse_int(d, f"{where}[{i}][{j}]", 10, 254) for j, d in enumerate(row)) for i, row in enumerate(raw)
    )


DISTANCES = Field(
    parse_distances,
    {"type": "array", "items": {"type": "array", "items": integer(10, 254).schema}},
    "a list of rows, each a list of integers 10 .. 254",
)
"""The config's ``distances``: the NUMA distance table (:func:`parse_distances`)."""


class Op:
    """Base of every scenario operation.  Subclasses are frozen dataclasses.

    ``layer`` names the machine an op runs on: ops of two different layers do
    not meet in one scenario (see :func:`check_layers`); ``""`` runs on any.
    """

    name: ClassVar[str]
    layer: ClassVar[str] = ""
    FIELDS: ClassVar[Mapping[str, Field]] = {}
    """The op's JSON keys (besides ``op``) and their fields; each must be given unless it is in :attr:`DEFAULTS`."""
    DEFAULTS: ClassVar[Mapping[str, object]] = {}
    """The value a key left out stands for."""

    def footprint(self) -> Mapping[str, int]:
        """What the op adds to the totals a scenario is bounded by (see :func:`limit_total`); none by default."""
        return {}

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        """The op's JSON keys, in order, with their fields and defaults: what it reads and the docs describe."""
        return tuple(JsonField(key, f, cls.DEFAULTS.get(key, REQUIRED)) for key, f in cls.FIELDS.items())

    @classmethod
    def parse_fields(cls, raw: Mapping[str, object], where: str) -> dict[str, Any]:
        """Every key of :meth:`json_fields` parsed (or defaulted), by key; unknown and missing keys are errors."""
        known = cls.json_fields()
        check_keys(raw, where, [f.key for f in known])
        values: dict[str, Any] = {}
        for f in known:
            if f.key in raw:
                values[f.key] = f.field(raw[f.key], f"{where}.{f.key}")
            elif f.required:
                raise ScenarioError(f"{where}.{f.key}", "missing")
            else:
                values[f.key] = f.default
        return values

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        """The op from its JSON object: by default each key of :attr:`FIELDS` is a dataclass field of that name."""
        return cls(**cls.parse_fields(raw, where))

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
        raise ScenarioError(f"{where}.{unknown[0]}", f"unknown key: allowed {', '.join(allowed) or 'none'}")


def parse_op(raw: object, where: str) -> Op:
    """One operation object, dispatched on its ``op`` field."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(where, f"expected an object, got {type(raw).__name__}")
    if "op" not in raw:
        raise ScenarioError(f"{where}.op", f"missing: the operation's name, one of {', '.join(sorted(OP_TYPES))}")
    name = raw["op"]
    if not isinstance(name, str) or name not in OP_TYPES:
        raise ScenarioError(f"{where}.op", f"unknown operation {shown(name)}: allowed {', '.join(sorted(OP_TYPES))}")
    return OP_TYPES[name].from_json(raw, where)


LAYER_NAMES: dict[str, str] = {}
"""A phrase per layer for error messages (``"kernel": "a kernel op: ..."``), set by the modules that define one."""

TOTAL_LIMITS: dict[str, tuple[int, str]] = {}
"""Per-scenario totals: quantity -> (the most a scenario may add up to, what it bounds)."""


def limit_total(quantity: str, limit: int, why: str) -> None:
    """Bound the sum of ``quantity`` over the ops' :meth:`Op.footprint` in any scenario that is parsed."""
    TOTAL_LIMITS[quantity] = (limit, why)


def check_layers(ops: Sequence[Op]) -> None:
    """Ops of two different layers cannot run in one scenario: name the first op that mixes them."""
    seen: tuple[str, int] | None = None
    for index, op in enumerate(ops):
        if not op.layer:
            continue
        if seen is None:
            seen = (op.layer, index)
            continue
        layer, at = seen
        if op.layer != layer:
            raise ScenarioError(
                f"ops[{index}].op",
                f"{op.name} is {LAYER_NAMES.get(op.layer, f'a {op.layer} op')}, but ops[{at}] ({ops[at].name}) is "
                f"{LAYER_NAMES.get(layer, f'a {layer} op')}: "
                f"this mixes the {layer} and {op.layer} layers, a scenario runs on one",
            )


def check_totals(ops: Sequence[Op]) -> None:
    """Every total declared with :func:`limit_total` stays within its limit; name the op that passes it."""
    totals: dict[str, int] = {}
    for index, op in enumerate(ops):
        for quantity, amount in op.footprint().items():
            totals[quantity] = totals.get(quantity, 0) + amount
            limit, why = TOTAL_LIMITS.get(quantity, (sys.maxsize, ""))
            if totals[quantity] > limit:
                raise ScenarioError(
                    f"ops[{index}]", f"{quantity} add up to {totals[quantity]} here: allowed at most {limit} ({why})"
                )


def check_object_keys(raw: Mapping[object, object], prefix: str, allowed: Sequence[str]) -> None:
    """Reject keys of a scenario (or of its ``scenario`` wrapper) outside ``allowed``."""
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise ScenarioError(f"{prefix}{unknown[0]}", f"unknown key: allowed {', '.join(allowed)}")


def parse_expected(raw: object, count: int) -> tuple[Result, ...]:
    """``expected_results``: a list of ``count`` result objects, one per op."""
    if not isinstance(raw, list) or len(raw) != count:
        got = f"a list of {len(raw)}" if isinstance(raw, list) else type(raw).__name__
        raise ScenarioError("expected_results", f"expected a list of {count} results, one per op, got {got}")
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ScenarioError(
                f"expected_results[{index}]",
                f'expected an object (a result like {{"ok": true}}), got {"null" if item is None else shown(item)}',
            )
        bad = [key for key in item if not isinstance(key, str)]
        if bad:
            raise ScenarioError(f"expected_results[{index}]", f"keys must be strings, got {shown(bad[0])}")
    return tuple(dict(item) for item in raw)


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
        annotated example files is accepted as well as the flat form; a key
        given both outside and inside the wrapper is an error, as is any key
        outside :data:`TOP_KEYS` and :data:`RECORDED_KEYS`.
        """
        if not isinstance(raw, Mapping):
            raise ScenarioError("scenario", f"expected an object, got {type(raw).__name__}")
        check_object_keys(raw, "", (*TOP_KEYS, *RECORDED_KEYS))
        about = raw.get("about", "")
        if not isinstance(about, str):
            raise ScenarioError("about", f"expected a string, got {type(about).__name__}")
        if "mutant" in raw and not isinstance(raw["mutant"], str):
            raise ScenarioError("mutant", f"expected a mutant's name, got {shown(raw['mutant'])}")
        extra = {k: v for k, v in raw.items() if k in RECORDED_KEYS}
        body: Mapping[str, object] = raw
        prefix = ""
        if "scenario" in raw:
            inner = raw["scenario"]
            if not isinstance(inner, Mapping):
                raise ScenarioError("scenario", f"expected an object with config and ops, got {type(inner).__name__}")
            check_object_keys(inner, "scenario.", WRAPPED_KEYS)
            twice = sorted(set(inner) & set(raw) & set(WRAPPED_KEYS))
            if twice:
                raise ScenarioError(twice[0], "given both at the top level and inside scenario: give it once")
            body = {**{k: raw[k] for k in WRAPPED_KEYS if k in raw}, **inner}
            prefix = "scenario."
        if "config" not in body:
            raise ScenarioError(f"{prefix}config", "missing: a scenario needs a config and a list of ops")
        config = Config.from_json(body["config"], f"{prefix}config")
        raw_ops = body.get("ops")
        if not isinstance(raw_ops, list):
            raise ScenarioError(f"{prefix}ops", "missing or not a list of operations")
        if len(raw_ops) > MAX_OPS:
            raise ScenarioError(f"{prefix}ops", f"{len(raw_ops)} operations: allowed at most {MAX_OPS}")
        ops = tuple(parse_op(op, f"ops[{i}]") for i, op in enumerate(raw_ops))
        check_layers(ops)
        check_totals(ops)
        expected = body.get("expected_results")
        if expected is not None:
            expected = parse_expected(expected, len(ops))
        return cls(config, ops, expected, about, extra)

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


class _Object(dict[str, Any]):
    """A JSON object as read, remembering a key it held twice (reported with its path by :func:`check_structure`)."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object()
    for key, value in pairs:
        if key in out and out.duplicate is None:
            out.duplicate = key
        out[key] = value
    return out


class _LongNumber:
    """A JSON number with more than :data:`MAX_INT_TEXT` characters (reported with its path)."""

    def __init__(self, text: str) -> None:
        self.length = len(text)


def _number(text: str) -> int | _LongNumber:
    return int(text) if len(text) <= MAX_INT_TEXT else _LongNumber(text)


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _problem(value: object) -> str | None:
    """What is wrong with a number or string of a scenario, or None."""
    if isinstance(value, _LongNumber):
        return f"a number of {value.length} characters: allowed at most {MAX_INT_TEXT}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, str):
        return _text_problem(value)
    return None


def _child(path: str, key: object, in_object: bool) -> str:
    return _path(path, str(key)) if in_object else f"{path}[{key}]"


def check_structure(raw: object, where: str) -> None:
    """What JSON itself allows but a scenario does not, named by path: nesting deeper than :data:`MAX_DEPTH`,
    a key given twice, a number too long, NaN or infinity, a string that is not valid Unicode.

    Paths are built for arrays and objects only (at most :data:`MAX_CONTAINERS` of them), and for a scalar
    only when it is wrong, so the check takes little memory beside the parsed file.
    """
    stack: list[tuple[object, str, int]] = [(raw, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if not isinstance(value, (dict, list)):
            problem = _problem(value)
            if problem is not None:
                raise ScenarioError(path or where, problem)
            continue
        if depth > MAX_DEPTH:
            raise ScenarioError(path or where, f"nested more than {MAX_DEPTH} arrays and objects deep")
        if isinstance(value, _Object) and value.duplicate is not None:
            raise ScenarioError(_path(path, value.duplicate), "duplicate key: each key may appear once")
        in_object = isinstance(value, dict)
        items: Iterator[tuple[object, object]] = iter(value.items()) if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if in_object:
                _check_text(str(key), _path(path, "<key>"))
            if isinstance(item, (dict, list)):
                stack.append((item, _child(path, key, in_object), depth + 1))
            else:
                problem = _problem(item)
                if problem is not None:
                    raise ScenarioError(_child(path, key, in_object), problem)


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode: a lone surrogate {text[exc.start]!r} at {exc.start}"
    return None


def _check_text(text: str, where: str) -> None:
    problem = _text_problem(text)
    if problem is not None:
        raise ScenarioError(where, problem)


BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
"""Byte-order marks and the encoding each announces: a file without one is UTF-8."""


def decode(data: bytes, where: str) -> str:
    """The text of a scenario file: UTF-8, or UTF-8, UTF-16 or UTF-32 announced by a byte-order mark."""
    encoding = next((name for bom, name in BOMS if data.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\0" in data:
        offset = data.index(b"\0")
        raise ScenarioError(where, f"not UTF-8 text: byte 0x00 at offset {offset} (UTF-16 without a byte-order mark?)")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        hint = "" if encoding != "utf-8" else " (UTF-16 and UTF-32 are read only after a byte-order mark)"
        raise ScenarioError(where, f"not {encoding.upper()} text: byte 0x{bad} at offset {exc.start}{hint}") from None


def loads(data: bytes | str, where: str = "scenario") -> Scenario:
    """Parse and check a scenario from the bytes (or text) of a file; ``where`` names the file in errors."""
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(where, f"{len(data)} bytes: a scenario file may have at most {MAX_FILE_BYTES}")
    text = decode(data, where) if isinstance(data, bytes) else data
    check_counts(text, where)
    numbers = 0

    def counted(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        def parse_number(token: str) -> Any:
            nonlocal numbers
            numbers += 1
            if numbers > MAX_NUMBERS:
                raise _TooManyNumbers
            return parse(token)

        return parse_number

    try:
        raw = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=counted(_number),
            parse_float=counted(float),
            parse_constant=float,
        )
    except _TooManyNumbers:
        raise ScenarioError(where, f"more than {MAX_NUMBERS} numbers: a scenario file may hold at most that") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(where, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ScenarioError(where, f"nested more than {MAX_DEPTH} arrays and objects deep") from None
    check_structure(raw, where)
    return Scenario.from_json(raw)


class _TooManyNumbers(Exception):
    """Raised while parsing past :data:`MAX_NUMBERS` numbers: the parse stops there."""


def check_counts(text: str, where: str) -> None:
    """Refuse a file with more arrays and objects than :data:`MAX_CONTAINERS` or more strings than
    :data:`MAX_STRINGS` before it is read, so reading it stays within a few hundred MiB."""
    containers = text.count("{") + text.count("[")
    if containers > MAX_CONTAINERS:
        raise ScenarioError(
            where,
            f"{containers} '{{' and '[': a scenario file may hold at most {MAX_CONTAINERS} objects and arrays "
            "(counted in strings too)",
        )
    strings = text.count('"') // 2
    if strings > MAX_STRINGS:
        raise ScenarioError(where, f"{strings} strings: a scenario file may hold at most {MAX_STRINGS} (keys included)")


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a scenario file, ``-`` for standard input, at most :data:`MAX_FILE_BYTES` of them."""
    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    else:
        with Path(path).open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(str(path), f"more than {MAX_FILE_BYTES} bytes: a scenario file may have at most that")
    return data


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file (``-``: standard input)."""
    where = "<stdin>" if str(path) == "-" else str(path)
    return loads(read_bytes(path), where)


def dump(scenario: Scenario, path: str | Path) -> Path:
    """Write a scenario file (pretty-printed, stable key order) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(scenario.to_json(), indent=1) + "\n")
    return target
