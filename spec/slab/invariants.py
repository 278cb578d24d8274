"""The slab invariants: each a function of the slab and buddy states returning its violations.

- ``inside``: every slab's objects fit its pages, and the slab is a block of
  the cache's order or minimum order;
- ``disjoint``: no two slabs share a frame, so no two objects overlap;
- ``freelists``: every freelist is acyclic (no object twice) and runs only
  through object starts of its own slab; an allocated object is on none;
- ``placement``: every slab is exactly one of a CPU's active slab, on its
  cache's partial list (then with a free object), or full; each name refers
  to a live cache and each cache's reference count is its number of names;
- ``buddy``: every slab is an allocated block of the buddy allocator, and,
  with ``others`` the blocks other users hold, every allocated block is a
  slab or one of those (no leak: a frame is free or a slab page);
- ``words``: known first words belong to objects of live slabs;
- ``debug``: a slab_debug cache has no CPU slab; its debug bytes are kept for
  exactly the objects they describe (red zone and poison for every object
  of a cache that writes them, the stored pointer for every object of a
  cache that keeps it after the object, the requested size for every
  allocated object of a cache that keeps it, each size within the object);
  flips lie on bytes SLUB wrote; each chain runs through the stored
  pointers; a count is off (``miscount``) only in a debug cache, and
  ``inuse`` stays within ``0..objects``.
"""

from __future__ import annotations

from collections.abc import Set
from itertools import pairwise

from spec.alloc.buddy import Block, BuddyState
from spec.slab import cache as slab_cache
from spec.slab.cache import Cache, SlabState


def _cache(state: SlabState, name: str) -> Cache | None:
    return next((c for c in state.caches if c.name == name), None)


def inside_violations(state: SlabState) -> list[str]:
    """Objects fit their slab; the slab's order and object count follow from its cache's geometry."""
    problems = []
    for slab in state.slabs.values():
        cache = _cache(state, slab.cache)
        if cache is None:
            problems.append(f"{slab!r} belongs to no live cache")
            continue
        g = cache.geometry
        if slab.order not in (g.order, g.min_order) or slab.objects != (4096 << slab.order) // g.size:
            problems.append(f"{slab!r} does not have the order and object count of {cache.name}'s geometry")
        if slab.objects * g.size > 4096 << slab.order:
            problems.append(f"{slab!r}: its last object crosses the end of the slab")
    return problems


def disjoint_violations(state: SlabState) -> list[str]:
    """No two slabs overlap."""
    ordered = sorted(state.slabs.values(), key=lambda s: s.pfn)
    return [f"{a!r} overlaps {b!r}" for a, b in pairwise(ordered) if b.pfn < a.pfn + (1 << a.order)]


def freelist_violations(state: SlabState) -> list[str]:
    """Freelists are acyclic and run through object starts of their own slab only."""
    problems = []
    for slab in state.slabs.values():
        cache = _cache(state, slab.cache)
        if cache is None:
            continue
        starts = set(cache.object_addresses(slab))
        if len(set(slab.freelist)) != len(slab.freelist):
            problems.append(f"{slab!r}: its freelist holds an object twice (a cycle)")
        stray = [hex(a) for a in slab.freelist if a not in starts]
        if stray:
            problems.append(f"{slab!r}: its freelist runs through {stray}, not objects of the slab")
    return problems


def placement_violations(state: SlabState) -> list[str]:
    """Each slab in one place; partial slabs have a free object; names and reference counts agree."""
    problems = []
    for cache in state.caches:
        active = [pfn for pfn in cache.cpu_slab if pfn is not None]
        if len(set(active)) != len(active):
            problems.append(f"{cache.name}: one slab is active on two CPUs")
        for pfn in [*active, *cache.partial]:
            slab = state.slabs.get(pfn)
            if slab is None or slab.cache != cache.name:
                problems.append(f"{cache.name}: lists pfn {pfn:#x}, which is no slab of the cache")
        for pfn in sorted(cache.partial & set(active)):
            problems.append(f"{cache.name}: slab {pfn:#x} is both active and partial")
        for pfn in sorted(cache.partial):
            if pfn in state.slabs and not state.slabs[pfn].freelist:
                problems.append(f"{cache.name}: slab {pfn:#x} is on the partial list without a free object")
        names = sum(1 for real in state.names.values() if real == cache.name)
        if names != cache.refcount:
            problems.append(f"{cache.name}: refcount {cache.refcount}, but {names} names refer to it")
    live = {c.name for c in state.caches}
    problems += [f"name {n!r} refers to {real!r}, no live cache" for n, real in state.names.items() if real not in live]
    return problems


def buddy_violations(state: SlabState, buddy: BuddyState, others: Set[Block] = frozenset()) -> list[str]:
    """Every slab is an allocated buddy block; every allocated block is a slab or one of ``others``."""
    blocks = {Block(s.pfn, s.order) for s in state.slabs.values()}
    problems = [f"slab {b!r} is not an allocated buddy block" for b in sorted(blocks - buddy.allocated)]
    leaked = buddy.allocated - blocks - set(others)
    problems += [f"allocated block {b!r} is neither a slab nor held by anyone (leak)" for b in sorted(leaked)]
    return problems


def words_violations(state: SlabState) -> list[str]:
    """Known first words belong to objects of live slabs."""
    problems = []
    for addr in sorted(state.words):
        if not any(s.contains(addr) for s in state.slabs.values()):
            problems.append(f"a word is known at {addr:#x}, in no slab")
    return problems


def debug_violations(state: SlabState) -> list[str]:
    """The debug bytes describe exactly the objects they should, and the chains follow the stored pointers."""
    problems = []
    inits: set[int] = set()
    freeptrs: set[int] = set()
    orig_sizes: set[int] = set()
    owner: dict[int, tuple[Cache, int]] = {}
    for slab in state.slabs.values():
        cache = _cache(state, slab.cache)
        if cache is None:
            continue
        shape = cache.geometry
        if slab.miscount and not shape.debug:
            problems.append(f"{slab!r}: a miscount in {cache.name}, which has no slab_debug flags")
        if not 0 <= slab.inuse <= slab.objects:
            problems.append(f"{slab!r}: inuse {slab.inuse} outside 0..{slab.objects}")
        objects = cache.object_addresses(slab)
        free = set(slab.freelist)
        for addr in objects:
            owner[addr] = (cache, addr)
            if slab_cache.patterned(shape):
                inits.add(addr)
            if slab_cache.tracks_freeptrs(shape):
                freeptrs.add(addr)
            if shape.orig_size and addr not in free:
                orig_sizes.add(addr)
        if slab_cache.tracks_freeptrs(shape):
            for here, after in pairwise(slab.freelist):
                if state.freeptrs.get(here) != after:
                    problems.append(f"{slab!r}: its chain goes from {here:#x} to {after:#x}, not where it points")
        for addr, size in state.orig_sizes.items():
            if slab.contains(addr) and not 0 < size <= shape.object_size:
                problems.append(f"object {addr:#x} asked for {size} bytes of a {shape.object_size}-byte object")
    for name, kept, want in (
        ("inits", set(state.inits), inits),
        ("freeptrs", set(state.freeptrs), freeptrs),
        ("orig_sizes", set(state.orig_sizes), orig_sizes),
    ):
        if kept != want:
            odd = sorted(kept ^ want)[:3]
            problems.append(f"{name} kept for {[hex(a) for a in odd]}..., not exactly the objects they describe")
    for cache in state.caches:
        if cache.geometry.debug and any(pfn is not None for pfn in cache.cpu_slab):
            problems.append(f"{cache.name} has slab_debug flags but a CPU slab")
    for addr, delta in sorted(state.flips.items()):
        if not 0 < delta < 256:
            problems.append(f"flip {delta:#x} at {addr:#x} is not a byte's bits")
        found = next(
            (
                (c, obj)
                for obj, (c, _) in owner.items()
                if obj - c.geometry.red_left_pad <= addr < obj - c.geometry.red_left_pad + c.geometry.size
            ),
            None,
        )
        if found is None:
            problems.append(f"a flip at {addr:#x} lies in no object's slot")
            continue
        c, obj = found
        if slab_cache.written_byte(c.geometry, state.inits.get(obj), addr - obj) is None:
            problems.append(f"a flip at byte {addr - obj} of {obj:#x} lies on no byte SLUB wrote")
    return problems


def violations(state: SlabState, buddy: BuddyState, others: Set[Block] = frozenset()) -> list[str]:
    """Every slab invariant ``state`` breaks together with ``buddy`` (empty when well formed)."""
    return (
        inside_violations(state)
        + disjoint_violations(state)
        + freelist_violations(state)
        + placement_violations(state)
        + buddy_violations(state, buddy, others)
        + words_violations(state)
        + debug_violations(state)
    )
