"""The abstraction function of the slab layer: the implementation's caches and slabs as the spec's value.

Freelists are read the way the allocator itself would follow them, from
simulated memory: the head from ``struct slab``, then each free object's
pointer at ``s->offset``, decoded with ``ptr ^ s->random ^ swab(ptr_addr)``
(CONFIG_SLAB_FREELIST_HARDENED).  The decoding is written here, not borrowed
from the implementation, so a wrong encoding there shows up as a freelist
that leads somewhere else.  A chain is followed for at most one step more
than the slab has objects, so a cycle shows as a repeated object.  In a
slab_debug cache the chain stops, as SLUB's ``on_freelist`` does, at a
pointer that is not one of the slab's objects (a corrupted one), and the
abstraction also reads each object's stored pointer (where it sits after
the object), each requested size, and how far ``slab->inuse`` is from the
chain.  The bytes the spec says SLUB wrote (red zones, poison, padding) and
the flips on them are checked against memory, every byte the spec knows
(:func:`debug_differences`).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping
from types import MappingProxyType

from impl.slab.slub import KmemCache, Slub
from impl.slab.slub import Slab as ImplSlab
from spec.slab import cache as spec_cache
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
    first = slab.base + s.red_left_pad
    while obj and len(chain) <= slab.objects:
        chain.append(obj)
        ptr_addr = obj + s.offset
        pa = ptr_addr - PAGE_OFFSET
        if pa & 7 or not 0 <= pa < slub.mem.size:
            break
        obj = slub.mem.read(pa) ^ s.random ^ swab(ptr_addr)
        index, rest = divmod(obj - first, s.size)
        if s.debug and obj and (rest or not 0 <= index < slab.objects):
            break
    return tuple(chain)


def stored_pointer(slub: Slub, s: KmemCache, obj: int) -> int:
    """The pointer stored in the object at ``obj``, decoded."""
    ptr_addr = obj + s.offset
    return slub.mem.read(ptr_addr - PAGE_OFFSET) ^ s.random ^ swab(ptr_addr)


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
        s.flags,
        s.inuse,
        s.red_left_pad,
    )


def abstract_cache(s: KmemCache) -> Cache:
    """A cache: geometry, references, the pfn of each CPU's slab, the partial list as a set."""
    cpu_slab = tuple(None if slab is None else slab.pfn for slab in s.cpu_slab)
    return Cache(s.name, abstract_geometry(s), s.kmalloc, s.refcount, cpu_slab, frozenset(p.pfn for p in s.partial))


def abstract_one(slub: Slub, slab: ImplSlab) -> Slab:
    """A slab: its chain, and (in a debug cache) how far ``inuse`` is from it."""
    chain = decode_freelist(slub, slab)
    miscount = slab.inuse - (slab.objects - len(chain)) if slab.cache.debug else 0
    return Slab(slab.pfn, slab.order, slab.cache.name, slab.objects, chain, miscount)


def abstract_slab(slub: Slub, given: SlabState | None = None) -> SlabState:
    """The whole allocator.  The spec's known first words and the debug bytes it says SLUB wrote (``inits``,
    ``flips``) are taken from ``given`` and checked apart, by :func:`words_differences` and
    :func:`debug_differences`; stored pointers and requested sizes of debug caches are read from memory."""
    slabs = {slab.pfn: abstract_one(slub, slab) for slab in slub.slabs()}
    freeptrs: dict[int, int] = {}
    orig_sizes: dict[int, int] = {}
    for slab in slub.slabs():
        s = slab.cache
        if not s.debug:
            continue
        chain = set(slabs[slab.pfn].freelist)
        for obj in slub.objects_of(slab):
            if s.fp_outside:
                freeptrs[obj] = stored_pointer(slub, s, obj)
            if s.keep_orig and obj not in chain:
                orig_sizes[obj] = slub.mem.read(obj + s.orig_off - PAGE_OFFSET)
    empty: Mapping[int, int] = MappingProxyType({})
    return SlabState(
        slub.cpus,
        slub.min_objects,
        tuple(abstract_cache(s) for s in slub.caches),
        MappingProxyType({name: s.name for name, s in slub.names.items()}),
        MappingProxyType(slabs),
        given.words if given is not None else empty,
        given.inits if given is not None else MappingProxyType({}),
        given.flips if given is not None else empty,
        MappingProxyType(freeptrs),
        MappingProxyType(orig_sizes),
    )


@functools.lru_cache(maxsize=1024)
def written_slot(shape: Geometry, init: tuple[int, int] | None) -> tuple[int, int]:
    """The bytes :func:`spec.slab.cache.written_byte` gives for a slot (left red zone first) as a
    little-endian integer, and the mask of those it knows (0xFF at each, 0 where it gives None)."""
    values = bytearray()
    known = bytearray()
    for at in range(-shape.red_left_pad, shape.size_from_object):
        written = spec_cache.written_byte(shape, init, at)
        values.append(0 if written is None else written)
        known.append(0 if written is None else 0xFF)
    return int.from_bytes(values, "little"), int.from_bytes(known, "little")


def debug_differences(slub: Slub, expected: SlabState) -> list[str]:
    """Each byte of a debug cache's objects where memory does not hold what SLUB wrote there, flipped as
    the spec says (the spec's ``inits`` and ``flips``).

    A slot is compared whole, as integers under the mask of the bytes the spec knows
    (:func:`written_slot`); only a slot that differs is walked byte by byte, for the first byte that does."""
    problems: list[str] = []
    caches = {c.name: c for c in expected.caches}
    flipped = sorted(expected.flips)
    for slab in expected.slabs.values():
        cache = caches[slab.cache]
        shape = cache.geometry
        if not shape.debug:
            continue
        for obj in cache.object_addresses(slab):
            init = expected.inits.get(obj)
            lo = -shape.red_left_pad
            memory = slub.read_bytes(obj + lo, shape.size)
            values, known = written_slot(shape, init)
            start = bisect.bisect_left(flipped, obj + lo)
            stop = bisect.bisect_left(flipped, obj + shape.size_from_object)
            flips = 0
            for a in flipped[start:stop]:
                flips |= expected.flips[a] << 8 * (a - obj - lo)
            if int.from_bytes(memory, "little") & known == (values ^ flips) & known:
                continue
            for at in range(lo, shape.size_from_object):
                written = spec_cache.written_byte(shape, init, at)
                if written is None:
                    continue
                want = written ^ expected.flips.get(obj + at, 0)
                if memory[at - lo] != want:
                    problems.append(f"byte {at} of object {obj:#x} holds {memory[at - lo]:#x}, the spec says {want:#x}")
                    break
    return problems


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
        if not slab.cache.debug and slab.inuse + free != slab.objects:  # a debug slab's miscount is abstracted
            problems.append(f"slab {slab.pfn:#x}: inuse {slab.inuse} + {free} free != {slab.objects} objects")
        if slab.frozen != any(c is slab for c in slab.cache.cpu_slab):
            problems.append(f"slab {slab.pfn:#x}: frozen={slab.frozen} disagrees with whether a CPU holds it")
    for s in slub.caches:
        mine = [slab for slab in slabs if slab.cache is s]
        if s.nr_slabs != len(mine) or s.total_objects != sum(slab.objects for slab in mine):
            problems.append(f"{s.name}: nr_slabs {s.nr_slabs}, total_objects {s.total_objects} miscounted")
    return problems
