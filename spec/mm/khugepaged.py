"""Collapsing 4 KiB pages into a THP: khugepaged's scan and ``madvise(MADV_COLLAPSE)`` (mm/khugepaged.c, 6.12).

The 512 PTEs of one 2 MiB-aligned range of a private anonymous VMA become one PMD leaf: a new order-9 folio is
allocated, the old pages are copied into it (a none or zero-page entry reads as zeroes,
``__collapse_huge_page_copy``), the PMD is swapped from the PT to the THP, the old translations are flushed and
only then are the old pages freed.  The PT that held the 512 entries is kept under the new PMD as its deposit
(``pgtable_trans_huge_deposit`` in ``collapse_huge_page``), so a later split reuses it.

Which ranges collapse is ``hpage_collapse_scan_pmd``'s decision, re-checked by ``__collapse_huge_page_isolate``
(:func:`scan_pmd`).  khugepaged (``cc->is_khugepaged``) holds to three sysfs limits under
``/sys/kernel/mm/transparent_hugepage/khugepaged/`` (:data:`KHUGEPAGED_LIMITS`): at most ``max_ptes_none``
empty or zero-page entries (default 511), ``max_ptes_swap`` swap entries (64) and ``max_ptes_shared`` pages
mapped by another process too (256), and wants young entries; ``MADV_COLLAPSE`` ignores all of that
(``madvise_collapse`` sets ``is_khugepaged = false``).  Both need a writable entry (``SCAN_PAGE_RO``), pages that
are anonymous, on an LRU and referenced only by their mappings (``is_refcount_suitable``: a pin stops it).

The results are the kernel's ``enum scan_result`` under its tracepoint names (include/trace/events/huge_memory.h
``SCAN_STATUS``: ``"succeeded"``, ``"exceed_none_pte"``, ...).  Not modelled: swapping entries in
(``__collapse_huge_page_swapin``) and file or shmem collapse (``hpage_collapse_scan_file``), refused with
:class:`~lang.errors.NotModelled` before anything changes.

Concurrency.  ``collapse_huge_page`` takes ``mmap_write_lock`` and clears the PMD with ``pmdp_collapse_flush``
(a flush of the range on every CPU of the mm) *before* it copies, so no CPU can write an old page after its copy.
The model runs a collapse as one whole shootdown (:func:`spec.smp.shootdown.run`, never in the background):
the edit, the IPIs to every CPU of ``mm_cpumask``, each CPU's flush, then the old pages' references dropped from
the gather.  A collapse of several ranges in one op is flushed once for all of them (Linux flushes per range; a
later flush only keeps the old frames allocated longer).
"""

from __future__ import annotations

from dataclasses import replace

from lang.errors import InvalidArgument, NotModelled
from spec.mm.kernel import Choices, Kernel, Page, can_take_huge, frozen, put_page, space, take, updated, with_space
from spec.mm.pagetable import deposit_key, leaf_for
from spec.mm.vma import HUGE_ORDER, HUGE_PAGES, Vma, range_error
from spec.outcome import ENOMEM, Collapsed, Errno, Ok, Outcome
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE

KHUGEPAGED_LIMITS = ("max_ptes_none", "max_ptes_swap", "max_ptes_shared")
"""The khugepaged sysfs files modelled; each takes 0 .. 511 (``max_ptes_none_store`` and its siblings: ``kstrtoul``,
then EINVAL above ``HPAGE_PMD_NR - 1``)."""

SUCCEEDED = "succeeded"
# madvise_collapse: results after which the walk goes on to the next range (the rest end it).
GO_ON = frozenset(
    {"pmd_null", "no_writable_page", "lack_referenced_page", "not_suitable_page_count", "page_not_in_lru"}
)
# madvise_collapse_errno
ERRNO = {
    "alloc_huge_page_failed": "ENOMEM",
    "exceed_none_pte": "EBUSY",
    "not_suitable_page_count": "EAGAIN",
    "page_not_in_lru": "EAGAIN",
}


def set_limit(k: Kernel, name: str, value: int) -> Kernel:
    """Write ``value`` to ``khugepaged/<name>``: 0 .. 511, anything else a typed error (EINVAL in Linux)."""
    if name not in KHUGEPAGED_LIMITS:
        raise InvalidArgument(f"khugepaged setting {name!r} does not exist: allowed {', '.join(KHUGEPAGED_LIMITS)}")
    if not 0 <= value <= HUGE_PAGES - 1:
        raise InvalidArgument(f"khugepaged/{name} cannot be {value}: allowed 0 .. {HUGE_PAGES - 1}")
    t = k.thp
    if name == "max_ptes_none":
        return replace(k, thp=replace(t, max_ptes_none=value))
    if name == "max_ptes_swap":
        return replace(k, thp=replace(t, max_ptes_swap=value))
    return replace(k, thp=replace(t, max_ptes_shared=value))


def collapsible_vma(vma: Vma) -> bool:
    """``thp_vma_allowable_order`` without ``TVA_ENFORCE_SYSFS`` (``__thp_vma_allowable_orders``): a private
    anonymous VMA with an anon_vma, not ``VM_NOHUGEPAGE``, with an aligned 2 MiB inside it."""
    if vma.shared or vma.huge or vma.obj or vma.thp == "nohugepage" or not vma.anon:
        return False
    return bool(aligned_heads(vma, vma.start, vma.end))


def khugepaged_vma(k: Kernel, vma: Vma) -> bool:
    """The VMAs khugepaged scans: :func:`collapsible_vma`, and ``enabled`` allows it (``TVA_ENFORCE_SYSFS``:
    ``always``, or ``madvise`` with ``VM_HUGEPAGE``)."""
    enabled = k.thp.enabled
    on = enabled == "always" or (enabled == "madvise" and vma.thp == "hugepage")
    return on and collapsible_vma(vma)


def aligned_heads(vma: Vma, lo: int, hi: int) -> range:
    """The first pages of the aligned 2 MiB ranges inside both ``lo .. hi`` and the VMA (``hstart``, ``hend``)."""
    start, end = max(lo, vma.start), min(hi, vma.end)
    first = -(-start // HUGE_PAGES) * HUGE_PAGES
    return range(first, end - HUGE_PAGES + 1, HUGE_PAGES)


def scan_pmd(k: Kernel, pid: int, head: int, khugepaged: bool) -> str:
    """``find_pmd_or_thp_or_none`` and ``hpage_collapse_scan_pmd`` for the 2 MiB at page ``head``: the result.

    No PD: ``pmd_null``; no PT: ``pmd_none``; a THP's PMD already: ``page_pmd_mapped``.  Then entry by entry: a
    swap entry counts against ``max_ptes_swap``, a none or zero-page entry against ``max_ptes_none``, a page mapped
    more than once (``folio_likely_mapped_shared``) against ``max_ptes_shared``, each limit for khugepaged only; a
    page that is not anonymous (``page_not_anon``), not on an LRU (``page_not_in_lru``) or holds more references
    than its mappings and the swap cache's (``not_suitable_page_count``) stops it.  Without a writable entry it
    is ``no_writable_page``; khugepaged also wants a young entry (and half of them young when it would swap in).
    """
    sp, t = space(k, pid), k.thp
    if (2, head >> 18) not in sp.tables:
        return "pmd_null"
    if deposit_key(head) not in sp.tables:
        return "pmd_none"
    top = sp.leaves.get(head)
    if top is not None and top.huge:
        return "page_pmd_mapped"
    none = swap = shared = referenced = 0
    writable = False
    for vpn in range(head, head + HUGE_PAGES):
        if vpn in sp.swapped:
            swap += 1
            if khugepaged and swap > t.max_ptes_swap:
                return "exceed_swap_pte"
            continue
        leaf = sp.leaves.get(vpn)
        if leaf is None or leaf.pfn == k.zero_pfn:
            none += 1
            if khugepaged and none > t.max_ptes_none:
                return "exceed_none_pte"
            continue
        writable = writable or leaf.writable
        page = k.pages[leaf.pfn]
        if not page.anon:
            return "page_not_anon"
        if page.mapcount > 1:
            shared += 1
            if khugepaged and shared > t.max_ptes_shared:
                return "exceed_shared_pte"
        if not page.lru:
            return "page_not_in_lru"
        if page.refcount != page.mapcount + (1 if page.slot else 0):
            return "not_suitable_page_count"
        referenced += leaf.young or page.referenced
    if not writable:
        return "no_writable_page"
    if khugepaged and (not referenced or (swap and referenced < HUGE_PAGES // 2)):
        return "lack_referenced_page"
    return SUCCEEDED


def refuse_unmodelled(k: Kernel, pid: int, head: int) -> None:
    """:class:`NotModelled` for a range that would collapse with swap entries or swap-cache pages in it."""
    sp = space(k, pid)
    vpns = range(head, head + HUGE_PAGES)
    if any(v in sp.swapped for v in vpns) or any(
        (leaf := sp.leaves.get(v)) is not None and leaf.pfn in k.pages and k.pages[leaf.pfn].slot for v in vpns
    ):
        raise NotModelled(
            f"collapsing the 2 MiB at {head << PAGE_SHIFT:#x} of pid {pid} would swap pages in "
            "(__collapse_huge_page_swapin), which is not modelled: swapoff first, or collapse a range without swap"
        )


def collapse(k: Kernel, pid: int, vma: Vma, head: int, choices: Choices) -> tuple[Kernel, str]:
    """``collapse_huge_page`` of the range at ``head`` that :func:`scan_pmd` passed: the state and the result.

    The order-9 folio (role ``("thp", pid, head, 0)``; ``alloc_huge_page_failed`` when no order-9 block is free)
    gets the words of the 512 pages, and one PMD maps it, dirty and writable if the VMA is
    (``maybe_pmd_mkwrite(pmd_mkdirty(mk_huge_pmd(...)))``), exclusive (``folio_add_new_anon_rmap``), off the LRU as
    a faulted THP is (:func:`spec.mm.thp.thp_fault`).  The old entries go and their pages' references are handed
    to the gather (:func:`~spec.mm.kernel.put_page`), dropped after the flush; a page another process maps too
    keeps its frame for it.  The PT stays at its key as the deposit.
    """
    if not can_take_huge(k):
        return k, "alloc_huge_page_failed"
    refuse_unmodelled(k, pid, head)
    sp = space(k, pid)
    old = [(v - head, sp.leaves[v]) for v in range(head, head + HUGE_PAGES) if v in sp.leaves]
    words = {
        i * PAGE_SIZE + offset: value
        for i, leaf in old
        if leaf.pfn != k.zero_pfn
        for offset, value in k.pages[leaf.pfn].words.items()
    }
    k, pfn = take(k, ("thp", pid, head, 0), choices, HUGE_ORDER)
    k = replace(k, pages=updated(k.pages, pfn, Page(1, 1, True, True, frozen(words), huge=True, thp=True)))
    leaves = {v: leaf for v, leaf in sp.leaves.items() if not head <= v < head + HUGE_PAGES}
    leaves[head] = leaf_for(vma, pfn, writable=vma.prot.write, dirty=True, huge=True)
    k = with_space(k, pid, replace(space(k, pid), leaves=frozen(leaves)))
    for _, leaf in old:
        k = put_page(k, leaf.pfn)
    return k, SUCCEEDED


def scan_and_collapse(
    k: Kernel, pid: int, vma: Vma, head: int, khugepaged: bool, choices: Choices
) -> tuple[Kernel, str]:
    """:func:`scan_pmd`, then :func:`collapse` when it passed."""
    result = scan_pmd(k, pid, head, khugepaged)
    return collapse(k, pid, vma, head, choices) if result == SUCCEEDED else (k, result)


def khugepaged_scan(k: Kernel, pid: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """One full scan of ``pid``'s mm by khugepaged (``khugepaged_scan_mm_slot``, as many passes of
    ``khugepaged_do_scan`` as ``pages_to_scan`` needs): every aligned 2 MiB of every VMA :func:`khugepaged_vma`
    allows, in address order, scanned and collapsed with the limits."""
    sp = space(k, pid)
    for vma in sp.vmas:
        if khugepaged_vma(k, vma):
            for head in aligned_heads(vma, vma.start, vma.end):
                if scan_pmd(k, pid, head, True) == SUCCEEDED:
                    refuse_unmodelled(k, pid, head)
    results: dict[int, str] = {}
    for vma in sp.vmas:
        if khugepaged_vma(k, vma):
            for head in aligned_heads(vma, vma.start, vma.end):
                k, results[head] = scan_and_collapse(k, pid, vma, head, True, choices)
    return k, Collapsed(sum(r == SUCCEEDED for r in results.values()), frozen(results))


def madvise_collapse(k: Kernel, pid: int, va: int, pages: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """``madvise(MADV_COLLAPSE)`` (``madvise_walk_vmas`` → ``madvise_collapse``): VMA by VMA over the range.

    A VMA :func:`collapsible_vma` refuses is EINVAL at once (``thp_vma_allowable_order``); in each VMA every
    aligned 2 MiB of the range is scanned without the limits and collapsed (already a THP: counted as done).  The
    walk goes on past the results of :data:`GO_ON` and stops at any other; a VMA where not every range is a THP
    fails with ``madvise_collapse_errno`` of its last failure (ENOMEM for an allocation, EBUSY, EAGAIN, else
    EINVAL) and ends the walk.  A hole in the range is ENOMEM at the end (``unmapped_error``).
    """
    sp = space(k, pid)
    error = range_error(va)
    if error:
        return k, Errno(error)
    if pages == 0:
        return k, Ok()
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    vmas = [v for v in sp.vmas if v.start < hi and v.end > lo]
    if any(v.shared or v.obj for v in vmas if not v.huge):
        raise NotModelled("MADV_COLLAPSE of a shared or file mapping (hpage_collapse_scan_file) is not modelled")
    for vma in vmas:
        if collapsible_vma(vma):
            for head in aligned_heads(vma, lo, hi):
                if scan_pmd(k, pid, head, False) == SUCCEEDED:
                    refuse_unmodelled(k, pid, head)
    for vma in vmas:
        if not collapsible_vma(vma):
            return k, Errno("EINVAL")
        heads = aligned_heads(vma, lo, hi)
        done, last = 0, "failed"
        for head in heads:
            k, result = scan_and_collapse(k, pid, vma, head, False, choices)
            if result in (SUCCEEDED, "page_pmd_mapped"):
                done += 1
                continue
            last = result
            if result not in GO_ON:
                break
        if done != len(heads):
            return k, Errno(ERRNO.get(last, "EINVAL"))
    mapped = sum(min(v.end, hi) - max(v.start, lo) for v in vmas)
    return k, Ok() if mapped == hi - lo else ENOMEM

