"""The operations of the slab layer: caches, objects, kmalloc, and what /proc shows of them.

Object addresses are direct-map kernel addresses (``0xffff888000000000 +
physical address``).  Results: ``{"addr": "0x..."}`` for an allocation (or
``{"error": "ENOMEM"}``), ``{"ok": true}`` for a free, shrink or destroy,
``{"ok": true, "cache": NAME}`` for a create (the cache it made, or the one
it merged with), ``{"slabinfo": [[name, active_objs, num_objs, objsize,
objperslab, pagesperslab, active_slabs, num_slabs], ...]}``, ``{"meminfo":
{"Slab": kB, "SReclaimable": kB, "SUnreclaim": kB}}``.  Refused input (a
double free, a free into the wrong cache, an unknown cache) is ``{"error":
"EINVAL", "type": ERROR}`` with the error class's name, and changes nothing.

slab_debug: ``kmem_cache_create`` takes ``flags`` as Linux spells them
(``"SLAB_RED_ZONE|SLAB_NO_MERGE"``); ``kmem_flip`` XORs bytes of an
object's slot (``{"ok": true}``); ``validate_slab_cache`` answers
``{"errors": N}``, the reports KUnit would count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.scenario import BOOLEAN, Field, Op, integer, pattern, register, shown

MAX_SIZE_FIELD = 1 << 32


def parse_name(raw: object, where: str) -> str:
    """A cache name: a JSON string."""
    if not isinstance(raw, str):
        raise ScenarioError(where, f"expected a cache name (a string), got {shown(raw)}")
    return raw


CACHE = Field(parse_name, {"type": "string"}, "a string", "the cache's name")

# The flags kmem_cache_create knows here (spec.slab.geometry.CACHE_FLAGS; lang sits below spec).
CACHE_FLAGS = ("SLAB_RED_ZONE", "SLAB_POISON", "SLAB_STORE_USER", "SLAB_KMALLOC", "SLAB_NO_MERGE")
FLAGS_PATTERN = r"^(|(" + "|".join(CACHE_FLAGS) + r")(\|(" + "|".join(CACHE_FLAGS) + r"))*)$"


def parse_flags(raw: object, where: str) -> tuple[str, ...]:
    """Cache flags joined by ``|``, as C spells them; "" for none.  Returned sorted, each once."""
    if not isinstance(raw, str):
        raise ScenarioError(where, f"expected flags joined by | (a string), got {shown(raw)}")
    names = raw.split("|") if raw else []
    for n in names:
        if n not in CACHE_FLAGS:
            raise ScenarioError(where, f"unknown cache flag {shown(n)}: allowed {', '.join(CACHE_FLAGS)}")
    return tuple(sorted(set(names)))


FLAGS = pattern(
    FLAGS_PATTERN,
    parse_flags,
    "flags joined by `|`: " + ", ".join(f"`{n}`" for n in CACHE_FLAGS) + ' ("" for none)',
    "slab_debug and merge flags, as kmem_cache_create takes them",
)
CPU = integer(0, 63, "the CPU whose per-CPU slab serves it (below the config's cpus)")
SIZE = integer(0, MAX_SIZE_FIELD, "bytes")
ADDR = integer(meaning="the object's direct-map address, as an allocation answered")


class SlabOp(Op):
    """Base of the slab layer's operations."""


@register
@dataclass(frozen=True, slots=True)
class KmemCacheCreate(SlabOp):
    """Create a cache of ``size``-byte objects aligned to ``align`` (0: a word), with a constructor if ``ctor``."""

    cache: str
    size: int
    align: int = 0
    ctor: bool = False
    flags: tuple[str, ...] = ()
    name: ClassVar[str] = "kmem_cache_create"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "cache": CACHE,
        "size": SIZE.means("each object's size in bytes"),
        "align": SIZE.means("the objects' alignment in bytes (0: a word)"),
        "ctor": BOOLEAN.means("whether the cache has a constructor (it then keeps the freelist pointer apart)"),
        "flags": FLAGS,
    }
    DEFAULTS: ClassVar[Mapping[str, object]] = {"align": 0, "ctor": False, "flags": ()}

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "op": self.name,
            "cache": self.cache,
            "size": self.size,
            "align": self.align,
            "ctor": self.ctor,
        }
        if self.flags:
            raw["flags"] = "|".join(self.flags)
        return raw


@register
@dataclass(frozen=True, slots=True)
class KmemCacheAlloc(SlabOp):
    """Allocate an object of ``cache`` on ``cpu``."""

    cache: str
    cpu: int = 0
    name: ClassVar[str] = "kmem_cache_alloc"
    FIELDS: ClassVar[Mapping[str, Field]] = {"cache": CACHE, "cpu": CPU}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "cpu": self.cpu}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheFree(SlabOp):
    """Free the object at ``addr`` into ``cache``."""

    cache: str
    addr: int
    name: ClassVar[str] = "kmem_cache_free"
    FIELDS: ClassVar[Mapping[str, Field]] = {"cache": CACHE, "addr": ADDR}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "addr": hex(self.addr)}


@register
@dataclass(frozen=True, slots=True)
class Kmalloc(SlabOp):
    """Allocate ``size`` bytes on ``cpu`` from the kmalloc cache of its class."""

    size: int
    cpu: int = 0
    name: ClassVar[str] = "kmalloc"
    FIELDS: ClassVar[Mapping[str, Field]] = {"size": SIZE.means("the bytes asked for"), "cpu": CPU}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "size": self.size, "cpu": self.cpu}


@register
@dataclass(frozen=True, slots=True)
class Kfree(SlabOp):
    """Free the object at ``addr`` into the cache it came from."""

    addr: int
    name: ClassVar[str] = "kfree"
    FIELDS: ClassVar[Mapping[str, Field]] = {"addr": ADDR}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr)}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheShrink(SlabOp):
    """Flush the CPUs' slabs of ``cache`` and return its empty slabs to the buddy."""

    cache: str
    name: ClassVar[str] = "kmem_cache_shrink"
    FIELDS: ClassVar[Mapping[str, Field]] = {"cache": CACHE}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheDestroy(SlabOp):
    """Drop the name ``cache``; the cache goes when its last name does (it must hold no objects then)."""

    cache: str
    name: ClassVar[str] = "kmem_cache_destroy"
    FIELDS: ClassVar[Mapping[str, Field]] = {"cache": CACHE}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache}


@register
@dataclass(frozen=True, slots=True)
class KmemWrite(SlabOp):
    """The owner of the allocated object at ``addr`` stores ``value`` in its first word."""

    addr: int
    value: int
    name: ClassVar[str] = "kmem_write"
    FIELDS: ClassVar[Mapping[str, Field]] = {"addr": ADDR, "value": integer(meaning="a 64-bit value")}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr), "value": hex(self.value)}


@register
@dataclass(frozen=True, slots=True)
class KmemRead(SlabOp):
    """Load the first word of the allocated object at ``addr``: ``{"value": "0x..."}``."""

    addr: int
    name: ClassVar[str] = "kmem_read"
    FIELDS: ClassVar[Mapping[str, Field]] = {"addr": ADDR}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr)}


@register
@dataclass(frozen=True, slots=True)
class SlabInfo(SlabOp):
    """Read /proc/slabinfo's columns for every cache, newest first."""

    name: ClassVar[str] = "slabinfo"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}


@register
@dataclass(frozen=True, slots=True)
class MemInfo(SlabOp):
    """Read /proc/meminfo's Slab, SReclaimable and SUnreclaim lines (kB)."""

    name: ClassVar[str] = "slab_meminfo"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}


@register
@dataclass(frozen=True, slots=True)
class KmallocCache(SlabOp):
    """kmalloc ``size`` bytes from ``cache`` itself (``__kmalloc_cache_noprof``): a SLAB_KMALLOC cache with
    SLAB_STORE_USER keeps the size asked for and red-zones the rest of the object."""

    cache: str
    size: int
    cpu: int = 0
    name: ClassVar[str] = "kmalloc_cache"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "cache": CACHE,
        "size": SIZE.means("the bytes asked for (at most the object size)"),
        "cpu": CPU,
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "size": self.size, "cpu": self.cpu}


MAX_OFFSET = 1 << 16


@register
@dataclass(frozen=True, slots=True)
class KmemFlip(SlabOp):
    """XOR ``mask`` into the bytes at ``offset`` from the object at ``addr`` (allocated or free): an overflow
    into a red zone, a use after free, a corrupted free pointer.  ``mask`` is little-endian, its low byte at
    ``offset``; ``offset`` may be negative, into the left red zone."""

    addr: int
    offset: int
    mask: int
    name: ClassVar[str] = "kmem_flip"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "addr": ADDR,
        "offset": integer(-MAX_OFFSET, MAX_OFFSET, "bytes from the object's start (negative: its left red zone)"),
        "mask": integer(1, (1 << 64) - 1, "the bits to flip, its low byte at offset (0xff: every bit of one byte)"),
    }

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr), "offset": self.offset, "mask": hex(self.mask)}


@register
@dataclass(frozen=True, slots=True)
class ValidateSlabCache(SlabOp):
    """Run ``validate_slab_cache`` on ``cache``: ``{"errors": N}``, the reports slab_debug makes (KUnit's count),
    every damaged byte restored and the freelist and count repaired as SLUB repairs them."""

    cache: str
    name: ClassVar[str] = "validate_slab_cache"
    FIELDS: ClassVar[Mapping[str, Field]] = {"cache": CACHE}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache}
