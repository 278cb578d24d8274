"""Slab geometry: kmalloc size classes, object layout, slab order and the cache merge rule.

Everything here is arithmetic on sizes, as Linux 6.12 computes it when a
cache is made (``kmem_cache_open`` and ``calculate_sizes`` in mm/slub.c,
``kmalloc_index`` in include/linux/slab.h, ``find_mergeable`` in
mm/slab_common.c), for x86-64 with 4 KiB pages.  The slab_debug flags a
cache may be created with (``SLAB_RED_ZONE``, ``SLAB_POISON``,
``SLAB_STORE_USER``, with ``SLAB_KMALLOC`` for a kmalloc-style cache that
keeps each object's requested size) add red zones, move the free pointer
after the object and append the two ``struct track`` records, as
``calculate_sizes`` lays them out.  A cache's *geometry* is its object size,
the slot each object takes (``s->size``), where the free pointer lives
(``s->offset``), the order of its slabs and how many objects one holds
(``s->oo``), the fallback order (``s->min``) and how many empty slabs a node
keeps (``s->min_partial``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PAGE_SIZE = 4096
WORD = 8  # sizeof(void *)
ARCH_SLAB_MINALIGN = 8  # __alignof__(unsigned long long) on x86-64
KMALLOC_SHIFT_LOW = 3  # ilog2(ARCH_KMALLOC_MINALIGN)
KMALLOC_SHIFT_HIGH = 13  # PAGE_SHIFT + 1
KMALLOC_MIN_SIZE = 1 << KMALLOC_SHIFT_LOW
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
SLUB_MAX_ORDER = 3  # slub_max_order defaults to PAGE_ALLOC_COSTLY_ORDER
MAX_OBJS_PER_PAGE = 32767  # objects is a 15-bit field of struct slab
MIN_PARTIAL = 5
MAX_PARTIAL = 10

# kmem_cache_create flags the model knows (include/linux/slab.h).  The first three are slab_debug's
# (SLAB_DEBUG_FLAGS, mm/slab.h); any of them, or SLAB_NO_MERGE, makes a cache unmergeable (SLAB_NEVER_MERGE,
# mm/slab_common.c).  SLAB_KMALLOC marks a kmalloc cache: with SLAB_STORE_USER it keeps each object's
# requested size (slub_debug_orig_size).
SLAB_RED_ZONE = "SLAB_RED_ZONE"
SLAB_POISON = "SLAB_POISON"
SLAB_STORE_USER = "SLAB_STORE_USER"
SLAB_KMALLOC = "SLAB_KMALLOC"
SLAB_NO_MERGE = "SLAB_NO_MERGE"
DEBUG_FLAGS = frozenset({SLAB_RED_ZONE, SLAB_POISON, SLAB_STORE_USER})
CACHE_FLAGS = (SLAB_RED_ZONE, SLAB_POISON, SLAB_STORE_USER, SLAB_KMALLOC, SLAB_NO_MERGE)
# sizeof(struct track) (mm/slub.c) with CONFIG_STACKDEPOT: addr, handle, cpu, pid, when.
TRACK_SIZE = 32


def align_up(value: int, alignment: int) -> int:
    """``ALIGN(value, alignment)`` for a power-of-two ``alignment``."""
    return (value + alignment - 1) & -alignment


def fls(value: int) -> int:
    """``fls``: the 1-based position of the highest set bit, 0 for 0."""
    return value.bit_length()


def get_order(size: int) -> int:
    """``get_order``: the smallest order whose block of pages holds ``size`` bytes (``size >= 1``)."""
    return max(0, fls((size - 1) >> 12))


def order_objects(order: int, size: int) -> int:
    """``order_objects``: how many ``size``-byte slots a slab of ``order`` holds."""
    return (PAGE_SIZE << order) // size


# --- kmalloc size classes (include/linux/slab.h, mm/slab_common.c) ------------------------------


def kmalloc_index(size: int) -> int:
    """``__kmalloc_index``: the kmalloc class of a request of ``size`` bytes; 0 for 0.

    Classes are powers of two from 8 (index 3) to 8192 (index 13), plus
    kmalloc-96 (index 1) and kmalloc-192 (index 2) for the sizes 65..96 and
    129..192, which a power-of-two class would waste a quarter of.  Sizes
    above ``KMALLOC_MAX_CACHE_SIZE`` are not served by a cache (Linux hands
    them to the page allocator); the caller checks.
    """
    if size == 0:
        return 0
    if size <= KMALLOC_MIN_SIZE:
        return KMALLOC_SHIFT_LOW
    if 64 < size <= 96:
        return 1
    if 128 < size <= 192:
        return 2
    return fls(size - 1)


def kmalloc_class_size(index: int) -> int:
    """The object size of kmalloc class ``index`` (``kmalloc_info[index].size``)."""
    return {1: 96, 2: 192}.get(index, 1 << index)


def kmalloc_name(index: int) -> str:
    """The cache name of kmalloc class ``index`` (``kmalloc_info[index].name``): kmalloc-96, kmalloc-2k."""
    size = kmalloc_class_size(index)
    return f"kmalloc-{size >> 10}k" if size >= 1024 else f"kmalloc-{size}"


# The classes in the order create_kmalloc_caches() makes them: the two odd sizes first, then the powers of two.
KMALLOC_INDICES = (1, 2, *range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1))


def kmalloc_size_roundup(size: int) -> int:
    """``kmalloc_size_roundup``: the size kmalloc actually provides for a request of ``size`` bytes.

    Within the caches, the object size of the class; above them, whole pages
    (``PAGE_SIZE << get_order(size)``); 0 stays 0.
    """
    if size == 0:
        return 0
    if size <= KMALLOC_MAX_CACHE_SIZE:
        return kmalloc_class_size(kmalloc_index(size))
    return PAGE_SIZE << get_order(size)


def kmalloc_align(size: int) -> int:
    """A kmalloc cache's requested alignment: the largest power of two dividing its size
    (``create_boot_cache``: kmalloc caches guarantee it), at least ``ARCH_KMALLOC_MINALIGN``."""
    return max(ARCH_SLAB_MINALIGN, size & -size)


# --- object layout and slab order (mm/slub.c) ------------------------------------------------


def calculate_alignment(align: int) -> int:
    """``calculate_alignment`` (mm/slab_common.c) without SLAB_HWCACHE_ALIGN: at least
    ``ARCH_SLAB_MINALIGN``, rounded to a word."""
    return align_up(max(align, ARCH_SLAB_MINALIGN), WORD)


def min_objects_for(cpus: int, slub_min_objects: int = 0) -> int:
    """The objects a slab should hold at least: ``slub_min_objects`` if set, else ``4 * (fls(nr_cpus) + 1)``.

    ``calculate_order`` grows slabs with the CPU count so the per-CPU slabs
    refill less often: 8 objects on 1 CPU, 12 on 2 or 3, 16 on 4 to 7.
    """
    return slub_min_objects or 4 * (fls(cpus) + 1)


def calc_slab_order(size: int, min_order: int, max_order: int, fraction: int) -> int:
    """``calc_slab_order``: the first order from ``min_order`` up whose leftover is at most
    ``1/fraction`` of the slab; ``max_order + 1`` when none up to ``max_order`` is."""
    for order in range(min_order, max_order + 1):
        slab_bytes = PAGE_SIZE << order
        if slab_bytes % size <= slab_bytes // fraction:
            return order
    return max_order + 1


def calculate_order(
    size: int, cpus: int, slub_min_objects: int = 0, max_order: int = SLUB_MAX_ORDER, page_max_order: int = 10
) -> int | None:
    """``calculate_order``: the order of a cache's slabs for ``size``-byte slots; None when nothing fits.

    From the smallest order that holds ``min_objects`` (capped at what an
    order-``max_order`` slab holds), the first order up to ``max_order``
    wasting at most 1/16 of the slab is taken; failing that 1/8, 1/4, then
    1/2 (the relaxation loop of Linux 6.8 on).  An object too
    large for any order up to ``max_order`` gets ``get_order(size)``, if the
    buddy has that order (``MAX_PAGE_ORDER``, here ``page_max_order``).
    """
    max_objects = max(order_objects(max_order, size), 1)
    min_objects = min(min_objects_for(cpus, slub_min_objects), max_objects)
    min_order = get_order(min_objects * size)
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    fraction = 16
    while fraction > 1:
        order = calc_slab_order(size, min_order, max_order, fraction)
        if order <= max_order:
            return order
        fraction //= 2
    fallback = get_order(size)
    return fallback if fallback <= page_max_order else None


def set_min_partial(size: int) -> int:
    """``set_min_partial(s, ilog2(s->size) / 2)``: empty slabs a node keeps, clamped to 5..10."""
    return min(MAX_PARTIAL, max(MIN_PARTIAL, (fls(size) - 1) // 2))


@dataclass(frozen=True, slots=True)
class Geometry:
    """A cache's layout: ``size``-byte slots of ``object_size``-byte objects, the free pointer at ``offset``,
    slabs of ``order`` holding ``objects`` each (``min_order``/``min_objects`` the fallback), and
    ``min_partial`` empty slabs kept per node.

    With slab_debug flags (``flags``): ``inuse`` is the end of the object and its right red zone
    (``s->inuse``), ``red_left_pad`` the left red zone before each object, so object ``i`` of a slab starts
    at ``red_left_pad + i * size`` (``fixup_red_left``)."""

    object_size: int
    align: int
    ctor: bool
    size: int
    offset: int
    order: int
    objects: int
    min_order: int
    min_objects: int
    min_partial: int
    flags: frozenset[str] = frozenset()
    inuse: int = 0
    red_left_pad: int = 0

    @property
    def debug(self) -> bool:
        """Whether slab_debug checks the cache (``kmem_cache_debug``: any of ``SLAB_DEBUG_FLAGS``)."""
        return bool(self.flags & DEBUG_FLAGS)

    @property
    def object_poison(self) -> bool:
        """``__OBJECT_POISON``: SLAB_POISON without a constructor poisons the object itself."""
        return SLAB_POISON in self.flags and not self.ctor

    @property
    def orig_size(self) -> bool:
        """``slub_debug_orig_size``: SLAB_STORE_USER with SLAB_KMALLOC keeps each object's requested size."""
        return SLAB_STORE_USER in self.flags and SLAB_KMALLOC in self.flags

    @property
    def freeptr_outside(self) -> bool:
        """``freeptr_outside_object``: the free pointer sits after the object and its red zone."""
        return self.offset >= self.inuse

    @property
    def info_end(self) -> int:
        """``get_info_end``: the end of the object, its red zone and an outside free pointer."""
        return self.inuse + WORD if self.freeptr_outside else self.inuse

    @property
    def track_offset(self) -> int:
        """Where the two ``struct track`` records start (``get_track``), with SLAB_STORE_USER."""
        return self.info_end

    @property
    def orig_size_offset(self) -> int:
        """Where the requested size is kept (``get_orig_size``), with :attr:`orig_size`."""
        return self.info_end + 2 * TRACK_SIZE

    @property
    def pad_offset(self) -> int:
        """The start of the padding ``check_pad_bytes`` checks: after the metadata."""
        end = self.info_end
        if SLAB_STORE_USER in self.flags:
            end += 2 * TRACK_SIZE + (WORD if SLAB_KMALLOC in self.flags else 0)
        return end

    @property
    def size_from_object(self) -> int:
        """``size_from_object``: the slot's bytes from the object's start (the left red zone excluded)."""
        return self.size - self.red_left_pad


def free_pointer_offset(object_size: int, ctor: bool) -> int:
    """``s->offset``: where a free object keeps the pointer to the next free one.

    After the object (at the word-rounded object size) when there is a
    constructor, since a freed object must keep its constructed state; else
    near the middle of the object, ``ALIGN_DOWN(object_size / 2, 8)``, away
    from the edges a small overflow from a neighbour would hit (commit
    3202fa62fb43, "slub: relocate freelist pointer to middle of object").
    """
    if ctor:
        return align_up(object_size, WORD)
    return (object_size // 2) & -WORD


def calculate_sizes(
    object_size: int,
    align: int,
    ctor: bool,
    cpus: int,
    slub_min_objects: int = 0,
    max_order: int = SLUB_MAX_ORDER,
    page_max_order: int = 10,
    flags: frozenset[str] = frozenset(),
) -> Geometry | None:
    """``calculate_sizes``: the geometry of a cache of ``object_size``-byte objects; None when no slab fits.

    The object is rounded to a word (``s->inuse``), plus a word of red zone
    with SLAB_RED_ZONE when the rounding left none; the free pointer goes
    after that when there is a constructor, with SLAB_POISON, or with
    SLAB_RED_ZONE on an object below a word or keeping its requested size
    (it adds a word), else near the middle of the object; SLAB_STORE_USER
    adds two ``struct track`` and, with SLAB_KMALLOC, the requested size;
    SLAB_RED_ZONE adds a word of padding and the left red zone
    (``red_left_pad``, a word rounded to the alignment); the slot is then
    rounded to the alignment, so objects laid end to end all stay aligned.
    """
    alignment = calculate_alignment(align)
    size = align_up(object_size, WORD)
    red_zone = SLAB_RED_ZONE in flags
    if red_zone and size == object_size:
        size += WORD
    inuse = size
    orig_size = SLAB_STORE_USER in flags and SLAB_KMALLOC in flags
    if ctor or SLAB_POISON in flags or (red_zone and (object_size < WORD or orig_size)):
        offset = size
        size += WORD
    else:
        offset = free_pointer_offset(object_size, False)
    if SLAB_STORE_USER in flags:
        size += 2 * TRACK_SIZE
        if SLAB_KMALLOC in flags:
            size += WORD
    red_left_pad = 0
    if red_zone:
        size += WORD
        red_left_pad = align_up(WORD, alignment)
        size += red_left_pad
    size = align_up(size, alignment)
    order = calculate_order(size, cpus, slub_min_objects, max_order, page_max_order)
    if order is None:
        return None
    min_order = get_order(size)
    return Geometry(
        object_size=object_size,
        align=alignment,
        ctor=ctor,
        size=size,
        offset=offset,
        order=order,
        objects=order_objects(order, size),
        min_order=min_order,
        min_objects=order_objects(min_order, size),
        min_partial=set_min_partial(size),
        flags=frozenset(flags),
        inuse=inuse,
        red_left_pad=red_left_pad,
    )


def kmalloc_geometry(index: int, cpus: int, slub_min_objects: int = 0) -> Geometry:
    """The geometry of kmalloc class ``index``."""
    size = kmalloc_class_size(index)
    geometry = calculate_sizes(size, kmalloc_align(size), False, cpus, slub_min_objects)
    assert geometry is not None, "every kmalloc class fits an order-3 slab"
    return geometry


NEVER_MERGE = DEBUG_FLAGS | {SLAB_NO_MERGE}


def mergeable(geometry: Geometry, size: int, align: int, ctor: bool) -> bool:
    """``find_mergeable``'s test of one existing cache for a new one of ``size``, ``align``, ``ctor``.

    Neither may have a constructor or a flag of ``SLAB_NEVER_MERGE`` (the new cache's flags are the
    caller's to check); the new object, rounded to a word and
    its alignment, must fit the old slot; the old slot must be a multiple of
    the new alignment; and it may be at most a word larger (less than
    ``sizeof(void *)``), so a merged cache wastes almost nothing.
    """
    if ctor or geometry.ctor or geometry.flags & NEVER_MERGE:
        return False
    alignment = calculate_alignment(align)
    rounded = align_up(align_up(size, WORD), alignment)
    return rounded <= geometry.size and geometry.size % alignment == 0 and geometry.size - rounded < WORD


def find_mergeable(candidates: Sequence[tuple[str, Geometry]], size: int, align: int, ctor: bool) -> str | None:
    """``find_mergeable``: the cache a new one of ``size``, ``align``, ``ctor`` becomes an alias of, or None.

    ``candidates`` are the mergeable caches, newest first: Linux walks
    ``slab_caches`` in reverse and takes the first match.  kmalloc caches
    are never candidates: with CONFIG_HARDENED_USERCOPY their non-zero
    ``usersize`` makes them unmergeable (``slab_unmergeable``).
    """
    for name, geometry in candidates:
        if mergeable(geometry, size, align, ctor):
            return name
    return None
