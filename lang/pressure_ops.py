"""Scenario operations of memory pressure: files, file mappings, writeback, reclaim, swap, observations.

::

    {"op": "file_create", "file": "a", "pages": 2, "words": {"0x8": 5}}   -> {"ok": true} or {"error": "EEXIST"}
    {"op": "file_read", "file": "a", "offset": "0x1008"}                  -> {"value": N}
    {"op": "file_write", "file": "a", "offset": "0x1008", "value": 7}     -> {"ok": true}
    {"op": "truncate", "file": "a", "pages": 1}                           -> {"ok": true}
    {"op": "fsync", "file": "a"}                                          -> {"ok": true}
    {"op": "msync", "pid": 1, "va": "0x...", "pages": 1}                  -> {"ok": true}
    {"op": "mmap_file", "pid": 1, "va": "0x...", "pages": 2, "prot": "rw-", "shared": true, "file": "a",
     "offset": 0}                                                         -> {"ok": true}
    {"op": "reclaim", "pages": 4}                                         -> {"reclaimed": N}
    {"op": "swapoff"}                                                     -> {"ok": true} or {"error": "ENOMEM"}
    {"op": "meminfo"}   -> {"MemTotal", "MemFree", "MemAvailable", "Cached", "SwapCached", "Dirty", "AnonPages",
                            "Mapped", "SwapTotal", "SwapFree", "PageTables", "Slab", "SReclaimable",
                            "SUnreclaim"} in kB
    {"op": "status", "pid": 1}  -> {"VmRSS", "RssAnon", "RssFile", "RssShmem", "VmSwap"} in kB, "minflt", "majflt"
    {"op": "vmstat"}            -> {"pgfault", "pgmajfault"}, with the config's workingset also
                                   {"workingset_refault_file", "workingset_activate_file"}
    {"op": "smaps", "pid": 1}   -> {"Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean",
                                    "Shared_Dirty", "Private_Clean", "Private_Dirty", "Anonymous", "Swap",
                                    "SwapPss"} in kB (``/proc/PID/smaps_rollup``)

``offset`` of ``file_read``/``file_write`` is a byte offset (8-byte aligned); of ``mmap_file`` it is in pages.
A load or store past the end of a mapped file is ``{"signal": "SIGBUS"}``.  The config's ``swap`` is the
number of swap slots (0: no swap).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import DEFAULTS, PARSERS, KernelOp, as_field
from lang.scenario import (
    INT_TEXT_PATTERN,
    MAX_INT_TEXT,
    Field,
    JsonField,
    Op,
    integer,
    parse_int,
    pattern,
    register,
    shown,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_name(raw: object, where: str) -> str:
    """A file name: 1 to 64 letters, digits, ``_``, ``.`` or ``-``."""
    if not isinstance(raw, str) or not NAME_PATTERN.match(raw):
        raise ScenarioError(
            where, f"expected a file name of 1 to 64 letters, digits, '_', '.' or '-', got {shown(raw)}"
        )
    return raw


def parse_words(raw: object, where: str) -> tuple[tuple[int, int], ...]:
    """File contents: an object from byte offset (8-byte aligned) to 64-bit value."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(where, f"expected an object from byte offset to value, got {shown(raw)}")
    out = []
    for key, value in raw.items():
        offset = parse_int(key, f"{where}.{key}", 0, (1 << 32) - 1)
        if offset % 8:
            raise ScenarioError(f"{where}.{key}", "an offset must be a multiple of 8: files hold 64-bit words")
        out.append((offset, parse_int(value, f"{where}.{key}")))
    return tuple(sorted(out))


WORDS_SCHEMA = {
    "type": "object",
    "propertyNames": {"maxLength": MAX_INT_TEXT, "pattern": INT_TEXT_PATTERN},
    "additionalProperties": integer().schema,
}
PARSERS.update(
    {
        "file": pattern(
            NAME_PATTERN.pattern, parse_name, "1 to 64 letters, digits, `_`, `.` or `-`", "the file's name"
        ),
        "words": Field(
            parse_words,
            WORDS_SCHEMA,
            "an object from byte offset (a multiple of 8) to a 64-bit value",
            "the file's contents on disk (every other word is 0)",
        ),
        "offset": integer(
            0, (1 << 32) - 1, "a byte offset, 8-byte aligned (file_read, file_write); a page offset (mmap_file)"
        ),
        "target": integer(0, 1 << 24, "the most pages to reclaim"),
    }
)
DEFAULTS.update({"words": ()})


class PressureOp(KernelOp):
    """Base of the memory-pressure operations (parsed like the kernel ops)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.name}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "words":
                out["words"] = {hex(o): v for o, v in value}
            elif f.name == "target":
                out["pages"] = value
            else:
                out[f.name] = (
                    hex(value) if f.name == "va" or (f.name == "offset" and self.name != "mmap_file") else value
                )
        return out


@register
@dataclass(frozen=True, slots=True)
class FileCreate(PressureOp):
    """Create file ``file`` of ``pages`` pages holding ``words`` (byte offset -> value) on disk."""

    file: str
    pages: int
    words: tuple[tuple[int, int], ...] = field(default=())
    name: ClassVar[str] = "file_create"


@register
@dataclass(frozen=True, slots=True)
class FileRead(PressureOp):
    """``pread`` of the word at byte ``offset`` of ``file``."""

    file: str
    offset: int
    name: ClassVar[str] = "file_read"


@register
@dataclass(frozen=True, slots=True)
class FileWrite(PressureOp):
    """``pwrite`` of ``value`` at byte ``offset`` of ``file``."""

    file: str
    offset: int
    value: int
    name: ClassVar[str] = "file_write"


@register
@dataclass(frozen=True, slots=True)
class Truncate(PressureOp):
    """``ftruncate(file, pages * 4096)``."""

    file: str
    pages: int
    name: ClassVar[str] = "truncate"


@register
@dataclass(frozen=True, slots=True)
class Fsync(PressureOp):
    """``fsync(file)``: write back its dirty pages."""

    file: str
    name: ClassVar[str] = "fsync"


@register
@dataclass(frozen=True, slots=True)
class Msync(PressureOp):
    """``msync(va, pages * 4096, MS_SYNC)``."""

    pid: int
    va: int
    pages: int
    name: ClassVar[str] = "msync"


@register
@dataclass(frozen=True, slots=True)
class MmapFile(PressureOp):
    """``mmap`` of ``pages`` pages of ``file`` from page ``offset`` at ``va`` (MAP_FIXED), shared or private."""

    pid: int
    va: int
    pages: int
    prot: str
    file: str
    shared: bool = False
    offset: int = 0
    name: ClassVar[str] = "mmap_file"


@register
@dataclass(frozen=True, slots=True)
class Reclaim(PressureOp):
    """Reclaim up to ``pages`` pages (written ``"pages"``)."""

    target: int
    name: ClassVar[str] = "reclaim"

    @classmethod
    def json_fields(cls) -> tuple[JsonField, ...]:
        return (JsonField("pages", as_field(PARSERS["target"])),)

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        return cls(cls.parse_fields(raw, where)["pages"])


@register
@dataclass(frozen=True, slots=True)
class Swapoff(PressureOp):
    """``swapoff``: bring every swapped page back and turn swap off."""

    name: ClassVar[str] = "swapoff"


@register
@dataclass(frozen=True, slots=True)
class MeminfoOp(PressureOp):
    """``/proc/meminfo``."""

    name: ClassVar[str] = "meminfo"


@register
@dataclass(frozen=True, slots=True)
class StatusOp(PressureOp):
    """``/proc/PID/status`` memory fields and ``/proc/PID/stat`` fault counts."""

    pid: int
    name: ClassVar[str] = "status"


@register
@dataclass(frozen=True, slots=True)
class VmstatOp(PressureOp):
    """``/proc/vmstat`` fault counters."""

    name: ClassVar[str] = "vmstat"


@register
@dataclass(frozen=True, slots=True)
class SmapsOp(PressureOp):
    """``/proc/PID/smaps_rollup``: the memory fields, ``stat``'s four among them."""

    pid: int
    name: ClassVar[str] = "smaps"


PRESSURE_OPS = (
    FileCreate,
    FileRead,
    FileWrite,
    Truncate,
    Fsync,
    Msync,
    MmapFile,
    Reclaim,
    Swapoff,
    MeminfoOp,
    StatusOp,
    VmstatOp,
    SmapsOp,
)
