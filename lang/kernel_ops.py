"""Scenario operations of the kernel layer: processes, mappings, CPU accesses, pins, observations.

::

    {"op": "spawn"}                       -> {"pid": N}
    {"op": "fork", "pid": 1}              -> {"pid": N}
    {"op": "exit", "pid": 2}              -> {"ok": true}
    {"op": "mmap", "pid": 1, "va": "0x100000000000", "pages": 2, "prot": "rw-", "shared": false, "huge": false}
    {"op": "munmap", "pid": 1, "va": "0x...", "pages": 1}
    {"op": "mprotect", "pid": 1, "va": "0x...", "pages": 1, "prot": "r--"}
    {"op": "madvise", "pid": 1, "va": "0x...", "pages": 1, "advice": "dontneed"}
    {"op": "switch", "cpu": 0, "pid": 1}      (pid null: a kernel thread, the mm stays loaded: lazy TLB)
    {"op": "load", "cpu": 0, "va": "0x...", "mode": "user"}   -> {"value": N} or {"signal": "SIGSEGV", "error_code": N}
    {"op": "store", "cpu": 0, "va": "0x...", "value": 7}      -> {"ok": true} or a signal
    {"op": "fetch", "cpu": 0, "va": "0x..."}                  -> like load
    {"op": "pin", "pid": 1, "va": "0x..."} -> {"pin": N};  {"op": "read_pin", "pin": N};  {"op": "unpin", "pin": N}
    {"op": "stat", "pid": 1}      -> {"rss_kb", "pss_kb", "uss_kb", "anon_kb"}
    {"op": "pagemap", "pid": 1, "va": "0x..."} -> {"present", "pfn", "exclusive"}

TLB shootdown (docs/scenarios.md): ``mmap``, ``munmap``, ``mprotect``,
``madvise``, ``fork`` and ``exit`` take ``"async": true`` to run only their
first atomic step (page-table edit, IPIs sent) and answer ``{"pending": N}``;
then each ``{"op": "step", "pending": N}`` is one more atomic step:
``{"stage": "flushed", "cpu": C}`` when CPU ``C`` handled its IPI, and the
syscall's own result at the last step (the gathered frames freed).
``{"op": "tlb_evict", "cpu": C}`` drops CPU ``C``'s least recently used TLB
entry, as hardware may at any time.  ``{"op": "kernel_remap"}`` moves the
kernel half's page to a new frame and flushes it on every CPU before the old
frame is freed (``{"ok": true}``, or ``{"error": "ENOMEM"}``).

Syscall failures are results (``{"error": "EINVAL"}``, ``"ENOMEM"``, ``"EPERM"``,
``"EFAULT"``).  ``mode`` defaults to ``"user"``, ``shared`` and ``huge`` to false.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.scenario import (
    BOOLEAN,
    LAYER_NAMES,
    MODES,
    REQUIRED,
    Field,
    JsonField,
    Op,
    choice,
    integer,
    limit_total,
    pattern,
    register,
    shown,
)

MAX_PAGES = 1 << 16
"""The most pages one ``mmap``, ``munmap``, ``mprotect`` or ``madvise`` names (256 MiB)."""
MAX_MAPPED_PAGES = 1 << 17
"""The most pages the ``mmap`` ops of one scenario may map in all (512 MiB)."""
MAX_PROCESSES = 64
"""The most ``spawn`` and ``fork`` ops in one scenario."""

# The lockstep comparison keeps a few hundred bytes per mapped page and process: the two totals bound it to a few GiB.
limit_total("mapped pages", MAX_MAPPED_PAGES, "the pages the mmap ops of one scenario map in all")
limit_total("processes", MAX_PROCESSES, "the spawn and fork ops of one scenario")
LAYER_NAMES["kernel"] = "a kernel op (the kernel owns physical memory, the CPUs and the buddy allocator)"

PROT_PATTERN = re.compile(r"^[r-][w-][x-]$")
ADVICE = ("dontneed", "cold", "pageout", "hugepage", "nohugepage")


def parse_prot(raw: object, where: str) -> str:
    """A protection written like ``"rw-"``."""
    if not isinstance(raw, str) or not PROT_PATTERN.match(raw):
        raise ScenarioError(where, f"expected a protection like 'rw-' (r, w, x or '-' in each place), got {shown(raw)}")
    return raw


PID = integer(1, (1 << 31) - 1, "a process id, as spawn or fork answered")
PARSERS: dict[str, Field | Callable[[object, str], Any]] = {
    "pid": PID,
    "cpu": integer(0, 63, "the CPU (below the config's cpus)"),
    "va": integer(meaning="a user virtual address (page-aligned where a range starts)"),
    "pages": integer(0, MAX_PAGES, "a length in 4 KiB pages"),
    "prot": pattern(
        PROT_PATTERN.pattern, parse_prot, 'r, w, x or - in each of three places, like `"rw-"`', "the protection"
    ),
    "shared": BOOLEAN.means("MAP_SHARED rather than MAP_PRIVATE"),
    "huge": BOOLEAN.means("MAP_HUGETLB: 2 MiB pages"),
    "value": integer(meaning="a 64-bit value"),
    "mode": choice(MODES, "the privilege the access runs at"),
    "advice": choice(ADVICE, "the madvise advice"),
    "pin": integer(1, (1 << 31) - 1, "a pin number, as pin answered"),
    "pending": integer(1, (1 << 31) - 1, "the number of a change in flight, as its async op answered"),
    "background": BOOLEAN.means('run only the first atomic step and answer {"pending": N}; step runs the rest'),
}
"""The field of each dataclass field name of the kernel (and memory-pressure) ops.  A plain parser function is
taken too, but then the docs and the schema cannot say what it allows (tests/test_schema.py finds it): give a
:class:`lang.scenario.Field`."""
DEFAULTS: dict[str, object] = {"shared": False, "huge": False, "mode": "user", "background": False, "offset": 0}
# JSON keys that are Python keywords, by field name.
KEYS = {"background": "async"}


def by_field_name(cls: type[Op]) -> tuple[JsonField, ...]:
    """The JSON keys of a kernel op: one per dataclass field, parsed with :data:`PARSERS`, defaulted from DEFAULTS."""
    return tuple(
        JsonField(KEYS.get(f.name, f.name), as_field(PARSERS[f.name]), DEFAULTS.get(f.name, REQUIRED))
        for f in fields(cls)  # type: ignore[arg-type]
    )


def as_field(parser: Field | Callable[[object, str], Any]) -> Field:
    """A :class:`Field` as it is, a bare parser as a field the schema cannot describe."""
    return parser if isinstance(parser, Field) else Field(parser, {}, "see the op's description")


class KernelOp(Op):
    """Base of the kernel-layer operations: fields parsed by name (:data:`PARSERS`), optional ones defaulted."""

    layer: ClassVar[str] = "kernel"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        return by_field_name(cls)

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        return cls.parse(raw, where)

    @classmethod
    def parse(cls, raw: Mapping[str, object], where: str) -> Op:
        """The fields by JSON key (:meth:`json_fields`), as dataclass fields."""
        values = cls.parse_fields(raw, where)
        names = {KEYS.get(f.name, f.name): f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{names[key]: value for key, value in values.items()})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.name}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "background":
                if value:
                    out["async"] = True
                continue
            out[f.name] = hex(value) if f.name == "va" else value
        return out


@register
@dataclass(frozen=True, slots=True)
class Spawn(KernelOp):
    """Create a process with an empty address space."""

    name: ClassVar[str] = "spawn"

    def footprint(self) -> Mapping[str, int]:
        return {"processes": 1}


@register
@dataclass(frozen=True, slots=True)
class Fork(KernelOp):
    """Fork process ``pid``."""

    pid: int
    background: bool = False
    name: ClassVar[str] = "fork"

    def footprint(self) -> Mapping[str, int]:
        return {"processes": 1}


@register
@dataclass(frozen=True, slots=True)
class Exit(KernelOp):
    """Process ``pid`` exits."""

    pid: int
    background: bool = False
    name: ClassVar[str] = "exit"


@register
@dataclass(frozen=True, slots=True)
class Mmap(KernelOp):
    """Map ``pages`` anonymous pages at ``va`` (MAP_FIXED), private or shared."""

    pid: int
    va: int
    pages: int
    prot: str
    shared: bool = False
    huge: bool = False
    background: bool = False
    name: ClassVar[str] = "mmap"

    def footprint(self) -> Mapping[str, int]:
        return {"mapped pages": self.pages}


@register
@dataclass(frozen=True, slots=True)
class Munmap(KernelOp):
    """Unmap ``pages`` pages at ``va``."""

    pid: int
    va: int
    pages: int
    background: bool = False
    name: ClassVar[str] = "munmap"


@register
@dataclass(frozen=True, slots=True)
class Mprotect(KernelOp):
    """Change the protection of ``pages`` pages at ``va``."""

    pid: int
    va: int
    pages: int
    prot: str
    background: bool = False
    name: ClassVar[str] = "mprotect"


@register
@dataclass(frozen=True, slots=True)
class Madvise(KernelOp):
    """``madvise(va, pages * 4096, advice)``: ``"dontneed"``, ``"cold"``, ``"pageout"``, ``"hugepage"`` or
    ``"nohugepage"``."""

    pid: int
    va: int
    pages: int
    advice: str
    background: bool = False
    name: ClassVar[str] = "madvise"


@register
@dataclass(frozen=True, slots=True)
class Switch(KernelOp):
    """CPU ``cpu`` runs process ``pid``; ``"pid": null`` is :class:`KernelThread`."""

    cpu: int
    pid: int
    name: ClassVar[str] = "switch"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        pid = Field(
            PID.parse,
            {"anyOf": [*PID.schema["anyOf"], {"type": "null"}]},
            f"{PID.allowed}, or null",
            "the process to run; null: a kernel thread, the mm stays loaded (lazy TLB)",
        )
        return tuple(JsonField(f.key, pid) if f.key == "pid" else f for f in by_field_name(cls))

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        if "pid" in raw and raw["pid"] is None:
            return KernelThread.from_json({k: v for k, v in raw.items() if k != "pid"}, where)
        return cls.parse(raw, where)


@dataclass(frozen=True, slots=True)
class KernelThread(KernelOp):
    """CPU ``cpu`` runs a kernel thread: the mm it had stays loaded (lazy TLB), written ``switch`` with ``pid`` null."""

    cpu: int
    name: ClassVar[str] = "switch"

    def to_json(self) -> dict[str, Any]:
        return {"op": "switch", "cpu": self.cpu, "pid": None}


@register
@dataclass(frozen=True, slots=True)
class Load(KernelOp):
    """Load the word at ``va`` on ``cpu``."""

    cpu: int
    va: int
    mode: str = "user"
    name: ClassVar[str] = "load"


@register
@dataclass(frozen=True, slots=True)
class Store(KernelOp):
    """Store ``value`` at ``va`` on ``cpu``."""

    cpu: int
    va: int
    value: int
    mode: str = "user"
    name: ClassVar[str] = "store"


@register
@dataclass(frozen=True, slots=True)
class Fetch(KernelOp):
    """Fetch an instruction word at ``va`` on ``cpu``."""

    cpu: int
    va: int
    mode: str = "user"
    name: ClassVar[str] = "fetch"


@register
@dataclass(frozen=True, slots=True)
class PinOp(KernelOp):
    """Take a read-only get_user_pages reference on the word at ``va`` of ``pid``."""

    pid: int
    va: int
    name: ClassVar[str] = "pin"


@register
@dataclass(frozen=True, slots=True)
class ReadPin(KernelOp):
    """Read the pinned word."""

    pin: int
    name: ClassVar[str] = "read_pin"


@register
@dataclass(frozen=True, slots=True)
class Unpin(KernelOp):
    """Release a pin."""

    pin: int
    name: ClassVar[str] = "unpin"


@register
@dataclass(frozen=True, slots=True)
class StatOp(KernelOp):
    """``/proc/PID/smaps_rollup`` totals."""

    pid: int
    name: ClassVar[str] = "stat"


@register
@dataclass(frozen=True, slots=True)
class PagemapOp(KernelOp):
    """``/proc/PID/pagemap`` entry of the page at ``va``."""

    pid: int
    va: int
    name: ClassVar[str] = "pagemap"


@register
@dataclass(frozen=True, slots=True)
class Step(KernelOp):
    """One more atomic step of the mapping change in flight as number ``pending``."""

    pending: int
    name: ClassVar[str] = "step"


@register
@dataclass(frozen=True, slots=True)
class TlbEvict(KernelOp):
    """CPU ``cpu``'s TLB drops its least recently used entry (hardware may drop any entry at any time)."""

    cpu: int
    name: ClassVar[str] = "tlb_evict"


@register
@dataclass(frozen=True, slots=True)
class KernelRemap(KernelOp):
    """The kernel half's page moves to a new frame (``vfree`` + ``vmalloc``), then ``flush_tlb_kernel_range``."""

    name: ClassVar[str] = "kernel_remap"


SYSCALLS_WITH_SHOOTDOWN = ("mmap", "munmap", "mprotect", "madvise", "fork", "exit")

KERNEL_OPS = (
    Spawn,
    Fork,
    Exit,
    Mmap,
    Munmap,
    Mprotect,
    Madvise,
    Switch,
    KernelThread,
    Load,
    Store,
    Fetch,
    PinOp,
    ReadPin,
    Unpin,
    StatOp,
    PagemapOp,
    Step,
    TlbEvict,
    KernelRemap,
)
