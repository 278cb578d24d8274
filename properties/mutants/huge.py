"""Hugetlb mutants (``impl.mm.kernel.Kernel``, ``impl.mm.vma.VmaList``): real ways to get 2 MiB pages wrong.

Each is the shipped method's source with one small edit, swapped in for the
run only; the ``ci`` hugetlb machine (:mod:`properties.mm.huge_machine`) must
catch each with a short counterexample.  Reusing a hugetlb page on its map
count rather than its reference count is *not* among them: ``hugetlb_wp``
(mm/hugetlb.c) does exactly that on purpose.
"""

from __future__ import annotations

from impl.mm.kernel import Kernel
from impl.mm.vma import VmaList
from impl.paging.tlb import Tlb
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "huge: impl state, abstracted, equals L1; L1 outcomes are ones L0 allows"

HUGE_MUTANTS = (
    Mutant(
        "hugetlb-fork-no-wrprotect",
        "copy_hugetlb_page_range without huge_ptep_set_wrprotect: fork leaves a private 2 MiB PMD writable in the "
        "parent (and the child)",
        f"{REFINES}; cow: a private frame mapped more than once is read-only in every entry",
        "huge",
        SourcePatch(Kernel, "fork", (("if entry & _RW:", "if entry & _RW and not entry & _PS:"),)),
    ),
    Mutant(
        "hugetlb-dontneed-rounds-up",
        "madvise_dontneed_free_valid_vma rounding the end up, not down (ALIGN, not ALIGN_DOWN): DONTNEED frees the "
        "data of the whole 2 MiB page past the range",
        f"{REFINES}; L0: only 2 MiB pages wholly inside the range read zero again",
        "huge",
        SourcePatch(Kernel, "madvise_dontneed", (("end -= end % HUGE_PAGES", "end += -end % HUGE_PAGES"),)),
    ),
    Mutant(
        "hugetlb-split-unaligned",
        "hugetlb_vm_op_split missing: munmap, mprotect or mmap splits a hugetlb VMA off a 2 MiB boundary",
        f"{REFINES}; hugetlb VMAs split only on 2 MiB boundaries (EINVAL)",
        "huge",
        SourcePatch(VmaList, "split_refused", (("and vpn % 512 != 0", "and vpn % 512 != vpn % 512"),)),
    ),
    Mutant(
        "hugetlb-freed-order-0",
        "a hugetlb page's last reference freeing its head frame to the buddy allocator as order 0 "
        "(free_huge_folio / __free_pages with the wrong order): 511 frames leak",
        f"{REFINES}; no leak: allocated frames are exactly the reachable ones",
        "huge",
        SourcePatch(
            Kernel, "drop_reference", (("order = HUGE_ORDER if self.flags[pfn] & PG_HUGE else 0", "order = 0"),)
        ),
    ),
    Mutant(
        "hugetlb-invlpg-head-only",
        "SDM misreading (4.10.4.1): INVLPG, or the #PF, of an address inside a 2 MiB translation drops it only "
        "when the address is the page's first",
        f"{REFINES}; a #PF on any address of a 2 MiB page drops its stale entry, so the fixed access succeeds",
        "huge",
        SourcePatch(Tlb, "_pop_huge", (("head = (pcid, vpn - vpn % HUGE_PAGES)", "head = (pcid, vpn)"),)),
    ),
)
