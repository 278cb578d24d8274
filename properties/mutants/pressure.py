"""Memory-pressure mutants (``impl.pressure.pressure.Pressure``, ``impl.mm.kernel.Kernel``): real reclaim, swap and
writeback bugs.

Each is the shipped method's source with one small edit, swapped in for the
run only; the ``ci`` pressure machine (:mod:`properties.pressure.pressure_machine`)
must catch each with a short counterexample.
"""

from __future__ import annotations

from impl.pressure.pressure import Pressure
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "pressure: impl state, abstracted, equals L1; reclaim's choices are allowed; L1 outcomes are ones L0 allows"


def patch(method: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.pressure.pressure.Pressure`."""
    return SourcePatch(Pressure, method, edits)


PRESSURE_MUTANTS = (
    Mutant(
        "dirty-shared-dropped",
        "data loss: a dirty MAP_SHARED page dropped without writeback (shrink_folio_list freeing a dirty file "
        "folio without pageout(), the lost-dirty-bit class of bugs)",
        f"{REFINES}; L0: a MAP_SHARED store is in the file after the page is reclaimed",
        "pressure",
        patch("evict", ("if k.flags[pfn] & PG_DIRTY:\n            self.writeback(obj, index)", "pass")),
    ),
    Mutant(
        "unmap-first-mapper-only",
        "missing rmap walk: reclaim unmaps the page from one process only and frees it while a second still maps "
        "it (try_to_unmap stopping after the first mapping, the use-after-free class of rmap-walk bugs)",
        f"{REFINES}; no frame freed while mapped",
        "pressure",
        patch(
            "evict",
            (
                "for proc, vpn, pa, _ in list(self.mappers(pfn)):\n            k.set_pte(pa, 0, proc.pid, vpn)",
                "for proc, vpn, pa, _ in list(self.mappers(pfn))[:1]:\n            k.set_pte(pa, 0, proc.pid, vpn)",
            ),
        ),
    ),
    Mutant(
        "swap-count-leak",
        "swap count leak: dropping a swap entry does not drop its slot's count (mm/swapfile.c's free_swap_and_cache "
        "and swap_entry_free not reached; both were renamed when swap freeing was batched, the first to "
        "free_swap_and_cache_nr), so slots are never freed and SwapFree shrinks",
        f"{REFINES}; every swap slot's count equals its swap entries and swap-cache page",
        "pressure",
        patch("swap_free", ("self.swap_map[slot] -= 1", "self.swap_map[slot] -= 0")),
    ),
    Mutant(
        "swapout-no-tlb-flush",
        "stale TLB entry after swap-out: a swapped-out page's TLB entry not flushed before its frame is reused "
        "(shrink_folio_list freeing the folio before try_to_unmap_flush() sends the shootdown try_to_unmap deferred; "
        "the deferred-flush class whose race 3ea277194daa 'mm, mprotect: flush TLB if potentially racing with a "
        "parallel reclaim leaving stale TLB entries' closed with flush_tlb_batched_pending)",
        f"{REFINES}; no TLB entry points at a reclaimed page's frame",
        "pressure",
        patch("evict", ("flush()\n    assert k.refcount[pfn] == 0", "assert k.refcount[pfn] == 0")),
    ),
    Mutant(
        "swapin-writable-shared",
        "do_swap_page mapping a COW-shared page writable: the exclusive test skipped (the reuse logic of "
        "c145e0b47c77 'mm: streamline COW logic in do_swap_page()'), so one process writes the other's page",
        f"{REFINES}; cow: a frame mapped more than once privately is read-only; L0: processes stay isolated",
        "pressure",
        patch("swap_fault", ("if self.exclusive(pfn):", "if True:")),
    ),
    Mutant(
        "swapin-counted-minor",
        "a fault that read the page from swap counted as minor (VM_FAULT_MAJOR not set in do_swap_page, so "
        "majflt and pgmajfault stay flat)",
        f"{REFINES}; a fault that reads from swap is major (/proc/PID/stat majflt, /proc/vmstat pgmajfault)",
        "pressure",
        patch("swap_fault", ("self.count_fault(proc, major)", "self.count_fault(proc, False)")),
    ),
    Mutant(
        "memavailable-no-pagecache",
        "MemAvailable without the reclaimable half of the page cache: free memory only, leaving out the page-cache "
        "term 34e431b0ae39 '/proc/meminfo: provide estimated available memory' introduced (the file LRU less "
        "min(pagecache / 2, wmark_low), computed today by si_mem_available)",
        f"{REFINES}; MemAvailable is si_mem_available()",
        "pressure",
        patch("meminfo", ("si_mem_available(free, 0, lru_file, 0, WMARK_LOW)", "max(free, 0)")),
    ),
    Mutant(
        "promote-unreferenced",
        "an inactive page promoted without its referenced bit: folio_check_references activating every mapped "
        "page whatever folio_referenced found (the second chance given without a reference)",
        f"{REFINES}; reclaim activates only referenced inactive pages",
        "pressure",
        patch("shrink", ("if self.referenced(pfn):", "if self.referenced(pfn) or self.k.mapcount[pfn] > 0:")),
    ),
    Mutant(
        "fault-around-past-vma-end",
        "fault-around's window not clipped to the VMA's end (do_fault_around's min3 without vma_pages): "
        "filemap_map_pages maps cached pages of the file past the mapping, into a hole or a neighbouring VMA; the "
        "class of 74207de2ba10 'mm/memory: do not populate page table entries beyond i_size' (2025), where "
        "filemap_map_pages and finish_fault populated entries past what may be mapped",
        f"{REFINES}; every entry lies in a VMA and maps the page its offset names",
        "pressure",
        patch(
            "fault_around",
            (
                "min(from_pte + nr_pages, PTRS_PER_PTE, pte_off + (vma.end - vma.start) - vma_off)",
                "min(from_pte + nr_pages, PTRS_PER_PTE)",
            ),
        ),
    ),
)
