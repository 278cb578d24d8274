"""Migrating one page to another frame (mm/migrate.c ``migrate_pages`` → ``migrate_folio_unmap`` →
``migrate_folio_move``, Linux 6.12), the path compaction takes and NUMA migration will share.

For an anonymous page mapped by PTEs: every PTE that maps it is replaced by a migration entry
(``try_to_migrate_one``, which keeps the entry's write, young and dirty bits: ``make_writable_migration_entry``,
``make_migration_entry_young``, ``make_migration_entry_dirty``), each mm is flushed (``flush_tlb_range``; here
the shootdown of :func:`spec.smp.shootdown.run`, one per process that maps the page, to every CPU of its
``mm_cpumask``), the contents and flags move (``folio_migrate_copy``, ``folio_migrate_flags``), and each migration
entry becomes a PTE for the new frame with those bits (``remove_migration_pte``).  The old page's references go
to each shootdown's gather, so its frame is freed only after the last mapper's flush.

The whole migration is one atomic step of the model: no access runs between the unmap and the remap (a CPU
that touches a migration entry in Linux waits in ``migration_entry_wait`` until the remap, and sees only the new
page), so the copy's place among the steps changes nothing a program can read.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from spec.alloc import buddy
from spec.mm.kernel import Kernel, frozen, get_page, put_page, space, updated, with_space
from spec.outcome import Ok, Outcome
from spec.smp import shootdown


def mappers(k: Kernel, pfn: int) -> list[tuple[int, int]]:
    """Every (pid, page) whose 4 KiB entry maps frame ``pfn`` (the reverse map, ``rmap_walk``), sorted."""
    found = [(pid, vpn) for pid, sp in k.procs.items() for vpn, leaf in sp.leaves.items() if leaf.pfn == pfn]
    return sorted((pid, vpn) for pid, vpn in found if not k.procs[pid].leaves[vpn].huge)


def remap(k: Kernel, pid: int, vpns: list[int], old: int, new: int) -> tuple[Kernel, Outcome]:
    """One mm's part: its entries for ``old`` point at ``new`` with the same bits; a reference and a map count move
    from the old page (the reference handed to the gather) to the new."""
    sp = space(k, pid)
    leaves = dict(sp.leaves)
    for vpn in vpns:
        leaves[vpn] = replace(leaves[vpn], pfn=new)
    k = with_space(k, pid, replace(sp, leaves=frozen(leaves)))
    for _ in vpns:
        k = put_page(get_page(k, new), old)
    return k, Ok()


def migrate_page(k: Kernel, old: int, new: int) -> Kernel:
    """Move the anonymous page at frame ``old`` to the free frame ``new`` (taken out of the buddy's free blocks,
    :func:`spec.alloc.buddy.isolate_frame`): the page's record (words, flags, LRU list) moves, every mapper is
    remapped through its own shootdown, and the old frame is freed after the last flush.  The caller has checked
    that the page is movable (:func:`spec.mm.compaction.unmovable`)."""
    users = mappers(k, old)
    page = k.pages[old]
    k = replace(k, buddy=buddy.isolate_frame(k.buddy, new))
    k = replace(k, pages=updated(k.pages, new, replace(page, refcount=0, mapcount=0)))
    for pid in sorted({p for p, _ in users}):
        vpns = [v for p, v in users if p == pid]
        edit = partial(remap, pid=pid, vpns=vpns, old=old, new=new)
        k, _ = shootdown.run(k, "migrate", pid, edit, vpns[0], False, False)
    return k
