"""Workingset-detection mutants (``impl.pressure.pressure.Pressure``), caught by the machine with it on.

mm/workingset.c: a shadow entry holds the node's ``nonresident_age`` at eviction, and a refault is activated
when its distance is at most the workingset size, ``NR_ACTIVE_FILE`` (with the anonymous lists while swap is
free: ``workingset_test_recent``); truncation removes the shadows with the pages
(``truncate_inode_pages_range``).
"""

from __future__ import annotations

from impl.pressure.pressure import Pressure
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "workingset: impl state, abstracted, equals L1 (shadows, nonresident_age, refault counters)"

WORKINGSET_MUTANTS = (
    Mutant(
        "shadow-kept-after-truncate",
        "truncate leaves the shadow entries past the new end in the page cache (truncate_inode_pages_range "
        "skipping the exceptional entries, the class of the shadow-entry leaks fixed around 'mm: filemap: "
        "clear shadow entries on truncation'), so a page written past the old end later reads in as a refault "
        "of data that no longer exists",
        f"{REFINES}; shadows lie below their file's end",
        "workingset",
        SourcePatch(
            Pressure,
            "truncate",
            (("del self.shadows[obj, index]", "pass"),),
        ),
    ),
    Mutant(
        "refault-vs-inactive-list",
        "the refault distance compared with the inactive file list instead of the active one (the workingset "
        "size of workingset_test_recent is NR_ACTIVE_FILE for a file folio: the distance is a deficit of "
        "inactive-list space measured against the active pages it could displace)",
        f"{REFINES}; a refault is activated iff its distance is at most the active file list (and anon with swap)",
        "workingset",
        SourcePatch(
            Pressure,
            "workingset_refault",
            (
                (
                    "size = sum(1 for _ in self.from_tail(FILE_ACTIVE))",
                    "size = sum(1 for _ in self.from_tail(FILE_INACTIVE))",
                ),
            ),
        ),
    ),
)
