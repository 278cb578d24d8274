"""Compaction in the implementation: ``/proc/sys/vm/compact_memory`` over the buddy allocator's one zone.

mm/compaction.c ``compact_zone`` with ``order = -1``: the migration scanner walks block by block up from frame 0
(``isolate_migratepages``), the free scanner down from the top (``isolate_freepages``), each movable page is
migrated (:func:`impl.mm.migrate.migrate_page`) to the highest free frame below the free scanner's last pick, and
the run ends when they meet.  Movable: an anonymous page mapped by PTEs, on an LRU, with no reference beyond its
mappings, not in the swap cache; any other allocated block is reported with what holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.mm.migrate import migrate_page

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel
    from impl.smp.shootdown import Smp

Result = dict[str, Any]
PG_ANON, PG_HUGE = 1, 4


def page_table_frames(k: Kernel) -> set[int]:
    """Every process's PML4, its lower tables and its THPs' deposited PTs."""
    frames: set[int] = set(k.thp.deposits.values())
    for proc in k.procs.values():
        frames.add(proc.root)
        frames.update(pfn for _, _, _, pfn in k._tables(proc.root, 4, 0, 0, 1 << 35))
    return frames


def unmovable(k: Kernel, head: int, order: int, tables: set[int]) -> str | None:
    """What keeps the allocated block at ``head`` of ``order`` where it is; None for a movable page."""
    if order > 0:
        if head == k.thp.zero_pfn:
            return "huge zero page"
        if k.flags[head] & PG_HUGE and k.refcount[head]:
            return "huge page"
        return "slab" if head in k.slab_frames else "kernel allocation"
    if head in k.boot:
        return "kernel"
    if head in k.slab_frames:
        return "slab"
    if head in tables:
        return "page table"
    if not k.refcount[head]:
        return "kernel allocation"
    if not k.flags[head] & PG_ANON:
        return "page cache"
    if k.pressure.swap_slot[head]:
        return "swap cache"
    if k.refcount[head] != k.mapcount[head]:
        return "pinned"
    if not k.pressure.lru_of[head] or not k.mapcount[head]:
        return "not on an LRU"
    return None


def highest_free(k: Kernel, lo: int, hi: int) -> int | None:
    """The free scanner: the highest free frame strictly between ``lo`` and ``hi``."""
    for pfn in range(hi - 1, lo, -1):
        if k.buddy.block_at(pfn)[2]:
            return pfn
    return None


def compact_memory(k: Kernel, smp: Smp) -> Result:
    """``{"migrated": n, "unmovable": {pfn: what}}`` after a full compaction."""
    tables = page_table_frames(k)
    pfn, free_pfn, migrated = 0, k.buddy.frames, 0
    stuck: dict[str, str] = {}
    while pfn < free_pfn:
        head, order, free = k.buddy.block_at(pfn)
        if free:
            pfn = head + (1 << order)
            continue
        why = unmovable(k, head, order, tables)
        if why is not None:
            stuck[hex(head)] = why
            pfn = head + (1 << order)
            continue
        to = highest_free(k, pfn, free_pfn)
        if to is None:
            break
        migrate_page(k, smp, pfn, to)
        migrated, free_pfn, pfn = migrated + 1, to, pfn + 1
    return {"migrated": migrated, "unmovable": stuck}
