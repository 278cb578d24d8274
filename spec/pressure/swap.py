"""Swap: slots with counts, swap entries in page tables, the swap cache, swap-in and swapoff.

The swap device has ``swap_slots`` slots, numbered from 1 (slot 0 is the
swap header, mm/swapfile.c).  A slot in use has a count in ``swap_map``:
one for every swap entry (a non-present PTE holding the slot, the x86-64
encoding of ``__swp_entry``, arch/x86/include/asm/pgtable_64.h) and one for
the swap-cache page that holds its data in memory (``SWAP_HAS_CACHE``).  The
slot is free again when its count reaches zero (``swap_entry_range_free``).
fork copies a swap entry and counts it (``copy_nonpresent_pte`` ->
``swap_duplicate``); unmapping one drops its count (``free_swap_and_cache``).

A fault on a swap entry (``do_swap_page``, mm/memory.c) maps the swap-cache
page if the slot has one (a minor fault), else reads the slot into a new
page (role ``("swapin", slot, 0, 0)``), adds it to the swap cache and the
inactive anonymous LRU (a major fault: ``VM_FAULT_MAJOR``, ``PGMAJFAULT``).
The entry's count is dropped.  The page is mapped writable (if the VMA is)
only when it is exclusive: no other swap entry, mapping or pin refers to it,
as ``do_swap_page`` maps writable only an exclusive folio (the
``exclusive || folio_ref_count(folio) == 1`` test); otherwise read-only, and
a later write is copy-on-write.  A write fault on an exclusive page also
frees its swap slot (``should_try_to_free_swap`` -> ``folio_free_swap``); so
does a write to a read-only swap-cache page whose slot only the cache holds
(``wp_can_reuse_anon_folio``), before the reuse test.

``swapoff`` (``try_to_unuse``) reads every slot still on disk into the swap
cache, replaces every swap entry by the page (``unuse_pte``: the VMA's page
protection, read-only for a private writable mapping, and old), drops the
pages from the swap cache and turns swap off; ENOMEM (nothing changed) when
there are not frames enough.
"""

from __future__ import annotations

from lang.records import replace
from spec.mm.kernel import (
    NO_WORDS,
    Choices,
    Kernel,
    Page,
    count_fault,
    drop_reference,
    free_frames,
    get_page,
    space,
    take,
    updated,
    with_page,
    with_space,
    without,
)
from spec.mm.pagetable import leaf_for, set_leaf
from spec.mm.vma import Vma, find
from spec.outcome import ENOMEM, Errno, Ok, Outcome


def free_slots(k: Kernel) -> list[int]:
    """The slots not in use, least first."""
    return [slot for slot in range(1, k.swap_slots + 1) if slot not in k.swap_map]


def swap_free(k: Kernel, slot: int, n: int = 1) -> Kernel:
    """``n`` references to ``slot`` fewer; the slot and its data are free at zero."""
    count = k.swap_map[slot] - n
    if count:
        return replace(k, swap_map=updated(k.swap_map, slot, count))
    return replace(k, swap_map=without(k.swap_map, [slot]), swap_data=without(k.swap_data, [slot]))


def swap_dup(k: Kernel, slot: int) -> Kernel:
    """One more swap entry for ``slot`` (``swap_duplicate``)."""
    return replace(k, swap_map=updated(k.swap_map, slot, k.swap_map[slot] + 1))


def drop_swap_cache(k: Kernel, pfn: int) -> Kernel:
    """Page ``pfn`` leaves the swap cache with the reference and the slot count it held (``folio_free_swap``)."""
    slot = k.pages[pfn].slot
    k = swap_free(replace(with_page(k, pfn, slot=0), swap_cache=without(k.swap_cache, [slot])), slot)
    return drop_reference(k, pfn)


def exclusive(k: Kernel, pfn: int) -> bool:
    """Nothing but one mapping and the swap cache refers to the swap-cache page ``pfn`` or its slot."""
    page = k.pages[pfn]
    return k.swap_map.get(page.slot) == 1 and page.mapcount == 1 and page.refcount == 2


def read_slot(k: Kernel, slot: int, choices: Choices) -> tuple[Kernel, int]:
    """The swap-cache page of ``slot``, read into a new frame if it has none (the caller checked one is free)."""
    cached = k.swap_cache.get(slot)
    if cached is not None:
        return k, cached
    k, pfn = take(k, ("swapin", slot, 0, 0), choices)
    page = Page(1, 0, True, False, k.swap_data.get(slot, NO_WORDS), lru="inactive", slot=slot)
    k = replace(k, pages=updated(k.pages, pfn, page), swap_cache=updated(k.swap_cache, slot, pfn))
    return swap_dup(k, slot), pfn


def swap_fault(k: Kernel, pid: int, vma: Vma, vpn: int, write: bool, choices: Choices) -> tuple[Kernel, Outcome | None]:
    """``do_swap_page`` for the swap entry of page ``vpn``; see the module docstring."""
    slot = space(k, pid).swapped[vpn]
    major = slot not in k.swap_cache
    if major and free_frames(k) < 1:
        return k, ENOMEM
    k, pfn = read_slot(k, slot, choices)
    sp = space(k, pid)
    k = swap_free(get_page(with_space(k, pid, replace(sp, swapped=without(sp.swapped, [vpn]))), pfn), slot)
    writable = False
    if exclusive(k, pfn):
        k = with_page(k, pfn, exclusive=True)
        writable = vma.prot.write
        if write:
            k = drop_swap_cache(k, pfn)
    leaf = leaf_for(vma, pfn, writable, dirty=write and writable)
    return count_fault(set_leaf(k, pid, vpn, leaf), pid, major), None


def free_if_only_cache(k: Kernel, pfn: int) -> Kernel:
    """Before do_wp_page's reuse test: a swap-cache page mapped once whose slot only the cache holds leaves the swap
    cache (``wp_can_reuse_anon_folio`` -> ``folio_free_swap``)."""
    page = k.pages.get(pfn)
    if page is None or not page.slot or not exclusive(k, pfn):
        return k
    return drop_swap_cache(k, pfn)


def swapoff(k: Kernel, choices: Choices) -> tuple[Kernel, Outcome]:
    """``swapoff``: every swapped page back in memory and mapped, the swap cache emptied, swap turned off."""
    if not k.swap_slots:
        return k, Errno("EINVAL")
    missing = [slot for slot in sorted(k.swap_map) if slot not in k.swap_cache]
    if free_frames(k) < len(missing):
        return k, ENOMEM
    for slot in missing:
        k, _ = read_slot(k, slot, choices)
    for pid, sp in sorted(k.procs.items()):
        for vpn, slot in sorted(sp.swapped.items()):
            vma = find(sp.vmas, vpn)
            assert vma is not None
            pfn = k.swap_cache[slot]
            k = swap_free(get_page(k, pfn), slot)
            k = set_leaf(k, pid, vpn, replace(leaf_for(vma, pfn, writable=False), young=False))
        k = with_space(k, pid, replace(space(k, pid), swapped=without(sp.swapped, list(sp.swapped))))
    for pfn in [p for _, p in sorted(k.swap_cache.items())]:
        k = drop_swap_cache(k, pfn)
        page = k.pages.get(pfn)
        if page is not None and page.mapcount == 1 and page.refcount == 1:
            k = with_page(k, pfn, exclusive=True)
    return replace(k, swap_slots=0), Ok()
