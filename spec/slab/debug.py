"""slab_debug's checks as values: bytes flipped in slab memory, and ``validate_slab_cache`` counting what it finds.

A *flip* XORs bytes of an object's slot (from its left red zone to the end
of its padding) with a mask, as an overflow, a use after free or an attacker
would change them.  XOR is what makes the result independent of the cache's
secret: a free pointer is stored as ``ptr ^ s->random ^ swab(ptr_addr)``
(CONFIG_SLAB_FREELIST_HARDENED), so flipping bits of the stored word flips
the same bits of the pointer it decodes to (lib/slub_kunit.c's
``test_next_pointer`` does exactly that: ``p[s->offset] = ~p[s->offset]``).

``validate_slab_cache`` (mm/slub.c) flushes the CPU slabs, then runs
``validate_slab`` on every partial slab and, with SLAB_STORE_USER, every
full one: ``on_freelist`` walks the freelist, cuts it at a pointer outside
the slab's objects ("Freechain corrupt") and fixes ``slab->inuse`` ("Wrong
object count"); then ``check_object`` checks each object, free or
allocated, until the first that fails: the red zones, the poison of a free
object, the padding, the free pointer.  Each report adds one to KUnit's
error count (``slab_add_kunit_errors`` in ``slab_err``, ``object_err`` and
``slab_fix``); a damaged byte range costs two (``check_bytes_and_report``
counts the report, then ``restore_bytes``'s ``slab_fix`` counts the
repair), and the bytes are restored.
"""

from __future__ import annotations

from types import MappingProxyType

from lang.errors import FlipNotModelled, FlipOutsideObject, FreelistCycle
from lang.records import replace
from spec.alloc.buddy import BuddyState
from spec.slab import cache as slab
from spec.slab.cache import (
    POISON_END,
    POISON_FREE,
    POISON_INUSE,
    SLUB_RED_ACTIVE,
    SLUB_RED_INACTIVE,
    Cache,
    Slab,
    SlabState,
)
from spec.slab.geometry import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER, WORD, Geometry

MAX_MASK = (1 << 64) - 1


# --- flips ------------------------------------------------------------------------------------------


def valid_pointer(cache: Cache, s: Slab, ptr: int) -> bool:
    """``check_valid_pointer``: NULL, or the start of one of ``s``'s objects."""
    if ptr == 0:
        return True
    first = s.base + cache.geometry.red_left_pad
    index, rest = divmod(ptr - first, cache.geometry.size)
    return not rest and 0 <= index < s.objects


def walk(state: SlabState, cache: Cache, s: Slab, head: int | None) -> tuple[int, ...]:
    """The chain SLUB follows from ``head`` through the stored free pointers, up to NULL or a pointer outside
    the slab's objects; :class:`FreelistCycle` if it comes back to an object."""
    chain: list[int] = []
    seen: set[int] = set()
    obj = head or 0
    while obj:
        if obj in seen:
            raise FreelistCycle(
                f"the freelist of slab {s.pfn:#x} would come back to {obj:#x}: validate_slab_cache would loop "
                "forever (__fill_map follows the chain to NULL)"
            )
        chain.append(obj)
        seen.add(obj)
        obj = state.freeptrs.get(obj, 0)
        if not valid_pointer(cache, s, obj):
            break
    return tuple(chain)


def relink(state: SlabState, cache: Cache, s: Slab) -> SlabState:
    """``s`` with its freelist walked again from its head; ``slab->inuse`` stays what it was."""
    chain = walk(state, cache, s, s.freelist[0] if s.freelist else None)
    counter = s.inuse
    miscount = counter - (s.objects - len(chain))
    return slab.with_slab(state, replace(s, freelist=chain, miscount=miscount))


def flip(state: SlabState, addr: int, offset: int, mask: int) -> SlabState:
    """XOR the bytes at ``addr + offset`` with ``mask`` (little-endian: its low byte at ``offset``, as many bytes
    as the mask spans), in the slot of the object at ``addr``, allocated or free.

    Refused (:class:`FlipOutsideObject`) outside the slot or for a mask of no bits; refused
    (:class:`FlipNotModelled`) in a cache without slab_debug flags, into a free object's pointer kept inside
    the object, into the pointer of a cache that keeps requested sizes, or into the requested size: there the
    model would need the object's contents or the pointer's chain through data it does not follow.
    """
    cache, s = slab.object_of(state, addr)
    shape = cache.geometry
    if not shape.debug:
        raise FlipNotModelled(f"{cache.name} has no slab_debug flags: flips are modelled in debug caches only")
    if not 0 < mask <= MAX_MASK:
        raise FlipOutsideObject(f"mask {mask:#x} must have bits set within 64: allowed 0x1 .. {MAX_MASK:#x}")
    width = (mask.bit_length() + 7) // 8
    lo, hi = -shape.red_left_pad, shape.size_from_object
    if not lo <= offset <= hi - width:
        raise FlipOutsideObject(
            f"bytes {offset}..{offset + width - 1} from {addr:#x} leave its slot: allowed offsets {lo}..{hi - 1} "
            f"(the left red zone through the padding of a {shape.size}-byte slot)"
        )
    free = addr in s.freelist
    pointer = shape.freeptr_outside or free
    fp_lo, fp_hi = shape.offset, shape.offset + WORD
    flips = dict(state.flips)
    words = dict(state.words)
    fp_mask = 0
    for i, byte in enumerate(mask.to_bytes(width, "little")):
        at = offset + i
        if not byte:
            continue
        if pointer and fp_lo <= at < fp_hi:
            if not slab.tracks_freeptrs(shape) or shape.orig_size:
                raise FlipNotModelled(
                    f"byte {at} of {addr:#x} is in a free pointer the model does not follow through flips "
                    f"({'kept beside a requested size' if shape.orig_size else 'kept inside the object'})"
                )
            fp_mask |= byte << 8 * (at - fp_lo)
            continue
        if shape.orig_size and shape.orig_size_offset <= at < shape.orig_size_offset + WORD:
            raise FlipNotModelled(f"byte {at} of {addr:#x} is its requested size (get_orig_size): not modelled")
        if 0 <= at < WORD and addr in words:
            words[addr] ^= byte << 8 * at
        if slab.written_byte(shape, state.inits.get(addr), at) is not None:
            flips[addr + at] = flips.get(addr + at, 0) ^ byte
            if not flips[addr + at]:
                del flips[addr + at]
    state = replace(state, flips=MappingProxyType(flips), words=MappingProxyType(words))
    if not fp_mask:
        return state
    state = replace(state, freeptrs=MappingProxyType({**state.freeptrs, addr: state.freeptrs[addr] ^ fp_mask}))
    return relink(state, cache, s)


# --- validate_slab_cache ------------------------------------------------------------------------------


def check_bytes(state: SlabState, shape: Geometry, addr: int, lo: int, hi: int, value: int) -> tuple[SlabState, int]:
    """``check_bytes_and_report`` on bytes ``lo..hi-1`` of the object at ``addr``, which must all be ``value``:
    0 errors, or 2 (the report and ``restore_bytes``' fix) with the bytes set to ``value``."""
    init = state.inits.get(addr)
    written = {at: slab.written_byte(shape, init, at) for at in range(lo, hi)}
    assert None not in written.values(), "slab_debug checks only bytes SLUB wrote"
    if all(w ^ state.flips.get(addr + at, 0) == value for at, w in written.items() if w is not None):
        return state, 0
    flips = {a: d for a, d in state.flips.items() if not addr + lo <= a < addr + hi}
    flips.update((addr + at, w ^ value) for at, w in written.items() if w is not None and w != value)
    words = {a: w for a, w in state.words.items() if a != addr} if lo < WORD else dict(state.words)
    return replace(state, flips=MappingProxyType(flips), words=MappingProxyType(words)), 2


def check_object(state: SlabState, cache: Cache, s: Slab, addr: int, val: int) -> tuple[SlabState, int, bool]:
    """``check_object``: every check of the object at ``addr`` as SLUB makes them for an object with red
    zone value ``val`` (``SLUB_RED_INACTIVE`` for a free one); the new state, the errors, and whether all
    passed."""
    shape = cache.geometry
    errors = 0
    checks: list[tuple[int, int, int]] = []
    if SLAB_RED_ZONE in shape.flags:
        checks.append((-shape.red_left_pad, 0, val))
        checks.append((shape.object_size, shape.inuse, val))
        if shape.orig_size and val == SLUB_RED_ACTIVE:
            orig = state.orig_sizes.get(addr, shape.object_size)
            if shape.object_size > orig:
                checks.append((orig, shape.object_size, val))
    elif SLAB_POISON in shape.flags and shape.object_size < shape.inuse:
        checks.append((shape.object_size, shape.inuse, POISON_INUSE))
    if SLAB_POISON in shape.flags:
        if val != SLUB_RED_ACTIVE and shape.object_poison:
            checks.append((0, shape.object_size - 1, POISON_FREE))
            checks.append((shape.object_size - 1, shape.object_size, POISON_END))
        if shape.pad_offset != shape.size_from_object:
            checks.append((shape.pad_offset, shape.size_from_object, POISON_INUSE))
    for lo, hi, value in checks:
        state, found = check_bytes(state, shape, addr, lo, hi, value)
        errors += found
    if shape.freeptr_outside or val != SLUB_RED_ACTIVE:
        pointer = state.freeptrs.get(addr, 0) if slab.tracks_freeptrs(shape) else 0
        if not valid_pointer(cache, s, pointer):
            errors += 1  # object_err "Freepointer corrupt"; set_freepointer(s, p, NULL)
            state = replace(state, freeptrs=MappingProxyType({**state.freeptrs, addr: 0}))
    return state, errors, errors == 0


def on_freelist(state: SlabState, cache: Cache, s: Slab) -> tuple[SlabState, Slab, int]:
    """``on_freelist(s, slab, NULL)``: the chain is cut at a pointer outside the slab's objects ("Freechain
    corrupt", one error; the last object's pointer set to NULL), then ``slab->inuse`` is fixed to the objects
    off the chain ("Wrong object count" and the fix, two errors)."""
    errors = 0
    if s.freelist and slab.tracks_freeptrs(cache.geometry) and state.freeptrs.get(s.freelist[-1], 0):
        errors += 1
        state = replace(state, freeptrs=MappingProxyType({**state.freeptrs, s.freelist[-1]: 0}))
    if s.miscount:
        errors += 2
        s = replace(s, miscount=0)
        state = slab.with_slab(state, s)
    return state, s, errors


def validate_slab(state: SlabState, cache: Cache, s: Slab) -> tuple[SlabState, int]:
    """``validate_slab``: ``check_slab`` (its counts hold in the model, and the padding after the last object
    is out of the flips' reach), ``on_freelist``, then ``check_object`` on each object in address order up
    to the first that fails."""
    state, s, errors = on_freelist(state, cache, s)
    free = set(s.freelist)
    for addr in cache.object_addresses(s):
        val = SLUB_RED_INACTIVE if addr in free else SLUB_RED_ACTIVE
        state, found, passed = check_object(state, cache, s, addr, val)
        errors += found
        if not passed:
            break
    return state, errors


def flush(state: SlabState, buddy: BuddyState, cache: Cache) -> tuple[SlabState, BuddyState, Cache]:
    """``flush_all``: each CPU's slab deactivated (``deactivate_slab``): discarded if empty while the node
    keeps ``min_partial`` partial slabs, listed partial if it has free objects, else left full."""
    for cpu, pfn in enumerate(cache.cpu_slab):
        if pfn is None:
            continue
        s = state.slabs[pfn]
        cache = replace(cache, cpu_slab=(*cache.cpu_slab[:cpu], None, *cache.cpu_slab[cpu + 1 :]))
        if s.inuse == 0 and len(cache.partial) >= cache.geometry.min_partial:
            state, buddy = slab.discard(slab.with_cache(state, cache), buddy, s)
        elif s.freelist:
            cache = replace(cache, partial=cache.partial | {pfn})
        state = slab.with_cache(state, cache)
    return state, buddy, cache


def validate(state: SlabState, buddy: BuddyState, name: str) -> tuple[SlabState, BuddyState, int]:
    """``validate_slab_cache``: the CPU slabs flushed, each partial slab validated and, with SLAB_STORE_USER
    (which keeps the full list), each full one; returns the errors KUnit counts.  The partial-list and slab
    counters it also compares agree in the model."""
    cache = slab.cache_named(state, name)
    state, buddy, cache = flush(state, buddy, cache)
    errors = 0
    for s in slab.cache_slabs(state, cache):
        if s.pfn in cache.partial or SLAB_STORE_USER in cache.geometry.flags:
            state, found = validate_slab(state, cache, s)
            errors += found
    return state, buddy, errors
