"""A per-CPU TLB: translations tagged by PCID, global entries shared by all PCIDs, LRU replacement.

An entry is keyed by ``(pcid, vpn)``; a global translation (G=1, CR4.PGE=1)
is keyed by ``(GLOBAL, vpn)`` and matches in every PCID.  Each entry holds
``pfn << 4 | W << 3 | U << 2 | NX << 1 | G``: the frame and the rights
combined over the walk (R/W and U/S ANDed, XD ORed, SDM 4.6.1).  When
``capacity`` entries are held, a fill evicts the least recently used.
A 2 MiB translation carries :data:`HUGE` and is keyed by the first page of
its 2 MiB: one entry serves every page in it, and invalidating any address
in it drops it (SDM Vol. 3A 4.10.2.3, 4.10.4.1).

The invalidations are those of the Intel SDM Vol. 3A 4.10.4.1: MOV to CR3
(with or without the no-flush bit; with CR4.PCIDE=0 every non-global entry,
the bit ignored), INVLPG, INVPCID types 0-3, and the entries a #PF drops.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

GLOBAL = -1
W, U, NX, G = 8, 4, 2, 1
HUGE = 1 << 60
HUGE_PAGES = 512


class Tlb:
    """One CPU's TLB."""

    __slots__ = ("capacity", "entries")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[tuple[int, int], int] = OrderedDict()

    def clone(self) -> Tlb:
        """An independent copy, in the same LRU order."""
        new = Tlb(self.capacity)
        new.entries = OrderedDict(self.entries)
        return new

    def lookup(self, pcid: int, vpn: int) -> int | None:
        """The entry for ``vpn`` in ``pcid`` or a global one (a 2 MiB one covering it too), marked most recently
        used; None on a miss."""
        entries = self.entries
        key = (pcid, vpn)
        code = entries.get(key)
        if code is None:
            key = (GLOBAL, vpn)
            code = entries.get(key)
            if code is None:
                return self._lookup_huge(pcid, vpn)
        entries.move_to_end(key)
        return code

    def _lookup_huge(self, pcid: int, vpn: int) -> int | None:
        """A 2 MiB entry in ``pcid`` or a global one covering ``vpn`` (keyed by the first page of its 2 MiB)."""
        head = vpn - vpn % HUGE_PAGES
        if head == vpn:
            return None  # its keys are the ones :meth:`lookup` has just missed
        for key in ((pcid, head), (GLOBAL, head)):
            code = self.entries.get(key)
            if code is not None and code & HUGE:
                self.entries.move_to_end(key)
                return code
        return None

    def fill(self, pcid: int, vpn: int, code: int) -> None:
        """Cache a translation, evicting the least recently used entry when full."""
        if self.capacity <= 0:
            return
        key = (GLOBAL if code & G else pcid, vpn - vpn % HUGE_PAGES if code & HUGE else vpn)
        self.entries[key] = code
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def evict(self) -> bool:
        """Drop the least recently used entry (the hardware may drop any at any time); False when empty."""
        if not self.entries:
            return False
        self.entries.popitem(last=False)
        return True

    def _drop(self, keep: object) -> None:
        for key in [k for k in self.entries if not keep(k)]:  # type: ignore[operator]
            del self.entries[key]

    def _pop_huge(self, pcid: int, vpn: int) -> None:
        """Drop the 2 MiB entry of ``pcid`` covering ``vpn``, if there is one."""
        head = (pcid, vpn - vpn % HUGE_PAGES)
        if self.entries.get(head, 0) & HUGE:
            del self.entries[head]

    def invlpg(self, pcid: int, vpn: int) -> None:
        """INVLPG: the entries for ``vpn`` in ``pcid`` and the global ones, 2 MiB ones covering it included."""
        self.entries.pop((pcid, vpn), None)
        self.entries.pop((GLOBAL, vpn), None)
        self._pop_huge(pcid, vpn)
        self._pop_huge(GLOBAL, vpn)

    def fault(self, pcid: int, vpn: int) -> None:
        """A #PF on ``vpn``: the same entries as INVLPG."""
        self.invlpg(pcid, vpn)

    def flush_pcid(self, pcid: int) -> None:
        """MOV to CR3 without the no-flush bit, or INVPCID type 1: every non-global entry of ``pcid``."""
        self._drop(lambda key: key[0] != pcid)

    def mov_cr3(self, pcid: int, noflush: bool = False, pcide: bool = True) -> None:
        """MOV to CR3 loading ``pcid``: with CR4.PCIDE=1 the no-flush bit keeps everything, else ``pcid``'s
        non-global entries go; with PCIDE=0 every non-global entry goes (all of them are PCID 0's)."""
        if not pcide:
            self._drop(lambda key: key[0] == GLOBAL)
        elif not noflush:
            self.flush_pcid(pcid)

    def invpcid(self, kind: int, pcid: int = 0, vpn: int = 0) -> None:
        """INVPCID type 0 (one address, one PCID), 1 (one PCID), 2 (all), 3 (all but global)."""
        if kind == 0:
            self.entries.pop((pcid, vpn), None)
            self._pop_huge(pcid, vpn)
        elif kind == 1:
            self.flush_pcid(pcid)
        elif kind == 2:
            self.entries.clear()
        elif kind == 3:
            self._drop(lambda key: key[0] == GLOBAL)
        else:
            raise ValueError(f"INVPCID type {kind} does not exist: types are 0, 1, 2 and 3")

    def items(self) -> Iterator[tuple[int, int, int]]:
        """Every entry as (pcid or GLOBAL, vpn, code)."""
        for (pcid, vpn), code in self.entries.items():
            yield pcid, vpn, code
