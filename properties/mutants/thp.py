"""Transparent-huge-page mutants (``impl.mm.thp.Thp``, ``impl.mm.kernel.Kernel``, ``impl.smp.shootdown``): real ways
to get THPs wrong.

Each is the shipped method's source with one small edit, swapped in for the run only; the ``ci`` THP machine
(:mod:`properties.mm.thp_machine`) must catch each with a short counterexample.
"""

from __future__ import annotations

from impl.mm.kernel import Kernel
from impl.mm.thp import Thp
from impl.smp.shootdown import Smp
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "thp: impl state, abstracted, equals L1; L1 outcomes are ones L0 allows"

THP_MUTANTS = (
    Mutant(
        "thp-huge-zero-dirty-cow",
        "CVE-2017-1000405, the huge-page Dirty COW (fixed by a8f97366452e 'mm, thp: Do not make page table dirty "
        "unconditionally in touch_p[mu]d()', Linux 4.15): touch_pmd made the huge zero page's read-only PMD dirty, "
        "and can_follow_write_pmd took dirty for 'COW already broken', so a write went through to the huge zero "
        "page; here do_huge_pmd_wp_page takes the huge zero page for a THP it may reuse and makes its PMD writable",
        f"{REFINES}; the huge zero page is never writable and always reads zero",
        "thp",
        SourcePatch(
            Thp,
            "wp",
            (
                ("if pfn == self.zero_pfn:", "if pfn == self.zero_pfn and pfn != self.zero_pfn:"),
                (
                    "if k.flags[pfn] & PG_EXCLUSIVE or k.refcount[pfn] == 1:",
                    "if pfn == self.zero_pfn or k.flags[pfn] & PG_EXCLUSIVE or k.refcount[pfn] == 1:",
                ),
            ),
        ),
    ),
    Mutant(
        "thp-reuse-shared",
        "do_huge_pmd_wp_page reusing a THP on its map count while a fork still holds it, the map-count reuse test "
        "3bff7e3f1f16 'mm/huge_memory: streamline COW logic in do_huge_pmd_wp_page()' (Linux 5.18) replaced by the "
        "reference count, as 09854ba94c6a did for small pages after CVE-2020-29374: the parent's write lands in "
        "the child's memory (the split of a shared THP is refused as not modelled by the spec, so the machine sees "
        "the implementation accept a write the spec refuses)",
        f"{REFINES}; cow: a private frame mapped more than once is read-only in every entry",
        "thp",
        SourcePatch(
            Thp,
            "wp",
            (("if k.flags[pfn] & PG_EXCLUSIVE or k.refcount[pfn] == 1:", "if k.mapcount[pfn] >= 1:"),),
        ),
    ),
    Mutant(
        "thp-split-no-flush",
        "__split_huge_pmd without pmdp_invalidate's flush, the stale huge TLB entry behind AMD family 10h erratum "
        "383 (the comment in mm/huge_memory.c __split_huge_pmd_locked: mark the PMD not present, flush, then "
        "pmd_populate): a CPU keeps its 2 MiB translation of the range after the PMD became a page table",
        f"{REFINES}; TLBs hold only translations of the current tables or ones not yet flushed",
        "thp",
        SourcePatch(
            Smp,
            "start_flight",
            (
                (
                    "needs_flush(old, after.get(vpn, 0), fault)",
                    "needs_flush(old, after.get(vpn, 0) | (old & _PS), fault)",
                ),
            ),
        ),
    ),
    Mutant(
        "thp-pmd-misaligned",
        "a PMD leaf on a block not 2 MiB aligned (a PS=1 PD entry needs bits 20:13 of its address clear, SDM Vol. "
        "3A 4.5.4, Table 4-18; here the PMD points one frame past the order-9 folio's head)",
        f"{REFINES}; a PMD leaf maps an aligned order-9 block",
        "thp",
        SourcePatch(
            Thp,
            "fault",
            (
                (
                    "k.mem.write(pa, k._leaf(vma, pfn, vma.write, dirty=True) | _PS)",
                    "k.mem.write(pa, k._leaf(vma, pfn + 1, vma.write, dirty=True) | _PS)",
                ),
            ),
        ),
    ),
    Mutant(
        "thp-split-keeps-anon-huge-pages",
        "AnonHugePages not updated on split: split_huge_page leaves the THP state (NR_ANON_THPS, the large folio's "
        "flag) on the pages it makes, so smaps and meminfo go on counting a split THP as huge",
        f"{REFINES}; AnonHugePages counts only THPs a PMD maps",
        "thp",
        SourcePatch(
            Thp,
            "split",
            (("sub = PG_ANON | (flags & PG_EXCLUSIVE)", "sub = PG_ANON | (flags & (PG_EXCLUSIVE | PG_THP))"),),
        ),
    ),
    Mutant(
        "thp-fork-no-wrprotect",
        "copy_huge_pmd without pmdp_set_wrprotect / pmd_wrprotect: fork leaves an anonymous THP's PMD writable in "
        "the parent and the child",
        f"{REFINES}; cow: a private frame mapped more than once is read-only in every entry",
        "thp",
        SourcePatch(Kernel, "fork", (("if entry & _RW:", "if entry & _RW and not thp.is_thp(entry):"),)),
    ),
    Mutant(
        "thp-deposit-leaked",
        "zap_huge_pmd without zap_deposited_table: the PT deposited with a THP is never freed (the leak "
        "pgtable_trans_huge_withdraw exists to prevent; PageTables keeps growing)",
        f"{REFINES}; no leak: allocated frames are exactly the reachable ones",
        "thp",
        SourcePatch(
            Kernel, "_zap", (("self.thp.withdraw_and_free(proc.pid, vpn)", "self.thp.deposits.pop((proc.pid, vpn))"),)
        ),
    ),
    Mutant(
        "thp-split-drops-dirty",
        "__split_huge_pmd_locked not carrying the PMD's dirty bit to the 512 PTEs, as before 0ccf7f168e17 "
        "'mm/thp: carry over dirty bit when thp splits on pmd' (Linux 6.1; mm/huge_memory.c: pmd_dirty(old_pmd) "
        "sets dirty, and each PTE is pte_mkdirty'd): a written THP split at an munmap or mprotect edge looks clean",
        f"{REFINES}; a split keeps every subpage's protection, accessed and dirty bits",
        "thp",
        SourcePatch(Thp, "split", (("bits = entry & ~_PFN & ~_PS", "bits = entry & ~_PFN & ~_PS & ~_D"),)),
    ),
    Mutant(
        "thp-madvise-no-split",
        "madvise(MADV_[NO]HUGEPAGE) splitting a VMA inside a PMD without splitting the PMD, the invariant "
        "vma_adjust_trans_huge keeps (added by 'thp: avoid breaking huge pmd invariants in case of vma_adjust "
        "failures', Linux 2.6.38; mm/huge_memory.c vma_adjust_trans_huge -> split_huge_leaf): one PMD leaf then "
        "maps pages of two VMAs with different flags",
        f"{REFINES}; a PMD leaf lies inside one VMA",
        "thp",
        SourcePatch(Thp, "madvise", (("self.split_edges(proc, *cut_at)", "cut_at.clear()"),)),
    ),
)
