"""The operations of the user-space allocator (glibc's malloc in one single-threaded process) and its answers.

A pointer is named by ``call``: the index, in the scenario's ops, of the
allocating op that returned it (a ``malloc``, ``calloc`` or ``realloc``).
Results: ``{"ptr": {"region": "heap", "offset": N}}`` (from the heap's start,
the program break before the first call), ``{"ptr": {"region": "mmapped",
"offset": N, "length": L}}`` (inside its own mapping of ``L`` bytes) or
``{"ptr": null}``, each with ``"usable"`` (``malloc_usable_size``);
``{"ret": R}`` for a call returning no pointer (0 for ``free`` and
``heap_write``, the int ``malloc_trim`` and ``mallopt`` return);
and every result has ``"brk"`` (the break's offset from the heap
start) and ``"mallinfo"`` (``mallinfo2 ()``'s fields).  A call glibc aborts
is ``{"error": "abort", "message": ...}`` with glibc's message and changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.scenario import LAYER_NAMES, Field, Op, choice, integer, register

LAYER_NAMES["ualloc"] = "a user-space allocator op (malloc and friends in one process)"

MAX_REQUEST = 1 << 40
MALLINFO_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "uordblks", "fordblks", "fsmblks", "keepcost")
MALLOPT_PARAMS = {"M_MXFAST": 1, "M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_THRESHOLD": -3, "M_MMAP_MAX": -4}
"""The mallopt parameters modelled, by name, with their numbers in malloc/malloc.h."""

BYTES = integer(0, MAX_REQUEST, "bytes")
CALL = integer(0, 99_999, "the index of the op that returned the pointer")


MAX_OFFSET = 1 << 40


def parse_word_offset(raw: object, where: str) -> int:
    """A store's offset from its pointer: a JSON integer, a multiple of 8 (one aligned word)."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ScenarioError(where, f"expected an integer multiple of 8, got {type(raw).__name__}")
    if not -MAX_OFFSET <= raw <= MAX_OFFSET or raw % 8:
        raise ScenarioError(where, f"{raw}: allowed a multiple of 8 in {-MAX_OFFSET} .. {MAX_OFFSET}")
    return raw


WORD_OFFSET = Field(
    parse_word_offset,
    {"type": "integer", "minimum": -MAX_OFFSET, "maximum": MAX_OFFSET, "multipleOf": 8},
    f"a multiple of 8 in {-MAX_OFFSET} .. {MAX_OFFSET}",
    "bytes from the pointer to the word stored (negative or past the usable bytes: an overflow)",
)


class UallocOp(Op):
    """Base of the user-space allocator's operations."""

    layer: ClassVar[str] = "ualloc"


@register
@dataclass(frozen=True, slots=True)
class Malloc(UallocOp):
    """``malloc(size)``."""

    size: int
    name: ClassVar[str] = "malloc"
    FIELDS: ClassVar[Mapping[str, Field]] = {"size": BYTES.means("the bytes asked for")}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "size": self.size}


@register
@dataclass(frozen=True, slots=True)
class Calloc(UallocOp):
    """``calloc(count, size)``: zeroed, never from the tcache."""

    count: int
    size: int
    name: ClassVar[str] = "calloc"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "count": integer(0, MAX_REQUEST, "the number of elements"),
        "size": BYTES.means("each element's bytes"),
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "count": self.count, "size": self.size}


@register
@dataclass(frozen=True, slots=True)
class Realloc(UallocOp):
    """``realloc(p, size)`` of the pointer op ``call`` returned (0 bytes frees it)."""

    call: int
    size: int
    name: ClassVar[str] = "realloc"
    FIELDS: ClassVar[Mapping[str, Field]] = {"call": CALL, "size": BYTES.means("the new size")}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "call": self.call, "size": self.size}


@register
@dataclass(frozen=True, slots=True)
class Free(UallocOp):
    """``free(p)`` of the pointer op ``call`` returned."""

    call: int
    name: ClassVar[str] = "free"
    FIELDS: ClassVar[Mapping[str, Field]] = {"call": CALL}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "call": self.call}


@register
@dataclass(frozen=True, slots=True)
class MallocTrim(UallocOp):
    """``malloc_trim(pad)``: give back the free top above ``pad`` bytes."""

    pad: int
    name: ClassVar[str] = "malloc_trim"
    FIELDS: ClassVar[Mapping[str, Field]] = {"pad": BYTES.means("the bytes of top kept")}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "pad": self.pad}


@register
@dataclass(frozen=True, slots=True)
class Mallopt(UallocOp):
    """``mallopt(param, value)`` for one of the modelled parameters."""

    param: str
    value: int
    name: ClassVar[str] = "mallopt"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "param": choice(tuple(MALLOPT_PARAMS), "the parameter"),
        "value": integer(0, (1 << 31) - 1, "its value (a C int)"),
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "param": self.param, "value": self.value}


@dataclass(frozen=True, slots=True)
class MallocAnswer:
    """What one call answered, as the oracle and the model both report it.

    ``region`` is ``"heap"``, ``"mmapped"``, ``"null"`` or ``"none"`` (a call
    returning no pointer); ``offset`` is from the heap start or the mapping's
    start; ``length`` the mapping's length (0 for the heap); ``ret`` the int a
    ``malloc_trim`` or ``mallopt`` returned; ``mallinfo`` in
    :data:`MALLINFO_FIELDS` order; ``abort`` glibc's message if it aborted.
    """

    region: str
    offset: int
    length: int
    usable: int
    brk: int
    ret: int
    mallinfo: tuple[int, ...]
    abort: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.abort:
            return {"error": "abort", "message": self.abort}
        out: dict[str, Any] = {}
        if self.region in ("heap", "mmapped"):
            ptr: dict[str, Any] = {"region": self.region, "offset": self.offset}
            if self.region == "mmapped":
                ptr["length"] = self.length
            out["ptr"], out["usable"] = ptr, self.usable
        elif self.region == "null":
            out["ptr"] = None
        else:
            out["ret"] = self.ret
        out["brk"] = self.brk
        out["mallinfo"] = dict(zip(MALLINFO_FIELDS, self.mallinfo, strict=True))
        return out


@register
@dataclass(frozen=True, slots=True)
class HeapWrite(UallocOp):
    """The program stores the 8-byte ``value`` at the pointer op ``call`` returned plus ``offset`` (a multiple
    of 8, negative or past the usable bytes for an overflow, on a freed block for a use after free): how heap
    exploits corrupt chunk headers (House of Force writes the top chunk's size word)."""

    call: int
    offset: int
    value: int
    name: ClassVar[str] = "heap_write"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "call": CALL,
        "offset": WORD_OFFSET,
        "value": integer(0, (1 << 64) - 1, "the word stored"),
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "call": self.call, "offset": self.offset, "value": self.value}
