"""The SLUB allocator as a value: caches, their slabs, and the rules that hand out and take back objects.

A *cache* serves objects of one size.  Its memory comes in *slabs*: blocks
of ``2**order`` pages from the buddy allocator (:mod:`spec.alloc.buddy`),
each cut into ``objects`` slots of ``size`` bytes laid end to end from the
slab's first byte.  The free objects of a slab form its *freelist*, a chain
through the free objects themselves (head first here).  Every slab is in one
of three places (mm/slub.c, Linux 6.12, one node, no per-CPU partial lists):

- the *active* slab of a CPU (``c->slab``, frozen): allocation on that CPU
  takes the head of its freelist;
- the node's *partial* list: slabs with free objects that no CPU owns;
- *full*: every object in use, tracked by no list at all.

Addresses are kernel virtual addresses in the direct map,
``PAGE_OFFSET + physical address`` (``page_address``), so no object sits at
NULL.  The rules:

- ``alloc(cache, cpu)``: the head of the active slab's freelist; when it is
  empty the active slab is dropped as full and the CPU takes a slab off the
  partial list (any one: :func:`allowed_partials`), or a new slab from the
  buddy at the cache's order, or at its minimum order when that fails
  (``allocate_slab``), or gets ENOMEM.  A new slab's freelist may be in any
  order (CONFIG_SLAB_FREELIST_RANDOM shuffles it); a constructor runs on
  every object of a new slab, and never on allocation.
- ``free(cache, addr)``: the object goes to the head of its slab's
  freelist.  A slab no CPU owns that was full goes on the partial list; one
  that becomes empty while the node already has ``min_partial`` partial
  slabs is discarded, its pages returned to the buddy (``__slab_free``).
- ``shrink`` flushes the CPUs' slabs and discards every empty slab;
  ``destroy`` does so for a cache with no live objects and removes it.

The implementation's free choices (the partial slab, the buddy block, the
new freelist order) come in an :class:`AllocChoice`; anything the rules do
not allow is :class:`~lang.errors.DisallowedChoice`.  Bad input raises a
:class:`~lang.errors.SlabError` and, the state being a value, changes nothing.

Object contents: ``words`` holds the first word of the objects whose first
word the rules determine: a constructor's mark, or what the caller wrote.
A free pointer stored over it (a cache without a constructor whose pointer
sits at offset 0) makes it unknown again; memory that came from the buddy
for a cache without a constructor holds whatever it held before.

Caches made with slab_debug flags (SLAB_RED_ZONE, SLAB_POISON,
SLAB_STORE_USER: ``kmem_cache_debug``) take the debug paths of mm/slub.c:
no CPU slab (``alloc_single_from_partial``, ``alloc_single_from_new_slab``,
``free_to_partial_list``), each object's red zones and poison written by
``init_object`` on every allocation and free, and the bytes SLUB checks
modelled: ``inits`` (the red zone value and poisoned length ``init_object``
last wrote into each object), ``flips`` (bytes that differ from what SLUB
wrote, by their XOR), ``freeptrs`` (the pointer stored in each object of a
cache whose free pointer sits after the object, decoded) and
``orig_sizes`` (the requested size of each allocated object of a
SLAB_KMALLOC|SLAB_STORE_USER cache).  A slab's ``freelist`` is then the
chain SLUB would follow from its head, up to a pointer that leads outside
the slab's objects; ``miscount`` is how far ``slab->inuse`` is from the
count that chain gives (non-zero only after a corruption, until
``validate_slab_cache`` fixes it, :mod:`spec.slab.debug`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from lang.errors import (
    BadAlignment,
    BadCacheFlags,
    BadCacheName,
    BadObjectSize,
    CacheInUse,
    ConfigError,
    CorruptSlab,
    DisallowedChoice,
    DuplicateCache,
    KmallocCacheDestroy,
    NotObjectStart,
    NotSlabObject,
    ObjectNotAllocated,
    SlabDoubleFree,
    UnknownCache,
    UnknownCpu,
    WrongCache,
)
from lang.records import replace
from spec.alloc import buddy as spec_buddy
from spec.alloc.buddy import BuddyState, OutOfMemory
from spec.slab import geometry
from spec.slab.geometry import SLAB_RED_ZONE, Geometry

PAGE_OFFSET = 0xFFFF888000000000  # x86-64 direct map base (Documentation/arch/x86/x86_64/mm.rst)
CTOR_MARK = 0xC7C7C7C7C7C7C7C7  # the word the modelled constructor writes at the start of each object
MAX_NAME = 32
# include/linux/poison.h
POISON_INUSE = 0x5A  # the padding SLAB_POISON fills a new slab with (setup_slab_debug)
POISON_FREE = 0x6B  # each byte of a free object
POISON_END = 0xA5  # its last byte
SLUB_RED_INACTIVE = 0xBB  # the red zone of a free object
SLUB_RED_ACTIVE = 0xCC  # the red zone of an allocated one
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")


_V = TypeVar("_V")


def page_address(pfn: int) -> int:
    """The direct-map address of frame ``pfn``."""
    return PAGE_OFFSET + (pfn << 12)


def address_pfn(addr: int) -> int:
    """The frame the direct-map address ``addr`` lies in (``virt_to_pfn``); negative below the map."""
    return (addr - PAGE_OFFSET) >> 12


@dataclass(frozen=True, slots=True)
class Slab:
    """A slab of ``objects`` objects of cache ``cache`` in the buddy block at ``pfn`` of ``order``."""

    pfn: int
    order: int
    cache: str
    objects: int
    freelist: tuple[int, ...]
    miscount: int = 0

    def __repr__(self) -> str:
        free = ", ".join(hex(a) for a in self.freelist)
        trail = "," if len(self.freelist) == 1 else ""
        miscount = f", miscount={self.miscount}" if self.miscount else ""
        return (
            f"Slab(pfn={self.pfn:#x}, order={self.order}, cache={self.cache!r}, objects={self.objects}, "
            f"freelist=({free}{trail}){miscount})"
        )

    @property
    def base(self) -> int:
        """The address of object 0."""
        return page_address(self.pfn)

    @property
    def inuse(self) -> int:
        """Objects handed out (``slab->inuse``): those off the freelist, give or take a corrupted count."""
        return self.objects - len(self.freelist) + self.miscount

    def contains(self, addr: int) -> bool:
        """True when ``addr`` lies in the slab's pages."""
        return self.base <= addr < self.base + (4096 << self.order)


@dataclass(frozen=True, slots=True)
class Cache:
    """A cache: its geometry, how many names refer to it, each CPU's active slab and the partial list (pfns)."""

    name: str
    geometry: Geometry
    kmalloc: bool
    refcount: int
    cpu_slab: tuple[int | None, ...]
    partial: frozenset[int]

    def object_addresses(self, slab: Slab) -> tuple[int, ...]:
        """The addresses of ``slab``'s objects, in address order (after the left red zone, if any)."""
        first = slab.base + self.geometry.red_left_pad
        return tuple(first + i * self.geometry.size for i in range(slab.objects))


@dataclass(frozen=True, slots=True)
class SlabState:
    """Every cache (oldest first), the names that refer to them, every slab by pfn, known first words, and
    the debug bytes of slab_debug caches (module docstring)."""

    cpus: int
    slub_min_objects: int
    caches: tuple[Cache, ...]
    names: Mapping[str, str]
    slabs: Mapping[int, Slab]
    words: Mapping[int, int]
    inits: Mapping[int, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))
    flips: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    freeptrs: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    orig_sizes: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class AllocChoice:
    """What the implementation chose in one allocation.

    ``partial``: the partial slab it took; ``pfn``: the buddy block of a new
    slab; ``freelist``: the new slab's freelist, head first.  None where it
    chose nothing.
    """

    partial: int | None = None
    pfn: int | None = None
    freelist: tuple[int, ...] | None = None


NO_CHOICE = AllocChoice()


def initial(cpus: int, slub_min_objects: int = 0) -> SlabState:
    """The allocator at boot: the kmalloc caches, none with a slab yet (``create_kmalloc_caches``)."""
    caches = tuple(
        Cache(
            geometry.kmalloc_name(i),
            geometry.kmalloc_geometry(i, cpus, slub_min_objects),
            True,
            1,
            (None,) * cpus,
            frozenset(),
        )
        for i in geometry.KMALLOC_INDICES
    )
    names = MappingProxyType({c.name: c.name for c in caches})
    return SlabState(cpus, slub_min_objects, caches, names, MappingProxyType({}), MappingProxyType({}))


def check_slab_config(max_order: int) -> None:
    """Slabs need the buddy to reach order 3 (``slub_max_order``): raise :class:`ConfigError` otherwise."""
    if max_order < geometry.SLUB_MAX_ORDER:
        raise ConfigError(f"slab caches need max_order >= {geometry.SLUB_MAX_ORDER} (slub_max_order), got {max_order}")


# --- lookups -------------------------------------------------------------------------------------


def cache_named(state: SlabState, name: str) -> Cache:
    """The cache ``name`` refers to (itself or the cache it is an alias of); :class:`UnknownCache` if none."""
    real = state.names.get(name)
    if real is None:
        raise UnknownCache(f"no cache named {name!r}: create it with kmem_cache_create first")
    return next(c for c in state.caches if c.name == real)


def check_cpu(state: SlabState, cpu: int) -> None:
    """Raise :class:`UnknownCpu` unless ``0 <= cpu < cpus``."""
    if not 0 <= cpu < state.cpus:
        raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{state.cpus - 1}")


def slab_of(state: SlabState, addr: int) -> Slab:
    """The slab whose pages hold ``addr`` (``virt_to_slab``); :class:`NotSlabObject` if none."""
    for slab in state.slabs.values():
        if slab.contains(addr):
            return slab
    raise NotSlabObject(f"address {addr:#x} is in no slab page: only objects from kmalloc or a cache can be freed")


def object_of(state: SlabState, addr: int) -> tuple[Cache, Slab]:
    """The cache and slab of the object starting at ``addr``; :class:`NotObjectStart` inside but off an object."""
    slab = slab_of(state, addr)
    cache = next(c for c in state.caches if c.name == slab.cache)
    first = slab.base + cache.geometry.red_left_pad
    index, rest = divmod(addr - first, cache.geometry.size)
    if rest or not 0 <= index < slab.objects:
        raise NotObjectStart(
            f"address {addr:#x} is inside a slab of {cache.name} but starts no object: objects are "
            f"{cache.geometry.size} bytes apart from {first:#x}, {slab.objects} of them"
        )
    return cache, slab


def with_cache(state: SlabState, cache: Cache) -> SlabState:
    """``state`` with the cache of ``cache.name`` replaced."""
    return replace(state, caches=tuple(cache if c.name == cache.name else c for c in state.caches))


def with_slab(state: SlabState, slab: Slab) -> SlabState:
    """``state`` with ``slab`` stored under its pfn."""
    return replace(state, slabs=MappingProxyType({**state.slabs, slab.pfn: slab}))


def active_cpu(cache: Cache, pfn: int) -> int | None:
    """The CPU whose active slab is the one at ``pfn``, if any (the slab is frozen)."""
    return next((cpu for cpu, active in enumerate(cache.cpu_slab) if active == pfn), None)


# --- creating a cache (mm/slab_common.c __kmem_cache_create, __kmem_cache_alias) ------------------

MAX_CACHE_SIZE = geometry.KMALLOC_MAX_CACHE_SIZE


def check_create(state: SlabState, name: str, size: int, align: int) -> None:
    """The arguments of ``kmem_cache_create``: a new, well-formed name, a size of 1..8192, an alignment of 0
    or a power of two up to a page.

    A merged cache keeps its first creator's name after that name is destroyed
    (``s->name`` is set once, mm/slab_common.c ``create_cache``; an alias only
    takes a reference, ``__kmem_cache_alias``), so that name stays taken
    while the aliases live: scenarios name caches, and one name must mean one cache.
    """
    if not 0 < len(name) <= MAX_NAME or not set(name) <= NAME_CHARS:
        raise BadCacheName(f"cache name {name!r} must be 1..{MAX_NAME} letters, digits or _-.:")
    if name in state.names:
        raise DuplicateCache(f"a cache named {name!r} exists already: pick another name")
    if any(c.name == name for c in state.caches):
        aliases = ", ".join(sorted(n for n, real in state.names.items() if real == name))
        raise DuplicateCache(f"the cache {name!r} still lives on as the merged cache of {aliases}: pick another name")
    if not 0 < size <= MAX_CACHE_SIZE:
        raise BadObjectSize(f"object size {size} is out of range: allowed 1..{MAX_CACHE_SIZE}")
    if align < 0 or align & (align - 1) or align > geometry.PAGE_SIZE:
        raise BadAlignment(f"align {align} must be 0 or a power of two up to {geometry.PAGE_SIZE}")


def check_flags(flags: frozenset[str], ctor: bool) -> None:
    """Flags the model knows; slab_debug flags only without a constructor (the model does not run one on a
    debug cache)."""
    unknown = sorted(flags - set(geometry.CACHE_FLAGS))
    if unknown:
        raise BadCacheFlags(f"unknown cache flag {unknown[0]}: allowed {', '.join(geometry.CACHE_FLAGS)}")
    if ctor and flags & geometry.DEBUG_FLAGS:
        raise BadCacheFlags("slab_debug flags with a constructor are not modelled: drop the constructor or the flags")


def create(
    state: SlabState, name: str, size: int, align: int, ctor: bool, flags: frozenset[str] = frozenset()
) -> tuple[SlabState, str]:
    """``kmem_cache_create``: a new cache, or ``name`` as an alias of a mergeable one; returns the real name.

    Merging (``find_mergeable``) considers the caches made by
    ``kmem_cache_create``, newest first; the alias takes a reference, and
    the cache's object size grows to the larger of the two.  A cache with
    a flag of ``SLAB_NEVER_MERGE`` (slab_debug's, SLAB_NO_MERGE) neither
    merges nor is merged into (``slab_unmergeable``, mm/slab_common.c).
    """
    check_create(state, name, size, align)
    check_flags(flags, ctor)
    candidates = [(c.name, c.geometry) for c in reversed(state.caches) if not c.kmalloc]
    target = None if flags & geometry.NEVER_MERGE else geometry.find_mergeable(candidates, size, align, ctor)
    names = MappingProxyType({**state.names, name: target or name})
    if target is not None:
        old = next(c for c in state.caches if c.name == target)
        inuse = max(old.geometry.inuse, geometry.align_up(size, geometry.WORD))  # __kmem_cache_alias
        grown = replace(old.geometry, object_size=max(old.geometry.object_size, size), inuse=inuse)
        return replace(with_cache(state, replace(old, geometry=grown, refcount=old.refcount + 1)), names=names), target
    shape = geometry.calculate_sizes(size, align, ctor, state.cpus, state.slub_min_objects, flags=frozenset(flags))
    if shape is None:
        raise BadObjectSize(f"object size {size} fits no slab up to order {geometry.SLUB_MAX_ORDER}")
    cache = Cache(name, shape, False, 1, (None,) * state.cpus, frozenset())
    return replace(state, caches=(*state.caches, cache), names=names), name


# --- allocation (mm/slub.c slab_alloc_node, ___slab_alloc, allocate_slab) -------------------------


def allowed_partials(state: SlabState, name: str, cpu: int) -> frozenset[int]:
    """The partial slabs an allocation on ``cpu`` may refill from: when the active slab has no free object,
    any slab of the partial list (``get_partial_node`` takes one; which is the kernel's business)."""
    cache = cache_named(state, name)
    active = cache.cpu_slab[cpu]
    if active is not None and state.slabs[active].freelist:
        return frozenset()
    return cache.partial


def deactivate_full(state: SlabState, cache: Cache, cpu: int) -> tuple[SlabState, Cache]:
    """Drop ``cpu``'s active slab, which has no free object: it becomes full, on no list."""
    dropped = replace(cache, cpu_slab=_set(cache.cpu_slab, cpu, None))
    return with_cache(state, dropped), dropped


def _set(slots: tuple[int | None, ...], index: int, value: int | None) -> tuple[int | None, ...]:
    return (*slots[:index], value, *slots[index + 1 :])


def new_slab_block(buddy: BuddyState, shape: Geometry, pfn: int | None) -> tuple[int, int] | None:
    """The (pfn, order) of a new slab's block: the cache's order if any block of it is free, else its
    minimum order (``allocate_slab``'s fallback to ``s->min``); None when neither is.  ``pfn`` is the
    implementation's pick (None: the least)."""
    for order in dict.fromkeys((shape.order, shape.min_order)):
        allowed = spec_buddy.allowed_pfns(buddy, order)
        if not allowed:
            continue
        if pfn is None:
            least = spec_buddy.least_choice(buddy, order)
            assert least is not None
            return least, order
        if pfn not in allowed:
            raise DisallowedChoice(f"new slab at pfn {pfn:#x}: not a free block of order >= {order}")
        return pfn, order
    return None


def check_freelist_order(addresses: tuple[int, ...], freelist: tuple[int, ...]) -> None:
    """A new slab's freelist must hold each of its objects exactly once (``shuffle_freelist`` permutes them)."""
    if sorted(freelist) != sorted(addresses) or len(set(freelist)) != len(freelist):
        raise DisallowedChoice(f"new slab's freelist {[hex(a) for a in freelist]} is not a permutation of its objects")


def new_slab(
    state: SlabState, buddy: BuddyState, cache: Cache, choice: AllocChoice
) -> tuple[SlabState, BuddyState, Slab] | None:
    """``allocate_slab``: a block from the buddy cut into objects, all free, constructed if the cache has a
    constructor; None when the buddy has nothing large enough."""
    block = new_slab_block(buddy, cache.geometry, choice.pfn)
    if block is None:
        return None
    pfn, order = block
    buddy = spec_buddy.alloc_at(buddy, order, pfn)
    objects = geometry.order_objects(order, cache.geometry.size)
    slab = Slab(pfn, order, cache.name, objects, ())
    addresses = cache.object_addresses(slab)
    freelist = addresses if choice.freelist is None else choice.freelist
    check_freelist_order(addresses, freelist)
    words = {a: w for a, w in state.words.items() if not slab.contains(a)}
    if cache.geometry.ctor:
        words.update((a, CTOR_MARK) for a in addresses)
    slab = replace(slab, freelist=freelist)
    state = replace(with_slab(state, slab), words=MappingProxyType(words))
    return setup_debug(state, cache.geometry, freelist), buddy, slab


# --- slab_debug: what init_object writes, and the debug paths (mm/slub.c) -------------------------


def patterned(shape: Geometry) -> bool:
    """Whether ``init_object`` writes red zones or poison into the cache's objects."""
    return SLAB_RED_ZONE in shape.flags or shape.object_poison


def tracks_freeptrs(shape: Geometry) -> bool:
    """Whether the model keeps every object's stored free pointer: a debug cache whose pointer sits after
    the object, where it outlives the object's allocation (``check_object`` checks it on allocated objects)."""
    return shape.debug and shape.freeptr_outside


def setup_debug(state: SlabState, shape: Geometry, freelist: tuple[int, ...]) -> SlabState:
    """``setup_object_debug`` on each object of a new slab (``init_object(SLUB_RED_INACTIVE)``) and the chain of
    free pointers ``shuffle_freelist`` stores."""
    if not shape.debug:
        return state
    inits = dict(state.inits)
    if patterned(shape):
        inits.update((a, (SLUB_RED_INACTIVE, shape.object_size)) for a in freelist)
    freeptrs = dict(state.freeptrs)
    if tracks_freeptrs(shape):
        freeptrs.update(zip(freelist, (*freelist[1:], 0), strict=True))
    return replace(state, inits=MappingProxyType(inits), freeptrs=MappingProxyType(freeptrs))


def init_object(state: SlabState, shape: Geometry, addr: int, val: int, poison_size: int) -> SlabState:
    """``init_object``: the left red zone and, past ``poison_size`` bytes of the object, the right red zone
    set to ``val`` (SLAB_RED_ZONE); the first ``poison_size`` bytes poisoned (``__OBJECT_POISON``).  Flipped
    bytes there are gone, and so are flips on bytes SLUB no longer writes (a kmalloc red zone's bytes past
    the requested size become the owner's data when the object is freed unpoisoned: without
    SLAB_CONSISTENCY_CHECKS ``free_debug_processing`` does not ``check_object`` them first); the object's
    first word is left open (poison or red zone may cover it)."""
    if not patterned(shape):
        return state
    ranges = []
    if SLAB_RED_ZONE in shape.flags:
        ranges += [(addr - shape.red_left_pad, addr), (addr + poison_size, addr + shape.inuse)]
    if shape.object_poison:
        ranges.append((addr, addr + poison_size))
    slot = range(addr - shape.red_left_pad, addr - shape.red_left_pad + shape.size)
    init = (val, poison_size)
    flips = {
        a: d
        for a, d in state.flips.items()
        if not any(lo <= a < hi for lo, hi in ranges)
        and (a not in slot or written_byte(shape, init, a - addr) is not None)
    }
    words = {a: w for a, w in state.words.items() if a != addr}
    return replace(
        state,
        inits=MappingProxyType({**state.inits, addr: init}),
        flips=MappingProxyType(flips),
        words=MappingProxyType(words),
    )


def written_byte(shape: Geometry, init: tuple[int, int] | None, offset: int) -> int | None:
    """The byte SLUB last wrote at ``offset`` from an object's start (``init``: what ``init_object`` last
    wrote there, red zone value and poisoned length); None where it wrote nothing the model knows: the
    owner's data, the free pointer (kept apart), the track records and the requested size.

    SLAB_POISON fills a new slab with ``POISON_INUSE`` (``setup_slab_debug``), which stays in the
    alignment padding after an object without red zone and in the padding after the metadata
    (``check_pad_bytes``)."""
    poison = geometry.SLAB_POISON in shape.flags
    if init is not None:
        val, poison_size = init
        if offset < 0:
            return val
        if offset < poison_size:
            if not shape.object_poison:
                return None
            return POISON_FREE if offset < poison_size - 1 else POISON_END
        if offset < shape.inuse:
            if SLAB_RED_ZONE in shape.flags:
                return val
            return POISON_INUSE if poison and offset >= shape.object_size else None
    if poison and shape.pad_offset <= offset < shape.size_from_object:
        return POISON_INUSE
    return None


def chain_is_corrupt(state: SlabState, cache: Cache, slab: Slab) -> bool:
    """Whether ``slab``'s chain ends in a pointer outside its objects, or its count is off."""
    if slab.miscount:
        return True
    if not tracks_freeptrs(cache.geometry) or not slab.freelist:
        return False
    return state.freeptrs.get(slab.freelist[-1], 0) != 0


def check_sane(state: SlabState, cache: Cache) -> None:
    """Raise :class:`CorruptSlab` if a slab of the debug cache ``cache`` has a corrupt freelist or count."""
    for slab in cache_slabs(state, cache):
        if chain_is_corrupt(state, cache, slab):
            raise CorruptSlab(
                f"slab {slab.pfn:#x} of {cache.name} has a corrupted freelist or object count: run "
                "validate_slab_cache to repair it first (the model does not follow a corrupt free pointer)"
            )


def alloc_debug(
    state: SlabState, buddy: BuddyState, cache: Cache, choice: AllocChoice, orig_size: int
) -> tuple[SlabState, BuddyState, int | OutOfMemory]:
    """The debug path of ``___slab_alloc``: no CPU slab; an object off a partial slab
    (``alloc_single_from_partial``) or a new one (``alloc_single_from_new_slab``), the slab listed partial
    while it has free objects; then ``alloc_debug_processing``: the requested size kept
    (``set_orig_size``) and ``init_object(SLUB_RED_ACTIVE)``, whose red zone starts at the requested size."""
    check_sane(state, cache)
    if cache.partial:
        pfn = min(cache.partial) if choice.partial is None else choice.partial
        if pfn not in cache.partial or choice.pfn is not None or choice.freelist is not None:
            raise DisallowedChoice(f"{choice!r}: {cache.name} must allocate from one of its partial slabs")
        slab = state.slabs[pfn]
    else:
        if choice.partial is not None:
            raise DisallowedChoice(f"refilled from pfn {choice.partial:#x} but {cache.name} has no partial slab")
        made = new_slab(state, buddy, cache, choice)
        if made is None:
            return state, buddy, OutOfMemory(cache.geometry.order)
        state, buddy, slab = made
    addr = slab.freelist[0]
    slab = replace(slab, freelist=slab.freelist[1:])
    partial = cache.partial | {slab.pfn} if slab.freelist else cache.partial - {slab.pfn}
    state = with_cache(with_slab(state, slab), replace(cache, partial=partial))
    shape = cache.geometry
    red_orig = shape.orig_size and SLAB_RED_ZONE in shape.flags
    state = init_object(state, shape, addr, SLUB_RED_ACTIVE, orig_size if red_orig else shape.object_size)
    if shape.orig_size:
        state = replace(state, orig_sizes=MappingProxyType({**state.orig_sizes, addr: orig_size}))
    return state, buddy, addr


def free_debug(state: SlabState, shape: Geometry, addr: int, prior: int) -> SlabState:
    """``free_debug_processing``'s ``init_object(SLUB_RED_INACTIVE)``, then the free pointer to ``prior``."""
    state = init_object(state, shape, addr, SLUB_RED_INACTIVE, shape.object_size)
    orig_sizes = {a: n for a, n in state.orig_sizes.items() if a != addr}
    freeptrs = {**state.freeptrs, addr: prior} if tracks_freeptrs(shape) else state.freeptrs
    return replace(state, orig_sizes=MappingProxyType(orig_sizes), freeptrs=MappingProxyType(freeptrs))


def refill(
    state: SlabState, buddy: BuddyState, cache: Cache, cpu: int, choice: AllocChoice
) -> tuple[SlabState, BuddyState, Slab | None]:
    """Give ``cpu`` a new active slab: one off the partial list if there is any, else a new one."""
    if cache.partial:
        pfn = min(cache.partial) if choice.partial is None else choice.partial
        if pfn not in cache.partial:
            raise DisallowedChoice(f"refilled from pfn {pfn:#x}, not a partial slab of {cache.name}")
        if choice.pfn is not None:
            raise DisallowedChoice(f"allocated a new slab while {cache.name} had partial slabs")
        cache = replace(cache, partial=cache.partial - {pfn}, cpu_slab=_set(cache.cpu_slab, cpu, pfn))
        return with_cache(state, cache), buddy, state.slabs[pfn]
    if choice.partial is not None:
        raise DisallowedChoice(f"refilled from pfn {choice.partial:#x} but {cache.name} has no partial slab")
    made = new_slab(state, buddy, cache, choice)
    if made is None:
        return state, buddy, None
    state, buddy, slab = made
    return with_cache(state, replace(cache, cpu_slab=_set(cache.cpu_slab, cpu, slab.pfn))), buddy, slab


def alloc(
    state: SlabState,
    buddy: BuddyState,
    name: str,
    cpu: int,
    choice: AllocChoice = NO_CHOICE,
    orig_size: int | None = None,
) -> tuple[SlabState, BuddyState, int | OutOfMemory]:
    """``kmem_cache_alloc``: an object of cache ``name`` for ``cpu``, or ENOMEM (:class:`OutOfMemory`).

    ``orig_size`` is the size asked for when kmalloc serves the request from this cache
    (``__kmalloc_cache_noprof``): at most the object size; None for the object size."""
    cache = cache_named(state, name)
    check_cpu(state, cpu)
    if orig_size is not None and not 0 < orig_size <= cache.geometry.object_size:
        raise BadObjectSize(
            f"kmalloc size {orig_size} does not fit {cache.name}: allowed 1..{cache.geometry.object_size}"
        )
    if cache.geometry.debug:
        return alloc_debug(state, buddy, cache, choice, orig_size or cache.geometry.object_size)
    active = cache.cpu_slab[cpu]
    slab = state.slabs[active] if active is not None else None
    if slab is None or not slab.freelist:
        if slab is not None:
            state, cache = deactivate_full(state, cache, cpu)
        state, buddy, slab = refill(state, buddy, cache, cpu, choice)
        if slab is None:
            return state, buddy, OutOfMemory(cache.geometry.order)
    elif choice != NO_CHOICE:
        raise DisallowedChoice(f"chose {choice!r} although cpu {cpu}'s slab had a free object")
    addr = slab.freelist[0]
    return with_slab(state, replace(slab, freelist=slab.freelist[1:])), buddy, addr


def kmalloc_cache(size: int) -> str:
    """The kmalloc cache for a request of ``size`` bytes; :class:`BadObjectSize` for 0 or above 8192."""
    if not 0 < size <= geometry.KMALLOC_MAX_CACHE_SIZE:
        raise BadObjectSize(
            f"kmalloc size {size} is out of range: allowed 1..{geometry.KMALLOC_MAX_CACHE_SIZE} "
            "(larger requests go to the page allocator)"
        )
    return geometry.kmalloc_name(geometry.kmalloc_index(size))


def kmalloc(
    state: SlabState, buddy: BuddyState, size: int, cpu: int, choice: AllocChoice = NO_CHOICE
) -> tuple[SlabState, BuddyState, int | OutOfMemory]:
    """``kmalloc``: an object of the kmalloc class of ``size`` (:func:`geometry.kmalloc_index`)."""
    return alloc(state, buddy, kmalloc_cache(size), cpu, choice)


# --- freeing (mm/slub.c slab_free, __slab_free, discard_slab) --------------------------------------


def check_free(state: SlabState, name: str | None, addr: int) -> tuple[Cache, Slab]:
    """The cache and slab of the allocated object at ``addr``, which is being freed into cache ``name``
    (None: the object's own cache, as ``kfree`` finds it).

    In order: the cache exists; ``addr`` is in a slab, of that cache
    (``cache_from_obj``), at an object start; the object is not free.
    Linux catches a double free of the freelist head in ``set_freepointer``
    (CONFIG_SLAB_FREELIST_HARDENED) and any other only under
    ``slub_debug=F`` (``on_freelist``); the model refuses both.
    """
    wanted = cache_named(state, name) if name is not None else None
    slab = slab_of(state, addr)
    if wanted is not None and slab.cache != wanted.name:
        raise WrongCache(f"object {addr:#x} belongs to cache {slab.cache}, not {wanted.name}: free it there")
    cache, slab = object_of(state, addr)
    if slab.freelist and slab.freelist[0] == addr:
        raise SlabDoubleFree(f"double free of {addr:#x}: it is the head of its slab's freelist (set_freepointer)")
    if addr in slab.freelist:
        raise SlabDoubleFree(f"double free of {addr:#x}: it is on its slab's freelist already (on_freelist)")
    return cache, slab


def discard(state: SlabState, buddy: BuddyState, slab: Slab) -> tuple[SlabState, BuddyState]:
    """``discard_slab``: forget ``slab`` (and its objects' words and debug bytes) and return its block to the
    buddy."""
    slabs = {pfn: s for pfn, s in state.slabs.items() if pfn != slab.pfn}

    def kept(m: Mapping[int, _V]) -> Mapping[int, _V]:
        return MappingProxyType({a: v for a, v in m.items() if not slab.contains(a)})

    state = replace(
        state,
        slabs=MappingProxyType(slabs),
        words=kept(state.words),
        inits=kept(state.inits),
        flips=kept(state.flips),
        freeptrs=kept(state.freeptrs),
        orig_sizes=kept(state.orig_sizes),
    )
    return state, spec_buddy.free(buddy, slab.pfn, slab.order)


def free(state: SlabState, buddy: BuddyState, name: str | None, addr: int) -> tuple[SlabState, BuddyState]:
    """``kmem_cache_free`` (``name`` given) or ``kfree`` (None): the object back on its slab's freelist."""
    cache, slab = check_free(state, name, addr)
    if cache.geometry.debug:
        check_sane(state, cache)
    words = dict(state.words)
    if not cache.geometry.ctor and cache.geometry.offset == 0:
        words.pop(addr, None)
    was_full = not slab.freelist
    prior = slab.freelist[0] if slab.freelist else 0
    slab = replace(slab, freelist=(addr, *slab.freelist))
    state = replace(with_slab(state, slab), words=MappingProxyType(words))
    if cache.geometry.debug:
        state = free_debug(state, cache.geometry, addr, prior)
    if active_cpu(cache, slab.pfn) is not None:
        return state, buddy
    if slab.inuse == 0 and len(cache.partial) >= cache.geometry.min_partial:
        state = with_cache(state, replace(cache, partial=cache.partial - {slab.pfn}))
        return discard(state, buddy, slab)
    if was_full:
        state = with_cache(state, replace(cache, partial=cache.partial | {slab.pfn}))
    return state, buddy


# --- shrinking and destroying (mm/slub.c __kmem_cache_do_shrink, __kmem_cache_shutdown) -----------


def cache_slabs(state: SlabState, cache: Cache) -> list[Slab]:
    """Every slab of ``cache``, by pfn."""
    return [s for pfn, s in sorted(state.slabs.items()) if s.cache == cache.name]


def discard_all(state: SlabState, buddy: BuddyState, slabs: Iterable[Slab]) -> tuple[SlabState, BuddyState]:
    """:func:`discard` each of ``slabs``."""
    for slab in slabs:
        state, buddy = discard(state, buddy, slab)
    return state, buddy


def shrink(state: SlabState, buddy: BuddyState, name: str) -> tuple[SlabState, BuddyState]:
    """``kmem_cache_shrink``: flush every CPU's slab (``flush_all``), then discard every empty slab.

    A flushed slab with free objects goes on the partial list; a full one
    is left untracked; empty ones, wherever they were, go back to the buddy.
    """
    cache = cache_named(state, name)
    if cache.geometry.debug:
        check_sane(state, cache)
    flushed = [state.slabs[pfn] for pfn in cache.cpu_slab if pfn is not None]
    partial = cache.partial | {s.pfn for s in flushed if s.freelist}
    empty = [state.slabs[pfn] for pfn in sorted(partial) if state.slabs[pfn].inuse == 0]
    cache = replace(cache, cpu_slab=(None,) * state.cpus, partial=partial - {s.pfn for s in empty})
    return discard_all(with_cache(state, cache), buddy, empty)


def destroy(state: SlabState, buddy: BuddyState, name: str) -> tuple[SlabState, BuddyState]:
    """``kmem_cache_destroy``: drop the name; the last one releases every slab and removes the cache.

    A cache with live objects is refused with :class:`CacheInUse` (Linux
    warns "Slab cache still has objects" and keeps it); kmalloc caches are
    never destroyed.
    """
    cache = cache_named(state, name)
    if cache.kmalloc:
        raise KmallocCacheDestroy(f"{cache.name} is a kmalloc cache: it cannot be destroyed")
    names = MappingProxyType({n: real for n, real in state.names.items() if n != name})
    if cache.refcount > 1:
        return replace(with_cache(state, replace(cache, refcount=cache.refcount - 1)), names=names), buddy
    if cache.geometry.debug:
        check_sane(state, cache)
    slabs = cache_slabs(state, cache)
    live = sum(s.inuse for s in slabs)
    if live:
        raise CacheInUse(f"cache {cache.name} still has {live} objects: free them before destroying it")
    state = replace(state, caches=tuple(c for c in state.caches if c.name != cache.name), names=names)
    return discard_all(state, buddy, slabs)


# --- object contents -------------------------------------------------------------------------------


def check_allocated(state: SlabState, addr: int) -> None:
    """Raise unless ``addr`` starts an allocated object."""
    _, slab = object_of(state, addr)
    if addr in slab.freelist:
        raise ObjectNotAllocated(f"object {addr:#x} is free: allocate it before using it")


def write_word(state: SlabState, addr: int, value: int) -> SlabState:
    """The caller stores ``value`` in the first word of its object at ``addr``.

    In a slab_debug cache, the bytes of that word SLUB had written (poison, or the red zone after an
    object smaller than a word) now differ from it by what was stored."""
    check_allocated(state, addr)
    cache, _ = object_of(state, addr)
    state = replace(state, words=MappingProxyType({**state.words, addr: value}))
    if not patterned(cache.geometry):
        return state
    flips = dict(state.flips)
    for i, byte in enumerate(value.to_bytes(8, "little")):
        old = written_byte(cache.geometry, state.inits.get(addr), i)
        if old is not None:
            flips[addr + i] = byte ^ old
            if not flips[addr + i]:
                del flips[addr + i]
    return replace(state, flips=MappingProxyType(flips))


def read_word(state: SlabState, addr: int) -> int | None:
    """The first word of the allocated object at ``addr``; None where the rules leave it open."""
    check_allocated(state, addr)
    return state.words.get(addr)


# --- observations (mm/slab_common.c cache_show, mm/slub.c get_slabinfo; fs/proc/meminfo.c) ---------


@dataclass(frozen=True, slots=True)
class SlabInfo:
    """One line of /proc/slabinfo: name, active_objs, num_objs, objsize, objperslab, pagesperslab,
    active_slabs, num_slabs."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    active_slabs: int
    num_slabs: int


def slabinfo_row(state: SlabState, cache: Cache) -> SlabInfo:
    """``get_slabinfo``: objects of every slab; free ones counted only on the partial list
    (``count_partial``: ``slab->objects - slab->inuse``, the count, not the chain), so free objects of a CPU's
    slab show as active."""
    slabs = cache_slabs(state, cache)
    num_objs = sum(s.objects for s in slabs)
    free_on_partial = sum(state.slabs[pfn].objects - state.slabs[pfn].inuse for pfn in cache.partial)
    g = cache.geometry
    return SlabInfo(
        cache.name, num_objs - free_on_partial, num_objs, g.size, g.objects, 1 << g.order, len(slabs), len(slabs)
    )


def slabinfo(state: SlabState) -> tuple[SlabInfo, ...]:
    """/proc/slabinfo's lines, newest cache first (``slab_caches`` is added to at its head)."""
    return tuple(slabinfo_row(state, c) for c in reversed(state.caches))


def slab_pages(state: SlabState) -> int:
    """Pages held by slabs (``NR_SLAB_UNRECLAIMABLE_B`` in pages: no cache here is reclaimable)."""
    return sum(1 << s.order for s in state.slabs.values())


def slab_frames(state: SlabState) -> frozenset[int]:
    """Every frame of every slab: the pages ``account_slab`` (mm/slab.h) has counted and not yet taken off."""
    return frozenset(pfn for s in state.slabs.values() for pfn in range(s.pfn, s.pfn + (1 << s.order)))


def meminfo(state: SlabState) -> dict[str, int]:
    """/proc/meminfo's ``Slab``, ``SReclaimable`` and ``SUnreclaim`` lines, in kB."""
    kb = slab_pages(state) * 4
    return {"Slab": kb, "SReclaimable": 0, "SUnreclaim": kb}
