"""The operations of the slab layer: caches, objects, kmalloc, and what /proc shows of them.

::

    {"op": "kmem_cache_create", "cache": "item", "size": 64, "align": 0, "ctor": false}
                                                   -> {"ok": true, "cache": NAME}
    {"op": "kmem_cache_alloc", "cache": "item", "cpu": 0}        -> {"addr": "0x..."} or {"error": "ENOMEM"}
    {"op": "kmem_cache_free", "cache": "item", "addr": "0x..."}  -> {"ok": true}
    {"op": "kmalloc", "size": 100, "cpu": 0}                     -> {"addr": "0x..."} or {"error": "ENOMEM"}
    {"op": "kfree", "addr": "0x..."}                             -> {"ok": true}
    {"op": "kmem_cache_shrink", "cache": "item"}                 -> {"ok": true}
    {"op": "kmem_cache_destroy", "cache": "item"}                -> {"ok": true}
    {"op": "kmem_write", "addr": "0x...", "value": "0x7"}        -> {"ok": true}
    {"op": "kmem_read", "addr": "0x..."}                         -> {"value": "0x..."}
    {"op": "slabinfo"}      -> {"slabinfo": [[name, active_objs, num_objs, objsize, objperslab,
                                              pagesperslab, active_slabs, num_slabs], ...]}
    {"op": "slab_meminfo"}  -> {"meminfo": {"Slab": kB, "SReclaimable": kB, "SUnreclaim": kB}}

Object addresses are direct-map kernel addresses (``0xffff888000000000 +
physical address``).  The create names the cache it made, or the one it
merged with.  Refused input (a double free, a free into the wrong cache, an
unknown cache) is ``{"error": "EINVAL", "type": ERROR}`` with the error
class's name, and changes nothing.

Each op is a dataclass whose fields are its JSON keys: :class:`SlabOp`
parses them with :data:`PARSERS` and writes them back, addresses and values
in hex; a field with a default may be left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.scenario import Op, check_keys, parse_bool, parse_int, register

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


PARSERS: dict[str, Callable[[object, str], Any]] = {
    "cache": parse_name,
    "size": parse_size,
    "align": parse_size,
    "ctor": parse_bool,
    "cpu": parse_cpu,
    "addr": parse_int,
    "value": parse_int,
}
"""How each field of a slab op is read from JSON, by field name."""
HEX_FIELDS = frozenset({"addr", "value"})
"""Fields written back in hex."""


class SlabOp(Op):
    """Base of the slab layer's operations: fields parsed by name with :data:`PARSERS`, defaults optional."""

    @classmethod
    def from_json(cls, raw: Mapping[str, object], where: str) -> Op:
        declared = fields(cls)  # type: ignore[arg-type]
        check_keys(raw, where, [f.name for f in declared])
        values: dict[str, Any] = {}
        for f in declared:
            if f.name in raw:
                values[f.name] = PARSERS[f.name](raw[f.name], f"{where}.{f.name}")
            elif f.default is MISSING:
                raise ScenarioError(f"{where}.{f.name}", "missing")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.name}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = hex(value) if f.name in HEX_FIELDS else value
        return out


@register
@dataclass(frozen=True, slots=True)
class KmemCacheCreate(SlabOp):
    """Create a cache of ``size``-byte objects aligned to ``align`` (0: a word), with a constructor if ``ctor``."""

    cache: str
    size: int
    align: int = 0
    ctor: bool = False
    name: ClassVar[str] = "kmem_cache_create"


@register
@dataclass(frozen=True, slots=True)
class KmemCacheAlloc(SlabOp):
    """Allocate an object of ``cache`` on ``cpu``."""

    cache: str
    cpu: int
    name: ClassVar[str] = "kmem_cache_alloc"


@register
@dataclass(frozen=True, slots=True)
class KmemCacheFree(SlabOp):
    """Free the object at ``addr`` into ``cache``."""

    cache: str
    addr: int
    name: ClassVar[str] = "kmem_cache_free"


@register
@dataclass(frozen=True, slots=True)
class Kmalloc(SlabOp):
    """Allocate ``size`` bytes on ``cpu`` from the kmalloc cache of its class."""

    size: int
    cpu: int
    name: ClassVar[str] = "kmalloc"


@register
@dataclass(frozen=True, slots=True)
class Kfree(SlabOp):
    """Free the object at ``addr`` into the cache it came from."""

    addr: int
    name: ClassVar[str] = "kfree"


@register
@dataclass(frozen=True, slots=True)
class KmemCacheShrink(SlabOp):
    """Flush the CPUs' slabs of ``cache`` and return its empty slabs to the buddy."""

    cache: str
    name: ClassVar[str] = "kmem_cache_shrink"


@register
@dataclass(frozen=True, slots=True)
class KmemCacheDestroy(SlabOp):
    """Drop the name ``cache``; the cache goes when its last name does (it must hold no objects then)."""

    cache: str
    name: ClassVar[str] = "kmem_cache_destroy"


@register
@dataclass(frozen=True, slots=True)
class KmemWrite(SlabOp):
    """The owner of the allocated object at ``addr`` stores ``value`` in its first word."""

    addr: int
    value: int
    name: ClassVar[str] = "kmem_write"


@register
@dataclass(frozen=True, slots=True)
class KmemRead(SlabOp):
    """Load the first word of the allocated object at ``addr``: ``{"value": "0x..."}``."""

    addr: int
    name: ClassVar[str] = "kmem_read"


@register
@dataclass(frozen=True, slots=True)
class SlabInfo(SlabOp):
    """Read /proc/slabinfo's columns for every cache, newest first."""

    name: ClassVar[str] = "slabinfo"


@register
@dataclass(frozen=True, slots=True)
class MemInfo(SlabOp):
    """Read /proc/meminfo's Slab, SReclaimable and SUnreclaim lines (kB)."""

    name: ClassVar[str] = "slab_meminfo"
