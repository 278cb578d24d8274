"""The abstraction function of the slab layer: the implementation's caches and slabs as the spec's value.

Freelists are read the way the allocator itself would follow them, from
simulated memory: the head from ``struct slab``, then each free object's
pointer at ``s->offset``, decoded with ``ptr ^ s->random ^ swab(ptr_addr)``
(CONFIG_SLAB_FREELIST_HARDENED).  The decoding is written here, not borrowed
from the implementation, so a wrong encoding there shows up as a freelist
that leads somewhere else.  A chain is followed for at most one step more
than the slab has objects, so a cycle shows as a repeated object.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from impl.slab.slub import KmemCache, Slub
from impl.slab.slub import Slab as ImplSlab
from spec.slab.cache import PAGE_OFFSET, Cache, Slab, SlabState
from spec.slab.geometry import Geometry


def swab(value: int) -> int:
    """The 64-bit byte swap."""
    return int.from_bytes(value.to_bytes(8, "big"), "little")


def decode_freelist(slub: Slub, slab: ImplSlab) -> tuple[int, ...]:
    """The slab's freelist, head first, decoded from the free objects in memory."""
    s = slab.cache
    chain: list[int] = []
    obj = slab.freelist
    while obj and len(chain) <= slab.objects:
        chain.append(obj)
        ptr_addr = obj + s.offset
        pa = ptr_addr - PAGE_OFFSET
        if pa & 7 or not 0 <= pa < slub.mem.size:
            break
        obj = slub.mem.read(pa) ^ s.random ^ swab(ptr_addr)
    return tuple(chain)


def abstract_geometry(s: KmemCache) -> Geometry:
    """The cache's ``struct kmem_cache`` layout fields as the spec's geometry."""
    return Geometry(
        s.object_size,
        s.align,
        s.ctor,
        s.size,
        s.offset,
        s.order,
        s.objects,
        s.min_order,
        s.min_objects,
        s.min_partial,
    )


def abstract_cache(s: KmemCache) -> Cache:
    """A cache: geometry, references, the pfn of each CPU's slab, the partial list as a set."""
    cpu_slab = tuple(None if slab is None else slab.pfn for slab in s.cpu_slab)
    return Cache(s.name, abstract_geometry(s), s.kmalloc, s.refcount, cpu_slab, frozenset(p.pfn for p in s.partial))


def abstract_slab(slub: Slub, words: Mapping[int, int] | None = None) -> SlabState:
    """The whole allocator; ``words`` (the spec's known first words) are taken as given and checked apart,
    by :func:`words_differences`."""
    slabs = {
        slab.pfn: Slab(slab.pfn, slab.order, slab.cache.name, slab.objects, decode_freelist(slub, slab))
        for slab in slub.slabs()
    }
    return SlabState(
        slub.cpus,
        slub.min_objects,
        tuple(abstract_cache(s) for s in slub.caches),
        MappingProxyType({name: s.name for name, s in slub.names.items()}),
        MappingProxyType(slabs),
        MappingProxyType(dict(words or {})),
    )


def words_differences(slub: Slub, words: Mapping[int, int]) -> list[str]:
    """Each known first word that memory does not hold."""
    problems = []
    for addr, value in sorted(words.items()):
        actual = slub.mem.read(addr - PAGE_OFFSET)
        if actual != value:
            problems.append(f"object {addr:#x} holds {actual:#x}, the spec says {value:#x}")
    return problems


def count_violations(slub: Slub, abstract: SlabState) -> list[str]:
    """The implementation's own counters agree with its lists (``abstract``, its abstraction): ``inuse``
    plus the free objects is ``objects``; a slab is frozen exactly when it is a CPU's; the node counters
    count the slabs."""
    problems = []
    slabs = slub.slabs()
    for slab in slabs:
        free = len(abstract.slabs[slab.pfn].freelist)
        if slab.inuse + free != slab.objects:
            problems.append(f"slab {slab.pfn:#x}: inuse {slab.inuse} + {free} free != {slab.objects} objects")
        if slab.frozen != any(c is slab for c in slab.cache.cpu_slab):
            problems.append(f"slab {slab.pfn:#x}: frozen={slab.frozen} disagrees with whether a CPU holds it")
    for s in slub.caches:
        mine = [slab for slab in slabs if slab.cache is s]
        if s.nr_slabs != len(mine) or s.total_objects != sum(slab.objects for slab in mine):
            problems.append(f"{s.name}: nr_slabs {s.nr_slabs}, total_objects {s.total_objects} miscounted")
    return problems
