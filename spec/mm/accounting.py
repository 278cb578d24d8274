"""What ``/proc/PID/smaps_rollup`` and ``/proc/PID/pagemap`` report.

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
"""

from __future__ import annotations

from spec.memory import check_address
from spec.mm.kernel import Kernel, leaf_of, space
from spec.mm.vma import TASK_SIZE
from spec.outcome import Pagemap, Stat
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE

PSS_SHIFT = 12


def pss_share(refcount: int, mapcount: int) -> int:
    """One page's Pss in bytes << PSS_SHIFT."""
    if refcount == 1 or mapcount < 2:
        return PAGE_SIZE << PSS_SHIFT
    return (PAGE_SIZE << PSS_SHIFT) // mapcount


def stat(k: Kernel, pid: int) -> Stat:
    """Rss, Pss, USS and Anonymous of process ``pid``, in kB."""
    rss = pss = uss = anon = 0
    for leaf in space(k, pid).leaves.values():
        if leaf.pfn == k.zero_pfn or leaf.huge:
            continue
        page = k.pages[leaf.pfn]
        rss += PAGE_SIZE
        anon += PAGE_SIZE if page.anon else 0
        pss += pss_share(page.refcount, page.mapcount)
        uss += PAGE_SIZE if page.refcount == 1 or page.mapcount < 2 else 0
    return Stat(rss >> 10, pss >> (10 + PSS_SHIFT), uss >> 10, anon >> 10)


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
    if leaf.huge:
        return Pagemap(True, leaf.pfn + vpn - head, page is not None and page.mapcount <= 1)
    return Pagemap(True, leaf.pfn, page is not None and page.mapcount == 1)
