"""Transparent huge pages: the policy, the per-VMA advice, and which faults may map 2 MiB at once.

The policy is machine-wide, as ``/sys/kernel/mm/transparent_hugepage/`` has it
(Documentation/admin-guide/mm/transhuge.rst, mm/huge_memory.c ``enabled_store``, ``defrag_store``,
``use_zero_page_store``):

- ``enabled``: ``always`` (every eligible anonymous VMA), ``madvise`` (only VMAs with ``VM_HUGEPAGE``) or
  ``never``;
- ``defrag``: how hard a THP allocation tries (``always``, ``defer``, ``defer+madvise``, ``madvise``,
  ``never``: ``vma_thp_gfp_mask``).  The model has no compaction or reclaim inside an allocation yet, so the
  setting is kept and reported but decides nothing: an order-9 block is free or it is not;
- ``use_zero_page``: a read fault maps the huge zero page (default on).

Per VMA, ``madvise(MADV_HUGEPAGE)`` sets ``VM_HUGEPAGE`` and clears ``VM_NOHUGEPAGE``, ``MADV_NOHUGEPAGE`` the
reverse (mm/khugepaged.c ``hugepage_madvise``); ``madvise_update_vma`` splits the VMAs at the range's edges
and merges them with compatible neighbours (``vma_modify_flags_name``, mm/vma.c), as mprotect does
(:func:`spec.mm.aspace.mprotect`); a hole in the range is ENOMEM after the mapped parts changed
(``madvise_walk_vmas``); where a VMA whose flag changes is split inside a THP's PMD, the PMD is split first
(``vma_adjust_trans_huge``).  Hugetlb VMAs in the range are refused as not modelled.
"""

from __future__ import annotations

from lang.errors import InvalidArgument, NotModelled
from lang.records import replace
from spec.alloc import buddy
from spec.mm import cow
from spec.mm.kernel import (
    THP_DEFRAG,
    THP_ENABLED,
    Choices,
    Kernel,
    Leaf,
    Page,
    can_take_huge,
    free_frames,
    frozen,
    space,
    take,
    updated,
    with_page,
    with_space,
)
from spec.mm.pagetable import deposit_key, ensure_tables, is_thp_leaf, leaf_for, missing_tables, set_leaf
from spec.mm.vma import (
    HUGE_ORDER,
    HUGE_PAGES,
    Vma,
    cut,
    find,
    has_hole,
    insert,
    inside,
    intersects,
    merge_at,
    range_error,
)
from spec.outcome import ENOMEM, Errno, Ok, Outcome
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE

THP_SETTINGS = {"enabled": THP_ENABLED, "defrag": THP_DEFRAG, "use_zero_page": ("0", "1")}
THP_ADVICE = {"hugepage": "hugepage", "nohugepage": "nohugepage"}


def set_policy(k: Kernel, name: str, value: str) -> tuple[Kernel, Outcome]:
    """Write ``value`` to ``/sys/kernel/mm/transparent_hugepage/<name>``; any other value is EINVAL in Linux, a
    typed error here."""
    allowed = THP_SETTINGS.get(name)
    if allowed is None:
        raise InvalidArgument(f"THP setting {name!r} does not exist: allowed {', '.join(THP_SETTINGS)}")
    if value not in allowed:
        raise InvalidArgument(f"THP setting {name} cannot be {value!r}: allowed {', '.join(allowed)}")
    if name == "use_zero_page":
        return replace(k, thp=replace(k.thp, use_zero_page=value == "1")), Ok()
    if name == "enabled":
        return replace(k, thp=replace(k.thp, enabled=value)), Ok()
    return replace(k, thp=replace(k.thp, defrag=value)), Ok()


def madvise_thp(k: Kernel, pid: int, va: int, pages: int, advice: str) -> tuple[Kernel, Outcome]:
    """``madvise(MADV_HUGEPAGE or MADV_NOHUGEPAGE)``: the VMAs of the range take the flag, split at its edges and
    merged where compatible; ENOMEM (after the change) if the range has a hole."""
    sp = space(k, pid)
    error = range_error(va)
    if error:
        return k, Errno(error)
    if pages == 0:
        return k, Ok()
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    if any(v.huge for v in inside(sp.vmas, lo, hi)):
        raise NotModelled(f"madvise {advice} over a hugetlb mapping is not modelled: advise normal mappings only")
    if not intersects(sp.vmas, lo, hi):
        return k, ENOMEM
    flag = THP_ADVICE[advice]
    cut_at = [e for e in (lo, hi) if (v := find(sp.vmas, e)) is not None and v.start < e and v.thp != flag]
    k = split_edges(k, pid, *cut_at)
    sp = space(k, pid)
    changed = tuple(replace(v, thp=flag) for v in inside(sp.vmas, lo, hi))
    vmas = merge_at(insert(cut(sp.vmas, lo, hi), changed), lo, hi)
    k = with_space(k, pid, replace(sp, vmas=vmas))
    return k, ENOMEM if has_hole(sp.vmas, lo, hi) else Ok()


def thp_allowed(k: Kernel, vma: Vma, head: int) -> bool:
    """A fault at the 2 MiB range starting at page ``head`` may map a PMD (``thp_vma_allowable_order`` with
    ``TVA_IN_PF | TVA_ENFORCE_SYSFS``, ``__thp_vma_allowable_orders`` and ``thp_vma_suitable_order``,
    mm/huge_memory.c, include/linux/huge_mm.h).

    Only private anonymous memory (``vma_is_anonymous``; shmem THP follows ``shmem_enabled``, not modelled,
    and file THP needs ``CONFIG_READ_ONLY_THP_FOR_FS``); not with ``VM_NOHUGEPAGE``; ``enabled`` is ``always``,
    or ``madvise`` with ``VM_HUGEPAGE``; and the whole aligned 2 MiB inside the VMA.
    """
    if vma.shared or vma.huge or vma.obj or vma.thp == "nohugepage":
        return False
    enabled = k.thp.enabled
    if not (enabled == "always" or (enabled == "madvise" and vma.thp == "hugepage")):
        return False
    return head % HUGE_PAGES == 0 and vma.start <= head and head + HUGE_PAGES <= vma.end


# --- the anonymous THP fault (mm/memory.c ``__handle_mm_fault`` → ``create_huge_pmd``) ---------------------------


def huge_zero_folio(k: Kernel, choices: Choices) -> tuple[Kernel, int] | None:
    """``mm_get_huge_zero_folio``: the huge zero page, an order-9 block allocated zeroed on first use (role
    ``("hugezero", 0, 0, 0)``) and kept (the shrinker that frees it when unused, ``shrink_huge_zero_page_scan``,
    is not modelled); None when no order-9 block is free."""
    if k.thp.zero_pfn is not None:
        return k, k.thp.zero_pfn
    if not can_take_huge(k):
        return None
    k, pfn = take(k, ("hugezero", 0, 0, 0), choices, HUGE_ORDER)
    return replace(k, thp=replace(k.thp, zero_pfn=pfn)), pfn


def counted(k: Kernel, **counters: int) -> Kernel:
    """The THP vmstat counters raised (``count_vm_event``)."""
    t = k.thp
    raised = {name: getattr(t, name) + n for name, n in counters.items()}
    return replace(k, thp=replace(t, **raised))


def deposit(k: Kernel, pid: int, head: int, choices: Choices) -> Kernel:
    """``pte_alloc_one`` + ``pgtable_trans_huge_deposit``: the PT a later split needs, allocated now (role
    ``("table", pid, 1, head >> 9)``) and counted as a page table (``mm_inc_nr_ptes``), kept under the PMD."""
    key = deposit_key(head)
    k, pfn = take(k, ("table", pid, *key), choices)
    sp = space(k, pid)
    return with_space(k, pid, replace(sp, tables=updated(sp.tables, key, pfn)))


def thp_fault(
    k: Kernel, pid: int, vma: Vma, vpn: int, write: bool, choices: Choices
) -> tuple[Kernel, Outcome | None, bool]:
    """``create_huge_pmd`` for a fault with no entry: the state, the failure (None: fixed), and whether it was
    handled here; not handled, the caller goes on to 4 KiB pages (``VM_FAULT_FALLBACK`` → ``handle_pte_fault``).

    Only when the PMD is none (no PT there yet) and :func:`thp_allowed`.  The PDPT and PD come first
    (``pud_alloc``, ``pmd_alloc``: ENOMEM, ``VM_FAULT_OOM``, if they cannot), then ``do_huge_pmd_anonymous_page``:
    the VMA gets an anon_vma (``vmf_anon_prepare``); a read with ``use_zero_page`` maps the huge zero page
    read-only (``set_huge_zero_folio``; ``thp_fault_fallback`` when it cannot be allocated); otherwise an order-9
    folio (role ``("thp", pid, head, 0)``; ``thp_fault_fallback`` and 4 KiB pages when none is free) is zeroed,
    mapped by one PMD, dirty and writable if the VMA is (``maybe_pmd_mkwrite(pmd_mkdirty(entry))``, for a read
    fault too), exclusive (``folio_add_new_anon_rmap``), and ``thp_fault_alloc`` counts it
    (``__do_huge_pmd_anonymous_page``).  Either way the deposited PT is allocated first (``pte_alloc_one``:
    ENOMEM if it cannot; checked before the folio is taken, which Linux would free again).  The THP is kept off
    the LRU here: reclaim of a THP (splitting it, ``deferred_split_folio``) is not modelled.
    """
    head = vpn - vpn % HUGE_PAGES
    sp = space(k, pid)
    if deposit_key(head) in sp.tables or head in sp.leaves or not thp_allowed(k, vma, head):
        return k, None, False
    if free_frames(k) < len(missing_tables(sp, [head], frozenset({head}))):
        return k, ENOMEM, True
    k = cow.mark_anon(ensure_tables(k, pid, head, choices, huge=True), pid, head)
    if not write and k.thp.use_zero_page:
        if free_frames(k) < 1:
            return k, ENOMEM, True
        zero = huge_zero_folio(k, choices)
        if zero is None:
            return counted(k, fault_fallback=1), None, False
        k, pfn = zero
        k = deposit(k, pid, head, choices)
        return set_leaf(k, pid, head, leaf_for(vma, pfn, writable=False, dirty=False, huge=True)), None, True
    if not can_take_huge(k):
        return counted(k, fault_fallback=1), None, False
    if free_frames(k) < HUGE_PAGES + 1:
        return k, ENOMEM, True
    k, pfn = take(k, ("thp", pid, head, 0), choices, HUGE_ORDER)
    page = Page(1, 1, True, True, huge=True, thp=True)
    k = deposit(replace(k, pages=updated(k.pages, pfn, page)), pid, head, choices)
    k = counted(k, fault_alloc=1)
    return set_leaf(k, pid, head, leaf_for(vma, pfn, writable=vma.prot.write, dirty=True, huge=True)), None, True


# --- splitting a PMD (mm/huge_memory.c ``__split_huge_pmd``) ------------------------------------------------------


def split_pmd(k: Kernel, pid: int, head: int) -> Kernel:
    """``__split_huge_pmd`` of the THP PMD at ``head``: the deposited PT becomes the table and maps the same frames.

    ``thp_split_pmd`` counts it.  The huge zero page's PMD becomes 512 read-only entries for the 4 KiB zero page
    (``__split_huge_zero_page_pmd``).  An anonymous THP's PMD becomes 512 entries for its 512 frames with the
    PMD's write, young and dirty bits (``__split_huge_pmd_locked``: ``pmdp_invalidate`` first, which flushes
    the 2 MiB translation; the flight's flush does that here, :func:`spec.smp.shootdown.needs_flush`).  The
    folio is then split at once into 512 order-0 pages (``split_huge_page``; Linux queues a partly mapped THP
    with ``deferred_split_folio`` and splits it under memory pressure, so this is one allowed schedule), each
    with the folio's counts and exclusive flag, on the inactive anonymous LRU (Linux also sets the folio's
    ``PG_dirty`` from a dirty PMD; anonymous pages carry no ``PG_dirty`` in this model, their entries' dirty bits
    say it to smaps).  Only a THP its one
    PMD maps alone is split: a THP shared with a fork's child would stay a large folio mapped by PTEs here
    and by a PMD there, which the model does not hold (:class:`~lang.errors.NotModelled`).
    """
    sp = space(k, pid)
    leaf = sp.leaves[head]
    k = counted(k, split_pmd=1)
    leaves = dict(sp.leaves)
    del leaves[head]
    if leaf.pfn == k.thp.zero_pfn:
        vma = find(sp.vmas, head)
        assert vma is not None
        leaves.update({head + i: leaf_for(vma, k.zero_pfn, writable=False) for i in range(HUGE_PAGES)})
        return with_space(k, pid, replace(sp, leaves=frozen(leaves)))
    page = k.pages[leaf.pfn]
    if page.refcount != 1 or page.mapcount != 1:
        raise NotModelled(
            f"splitting the THP at {head << PAGE_SHIFT:#x} of pid {pid}, shared by {page.mapcount} mappings "
            f"and {page.refcount} references: a large folio mapped by PTEs in one process and a PMD in another "
            "is not modelled; split a THP only while one process maps it"
        )
    leaves.update({head + i: replace(leaf, pfn=leaf.pfn + i, huge=False) for i in range(HUGE_PAGES)})
    k = with_space(k, pid, replace(sp, leaves=frozen(leaves)))
    pages = dict(k.pages)
    del pages[leaf.pfn]
    for i in range(HUGE_PAGES):
        words = {o % PAGE_SIZE: v for o, v in page.words.items() if o // PAGE_SIZE == i}
        pages[leaf.pfn + i] = Page(1, 1, True, page.exclusive, frozen(words), lru="inactive")
    return replace(k, pages=frozen(pages), buddy=buddy.split_allocated(k.buddy, leaf.pfn, HUGE_ORDER))


def thp_at(k: Kernel, pid: int, vpn: int) -> int | None:
    """The first page of the THP PMD covering page ``vpn`` in ``pid``, if one does."""
    sp = space(k, pid)
    head = vpn - vpn % HUGE_PAGES
    leaf = sp.leaves.get(head)
    return head if leaf is not None and is_thp_leaf(sp, head, leaf) else None


def split_edges(k: Kernel, pid: int, *edges: int) -> Kernel:
    """Split the THP PMDs a range edge falls inside (``split_huge_pmd_address`` from ``vma_adjust_trans_huge``
    where a VMA is split, ``__split_huge_pmd`` from ``zap_pmd_range`` and ``change_pmd_range`` where the range
    covers part of a PMD)."""
    for edge in edges:
        head = None if edge % HUGE_PAGES == 0 else thp_at(k, pid, edge)
        if head is not None:
            k = split_pmd(k, pid, head)
    return k


# --- a write fault on a THP PMD (``do_huge_pmd_wp_page``) ----------------------------------------------------------


def thp_wp_fault(
    k: Kernel, pid: int, vma: Vma, vpn: int, head: int, leaf: Leaf, choices: Choices
) -> tuple[Kernel, Outcome | None]:
    """A write to a read-only THP PMD: the huge zero page's is split and the write copies one 4 KiB page
    (``goto fallback``: ``__split_huge_pmd``, then ``do_wp_page`` in the same fault); a THP that is
    ``PageAnonExclusive`` or referenced once is reused, the PMD made writable and dirty; a shared one (after
    fork) would be split and one 4 KiB page copied, which :func:`split_pmd` refuses as not modelled."""
    if leaf.pfn == k.thp.zero_pfn:
        k = split_pmd(k, pid, head)
        return cow.wp_fault(k, pid, vma, vpn, space(k, pid).leaves[vpn], choices)
    page = k.pages[leaf.pfn]
    if page.exclusive or page.refcount == 1:
        k = with_page(k, leaf.pfn, exclusive=True)
        return set_leaf(k, pid, head, replace(leaf, writable=True, dirty=True)), None
    return split_pmd(k, pid, head), None
