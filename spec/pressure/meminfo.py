"""What ``/proc/meminfo``, ``/proc/PID/status`` and ``/proc/vmstat`` report of memory pressure.

meminfo (fs/proc/meminfo.c ``meminfo_proc_show``), in kB:

- MemTotal: every frame (``totalram_pages``; no frame is reserved here);
  MemFree: the buddy allocator's free frames;
- MemAvailable: ``si_mem_available`` (mm/show_mem.c): free frames minus
  ``totalreserve_pages`` (0 here), plus the file LRU pages less
  ``min(pagecache / 2, wmark_low)``, with the low watermark
  :data:`WMARK_LOW` (``min_free_kbytes`` scaled, here fixed), plus the
  reclaimable slab less ``min(half, wmark_low)``: none here (see SReclaimable);
- Cached: ``NR_FILE_PAGES`` less the swap cache: file and shmem page-cache
  pages; SwapCached: swap-cache pages; Dirty: dirty file pages;
- AnonPages: ``NR_ANON_MAPPED``, anonymous pages mapped at least once
  (hugetlb pages are not; a mapped THP counts its 512, ``__folio_add_anon_rmap``); Mapped: ``NR_FILE_MAPPED``,
  file and shmem pages mapped at least once;
- SwapTotal, SwapFree: slots, and slots not in use;
- PageTables: ``NR_PAGETABLE``, the lower tables of every process (PDPT, PD,
  PT: ``pagetable_alloc`` accounts them; the PGD, from ``__get_free_pages``, is not), a THP's deposited PT
  among them (``pte_alloc_one``);
- AnonHugePages: ``NR_ANON_THPS``, the THPs a PMD maps, shown once transparent huge pages are on;
- Slab: SReclaimable plus SUnreclaim, the pages of the slab allocator's slabs
  (``NR_SLAB_RECLAIMABLE_B`` and ``NR_SLAB_UNRECLAIMABLE_B``, which
  ``account_slab`` in mm/slab.h keeps): a cache's pages are reclaimable only
  when it was made with ``SLAB_RECLAIM_ACCOUNT`` (the dentry and inode caches),
  which no cache here is, so SReclaimable is 0 and every slab page is in
  SUnreclaim; the slab allocator's own objects (VMAs, ``mm_struct``) are not
  slab-allocated in this model, so Slab counts only the scenario's caches.

status (fs/proc/task_mmu.c ``task_mem``): RssAnon, RssFile, RssShmem are
the ``MM_ANONPAGES``, ``MM_FILEPAGES``, ``MM_SHMEMPAGES`` counters of the
pages the process maps (the zero page and hugetlb pages are not counted, a THP's PMD counts 512),
VmRSS their sum, VmSwap ``MM_SWAPENTS``, its swap entries; with
``/proc/PID/stat``'s minflt and majflt.  vmstat: ``pgfault``, ``pgmajfault``, and with the config's
``workingset`` ``workingset_refault_file`` and ``workingset_activate_file`` (:mod:`spec.pressure.workingset`).
"""

from __future__ import annotations

from spec.mm.kernel import Kernel, free_frames, space
from spec.mm.vma import HUGE_PAGES
from spec.outcome import Meminfo, Status, Vmstat
from spec.pressure.files import file_objects

WMARK_LOW = 5
KB = 4


def file_pages(k: Kernel) -> list[int]:
    """The frames of files' page caches."""
    files = file_objects(k)
    return [pfn for obj, cache in k.objects.items() if obj in files for pfn in cache.values()]


def shmem_pages(k: Kernel) -> list[int]:
    """The frames of shmem objects (not hugetlb)."""
    files = file_objects(k)
    return [
        pfn for obj, cache in k.objects.items() if obj not in files for pfn in cache.values() if not k.pages[pfn].huge
    ]


def si_mem_available(free: int, reserve: int, file_lru: int, reclaimable: int, wmark_low: int) -> int:
    """``si_mem_available`` (mm/show_mem.c) in pages, from the counters it reads.

    ``free`` is ``NR_FREE_PAGES``; ``reserve`` ``totalreserve_pages``; ``file_lru``
    ``NR_ACTIVE_FILE + NR_INACTIVE_FILE``; ``reclaimable`` ``NR_SLAB_RECLAIMABLE_B``
    (in pages) plus ``NR_KERNEL_MISC_RECLAIMABLE``; ``wmark_low`` the sum of every
    zone's ``low_wmark_pages``.  Half the page cache and half the reclaimable
    kernel memory, or the low watermark's worth of each if less, is taken to
    stay; the estimate is never negative.
    """
    available = free - reserve
    available += file_lru - min(file_lru // 2, wmark_low)
    available += reclaimable - min(reclaimable // 2, wmark_low)
    return max(available, 0)


# ``NR_SLAB_RECLAIMABLE_B`` in pages: no cache here is made with ``SLAB_RECLAIM_ACCOUNT``.
SLAB_RECLAIMABLE = 0


def mem_available(k: Kernel) -> int:
    """``si_mem_available`` in pages: no reserve, the reclaimable slab, the low watermark :data:`WMARK_LOW`."""
    pagecache = sum(1 for page in k.pages.values() if page.lru and not page.anon)
    return si_mem_available(free_frames(k), 0, pagecache, SLAB_RECLAIMABLE, WMARK_LOW)


def meminfo(k: Kernel) -> Meminfo:
    """``/proc/meminfo``."""
    files, shmem = file_pages(k), shmem_pages(k)
    anon = sum(1 for page in k.pages.values() if page.anon and not page.huge and page.mapcount > 0)
    thps = sum(1 for page in k.pages.values() if page.thp and page.mapcount > 0)
    anon += thps * HUGE_PAGES
    mapped = sum(1 for pfn in files + shmem if k.pages[pfn].mapcount > 0)
    tables = sum(len(sp.tables) for sp in k.procs.values())
    return Meminfo(
        mem_total=k.buddy.frames * KB,
        mem_free=free_frames(k) * KB,
        mem_available=mem_available(k) * KB,
        cached=(len(files) + len(shmem)) * KB,
        swap_cached=len(k.swap_cache) * KB,
        dirty=sum(1 for pfn in files if k.pages[pfn].dirty) * KB,
        anon_pages=anon * KB,
        mapped=mapped * KB,
        swap_total=k.swap_slots * KB,
        swap_free=(k.swap_slots - len(k.swap_map)) * KB,
        page_tables=tables * KB,
        slab=len(k.slab) * KB,
        s_reclaimable=SLAB_RECLAIMABLE * KB,
        s_unreclaim=(len(k.slab) - SLAB_RECLAIMABLE) * KB,
        anon_huge_pages=thps * HUGE_PAGES * KB if k.thp.shown else None,
    )


def status(k: Kernel, pid: int) -> Status:
    """``/proc/PID/status`` memory fields and ``/proc/PID/stat`` fault counts."""
    sp = space(k, pid)
    files = file_objects(k)
    cached = {pfn: obj for obj, cache in k.objects.items() for pfn in cache.values()}
    anon = file = shmem = 0
    for leaf in sp.leaves.values():
        page = k.pages.get(leaf.pfn)
        if page is None or (leaf.huge and not page.thp):
            continue
        if page.anon:
            anon += HUGE_PAGES if page.thp else 1
        elif cached.get(leaf.pfn) in files:
            file += 1
        else:
            shmem += 1
    return Status(
        (anon + file + shmem) * KB, anon * KB, file * KB, shmem * KB, len(sp.swapped) * KB, sp.minflt, sp.majflt
    )


def vmstat(k: Kernel) -> Vmstat:
    """``/proc/vmstat``'s fault counters, and its file refault counters when workingset detection is on
    (mm/vmstat.c ``vmstat_text``: ``workingset_refault_file``, ``workingset_activate_file``), and the THP ones
    once THP is on (``thp_fault_alloc``, ``thp_fault_fallback``, ``thp_split_pmd``)."""
    ws, t = k.workingset, k.thp
    counters = (t.fault_alloc, t.fault_fallback, t.split_pmd) if t.shown else None
    if not ws.enabled:
        return Vmstat(k.pgfault, k.pgmajfault, thp=counters)
    return Vmstat(k.pgfault, k.pgmajfault, ws.refault_file, ws.activate_file, counters)
