"""Cache geometry as ``kmem_cache_open`` computes it (mm/slub.c ``calculate_sizes``, ``calculate_order``).

Plain integer arithmetic, written from the kernel source; the values land
in the ``struct kmem_cache`` fields of :class:`impl.slab.slub.KmemCache`.
"""

from __future__ import annotations

from typing import NamedTuple

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
KMALLOC_MAX_CACHE_SIZE = 8192
SLUB_MAX_ORDER = 3
MAX_OBJS_PER_PAGE = 32767
TRACK_SIZE = 32  # sizeof(struct track) with CONFIG_STACKDEPOT
RED_ZONE, POISON, STORE_USER, KMALLOC, NO_MERGE = (
    "SLAB_RED_ZONE",
    "SLAB_POISON",
    "SLAB_STORE_USER",
    "SLAB_KMALLOC",
    "SLAB_NO_MERGE",
)
KNOWN_FLAGS = (RED_ZONE, POISON, STORE_USER, KMALLOC, NO_MERGE)
DEBUG = frozenset({RED_ZONE, POISON, STORE_USER})
NEVER_MERGE = DEBUG | {NO_MERGE}

# kmalloc_info[]: index -> (name, size), in create_kmalloc_caches() order.
KMALLOC_INFO = (
    (1, "kmalloc-96", 96),
    (2, "kmalloc-192", 192),
    (3, "kmalloc-8", 8),
    (4, "kmalloc-16", 16),
    (5, "kmalloc-32", 32),
    (6, "kmalloc-64", 64),
    (7, "kmalloc-128", 128),
    (8, "kmalloc-256", 256),
    (9, "kmalloc-512", 512),
    (10, "kmalloc-1k", 1024),
    (11, "kmalloc-2k", 2048),
    (12, "kmalloc-4k", 4096),
    (13, "kmalloc-8k", 8192),
)
KMALLOC_NAMES = {index: name for index, name, _ in KMALLOC_INFO}


class Layout(NamedTuple):
    """``s->size``, ``s->offset``, ``s->align``, ``oo`` and ``min`` (order, objects), ``min_partial``,
    ``s->inuse`` and ``s->red_left_pad``."""

    size: int
    offset: int
    align: int
    order: int
    objects: int
    min_order: int
    min_objects: int
    min_partial: int
    inuse: int = 0
    red_left_pad: int = 0


def page_order(size: int) -> int:
    """``get_order``."""
    order = 0
    while PAGE_SIZE << order < size:
        order += 1
    return order


def kmalloc_index(size: int) -> int:
    """``__kmalloc_index`` for 1 <= size <= 8192."""
    if size <= 8:
        return 3
    if 64 < size <= 96:
        return 1
    if 128 < size <= 192:
        return 2
    index = 4
    while size > 1 << index:
        index += 1
    return index


def _slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, nr_cpus: int, slub_min_objects: int, page_max_order: int) -> int:
    """The slab order, or -1 (``-ENOSYS``) when no order fits."""
    min_objects = slub_min_objects
    if not min_objects:
        min_objects = 4 * (nr_cpus.bit_length() + 1)
    max_objects = max((PAGE_SIZE << SLUB_MAX_ORDER) // size, 1)
    min_objects = min(min_objects, max_objects)
    min_order = page_order(min_objects * size)
    if (PAGE_SIZE << min_order) // size > MAX_OBJS_PER_PAGE:
        return page_order(size * MAX_OBJS_PER_PAGE) - 1
    fraction = 16
    while fraction > 1:
        order = _slab_order(size, min_order, SLUB_MAX_ORDER, fraction)
        if order <= SLUB_MAX_ORDER:
            return order
        fraction //= 2
    order = page_order(size)
    return order if order <= page_max_order else -1


def calculate_sizes(
    object_size: int,
    align: int,
    ctor: bool,
    nr_cpus: int,
    slub_min_objects: int = 0,
    page_max_order: int = 10,
    flags: frozenset[str] = frozenset(),
) -> Layout | None:
    """The layout of a cache, or None when its objects fit no slab (the debug areas as ``calculate_sizes``
    adds them: red zone word, free pointer after the object, two tracks, the requested size, left red zone)."""
    align = max(align, 8)
    align = (align + 7) & ~7
    size = (object_size + 7) & ~7
    if RED_ZONE in flags and size == object_size:
        size += 8
    inuse = size
    orig = STORE_USER in flags and KMALLOC in flags
    if ctor or POISON in flags or (RED_ZONE in flags and (object_size < 8 or orig)):
        offset = size
        size += 8
    else:
        offset = (object_size // 2) & ~7
    if STORE_USER in flags:
        size += 2 * TRACK_SIZE + (8 if KMALLOC in flags else 0)
    red_left_pad = 0
    if RED_ZONE in flags:
        red_left_pad = (8 + align - 1) & ~(align - 1)
        size += 8 + red_left_pad
    size = (size + align - 1) & ~(align - 1)
    order = calculate_order(size, nr_cpus, slub_min_objects, page_max_order)
    if order < 0:
        return None
    min_order = page_order(size)
    ilog2 = size.bit_length() - 1
    min_partial = min(10, max(5, ilog2 // 2))
    return Layout(
        size,
        offset,
        align,
        order,
        (PAGE_SIZE << order) // size,
        min_order,
        (PAGE_SIZE << min_order) // size,
        min_partial,
        inuse,
        red_left_pad,
    )


def kmalloc_layout(size: int, nr_cpus: int, slub_min_objects: int = 0) -> Layout:
    """A kmalloc cache: aligned to the largest power of two dividing its size."""
    layout = calculate_sizes(size, size & -size, False, nr_cpus, slub_min_objects)
    assert layout is not None
    return layout


def can_merge(size: int, ctor: bool, s_size: int, s_ctor: bool, align: int) -> bool:
    """``find_mergeable``'s test against one existing cache of slot size ``s_size``."""
    if ctor or s_ctor:
        return False
    size = (size + 7) & ~7
    align = (max(align, 8) + 7) & ~7
    size = (size + align - 1) & ~(align - 1)
    if size > s_size:
        return False
    if s_size & ~(align - 1) != s_size:
        return False
    return s_size - size < 8
