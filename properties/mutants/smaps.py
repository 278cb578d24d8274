"""Mutants of ``/proc/PID/smaps_rollup``, caught by the pressure machine that observes smaps.

fs/proc/task_mmu.c counts a present page as dirty when its PTE's dirty bit is
set or the folio is dirty (``smaps_pte_entry`` passes ``pte_dirty(ptent)`` to
``smaps_account``, and ``smaps_page_accumulate`` tests ``dirty ||
folio_test_dirty(folio)``); an anonymous page the CPU wrote has the D bit and no
``PG_dirty`` until it is unmapped, so the PTE bit is the one that matters.  A
swap entry's SwapPss is its share of the slot's map count, ``swp_swapcount``,
which leaves the swap cache's ``SWAP_HAS_CACHE`` reference out (``swap_count``
masks it, mm/swapfile.c).
"""

from __future__ import annotations

from impl.mm.kernel import Kernel
from properties.mutants.catalogue import Mutant, SourcePatch

SMAPS_MUTANTS = (
    Mutant(
        "smaps-dirty-by-flag-only",
        "textbook error: smaps' dirty split from PG_dirty alone, without smaps_pte_entry's pte_dirty(); a written "
        "anonymous page then shows as Private_Clean",
        "smaps agrees with the spec: a page is dirty by its PTE's D bit or PG_dirty",
        "smaps",
        SourcePatch(
            Kernel, "smaps", (("dirty = bool(entry & _D or flags & PG_DIRTY)", "dirty = bool(flags & PG_DIRTY)"),)
        ),
    ),
)
