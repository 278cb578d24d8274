"""A per-CPU TLB: translations tagged by PCID, global entries shared by all PCIDs, LRU replacement.

An entry is keyed by ``(pcid, vpn)``; a global translation (G=1, CR4.PGE=1)
is keyed by ``(GLOBAL, vpn)`` and matches in every PCID.  Each entry holds
``pfn << 4 | W << 3 | U << 2 | NX << 1 | G``: the frame and the rights
combined over the walk (R/W and U/S ANDed, XD ORed, SDM 4.6.1).  When
``capacity`` entries are held, a fill evicts the least recently used.

The invalidations are those of the Intel SDM Vol. 3A 4.10.4.1: MOV to CR3
(with or without the no-flush bit), INVLPG, INVPCID types 0-3, and the
entries a #PF drops.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

GLOBAL = -1
W, U, NX, G = 8, 4, 2, 1


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
        """The entry for ``vpn`` in ``pcid`` or a global one, marked most recently used; None on a miss."""
        for key in ((pcid, vpn), (GLOBAL, vpn)):
            code = self.entries.get(key)
            if code is not None:
                self.entries.move_to_end(key)
                return code
        return None

    def fill(self, pcid: int, vpn: int, code: int) -> None:
        """Cache a translation, evicting the least recently used entry when full."""
        if self.capacity <= 0:
            return
        key = (GLOBAL if code & G else pcid, vpn)
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

    def invlpg(self, pcid: int, vpn: int) -> None:
        """INVLPG: the entries for ``vpn`` in ``pcid`` and the global ones."""
        self.entries.pop((pcid, vpn), None)
        self.entries.pop((GLOBAL, vpn), None)

    def fault(self, pcid: int, vpn: int) -> None:
        """A #PF on ``vpn``: the same entries as INVLPG."""
        self.invlpg(pcid, vpn)

    def flush_pcid(self, pcid: int) -> None:
        """MOV to CR3 without the no-flush bit, or INVPCID type 1: every non-global entry of ``pcid``."""
        self._drop(lambda key: key[0] != pcid)

    def invpcid(self, kind: int, pcid: int = 0, vpn: int = 0) -> None:
        """INVPCID type 0 (one address, one PCID), 1 (one PCID), 2 (all), 3 (all but global)."""
        if kind == 0:
            self.entries.pop((pcid, vpn), None)
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
