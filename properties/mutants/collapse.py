"""Collapse mutants (``impl.mm.khugepaged``): real ways to get khugepaged and MADV_COLLAPSE wrong.

Each is the shipped function's source with one small edit, swapped in for the run only; the ``ci`` collapse
machine (:mod:`properties.mm.collapse_machine`) must catch each with a short counterexample.
"""

from __future__ import annotations

from impl.mm import khugepaged
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "collapse: impl state and events, abstracted, equal L1; L1 outcomes are ones L0 allows"

COLLAPSE_MUTANTS = (
    Mutant(
        "collapse-free-before-flush",
        "collapse_huge_page freeing the old pages before every CPU has flushed its translations of them, the "
        "ordering khugepaged got wrong for its page tables until 2ba99c5e0881 'mm/khugepaged: fix GUP-fast "
        "interaction by sending IPI' (Linux 6.1; Fixes: ba76149f47d8 'thp: khugepaged'): here the old pages' "
        "references are dropped past the mmu_gather, so their frames go back to the buddy before the IPIs",
        f"{REFINES}; shootdown: frames are freed only after every target CPU has flushed",
        "collapse",
        SourcePatch(
            khugepaged,
            "collapse",
            (
                (
                    "k._put(old)",
                    "gathered, gather, k.gathered = k.gathered, k.buddy, None; "
                    "k.buddy = getattr(gather, 'buddy', gather); k._put(old); k.gathered, k.buddy = gathered, gather",
                ),
            ),
        ),
    ),
    Mutant(
        "collapse-ignores-cow-shared",
        "khugepaged collapsing a range whatever its COW-shared PTEs: hpage_collapse_scan_pmd not counting a page "
        "another process maps (folio_likely_mapped_shared) against max_ptes_shared, the limit 71a2c112a0f6 "
        "'khugepaged: introduce 'max_ptes_shared' tunable' (Linux 5.8) set because a collapse breaks the sharing "
        "and copies every shared page",
        f"{REFINES}; khugepaged leaves a range with more than max_ptes_shared shared PTEs alone",
        "collapse",
        SourcePatch(khugepaged, "scan", (("if k.mapcount[pfn] > 1:", "if k.mapcount[pfn] > 1 and not khugepaged:"),)),
    ),
    Mutant(
        "collapse-ignores-pin",
        "collapse copying a page a GUP pin holds, so the pinned page and the mapped THP part ways (the race "
        "70cbc3cc78a9 'mm: gup: fix the fast GUP race against THP collapse', Linux 6.1, closed for GUP-fast; "
        "is_refcount_suitable is the check): here the reference-count test is skipped",
        f"{REFINES}; a page with references beyond its mappings is not collapsed (not_suitable_page_count)",
        "collapse",
        SourcePatch(
            khugepaged,
            "scan",
            (
                (
                    "if k.refcount[pfn] != k.mapcount[pfn] + (1 if p.swap_slot[pfn] else 0):",
                    "if k.refcount[pfn] < k.mapcount[pfn]:",
                ),
            ),
        ),
    ),
)
