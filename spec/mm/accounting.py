"""What ``/proc/PID/smaps_rollup`` and ``/proc/PID/pagemap`` report.

smaps_rollup's fields (:func:`smaps`; ``stat`` gives four of them): ``smaps_pte_entry`` walks every entry;
a present one (``pte_present``, ``PROT_NONE`` included) that is not the zero page goes to
``smaps_account``, a swap entry adds a page to Swap and to SwapPss its share, ``PAGE_SIZE / n`` for the
``n = swp_swapcount`` swap entries of its slot (the swap cache's reference is not one: ``swap_count``
masks ``SWAP_HAS_CACHE``), the whole page when fewer than two.  ``smaps_page_accumulate`` puts each
page in Private or Shared as above, and in Dirty when its entry's dirty bit or ``PG_dirty`` is set
(``dirty || folio_test_dirty``), else in Clean; its Pss share goes to Pss_Dirty when dirty, and to
Pss_Anon, Pss_Shmem (swap-backed, not anonymous) or Pss_File by the page's kind.  Each sum is printed
once for the whole process, in kB rounding down, the Pss ones after the ``PSS_SHIFT`` shift.

smaps (fs/proc/task_mmu.c ``smaps_pte_entry``, ``smaps_account``): every
present entry but the zero page's counts in Rss (``vm_normal_page``); a page
referenced once, or mapped fewer than twice, is private and counts whole in
Pss; otherwise it is shared and counts ``PAGE_SIZE / mapcount``.  Pss is
summed in fixed point with ``PSS_SHIFT`` = 12 bits and printed in kB
rounding down.  USS is Private_Clean + Private_Dirty.  Anonymous counts
anonymous pages only (shmem pages are not).

pagemap (Documentation/admin-guide/mm/pagemap.rst, task_mmu.c
``pte_to_pagemap_entry``): present for any present entry (a ``PROT_NONE``
entry is present to ``pte_present``); ``exclusive`` (bit 56,
``PM_MMAP_EXCLUSIVE``) when the page is mapped exactly once; never for the zero page.  A swap entry is
``swapped`` (bit 62, ``PM_SWAP``) with its offset where the pfn would be (type 0: bits 5-54 hold the offset).

Hugetlb pages are not in Rss, Pss, USS or Anonymous: ``smaps_hugetlb_range``
counts them as Private_Hugetlb / Shared_Hugetlb only (task_mmu.c; the
page-table walk gives hugetlb VMAs to ``.hugetlb_entry``, never to
``smaps_pte_range``).  Their pagemap entry (``pagemap_hugetlb_range``) is
present with the pfn of the 4 KiB subpage (``pte_pfn + (addr & ~hmask) >>
PAGE_SHIFT``), exclusive when ``folio_likely_mapped_shared`` is false,
which for a hugetlb folio is a map count of at most 1.

A THP's PMD (``smaps_pmd_entry``) counts its 2 MiB in Rss, Anonymous and AnonHugePages (``anonymous_thp``);
``smaps_account`` with ``compound``: the whole 2 MiB private when the folio is referenced once, else each of
its 512 pages by ``folio_precise_page_mapcount`` (here the PMD map count: a THP is split before any PTE maps
it).  The huge zero page counts nowhere (``vm_normal_page_pmd`` is NULL for it).  Its pagemap entry
(``pagemap_pmd_range``) is present with the subpage's pfn, exclusive when the precise map count is 1 (never
for the huge zero page, which has no map count).  AnonHugePages is shown once THP is on.
"""

from __future__ import annotations

from collections import Counter

from spec.memory import check_address
from spec.mm.kernel import Kernel, is_zero_pfn, leaf_of, space
from spec.mm.pagetable import is_thp_leaf
from spec.mm.vma import HUGE_PAGES, TASK_SIZE
from spec.outcome import Pagemap, Smaps, Stat
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE
from spec.pressure.files import file_objects

PSS_SHIFT = 12


def pss_share(refcount: int, mapcount: int) -> int:
    """One page's Pss in bytes << PSS_SHIFT."""
    if refcount == 1 or mapcount < 2:
        return PAGE_SIZE << PSS_SHIFT
    return (PAGE_SIZE << PSS_SHIFT) // mapcount


def smaps(k: Kernel, pid: int) -> Smaps:
    """``/proc/PID/smaps_rollup`` of process ``pid``, in kB."""
    sp = space(k, pid)
    files = file_objects(k)
    in_file = {pfn for obj, cache in k.objects.items() if obj in files for pfn in cache.values()}
    size: Counter[str] = Counter()
    pss: Counter[str] = Counter()
    for vpn, leaf in sp.leaves.items():
        if is_zero_pfn(k, leaf.pfn) or (leaf.huge and not is_thp_leaf(sp, vpn, leaf)):
            continue
        page = k.pages[leaf.pfn]
        pages = HUGE_PAGES if leaf.huge else 1
        share = pss_share(page.refcount, page.mapcount) * pages
        dirty = leaf.dirty or page.dirty
        private = page.refcount == 1 or page.mapcount < 2
        size["rss"] += PAGE_SIZE * pages
        size["anonymous"] += PAGE_SIZE * pages if page.anon else 0
        size["anon_huge_pages"] += PAGE_SIZE * pages if leaf.huge else 0
        size[("private_" if private else "shared_") + ("dirty" if dirty else "clean")] += PAGE_SIZE * pages
        pss["pss"] += share
        pss["pss_dirty"] += share if dirty else 0
        pss["pss_anon" if page.anon else "pss_file" if leaf.pfn in in_file else "pss_shmem"] += share
    for slot in sp.swapped.values():
        count = k.swap_map.get(slot, 0) - int(slot in k.swap_cache)
        size["swap"] += PAGE_SIZE
        pss["swap_pss"] += (PAGE_SIZE << PSS_SHIFT) // count if count >= 2 else PAGE_SIZE << PSS_SHIFT
    kb = {name: value >> 10 for name, value in size.items()}
    kb.update({name: value >> (10 + PSS_SHIFT) for name, value in pss.items()})
    fields = {name: kb.get(name, 0) for name in Smaps.__dataclass_fields__ if name != "anon_huge_pages"}
    return Smaps(**fields, anon_huge_pages=kb.get("anon_huge_pages", 0) if k.thp.shown else None)


def stat(k: Kernel, pid: int) -> Stat:
    """Rss, Pss, USS (Private_Clean + Private_Dirty) and Anonymous of process ``pid``, in kB: smaps_rollup's."""
    s = smaps(k, pid)
    return Stat(s.rss, s.pss, s.private_clean + s.private_dirty, s.anonymous)


def pagemap(k: Kernel, pid: int, va: int) -> Pagemap:
    """The pagemap entry of the page holding ``va``."""
    sp = space(k, pid)
    check_address(va - va % 8)
    vpn = va >> PAGE_SHIFT
    if va < TASK_SIZE and vpn in sp.swapped:
        return Pagemap(False, sp.swapped[vpn], False, swapped=True)
    found = leaf_of(sp.leaves, vpn) if va < TASK_SIZE else None
    if found is None:
        return Pagemap(False, 0, False)
    head, leaf = found
    page = k.pages.get(leaf.pfn)
    if leaf.huge and is_thp_leaf(sp, head, leaf):
        return Pagemap(True, leaf.pfn + vpn - head, page is not None and page.mapcount == 1)
    if leaf.huge:
        return Pagemap(True, leaf.pfn + vpn - head, page is not None and page.mapcount <= 1)
    return Pagemap(True, leaf.pfn, page is not None and page.mapcount == 1)
