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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.scenario import BOOLEAN, Field, Op, integer, register, shown

MAX_SIZE_FIELD = 1 << 32


def parse_name(raw: object, where: str) -> str:
    """A cache name: a JSON string."""
    if not isinstance(raw, str):
        raise ScenarioError(where, f"expected a cache name (a string), got {shown(raw)}")
    return raw


CACHE = Field(parse_name, {"type": "string"}, "a string", "the cache's name")
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
    name: ClassVar[str] = "kmem_cache_create"
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "cache": CACHE,
        "size": SIZE.means("each object's size in bytes"),
        "align": SIZE.means("the objects' alignment in bytes (0: a word)"),
        "ctor": BOOLEAN.means("whether the cache has a constructor (it then keeps the freelist pointer apart)"),
    }
    DEFAULTS: ClassVar[Mapping[str, object]] = {"align": 0, "ctor": False}

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "size": self.size, "align": self.align, "ctor": self.ctor}


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
