"""The LRU lists and reclaim: which pages may be aged, promoted or evicted, as sets of allowed choices.

Every anonymous page (hugetlb aside) and every file page-cache page is on
one of two lists of its kind, ``inactive`` or ``active`` (mm/vmscan.c;
shmem pages are not reclaimed here).  A page is *referenced* when
``PG_referenced`` is set or one of its entries is young (the accessed bit
the walker sets): ``folio_referenced`` asks the reverse map.  Aging a page
clears both, and its accessed bits are cleared with a TLB flush
(``ptep_clear_flush_young``), so the next access walks and sets them again.

Reclaim (``shrink_lruvec``) is a sequence of steps, and which page each step
takes is the kernel's choice; the spec states what each step may take:

- *evict* an inactive page that is not referenced and is evictable
  (:func:`victims`): not pinned (no reference beyond its mappings, its page
  cache and its swap cache: ``folio_ref_freeze`` would fail), and, if
  anonymous, in the swap cache or with a free swap slot (``add_to_swap``);
- *activate* an inactive page that is referenced: its second chance
  (``folio_check_references`` -> ``FOLIOREF_ACTIVATE``), aged;
- *deactivate* an active page (``shrink_active_list``), aged.

Reclaim may stop once it freed what it was asked for, or when no page on
any list is evictable; stopping short before that is a refusal
(:class:`~lang.errors.DisallowedChoice`).  Without swap space the anonymous
lists are not scanned (``can_reclaim_anon_pages``).  The implementation
reports each step as role ``("lru", n, 0, 0)`` with value ``pfn * 4 +
kind`` and the slot an evicted anonymous page got as ``("slot", n, 0, 0)``;
run alone the spec takes the least page (evict, else activate, else
deactivate, among evictable pages) and the least free slot.

Evicting a page (``shrink_folio_list``): every entry mapping it is
unmapped through the reverse map (``try_to_unmap``) and the TLBs flushed
before its frame is freed.  An anonymous page's data goes to its slot and
each entry becomes a swap entry for it (``add_to_swap``, ``pageout``,
``__remove_mapping``); a file page is written back first if dirty and
dropped from the page cache.  Direct reclaim runs when a page fault finds
fewer than :data:`WMARK_MIN` frames free (the most one fault takes: three
tables and a page), as ``__alloc_pages_direct_reclaim`` does when an
allocation would go below the min watermark, and reclaims up to it.

With the config's ``workingset``, every eviction and every activation ages the node's ``nonresident_age``
and an evicted file page leaves a shadow entry (:mod:`spec.pressure.workingset`).

``MADV_COLD`` deactivates and ages every page of the range mapped only
there (``madvise_cold_or_pageout_pte_range`` skips shared folios);
``MADV_PAGEOUT`` also evicts each of them that is evictable
(``reclaim_pages``, ignoring references), in address order.
"""

from __future__ import annotations

from lang.errors import DisallowedChoice
from lang.records import replace
from spec.mm.kernel import Choices, Kernel, free_frames, release, space, updated, with_page, with_space, without
from spec.mm.vma import has_hole, range_error
from spec.outcome import ENOMEM, Errno, Ok, Outcome, Reclaimed
from spec.paging.address import PAGE_SHIFT
from spec.pressure import workingset
from spec.pressure.files import flush_all, mappers, writeback
from spec.pressure.swap import free_slots, swap_dup, swap_free

EVICT, ACTIVATE, DEACTIVATE = 0, 1, 2
STEP_NAMES = ("evict", "activate", "deactivate")
WMARK_MIN = 4
MAX_STEPS = 1 << 16


def cached_at(k: Kernel, pfn: int) -> tuple[int, int] | None:
    """(object, index) of a file page-cache page."""
    for obj, cache in k.objects.items():
        for index, frame in cache.items():
            if frame == pfn:
                return obj, index
    return None


def referenced(k: Kernel, pfn: int) -> bool:
    """``PG_referenced``, or a young entry mapping the page (``folio_referenced``)."""
    if k.pages[pfn].referenced:
        return True
    return any(space(k, pid).leaves[vpn].young for pid, vpn in mappers(k, pfn))


def scanned(k: Kernel, pfn: int) -> bool:
    """The page is on a list reclaim scans: file pages always, anonymous ones only with swap space."""
    page = k.pages[pfn]
    return bool(page.lru) and (not page.anon or k.swap_slots > 0)


def evictable(k: Kernel, pfn: int) -> bool:
    """On a scanned list, not pinned, and (anonymous) with a slot to go to."""
    page = k.pages[pfn]
    if not scanned(k, pfn):
        return False
    held = page.mapcount + int(page.slot != 0) + int(not page.anon)
    if page.refcount != held:
        return False
    return not page.anon or bool(page.slot) or bool(free_slots(k))


def victims(k: Kernel) -> frozenset[int]:
    """The pages an evict step may take."""
    return frozenset(
        pfn for pfn, p in k.pages.items() if p.lru == "inactive" and evictable(k, pfn) and not referenced(k, pfn)
    )


def allowed(k: Kernel, kind: int) -> frozenset[int]:
    """The pages a step of ``kind`` may take."""
    if kind == EVICT:
        return victims(k)
    want = "inactive" if kind == ACTIVATE else "active"
    return frozenset(
        pfn
        for pfn, p in k.pages.items()
        if p.lru == want and scanned(k, pfn) and (kind == DEACTIVATE or referenced(k, pfn))
    )


def age(k: Kernel, pfn: int) -> Kernel:
    """Clear ``PG_referenced`` and the accessed bit of every entry mapping the page (flushed)."""
    k = with_page(k, pfn, referenced=False)
    for pid, vpn in mappers(k, pfn):
        sp = space(k, pid)
        k = with_space(k, pid, replace(sp, leaves=updated(sp.leaves, vpn, replace(sp.leaves[vpn], young=False))))
    return k


def evict(k: Kernel, pfn: int, choices: Choices) -> Kernel:
    """Unmap the page from every entry, save or drop its data, flush the TLBs, free its frame."""
    n = k.lru_steps
    page = k.pages[pfn]
    users = mappers(k, pfn)
    if page.anon:
        slot = page.slot or choices.get(("slot", n, 0, 0)) or free_slots(k)[0]
        if not page.slot and slot not in free_slots(k):
            raise DisallowedChoice(f"swap slot {slot} for frame {pfn:#x} is not free: free {free_slots(k)}")
        if not page.slot:
            k = replace(k, swap_map=updated(k.swap_map, slot, 0))
        k = replace(k, swap_data=updated(k.swap_data, slot, page.words) if page.words else without(k.swap_data, [slot]))
        for pid, vpn in users:
            sp = space(k, pid)
            sp = replace(sp, leaves=without(sp.leaves, [vpn]), swapped=updated(sp.swapped, vpn, slot))
            k = swap_dup(with_space(k, pid, sp), slot)
        if page.slot:
            k = swap_free(replace(k, swap_cache=without(k.swap_cache, [slot])), slot)
        elif k.swap_map[slot] == 0:
            k = swap_free(k, slot, 0)
        k = workingset.eviction(k, None)
    else:
        at = cached_at(k, pfn)
        assert at is not None
        if page.dirty:
            k = writeback(k, *at)
        for pid, vpn in users:
            sp = space(k, pid)
            k = with_space(k, pid, replace(sp, leaves=without(sp.leaves, [vpn])))
        k = replace(k, objects=updated(k.objects, at[0], without(k.objects[at[0]], [at[1]])))
        k = workingset.eviction(k, at)
    return release(flush_all(replace(k, pages=without(k.pages, [pfn]))), pfn)


def apply_step(k: Kernel, kind: int, pfn: int, choices: Choices) -> Kernel:
    """One reclaim step, checked against :func:`allowed`."""
    if pfn not in allowed(k, kind):
        raise DisallowedChoice(f"reclaim may not {STEP_NAMES[kind]} frame {pfn:#x}: allowed {sorted(allowed(k, kind))}")
    if kind == EVICT:
        k = evict(k, pfn, choices)
    else:
        k = with_page(age(k, pfn), pfn, lru="active" if kind == ACTIVATE else "inactive")
        k = flush_all(workingset.age_nonresident(k) if kind == ACTIVATE else k)
    return replace(k, lru_steps=k.lru_steps + 1)


def may_stop(k: Kernel, done: int, target: int) -> bool:
    """Reclaim may stop: it freed ``target`` pages, or nothing on the lists is evictable."""
    return done >= target or not any(evictable(k, pfn) for pfn in k.pages)


def own_step(k: Kernel) -> tuple[int, int] | None:
    """The spec's own step when it runs alone: the least page of the first kind that has an evictable one."""
    for kind in (EVICT, ACTIVATE, DEACTIVATE):
        pages = sorted(pfn for pfn in allowed(k, kind) if evictable(k, pfn))
        if pages:
            return kind, pages[0]
    return None


def reclaim(k: Kernel, target: int, choices: Choices) -> tuple[Kernel, int]:
    """Reclaim up to ``target`` pages with the implementation's steps (or the spec's own); pages freed."""
    done = 0
    reported = any(role[0] == "lru" for role in choices)
    for _ in range(MAX_STEPS):
        if done >= target:
            return k, done
        code = choices.get(("lru", k.lru_steps, 0, 0))
        if code is None:
            if may_stop(k, done, target):
                return k, done
            if reported:
                raise DisallowedChoice(f"reclaim stopped after {done} of {target} pages with evictable pages left")
            step = own_step(k)
            assert step is not None
            kind, pfn = step
        else:
            kind, pfn = code % 4, code // 4
        k = apply_step(k, kind, pfn, choices)
        done += kind == EVICT
    raise AssertionError(f"reclaim did not end within {MAX_STEPS} steps")


def reclaim_op(k: Kernel, pages: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """The ``reclaim`` operation (``/sys/.../memory.reclaim``-like, or ``echo N > drop_caches`` for file pages)."""
    k, done = reclaim(k, pages, choices)
    return k, Reclaimed(done)


def direct_reclaim(k: Kernel, choices: Choices) -> Kernel:
    """Reclaim up to :data:`WMARK_MIN` free frames if fewer are free (before a fault is handled)."""
    free = free_frames(k)
    if free >= WMARK_MIN:
        return k
    return reclaim(k, WMARK_MIN - free, choices)[0]


def madvise_pressure(k: Kernel, pid: int, va: int, pages: int, advice: str, choices: Choices) -> tuple[Kernel, Outcome]:
    """``MADV_COLD`` or ``MADV_PAGEOUT`` over the range; ENOMEM (after the mapped parts) if it has a hole."""
    sp = space(k, pid)
    error = range_error(va)
    if error:
        return k, Errno(error)
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    touched = False
    for vpn in sorted(v for v in sp.leaves if lo <= v < hi):
        leaf = space(k, pid).leaves.get(vpn)
        page = None if leaf is None else k.pages.get(leaf.pfn)
        if leaf is None or page is None or not page.lru or page.mapcount != 1:
            continue
        touched = True
        k = with_page(age(k, leaf.pfn), leaf.pfn, lru="inactive")
        if advice == "pageout" and evictable(k, leaf.pfn):
            k = replace(evict(k, leaf.pfn, choices), lru_steps=k.lru_steps + 1)
    k = flush_all(k) if touched else k
    return k, ENOMEM if pages and has_hole(sp.vmas, lo, hi) else Ok()
