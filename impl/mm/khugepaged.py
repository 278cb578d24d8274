"""Collapse in the implementation: khugepaged's scan and ``madvise(MADV_COLLAPSE)`` over real page tables.

mm/khugepaged.c (6.12): ``find_pmd_or_thp_or_none`` and ``hpage_collapse_scan_pmd`` read the PD entry and the
512 PTEs of an aligned 2 MiB; ``collapse_huge_page`` allocates an order-9 block from the buddy allocator, copies
the 512 frames into it (``__collapse_huge_page_copy``; none and zero-page entries stay zero), clears the PTEs
(through :meth:`impl.mm.kernel.Kernel.set_pte`, so the reverse map and the rss counter follow), hands each old
page's reference to the running ``mmu_gather`` (:meth:`impl.mm.kernel.Kernel._put`: dropped after the flight's
flush), points the PD entry at the THP with PS=1 and keeps the emptied PT as the PMD's deposit
(``pgtable_trans_huge_deposit``).  The limits are the THP sysfs settings ``khugepaged/max_ptes_none``,
``khugepaged/max_ptes_swap`` and ``khugepaged/max_ptes_shared`` (:class:`impl.mm.thp.Thp`).  Every collapse runs
inside one whole shootdown (:meth:`impl.smp.shootdown.Smp.syscall`); swap-in and file collapse are refused as
not modelled before anything changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lang.errors import NotModelled

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel, Process
    from impl.mm.vma import Vma

Result = dict[str, Any]
HUGE_PAGES, HUGE_ORDER = 512, 9
_P, _RW, _A, _D, _PS, _PROTNONE = 0x1, 0x2, 0x20, 0x40, 0x80, 0x100
_PFN = ((1 << 52) - 1) & ~0xFFF
PG_ANON, PG_EXCLUSIVE, PG_HUGE, PG_REFERENCED, PG_THP = 1, 2, 4, 16, 32
MM_RSS = 0
SUCCEEDED = "succeeded"
GO_ON = frozenset(
    {"pmd_null", "no_writable_page", "lack_referenced_page", "not_suitable_page_count", "page_not_in_lru"}
)
ERRNO = {
    "alloc_huge_page_failed": "ENOMEM",
    "exceed_none_pte": "EBUSY",
    "not_suitable_page_count": "EAGAIN",
    "page_not_in_lru": "EAGAIN",
}


def limit(k: Kernel, name: str) -> int:
    """The khugepaged limit ``name`` (``max_ptes_none``, ``max_ptes_swap``, ``max_ptes_shared``)."""
    return int(k.thp.settings["khugepaged/" + name])


def collapsible(vma: Vma) -> bool:
    """``thp_vma_allowable_order`` without sysfs: private anonymous with an anon_vma, not ``VM_NOHUGEPAGE``, an
    aligned 2 MiB inside."""
    if vma.shared or vma.huge or vma.obj or vma.thp == "nohugepage" or not vma.anon:
        return False
    return len(heads(vma, vma.start, vma.end)) > 0


def scanned_by_khugepaged(k: Kernel, vma: Vma) -> bool:
    """:func:`collapsible` and the ``enabled`` setting allows it (``TVA_ENFORCE_SYSFS``)."""
    enabled = k.thp.settings["enabled"]
    return (enabled == "always" or (enabled == "madvise" and vma.thp == "hugepage")) and collapsible(vma)


def heads(vma: Vma, lo: int, hi: int) -> range:
    start, end = max(lo, vma.start), min(hi, vma.end)
    return range((start + HUGE_PAGES - 1) // HUGE_PAGES * HUGE_PAGES, end - HUGE_PAGES + 1, HUGE_PAGES)


def pd_entry(k: Kernel, proc: Process, head: int) -> tuple[int, int] | None:
    """(pa, entry) of the PD entry covering ``head``; None when the PDPT or PD is missing (``mm_find_pmd``)."""
    table = proc.root
    for level in (4, 3):
        entry = k.mem.read_unchecked((table << 12) + ((head >> (9 * (level - 1))) & 511) * 8)
        if not entry & _P:
            return None
        table = (entry & _PFN) >> 12
    pa = (table << 12) + ((head >> 9) & 511) * 8
    return pa, k.mem.read_unchecked(pa)


def scan(k: Kernel, proc: Process, head: int, khugepaged: bool) -> str:
    """``hpage_collapse_scan_pmd``: the tracepoint name of its result for the 2 MiB at ``head``."""
    found = pd_entry(k, proc, head)
    if found is None:
        return "pmd_null"
    _, pmd = found
    if not pmd:
        return "pmd_none"
    if pmd & _PS:
        return "page_pmd_mapped"
    table = (pmd & _PFN) >> 12
    max_none, max_swap, max_shared = limit(k, "max_ptes_none"), limit(k, "max_ptes_swap"), limit(k, "max_ptes_shared")
    none = swap = shared = referenced = 0
    writable = False
    p = k.pressure
    for i in range(HUGE_PAGES):
        entry = k.mem.read_unchecked((table << 12) + 8 * i)
        if entry and not entry & (_P | _PROTNONE):
            swap += 1
            if khugepaged and swap > max_swap:
                return "exceed_swap_pte"
            continue
        pfn = (entry & _PFN) >> 12
        if not entry or pfn == k.zero_pfn:
            none += 1
            if khugepaged and none > max_none:
                return "exceed_none_pte"
            continue
        writable = writable or bool(entry & _RW)
        if not k.flags[pfn] & PG_ANON:
            return "page_not_anon"
        if k.mapcount[pfn] > 1:
            shared += 1
            if khugepaged and shared > max_shared:
                return "exceed_shared_pte"
        if not p.lru_of[pfn]:
            return "page_not_in_lru"
        if k.refcount[pfn] != k.mapcount[pfn] + (1 if p.swap_slot[pfn] else 0):
            return "not_suitable_page_count"
        referenced += bool(entry & _A or k.flags[pfn] & PG_REFERENCED)
    if not writable:
        return "no_writable_page"
    if khugepaged and (not referenced or (swap and referenced < HUGE_PAGES // 2)):
        return "lack_referenced_page"
    return SUCCEEDED


def refuse_unmodelled(k: Kernel, proc: Process, head: int) -> None:
    """NotModelled where the collapse would swap pages in: a swap entry, or a page in the swap cache."""
    found = pd_entry(k, proc, head)
    assert found is not None
    table = (found[1] & _PFN) >> 12
    for i in range(HUGE_PAGES):
        entry = k.mem.read_unchecked((table << 12) + 8 * i)
        swapped = entry and not entry & (_P | _PROTNONE)
        if swapped or (entry and k.pressure.swap_slot[(entry & _PFN) >> 12]):
            raise NotModelled(
                f"collapsing the 2 MiB at {head << 12:#x} of pid {proc.pid} would swap pages in "
                "(__collapse_huge_page_swapin), which is not modelled: swapoff first, or collapse a range without swap"
            )


def collapse(k: Kernel, proc: Process, vma: Vma, head: int) -> str:
    """``collapse_huge_page`` of a range :func:`scan` passed."""
    if not k.can_alloc_huge():
        return "alloc_huge_page_failed"
    refuse_unmodelled(k, proc, head)
    pa, pmd = pd_entry(k, proc, head) or (0, 0)
    table = (pmd & _PFN) >> 12
    thp = k._alloc(("thp", proc.pid, head, 0), HUGE_ORDER)
    for i in range(HUGE_PAGES):
        pte_pa = (table << 12) + 8 * i
        entry = k.mem.read_unchecked(pte_pa)
        if not entry:
            continue
        old = (entry & _PFN) >> 12
        if old != k.zero_pfn:
            k.mem.copy_frame(old, thp + i)
        k.set_pte(pte_pa, 0, proc.pid, head + i)
        k._put(old)
    k.refcount[thp], k.mapcount[thp] = 1, 1
    k.flags[thp] = PG_ANON | PG_EXCLUSIVE | PG_HUGE | PG_THP
    k.thp.deposits[(proc.pid, head)] = table
    k.mem.write(pa, k._leaf(vma, thp, vma.write, dirty=True) | _PS)
    k.mm_counters.setdefault(proc.pid, [0, 0, 0])[MM_RSS] += HUGE_PAGES
    return SUCCEEDED


def scan_and_collapse(k: Kernel, proc: Process, vma: Vma, head: int, khugepaged: bool) -> str:
    result = scan(k, proc, head, khugepaged)
    return collapse(k, proc, vma, head) if result == SUCCEEDED else result


def khugepaged_scan(k: Kernel, pid: int) -> Result:
    """One full khugepaged scan of ``pid``'s mm: ``{"collapsed": n, "scan": {va: result}}``."""
    proc = k.proc(pid)
    vmas = [v for v in proc.vmas if scanned_by_khugepaged(k, v)]
    for vma in vmas:
        for head in heads(vma, vma.start, vma.end):
            if scan(k, proc, head, True) == SUCCEEDED:
                refuse_unmodelled(k, proc, head)
    results: dict[str, str] = {}
    for vma in vmas:
        for head in heads(vma, vma.start, vma.end):
            results[hex(head << 12)] = scan_and_collapse(k, proc, vma, head, True)
    return {"collapsed": sum(r == SUCCEEDED for r in results.values()), "scan": results}


def madvise_collapse(k: Kernel, pid: int, va: int, pages: int) -> Result:
    """``madvise(MADV_COLLAPSE)``: VMA by VMA, without the limits; EINVAL, ENOMEM, EBUSY or EAGAIN as
    ``madvise_collapse_errno`` says, ENOMEM for a hole."""
    proc = k.proc(pid)
    if va % 4096:
        return {"error": "EINVAL"}
    if pages == 0:
        return {"ok": True}
    lo, hi = va >> 12, (va >> 12) + pages
    vmas = [v for v in proc.vmas if v.start < hi and v.end > lo]
    if any(v.shared or v.obj for v in vmas if not v.huge):
        raise NotModelled("MADV_COLLAPSE of a shared or file mapping (hpage_collapse_scan_file) is not modelled")
    for vma in vmas:
        if collapsible(vma):
            for head in heads(vma, lo, hi):
                if scan(k, proc, head, False) == SUCCEEDED:
                    refuse_unmodelled(k, proc, head)
    for vma in vmas:
        if not collapsible(vma):
            return {"error": "EINVAL"}
        done, last, ranges = 0, "failed", heads(vma, lo, hi)
        for head in ranges:
            result = scan_and_collapse(k, proc, vma, head, False)
            if result in (SUCCEEDED, "page_pmd_mapped"):
                done += 1
                continue
            last = result
            if result not in GO_ON:
                break
        if done != len(ranges):
            return {"error": ERRNO.get(last, "EINVAL")}
    mapped = sum(min(v.end, hi) - max(v.start, lo) for v in vmas)
    return {"ok": True} if mapped == hi - lo else {"error": "ENOMEM"}
