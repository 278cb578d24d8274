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
from lang.scenario import Op, check_keys, parse_bool, parse_int, register, require

MAX_SIZE_FIELD = 1 << 32


def parse_name(raw: object, where: str) -> str:
    """A cache name: a JSON string."""
    if not isinstance(raw, str):
        raise ScenarioError(where, f"expected a cache name (a string), got {raw!r}")
    return raw


def parse_cpu(raw: object, where: str) -> int:
    return parse_int(raw, where, 0, 63)


def parse_size(raw: object, where: str) -> int:
    return parse_int(raw, where, 0, MAX_SIZE_FIELD)


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

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemCacheCreate:
        check_keys(raw, where, ("cache", "size", "align", "ctor"))
        align = parse_size(raw["align"], f"{where}.align") if "align" in raw else 0
        ctor = parse_bool(raw["ctor"], f"{where}.ctor") if "ctor" in raw else False
        return cls(require(raw, "cache", where, parse_name), require(raw, "size", where, parse_size), align, ctor)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "size": self.size, "align": self.align, "ctor": self.ctor}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheAlloc(SlabOp):
    """Allocate an object of ``cache`` on ``cpu``."""

    cache: str
    cpu: int = 0
    name: ClassVar[str] = "kmem_cache_alloc"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemCacheAlloc:
        check_keys(raw, where, ("cache", "cpu"))
        return cls(require(raw, "cache", where, parse_name), require(raw, "cpu", where, parse_cpu))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "cpu": self.cpu}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheFree(SlabOp):
    """Free the object at ``addr`` into ``cache``."""

    cache: str
    addr: int
    name: ClassVar[str] = "kmem_cache_free"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemCacheFree:
        check_keys(raw, where, ("cache", "addr"))
        return cls(require(raw, "cache", where, parse_name), require(raw, "addr", where, parse_int))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache, "addr": hex(self.addr)}


@register
@dataclass(frozen=True, slots=True)
class Kmalloc(SlabOp):
    """Allocate ``size`` bytes on ``cpu`` from the kmalloc cache of its class."""

    size: int
    cpu: int = 0
    name: ClassVar[str] = "kmalloc"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Kmalloc:
        check_keys(raw, where, ("size", "cpu"))
        return cls(require(raw, "size", where, parse_size), require(raw, "cpu", where, parse_cpu))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "size": self.size, "cpu": self.cpu}


@register
@dataclass(frozen=True, slots=True)
class Kfree(SlabOp):
    """Free the object at ``addr`` into the cache it came from."""

    addr: int
    name: ClassVar[str] = "kfree"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Kfree:
        check_keys(raw, where, ("addr",))
        return cls(require(raw, "addr", where, parse_int))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr)}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheShrink(SlabOp):
    """Flush the CPUs' slabs of ``cache`` and return its empty slabs to the buddy."""

    cache: str
    name: ClassVar[str] = "kmem_cache_shrink"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemCacheShrink:
        check_keys(raw, where, ("cache",))
        return cls(require(raw, "cache", where, parse_name))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache}


@register
@dataclass(frozen=True, slots=True)
class KmemCacheDestroy(SlabOp):
    """Drop the name ``cache``; the cache goes when its last name does (it must hold no objects then)."""

    cache: str
    name: ClassVar[str] = "kmem_cache_destroy"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemCacheDestroy:
        check_keys(raw, where, ("cache",))
        return cls(require(raw, "cache", where, parse_name))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "cache": self.cache}


@register
@dataclass(frozen=True, slots=True)
class KmemWrite(SlabOp):
    """The owner of the allocated object at ``addr`` stores ``value`` in its first word."""

    addr: int
    value: int
    name: ClassVar[str] = "kmem_write"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemWrite:
        check_keys(raw, where, ("addr", "value"))
        return cls(require(raw, "addr", where, parse_int), require(raw, "value", where, parse_int))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr), "value": hex(self.value)}


@register
@dataclass(frozen=True, slots=True)
class KmemRead(SlabOp):
    """Load the first word of the allocated object at ``addr``: ``{"value": "0x..."}``."""

    addr: int
    name: ClassVar[str] = "kmem_read"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> KmemRead:
        check_keys(raw, where, ("addr",))
        return cls(require(raw, "addr", where, parse_int))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "addr": hex(self.addr)}


@register
@dataclass(frozen=True, slots=True)
class SlabInfo(SlabOp):
    """Read /proc/slabinfo's columns for every cache, newest first."""

    name: ClassVar[str] = "slabinfo"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> SlabInfo:
        check_keys(raw, where, ())
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}


@register
@dataclass(frozen=True, slots=True)
class MemInfo(SlabOp):
    """Read /proc/meminfo's Slab, SReclaimable and SUnreclaim lines (kB)."""

    name: ClassVar[str] = "slab_meminfo"

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> MemInfo:
        check_keys(raw, where, ())
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name}
