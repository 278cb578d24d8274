"""Copy-on-write: fork shares private pages read-only; a write fault copies or reuses.

fork (kernel/fork.c ``dup_mmap``, mm/memory.c ``copy_page_range``): the child
gets the parent's VMAs, each anon_vma holder with a new anon_vma chained to
the parent's (``anon_vma_fork``, :func:`spec.mm.vma.forked_copy`).  Page-table
entries are copied only for private VMAs that hold anonymous memory
(``vma_needs_copy``: an ``anon_vma``); other VMAs, including shared anonymous
ones, are left for the child to fault in.  Each
copied entry (``copy_present_ptes`` / ``__copy_present_ptes``) takes a
reference and a map count, clears ``PageAnonExclusive``, and a writable entry
is write-protected in parent and child alike.  No data is copied.

A write fault on a present read-only private entry (``do_wp_page``):

- the zero page: a fresh zeroed page is allocated (``wp_page_copy`` with
  ``is_zero_pfn``);
- an anonymous page that is ``PageAnonExclusive`` or whose reference count
  is 1 is *reused*: the entry just becomes writable
  (``wp_can_reuse_anon_folio``: the test is on the reference count, not the
  map count, since 09854ba94c6a "mm: do_wp_page() simplification", which
  closed CVE-2020-29374);
- otherwise the page is copied into a new exclusive page, the entry points at
  the copy, and the old page loses one reference and one map count
  (``wp_page_copy``).

Hugetlb pages follow mm/hugetlb.c.  Fork (``copy_hugetlb_page_range``, reached
through the same ``vma_needs_copy`` test) takes a reference and a map count
on each private page (``hugetlb_try_dup_anon_rmap`` clears
``PageAnonExclusive``) and, the mapping being a COW mapping
(``is_cow_mapping``), write-protects the entry in parent and child
(``huge_ptep_set_wrprotect``).  A write fault on a read-only private entry
(``hugetlb_wp``) reuses the page when ``folio_mapcount == 1`` and it is
anonymous, *not* on the reference count: the comment there says so
deliberately, so that fork+exit keeps working when the pool is empty, and
accepts that ``FOLL_GET`` users may see leaks between processes.  Otherwise
it copies the 2 MiB into a new page (``copy_user_large_folio``).  The
fork-time copy of a possibly DMA-pinned page (``folio_needs_cow_for_dma``)
is not modelled: pinning a hugetlb page is refused (:func:`spec.mm.aspace.pin`).

A THP's PMD is copied the same way (``copy_huge_pmd``, mm/huge_memory.c: ``folio_try_dup_anon_rmap_pmd`` clears
``PageAnonExclusive``, ``pmdp_set_wrprotect`` in the parent and ``pmd_wrprotect`` in the child), the huge zero
page's too (``mm_get_huge_zero_folio``); the child gets a PT of its own to deposit (``pte_alloc_one``, role
``("table", child, 1, index)``).

A swap entry of a VMA that fork copies is copied too, and its slot counts one
more (``copy_nonpresent_pte`` -> ``swap_duplicate``).
"""

from __future__ import annotations

from lang.records import replace
from spec.mm.kernel import (
    Choices,
    Kernel,
    Leaf,
    Space,
    can_place,
    can_take_huge,
    free_frames,
    frozen,
    get_page,
    is_zero_pfn,
    new_anon_page,
    put_page,
    space,
    take,
    updated,
    with_page,
    with_space,
)
from spec.mm.pagetable import is_thp_leaf, missing_tables, set_leaf
from spec.mm.vma import HUGE_ORDER, Vma, anon_prepare, find, forked_copy
from spec.outcome import ENOMEM, NewPid, Outcome


def mark_anon(k: Kernel, pid: int, vpn: int) -> Kernel:
    """The VMA holding ``vpn`` has an anon_vma from now on (``vmf_anon_prepare``, :func:`~spec.mm.vma.anon_prepare`)."""
    sp = space(k, pid)
    return with_space(k, pid, replace(sp, vmas=anon_prepare(sp.vmas, vpn)))


def can_reuse(k: Kernel, pfn: int) -> bool:
    """``do_wp_page``'s reuse test: an anonymous page, exclusive or referenced only by this entry."""
    if pfn == k.zero_pfn:
        return False
    page = k.pages[pfn]
    return page.anon and (page.exclusive or page.refcount == 1)


def wp_fault(k: Kernel, pid: int, vma: Vma, vpn: int, leaf: Leaf, choices: Choices) -> tuple[Kernel, Outcome | None]:
    """Break COW on a write to a present read-only private entry: reuse the page or copy it."""
    if can_reuse(k, leaf.pfn):
        k = with_page(k, leaf.pfn, exclusive=True)
        return set_leaf(k, pid, vpn, replace(leaf, writable=True, dirty=True)), None
    if free_frames(k) < 1 or not can_place(k, ("page", pid, vpn, 0)):
        return k, ENOMEM
    k, pfn = take(k, ("page", pid, vpn, 0), choices)
    words = k.zero_words if leaf.pfn == k.zero_pfn else k.pages[leaf.pfn].words
    k = mark_anon(new_anon_page(k, pfn, words), pid, vpn)
    k = set_leaf(k, pid, vpn, replace(leaf, pfn=pfn, writable=True, dirty=True))
    return put_page(k, leaf.pfn), None


def huge_wp_fault(
    k: Kernel, pid: int, vma: Vma, head: int, leaf: Leaf, choices: Choices
) -> tuple[Kernel, Outcome | None]:
    """``hugetlb_wp``: reuse an anonymous page mapped once (map count, not reference count), else copy 2 MiB."""
    page = k.pages[leaf.pfn]
    if page.anon and page.mapcount == 1:
        k = with_page(k, leaf.pfn, exclusive=True)
        return set_leaf(k, pid, head, replace(leaf, writable=True, dirty=True)), None
    if not can_take_huge(k):
        return k, ENOMEM
    k, pfn = take(k, ("huge", pid, head, 0), choices, HUGE_ORDER)
    k = mark_anon(new_anon_page(k, pfn, page.words, huge=True), pid, head)
    k = set_leaf(k, pid, head, replace(leaf, pfn=pfn, writable=True, dirty=True))
    return put_page(k, leaf.pfn), None


def copied_leaves(sp: Space) -> dict[int, Leaf]:
    """The entries fork copies: those of private VMAs with anonymous memory (``vma_needs_copy``)."""
    return {
        vpn: leaf
        for vpn, leaf in sp.leaves.items()
        if (vma := find(sp.vmas, vpn)) is not None and not vma.shared and vma.anon
    }


def fork(k: Kernel, pid: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """A child sharing the parent's private pages read-only; ENOMEM (nothing changed) without frames for its tables."""
    parent = space(k, pid)
    child = k.next_pid
    copied = copied_leaves(parent)
    swapped = {vpn: slot for vpn, slot in parent.swapped.items() if (v := find(parent.vmas, vpn)) and v.anon}
    vpns = sorted({*copied, *swapped})
    hugetlb = frozenset(v for v, leaf in copied.items() if leaf.huge and not is_thp_leaf(parent, v, leaf))
    keys = missing_tables(Space((), 0), vpns, hugetlb)
    if free_frames(k) < 1 + len(keys):
        return k, ENOMEM
    k, root = take(k, ("root", child, 0, 0), choices)
    tables = {}
    for key in keys:
        k, tables[key] = take(k, ("table", child, *key), choices)
    leaves = {}
    for vpn, leaf in sorted(copied.items()):
        leaves[vpn] = replace(leaf, writable=False)
        if leaf.writable:
            k = set_leaf(k, pid, vpn, leaves[vpn])
        k = get_page(k, leaf.pfn)
        if not is_zero_pfn(k, leaf.pfn):
            k = with_page(k, leaf.pfn, exclusive=False)
    for slot in swapped.values():
        k = replace(k, swap_map=updated(k.swap_map, slot, k.swap_map[slot] + 1))
    sp = Space(forked_copy(parent.vmas), root, frozen(tables), frozen(leaves), k.kernel_leaves, swapped=frozen(swapped))
    k = replace(k, procs=updated(k.procs, child, sp), next_pid=child + 1)
    return k, NewPid(child)
