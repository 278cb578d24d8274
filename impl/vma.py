"""The VMA index of one address space: a sorted list searched by bisection.

Linux keeps VMAs in a maple tree (mm/mmap.c, lib/maple_tree.c); a sorted
Python list with ``bisect`` gives the same O(log n) lookup for the sizes
modelled here.  VMAs are split at range edges (``__split_vma``, mm/vma.c)
and never merged.  Page numbers (vpn), not addresses, throughout.
"""

from __future__ import annotations

import bisect


class Vma:
    """Pages ``start .. end-1``: rights, private or shared (with its object and offset), and ``anon_vma``."""

    __slots__ = ("anon", "end", "exec", "obj", "pgoff", "read", "shared", "start", "write")

    def __init__(
        self,
        start: int,
        end: int,
        rwx: tuple[bool, bool, bool],
        shared: bool,
        obj: int = 0,
        pgoff: int = 0,
        anon: bool = False,
    ) -> None:
        self.start, self.end = start, end
        self.read, self.write, self.exec = rwx
        self.shared, self.obj, self.pgoff, self.anon = shared, obj, pgoff, anon

    def __repr__(self) -> str:
        rwx = ("r" if self.read else "-") + ("w" if self.write else "-") + ("x" if self.exec else "-")
        return f"Vma({self.start:#x}..{self.end:#x} {rwx} shared={self.shared} obj={self.obj} anon={self.anon})"

    @property
    def accessible(self) -> bool:
        """Any right at all (``vma_is_accessible``)."""
        return self.read or self.write or self.exec

    def copy(self, start: int | None = None, end: int | None = None) -> Vma:
        """A copy, optionally of a sub-range (the object offset follows the start)."""
        lo = self.start if start is None else start
        hi = self.end if end is None else end
        rwx = (self.read, self.write, self.exec)
        return Vma(lo, hi, rwx, self.shared, self.obj, self.pgoff + lo - self.start, self.anon)


class VmaList:
    """Non-overlapping VMAs sorted by start, with their starts in a parallel list for ``bisect``."""

    __slots__ = ("starts", "vmas")

    def __init__(self) -> None:
        self.vmas: list[Vma] = []
        self.starts: list[int] = []

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.vmas)

    def copy(self) -> VmaList:
        """A deep copy (fork's ``dup_mmap`` gives the child its own VMAs)."""
        out = VmaList()
        out.vmas = [v.copy() for v in self.vmas]
        out.starts = list(self.starts)
        return out

    def find(self, vpn: int) -> Vma | None:
        """The VMA containing ``vpn``."""
        i = bisect.bisect_right(self.starts, vpn) - 1
        if i >= 0 and vpn < self.vmas[i].end:
            return self.vmas[i]
        return None

    def split_at(self, vpn: int) -> Vma | None:
        """Make ``vpn`` a VMA boundary; returns the new upper piece when a VMA was split."""
        vma = self.find(vpn)
        if vma is None or vma.start == vpn:
            return None
        upper = vma.copy(vpn, vma.end)
        vma.end = vpn
        i = bisect.bisect_right(self.starts, vpn)
        self.vmas.insert(i, upper)
        self.starts.insert(i, vpn)
        return upper

    def within(self, lo: int, hi: int) -> list[Vma]:
        """The VMAs inside ``lo .. hi-1`` after :meth:`split_at` ``lo`` and ``hi``."""
        return self.vmas[bisect.bisect_left(self.starts, lo) : bisect.bisect_left(self.starts, hi)]

    def remove(self, lo: int, hi: int) -> list[Vma]:
        """Remove the VMAs inside ``lo .. hi-1`` (already split at the edges) and return them."""
        i, j = bisect.bisect_left(self.starts, lo), bisect.bisect_left(self.starts, hi)
        gone = self.vmas[i:j]
        del self.vmas[i:j]
        del self.starts[i:j]
        return gone

    def insert(self, vma: Vma) -> None:
        """Add a VMA overlapping none."""
        i = bisect.bisect_left(self.starts, vma.start)
        self.vmas.insert(i, vma)
        self.starts.insert(i, vma.start)

    def intersects(self, lo: int, hi: int) -> bool:
        """Some VMA has a page in ``lo .. hi-1``."""
        i = bisect.bisect_right(self.starts, lo) - 1
        if i >= 0 and self.vmas[i].end > lo:
            return True
        return i + 1 < len(self.vmas) and self.starts[i + 1] < hi

    def covered_until(self, lo: int, hi: int) -> int:
        """The end (at most ``hi``) of the run of mapped pages starting at ``lo``; ``lo`` if unmapped."""
        page = lo
        vma = self.find(page)
        while vma is not None and page < hi:
            page = vma.end
            vma = self.find(page)
        return min(page, hi)

    def mapped_pages(self, lo: int, hi: int) -> int:
        """How many pages of ``lo .. hi-1`` some VMA covers."""
        i = max(0, bisect.bisect_right(self.starts, lo) - 1)
        total = 0
        for vma in self.vmas[i:]:
            if vma.start >= hi:
                break
            total += max(0, min(vma.end, hi) - max(vma.start, lo))
        return total
