"""Memory compaction: ``echo 1 > /proc/sys/vm/compact_memory`` (mm/compaction.c, Linux 6.12).

``sysctl_compaction_handler`` → ``compact_node`` runs ``compact_zone`` on every zone with ``order = -1`` (a full
compaction, ``MIGRATE_SYNC``, skip hints ignored): a *migration scanner* walks the zone up from its first frame
(``isolate_migratepages``) and a *free scanner* walks it down from its last (``isolate_freepages``); each movable
page the migration scanner meets is migrated (:func:`spec.mm.migrate.migrate_page`) to a free frame the free
scanner found (``compaction_alloc``), so used pages gather at the top and free frames, merging in the buddy,
at the bottom.  It ends when the scanners meet (``compact_scanners_met``).

Movable, in the model: an anonymous page mapped by 4 KiB PTEs, on an LRU, referenced only by its mappings
(``isolate_migratepages_block`` wants an LRU folio; ``folio_expected_refs`` makes a pinned page fail with
``-EAGAIN``), not in the swap cache.  Everything else stops the migration scanner at that frame, named by what
holds it (:func:`unmovable`): the kernel's own frames, page tables, slab frames, pinned pages, huge pages, page
and swap cache, blocks from ``alloc_pages``.  Linux also migrates page-cache, swap-cache and huge pages; the
model does not (a restriction, stated in every result that lists them).

Where Linux is free: the scanners take a pageblock at a time (``pageblock_order``, 9 on x86-64) and meet when
their pageblocks meet; the model's move frame by frame (a zone of a few pageblocks would otherwise meet at
once), and a page may go to any free frame above the migration scanner and below the free scanner's last pick.
The implementation reports its pick (role ``("migrate", pfn, 0, 0)``); run alone the spec takes the highest
free frame, as a free scanner from the top does.
"""

from __future__ import annotations

from lang.errors import DisallowedChoice
from spec.alloc import buddy
from spec.mm.kernel import Choices, Kernel, frozen
from spec.mm.migrate import migrate_page
from spec.outcome import Compacted, Outcome


def page_table_frames(k: Kernel) -> frozenset[int]:
    """Every page-table frame: each process's PML4 and lower tables (a THP's deposited PT among them)."""
    return frozenset(f for sp in k.procs.values() for f in (sp.root, *sp.tables.values()))


def unmovable(k: Kernel, block: buddy.Block, tables: frozenset[int]) -> str | None:
    """What keeps the allocated ``block`` where it is; None for a movable page."""
    pfn = block.pfn
    if block.order > 0:
        if pfn == k.thp.zero_pfn:
            return "huge zero page"
        if pfn in k.pages and k.pages[pfn].huge:
            return "huge page"
        return "slab" if pfn in k.slab else "kernel allocation"
    if pfn in k.boot:
        return "kernel"
    if pfn in k.slab:
        return "slab"
    if pfn in tables:
        return "page table"
    page = k.pages.get(pfn)
    if page is None:
        return "kernel allocation"
    if not page.anon:
        return "page cache"
    if page.slot:
        return "swap cache"
    if page.refcount != page.mapcount:
        return "pinned"
    if not page.lru or not page.mapcount:
        return "not on an LRU"
    return None


def allowed_targets(k: Kernel, lo: int, hi: int) -> list[int]:
    """The free frames strictly between the migration scanner at ``lo`` and the free scanner at ``hi``."""
    return [f for b in k.buddy.free for f in range(max(b.pfn, lo + 1), min(b.pfn + b.size, hi))]


def target(k: Kernel, pfn: int, free_pfn: int, choices: Choices) -> int | None:
    """Where the page at ``pfn`` goes: the implementation's pick if it reported one (it must be allowed), else the
    highest free frame below ``free_pfn``; None when there is none above ``pfn`` (the scanners met)."""
    allowed = allowed_targets(k, pfn, free_pfn)
    chosen = choices.get(("migrate", pfn, 0, 0))
    if chosen is None:
        return max(allowed, default=None)
    if chosen not in allowed:
        raise DisallowedChoice(f"frame {chosen:#x} for the page at {pfn:#x} is not free between the scanners")
    return chosen


def compact_memory(k: Kernel, choices: Choices) -> tuple[Kernel, Outcome]:
    """A full compaction of the zone: the pages migrated, and what the migration scanner could not move."""
    tables = page_table_frames(k)
    pfn, free_pfn, migrated = 0, k.buddy.frames, 0
    stuck: dict[int, str] = {}
    while pfn < free_pfn:
        block, free = buddy.block_containing(k.buddy, pfn)
        if free:
            pfn = block.pfn + block.size
            continue
        why = unmovable(k, block, tables)
        if why is not None:
            stuck[block.pfn] = why
            pfn = block.pfn + block.size
            continue
        to = target(k, pfn, free_pfn, choices)
        if to is None:
            break
        k = migrate_page(k, pfn, to)
        migrated, free_pfn, pfn = migrated + 1, to, pfn + 1
    return k, Compacted(migrated, frozen(dict(sorted(stuck.items()))))
