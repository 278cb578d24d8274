"""Compaction and migration mutants (``impl.mm.compaction``, ``impl.mm.migrate``): real ways to get them wrong.

Each is the shipped function's source with one small edit, swapped in for the run only; the ``ci`` compaction
machine (:mod:`properties.mm.compaction_machine`) must catch each with a short counterexample (minimised by
replay: the 32 writes and 16 unmaps each program starts with mostly go).
"""

from __future__ import annotations

from impl.mm import compaction, migrate
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "compaction: impl state and events, abstracted, equal L1; L1 outcomes are ones L0 allows"

COMPACTION_MUTANTS = (
    Mutant(
        "migrate-drops-dirty",
        "remove_migration_pte writing the new PTE clean: the dirty bit the migration entry carries since "
        "2e3468778dbe 'mm: remember young/dirty bit for page migrations' (Linux 6.1; before it the PTE came back "
        "clean and only the PG_dirty try_to_migrate_one set kept the write) lost on the way, with no PG_dirty to "
        "keep it, so smaps counts a written page clean",
        f"{REFINES}; a migrated page's entry keeps its write, young and dirty bits",
        "compaction",
        SourcePatch(migrate, "remap", (("(entry & ~_PFN) | (new << 12)", "(entry & ~_PFN & ~0x40) | (new << 12)"),)),
    ),
    Mutant(
        "compaction-moves-pinned",
        "compaction migrating a page a GUP pin holds, so the pin keeps reading a frame the process no longer maps "
        "(folio_expected_refs in folio_migrate_mapping refuses it with -EAGAIN, mm/migrate.c; the GUP-against-"
        "migration race of 2b4847e73004 'mm: numa: serialise parallel get_user_page against THP migration'): here "
        "the migration scanner's reference-count test is skipped",
        f"{REFINES}; compaction moves only movable pages",
        "compaction",
        SourcePatch(
            compaction, "unmovable", (("if k.refcount[head] != k.mapcount[head]:", "if k.refcount[head] < 0:"),)
        ),
    ),
)
