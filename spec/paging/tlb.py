"""The TLB as the spec sees it: the set of translations a CPU may still hold.

A processor may cache any translation it could use, keep it after the
paging-structure entry changes, and drop it at any time (Intel SDM Vol. 3A
4.10.2, 4.10.4).  The spec does not choose what is cached: :class:`Tlb` is
the set of translations (and page-table frames, for the paging-structure
caches) the CPU *may* hold besides the current translations of its loaded
address space.  The kernel adds the old translation of every entry it changes
to the set of every CPU that may hold it; an invalidation removes what it
covers.  A remembered translation stands for its weaker forms too (same
frame, fewer rights, :func:`remembers`): the CPU may have cached one of
those before the change, and the change itself drops nothing.  The
implementation's TLB must always be a subset.

Entries are tagged by PCID; a global entry (G=1 with CR4.PGE=1) is shared
by all PCIDs and carries :data:`GLOBAL_PCID`.  The invalidations (SDM 4.10.4.1):

- MOV to CR3 with CR4.PCIDE=1 and bit 63 clear drops the new PCID's
  non-global entries; with bit 63 set it drops nothing; with CR4.PCIDE=0 it
  drops every non-global entry, whatever bit 63 says (the current PCID is
  always 0 then, 4.10.1, and clearing PCIDE flushed every other one, so
  every entry is PCID 0's or global);
- INVLPG drops the current PCID's entries for the address, global entries
  for it, and all paging-structure-cache entries of the current PCID;
- INVPCID type 0 drops one address in one PCID (not global ones), type 1 one
  PCID's non-global entries, type 2 everything, type 3 everything but
  global entries;
- a #PF drops the faulting address's entries in the current PCID and global
  ones (SDM 4.10.4.1, "the processor invalidates ... that would be used for
  that linear address"), so a stale entry with fewer rights heals.

A ``huge`` entry caches a 2 MiB translation (a PD entry with PS=1), keyed by
its first page; every invalidation of any address inside it drops it (SDM
4.10.4.1: INVLPG invalidates the entries "for the page" containing the
address, whatever its size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spec.mm.vma import HUGE_PAGES

GLOBAL_PCID = -1


@dataclass(frozen=True, slots=True)
class TlbEntry:
    """A cached translation of page ``vpn`` in ``pcid`` (:data:`GLOBAL_PCID` for a global one)."""

    pcid: int
    vpn: int
    pfn: int
    writable: bool
    user: bool
    nx: bool
    huge: bool = False

    def __repr__(self) -> str:
        return (
            f"TlbEntry(pcid={self.pcid}, vpn={self.vpn:#x}, pfn={self.pfn:#x}, writable={self.writable}, "
            f"user={self.user}, nx={self.nx}" + (", huge=True)" if self.huge else ")")
        )

    def covers(self, vpn: int) -> bool:
        """The entry translates page ``vpn``."""
        return self.vpn == vpn or (self.huge and self.vpn == vpn - vpn % HUGE_PAGES)

    def weaker_or_equal(self, pfn: int, writable: bool, user: bool, nx: bool) -> bool:
        """Same frame and no right the given translation lacks (a stale entry that heals with a spurious fault)."""
        return self.pfn == pfn and (writable or not self.writable) and (user or not self.user) and (self.nx or not nx)


@dataclass(frozen=True, slots=True)
class Tlb:
    """What one CPU may still hold beyond its current translations: entries, and page-table frames by PCID."""

    entries: frozenset[TlbEntry] = field(default_factory=frozenset)
    tables: frozenset[tuple[int, int]] = field(default_factory=frozenset)


def remember(tlb: Tlb, entries: frozenset[TlbEntry], tables: frozenset[tuple[int, int]]) -> Tlb:
    """``tlb`` may also hold ``entries`` (each with the weaker forms :func:`remembers` allows) and the
    paging-structure entries ``tables`` ((pcid, frame))."""
    return Tlb(tlb.entries | entries, tlb.tables | tables)


def remembers(tlb: Tlb, entry: TlbEntry) -> bool:
    """``entry``, or a form of it with more rights (same PCID, page, frame and size), is remembered.

    A remembered entry is the old translation of a changed paging-structure
    entry; before the change the CPU could hold it or any weaker form of it
    (a read-only entry cached by a read before a write fault made the page
    writable without a flush: ``wp_page_reuse`` and ``hugetlb_wp`` only
    upgrade the entry, ``ptep_set_access_flags`` / ``huge_ptep_set_access_flags``,
    and leave the stale entry to heal with a spurious fault, SDM Vol. 3A
    4.10.4.3).  The change does not invalidate what the CPU holds (SDM Vol. 3A
    4.10.4.1: only invalidations and a #PF on the address do), so the weaker
    forms stay as possible as the entry itself until an invalidation covers them.
    """
    if entry in tlb.entries:
        return True
    for writable in (True, False) if not entry.writable else (True,):
        for user in (True, False) if not entry.user else (True,):
            for nx in (False, True) if entry.nx else (False,):
                stronger = TlbEntry(entry.pcid, entry.vpn, entry.pfn, writable, user, nx, entry.huge)
                if stronger in tlb.entries:
                    return True
    return False


def invlpg(tlb: Tlb, pcid: int, vpn: int) -> Tlb:
    """INVLPG: the current PCID's and global entries for ``vpn``, and the PCID's paging-structure caches."""
    keep = frozenset(e for e in tlb.entries if not e.covers(vpn) or e.pcid not in (pcid, GLOBAL_PCID))
    return Tlb(keep, frozenset(t for t in tlb.tables if t[0] != pcid))


def flush_pcid(tlb: Tlb, pcid: int) -> Tlb:
    """MOV to CR3 without the no-flush bit, or INVPCID type 1: ``pcid``'s non-global entries and caches."""
    return Tlb(frozenset(e for e in tlb.entries if e.pcid != pcid), frozenset(t for t in tlb.tables if t[0] != pcid))


def mov_cr3(tlb: Tlb, pcid: int, noflush: bool, pcide: bool = True) -> Tlb:
    """MOV to CR3 loading ``pcid``: with CR4.PCIDE=1, bit 63 set (``noflush``) keeps everything and clear drops
    ``pcid``'s non-global entries; with PCIDE=0, every non-global entry and paging-structure cache is dropped
    (SDM Vol. 3A 4.10.4.1: "all TLB entries associated with PCID 000H except those for global pages")."""
    if not pcide:
        return Tlb(frozenset(e for e in tlb.entries if e.pcid == GLOBAL_PCID), frozenset())
    return tlb if noflush else flush_pcid(tlb, pcid)


def invpcid(tlb: Tlb, kind: int, pcid: int = 0, vpn: int = 0) -> Tlb:
    """INVPCID of type ``kind`` 0-3 (SDM Vol. 2A, INVPCID)."""
    if kind == 0:
        keep = frozenset(e for e in tlb.entries if not e.covers(vpn) or e.pcid != pcid)
        return Tlb(keep, frozenset(t for t in tlb.tables if t[0] != pcid))
    if kind == 1:
        return flush_pcid(tlb, pcid)
    if kind == 2:
        return Tlb()
    if kind == 3:
        return Tlb(frozenset(e for e in tlb.entries if e.pcid == GLOBAL_PCID), frozenset())
    raise ValueError(f"INVPCID type {kind} does not exist: types are 0, 1, 2 and 3")


def fault_drop(tlb: Tlb, pcid: int, vpn: int) -> Tlb:
    """A #PF on ``vpn``: its entries in the current PCID and its global entries are gone."""
    return Tlb(frozenset(e for e in tlb.entries if not e.covers(vpn) or e.pcid not in (pcid, GLOBAL_PCID)), tlb.tables)
