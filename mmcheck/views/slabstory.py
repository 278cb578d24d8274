"""Slab ops told in plain words: where an object came from, where a freed one went, and what changed.

Used by ``mmcheck explain`` and the slab quiz.  Every sentence is read off
the spec's slab states before and after the op (:mod:`spec.slab.cache`), so
the story cannot say something the spec did not do:

- an allocation took the head of its CPU's active slab's freelist (the fast
  path, ``slab_alloc_node``); or, that freelist being empty, the slow path
  ``___slab_alloc`` dropped the active slab as full and took a slab off the
  node's partial list (``get_partial``), or a new slab from the buddy at the
  cache's order, or at its minimum order when no block of that order was
  free (``new_slab``, ``allocate_slab``);
- a free pushed the object on its slab's freelist (``__slab_free``): a slab
  a CPU holds (frozen) stays that CPU's; a full slab joins the partial list
  (``add_partial``); a slab that became empty while the node keeps
  ``min_partial`` partial slabs already is discarded, its block back to the
  buddy (``discard_slab``, ``free_slab``).

All of mm/slub.c, Linux 6.12, one node, no per-CPU partial lists
(CONFIG_SLUB_CPU_PARTIAL=n).  A free pointer is stored encoded
(CONFIG_SLAB_FREELIST_HARDENED, ``freelist_ptr_encode``): ``ptr ^ s->random
^ swab(ptr_addr)``; :func:`pointer_line` shows one decoded from the words
the implementation wrote, given the cache's secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lang import ops
from properties.drivers import Lockstep
from spec.slab import geometry
from spec.slab.cache import PAGE_OFFSET, Cache, Slab, SlabState, active_cpu, initial

Result = Mapping[str, object]

REFUSALS = {
    "SlabDoubleFree": "the object is free already: SLUB refuses a free of its slab's freelist head "
    "(set_freepointer, CONFIG_SLAB_FREELIST_HARDENED) and, under slab_debug=F, of any free object (on_freelist)",
    "WrongCache": "the object belongs to another cache (cache_from_obj): a free into the wrong cache is refused",
    "NotObjectStart": "the address is inside a slab but starts no object (check_valid_pointer)",
    "NotSlabObject": "the address is in no slab page (virt_to_slab finds no slab)",
    "CacheInUse": "kmem_cache_destroy: the cache still has objects (__kmem_cache_shutdown fails), so it stays",
    "ObjectNotAllocated": "the object is free: only an allocated object may be used",
}


@dataclass(frozen=True, slots=True)
class AllocStory:
    """Where an allocation's object came from: ``source`` is ``cpu freelist``, ``partial``, ``new slab`` or
    ``ENOMEM``; ``slab`` the pfn of its slab; ``dropped`` the active slab dropped as full, if any."""

    cache: str
    cpu: int
    addr: int | None
    source: str
    slab: int | None
    order: int | None
    fallback: bool
    dropped: int | None


@dataclass(frozen=True, slots=True)
class FreeStory:
    """Where a freed object went: ``where`` is ``cpu slab``, ``stays partial``, ``to partial``, ``empty kept`` or
    ``discarded``; ``cpu`` the CPU holding the slab, if any."""

    cache: str
    addr: int
    slab: int
    order: int
    where: str
    cpu: int | None
    min_partial: int
    listed: bool


def cache_of(state: SlabState, name: str) -> Cache:
    """The cache ``name`` refers to in ``state``."""
    real = state.names[name]
    return next(c for c in state.caches if c.name == real)


def slab_holding(state: SlabState, addr: int) -> Slab:
    """The slab whose pages hold ``addr``."""
    return next(s for s in state.slabs.values() if s.contains(addr))


def alloc_story(before: SlabState, after: SlabState, name: str, cpu: int, result: Result) -> AllocStory:
    """Classify an allocation of cache ``name`` on ``cpu`` that gave ``result``."""
    cache = cache_of(before, name)
    active = cache.cpu_slab[cpu]
    if "addr" not in result:
        return AllocStory(cache.name, cpu, None, "ENOMEM", None, None, False, active)
    addr = int(str(result["addr"]), 16)
    slab = slab_holding(after, addr)
    if active == slab.pfn and before.slabs[active].freelist:
        return AllocStory(cache.name, cpu, addr, "cpu freelist", slab.pfn, slab.order, False, None)
    source = "partial" if slab.pfn in cache.partial else "new slab"
    fallback = source == "new slab" and slab.order != cache.geometry.order
    return AllocStory(cache.name, cpu, addr, source, slab.pfn, slab.order, fallback, active)


def free_story(before: SlabState, after: SlabState, addr: int) -> FreeStory:
    """Classify a free of the object at ``addr``, which the spec accepted."""
    slab = slab_holding(before, addr)
    cache = next(c for c in before.caches if c.name == slab.cache)
    cpu = active_cpu(cache, slab.pfn)
    if cpu is not None:
        where = "cpu slab"
    elif slab.pfn not in after.slabs:
        where = "discarded"
    elif after.slabs[slab.pfn].inuse == 0:
        where = "empty kept"
    elif slab.pfn not in cache.partial:
        where = "to partial"
    else:
        where = "stays partial"
    listed = slab.pfn in cache.partial
    return FreeStory(cache.name, addr, slab.pfn, slab.order, where, cpu, cache.geometry.min_partial, listed)


def alloc_text(story: AllocStory, cache: Cache) -> str:
    """One sentence for an allocation, citing the mm/slub.c function that does it."""
    g = cache.geometry
    on = f"cpu {story.cpu}"
    if story.source == "ENOMEM":
        return f"{on} has no free object and the buddy has no block of order {g.order} or {g.min_order}: ENOMEM"
    assert story.addr is not None and story.slab is not None
    if story.source == "cpu freelist":
        return (
            f"{story.addr:#x} is the head of the freelist of {on}'s slab {story.slab:#x}: the fast path takes it "
            "and the next free object becomes the head (slab_alloc_node)"
        )
    dropped = (
        f"{on}'s slab {story.dropped:#x} has no free object, so ___slab_alloc drops it as full (on no list); "
        if story.dropped is not None
        else f"{on} has no slab yet, so ___slab_alloc runs; "
    )
    if story.source == "partial":
        return dropped + (
            f"it takes slab {story.slab:#x} off the node's partial list (get_partial) and hands out its freelist "
            f"head {story.addr:#x}"
        )
    ctor = ", each object constructed now" if g.ctor else ""
    fallback = (
        f" (no free block of order {g.order}, so allocate_slab falls back to s->min, order {story.order})"
        if story.fallback
        else ""
    )
    objects = (4096 << (story.order or 0)) // g.size
    return dropped + (
        f"the partial list is empty, so it makes a new slab (new_slab, allocate_slab): an order-{story.order} block "
        f"at pfn {story.slab:#x} from the buddy{fallback}, cut into {_objects(objects)} of {g.size} bytes{ctor}; "
        f"it hands out the freelist head {story.addr:#x}"
    )


def free_text(story: FreeStory) -> str:
    """One sentence for a free, citing the mm/slub.c function that does it."""
    head = f"{story.addr:#x} goes to the head of slab {story.slab:#x}'s freelist (__slab_free)"
    if story.where == "cpu slab":
        return f"{head}; the slab is cpu {story.cpu}'s (frozen), so no list changes"
    if story.where == "stays partial":
        return f"{head}; the slab is on the partial list already and stays there"
    if story.where == "to partial":
        return f"{head}; the slab was full, on no list, so it goes on the node's partial list (add_partial)"
    if story.where == "empty kept":
        kept = "stays on the partial list" if story.listed else "goes on the partial list (it was full)"
        return (
            f"{head}; the slab is empty now, and the node keeps fewer than min_partial ({story.min_partial}) partial "
            f"slabs, so it {kept}"
        )
    return (
        f"{head}; the slab is empty now and the node keeps min_partial ({story.min_partial}) partial slabs "
        f"already, so discard_slab returns its order-{story.order} block at pfn {story.slab:#x} to the buddy "
        "(free_slab)"
    )


def refusal_text(result: Result) -> str:
    """Why a refused slab op was refused (its error type), the state unchanged."""
    kind = str(result.get("type", ""))
    return f"refused, {kind}: {REFUSALS.get(kind, 'bad input')} (the state is unchanged)"


def swab(value: int) -> int:
    """The 64-bit byte swap."""
    return int.from_bytes(value.to_bytes(8, "big"), "little")


def pointer_line(state: SlabState, words: Mapping[int, int], secret: int, addr: int) -> str:
    """How the free object at ``addr`` stores its next pointer: the word at ``addr + s->offset`` in memory
    (``words``: physical address to value), which is ``next ^ s->random ^ swab(ptr_addr)``
    (``freelist_ptr_encode``), and what it decodes to with the cache's ``secret``."""
    slab = slab_holding(state, addr)
    cache = next(c for c in state.caches if c.name == slab.cache)
    ptr_addr = addr + cache.geometry.offset
    stored = words.get(ptr_addr - PAGE_OFFSET, 0)
    decoded = stored ^ secret ^ swab(ptr_addr)
    index = slab.freelist.index(addr)
    following = slab.freelist[index + 1] if index + 1 < len(slab.freelist) else 0
    shown = f"{following:#x}" if following else "NULL (the end of the freelist)"
    check = "" if decoded == following else f" -- but the spec's next is {shown}"
    decoded_text = f"{decoded:#x}" if decoded else "NULL (the end of the freelist)"
    return (
        f"free pointer at {ptr_addr:#x} holds {stored:#018x} = next ^ s->random ^ swab({ptr_addr:#x}) "
        f"(freelist_ptr_encode); decoded: {decoded_text}{check}"
    )


def list_lines(state: SlabState, name: str) -> list[str]:
    """Where each slab of cache ``name`` is: a CPU's active slab, the partial list, or full (on no list)."""
    cache = cache_of(state, name)
    lines = []
    for pfn, slab in sorted(state.slabs.items()):
        if slab.cache != cache.name:
            continue
        cpu = active_cpu(cache, pfn)
        where = f"cpu {cpu}'s active slab" if cpu is not None else "partial list" if pfn in cache.partial else "full"
        lines.append(f"slab {pfn:#x} (order {slab.order}): {where}, {slab.inuse} of {slab.objects} in use")
    return lines or ["no slabs"]


def changes(before: SlabState | None, after: SlabState) -> list[str]:
    """The slabs made or discarded, the CPU slabs and partial lists that changed, and freelist lengths."""
    old_slabs = {} if before is None else dict(before.slabs)
    lines = []
    for pfn in sorted(set(after.slabs) - set(old_slabs)):
        s = after.slabs[pfn]
        lines.append(f"new slab {pfn:#x} of {s.cache}: order {s.order}, {_objects(s.objects)}")
    for pfn in sorted(set(old_slabs) - set(after.slabs)):
        lines.append(f"slab {pfn:#x} of {old_slabs[pfn].cache} discarded: order {old_slabs[pfn].order} to the buddy")
    for pfn in sorted(set(old_slabs) & set(after.slabs)):
        if old_slabs[pfn].inuse != after.slabs[pfn].inuse:
            lines.append(f"slab {pfn:#x}: {old_slabs[pfn].inuse} -> {after.slabs[pfn].inuse} in use")
    old_caches = {} if before is None else {c.name: c for c in before.caches}
    for cache in after.caches:
        old = old_caches.get(cache.name)
        if old is None:
            if not cache.kmalloc:
                lines.append(f"new cache {cache.name}")
            continue
        for cpu, (was, now) in enumerate(zip(old.cpu_slab, cache.cpu_slab, strict=True)):
            if was != now:
                lines.append(f"{cache.name} cpu {cpu} slab: {_pfn(was)} -> {_pfn(now)}")
        if old.partial != cache.partial:
            gone = " ".join(f"-{p:#x}" for p in sorted(old.partial - cache.partial))
            came = " ".join(f"+{p:#x}" for p in sorted(cache.partial - old.partial))
            lines.append(f"{cache.name} partial list: {' '.join(x for x in (gone, came) if x)}")
    for name in sorted(set(old_caches) - {c.name for c in after.caches}):
        lines.append(f"cache {name} destroyed")
    return lines


def _objects(count: int) -> str:
    return f"{count} object" if count == 1 else f"{count} objects"


def _pfn(pfn: int | None) -> str:
    return "none" if pfn is None else f"{pfn:#x}"


def create_text(after: SlabState, name: str, result: Result) -> str:
    """A new cache's geometry (``calculate_sizes``), or the cache it became an alias of (``find_mergeable``)."""
    cache = cache_of(after, name)
    g = cache.geometry
    if result.get("cache") != name:
        return f"an existing cache has the same geometry: {name} becomes an alias of {cache.name} (find_mergeable)"
    where = "after the object (a constructor keeps its state)" if g.ctor else "in the middle of the object"
    return (
        f"a cache of {g.object_size}-byte objects in {g.size}-byte slots, free pointer at {g.offset} {where}; "
        f"calculate_order picks order {g.order}: {_objects(g.objects)} a slab, "
        f"{(4096 << g.order) - g.objects * g.size} bytes left over (calculate_sizes)"
    )


def rule(op: object, before: SlabState | None, after: SlabState, result: Result) -> str:
    """The rule a slab op ran, in one sentence, read off the spec's states before and after it."""
    assert isinstance(op, ops.SlabOp)
    fields = ", ".join(f"{k} {v}" for k, v in op.to_json().items() if k != "op")
    head = f"{op.name}({fields}): "
    if result.get("error") == "EINVAL":
        return head + refusal_text(result)
    if isinstance(op, ops.KmemCacheCreate):
        return head + create_text(after, op.cache, result)
    assert before is not None
    if isinstance(op, ops.KmemCacheAlloc | ops.Kmalloc):
        name = op.cache if isinstance(op, ops.KmemCacheAlloc) else _kmalloc_name(op.size)
        story = alloc_story(before, after, name, op.cpu, result)
        cls = f"kmalloc-class {story.cache}: " if isinstance(op, ops.Kmalloc) else ""
        return head + cls + alloc_text(story, cache_of(before, name))
    if isinstance(op, ops.KmemCacheFree | ops.Kfree):
        return head + free_text(free_story(before, after, op.addr))
    if isinstance(op, ops.KmemCacheShrink):
        return head + "flush every CPU's slab (flush_all), then discard every empty slab (__kmem_cache_do_shrink)"
    if isinstance(op, ops.KmemCacheDestroy):
        if op.cache in after.names:
            return head + "drop one name of the cache; others still use it"
        return head + "flush and discard every slab, then remove the cache (__kmem_cache_shutdown)"
    if isinstance(op, ops.KmemWrite):
        return head + "the owner of the object writes its first word"
    if isinstance(op, ops.KmemRead):
        return head + "the owner of the object reads its first word"
    if isinstance(op, ops.SlabInfo):
        return head + "/proc/slabinfo: objects and slabs per cache (get_slabinfo)"
    return head + "the Slab lines of /proc/meminfo (NR_SLAB_UNRECLAIMABLE_B)"


def _kmalloc_name(size: int) -> str:
    return geometry.kmalloc_name(geometry.kmalloc_index(size))


def slab_step(lockstep: Lockstep, op: ops.SlabOp, before: SlabState | None, result: Result) -> tuple[str, list[str]]:
    """The rule and the changes of a slab op that just ran on ``lockstep``; after a free, and after a new slab,
    how the freelist head's next pointer sits in memory, encoded."""
    after = lockstep.spec.slab.state
    if after is None:
        return f"{op.name}: {result}", []
    if before is None:  # the first slab op made the allocator: its kmalloc caches were there, empty
        before = initial(lockstep.spec.config.cpus, lockstep.spec.config.slub_min_objects)
    lines = [f"    changed: {line}" for line in changes(before, after)]
    slub = lockstep.impl.slab.slub
    refused = result.get("error") == "EINVAL"
    head = None
    if (
        isinstance(op, ops.KmemCacheFree | ops.Kfree)
        and not refused
        and any(s.contains(op.addr) for s in after.slabs.values())
    ):
        head = op.addr
    elif isinstance(op, ops.KmemCacheAlloc | ops.Kmalloc) and "addr" in result:
        slab = slab_holding(after, int(str(result["addr"]), 16))
        if before is None or slab.pfn not in before.slabs:
            head = slab.freelist[0] if slab.freelist else None
    if head is not None and slub is not None:
        cache = slab_holding(after, head).cache
        words = lockstep.spec.state.memory.words
        lines.append(f"    {pointer_line(after, words, slub.names[cache].random, head)}")
    return rule(op, before, after, result), lines
