"""Workingset-detection mutants (``impl.pressure.pressure.Pressure``), caught by the machine with it on.

mm/workingset.c: a shadow entry holds the node's ``nonresident_age`` at eviction, and a refault is activated
when its distance is at most the workingset size, ``NR_ACTIVE_FILE`` with both anonymous lists while swap is
free (``workingset_test_recent``); truncation removes the shadows with the pages (mm/truncate.c
``truncate_inode_pages_range`` -> ``truncate_folio_batch_exceptionals`` -> ``clear_shadow_entries``).
"""

from __future__ import annotations

from impl.pressure.pressure import Pressure
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "workingset: impl state, abstracted, equals L1 (shadows, nonresident_age, refault counters)"

WORKINGSET_MUTANTS = (
    Mutant(
        "shadow-kept-after-truncate",
        "truncate leaves the shadow entries past the new end in the page cache (truncate_inode_pages_range "
        "without truncate_folio_batch_exceptionals' clear_shadow_entries), so a page of the file grown back "
        "later reads in as a refault of data that no longer exists",
        f"{REFINES}; shadows lie below their file's end",
        "workingset",
        SourcePatch(Pressure, "truncate", (("del self.shadows[obj, index]", "pass"),)),
    ),
    Mutant(
        "refault-ignores-anon",
        "the refault distance compared with the active file list alone, as before 34e58cac6d8f 'mm: workingset: "
        "let cache workingset challenge anon' (Linux 5.9): with free swap the anonymous lists are part of the "
        "workingset a refaulting file page competes with",
        f"{REFINES}; a refault is activated iff its distance is at most the active file list, plus the anonymous "
        "lists while a swap slot is free",
        "workingset",
        SourcePatch(Pressure, "workingset_refault", (("if self.free_slot() is not None:", "if False:"),)),
    ),
)
