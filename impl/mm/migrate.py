"""Page migration in the implementation (mm/migrate.c ``migrate_pages``, Linux 6.12): one anonymous page moved to
another frame, every PTE that maps it found through the reverse map, each mm remapped in its own shootdown.

``try_to_migrate_one`` turns each PTE into a migration entry that keeps its write, young and dirty bits,
``flush_tlb_range`` flushes each mm, ``folio_migrate_copy`` copies the frame and ``folio_migrate_flags`` the flags,
and ``remove_migration_pte`` writes a PTE for the new frame with the same bits.  Here each mm's PTEs are rewritten
in one edit of :meth:`impl.smp.shootdown.Smp.syscall`, so the old page's references sit in that mm's gather until
its CPUs have flushed; the old frame is freed with the last.  Compaction uses it, and NUMA migration will.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel
    from impl.smp.shootdown import Smp

Result = dict[str, Any]
_PFN = ((1 << 52) - 1) & ~0xFFF


def remap(k: Kernel, pid: int, ptes: list[tuple[int, int]], old: int, new: int) -> Result:
    """Point ``pid``'s PTEs (pa, vpn) for ``old`` at ``new`` with their bits; a reference and map count move."""
    for pa, vpn in ptes:
        entry = k.mem.read_unchecked(pa)
        k.set_pte(pa, (entry & ~_PFN) | (new << 12), pid, vpn)
        k._get(new)
        k._put(old)
    return {"ok": True}


def migrate_page(k: Kernel, smp: Smp, old: int, new: int) -> None:
    """Move the anonymous page at ``old`` to the free frame ``new`` (isolated from the buddy, reported as the role
    ``("migrate", old, 0, 0)``); the caller checked it is movable."""
    k.buddy.isolate_frame(new)
    k.effects.append((("migrate", old, 0, 0), new))
    k.mem.copy_frame(old, new)
    k.flags[new], k.refcount[new], k.mapcount[new] = k.flags[old], 0, 0
    lru = k.pressure.lru_of[old]
    if lru:
        k.pressure.lru_add(new, lru - 1)
    users = sorted((pid, vpn, pa) for pa, (pid, vpn) in k.rmap.get(old, {}).items())
    for pid in sorted({u[0] for u in users}):
        ptes = [(pa, vpn) for p, vpn, pa in users if p == pid]
        first = ptes[0][1]
        smp.syscall("migrate", pid, partial(remap, k, pid, ptes, old, new), first, first + 1, False, False)
