"""The VMA index of one address space: a sorted list searched by bisection.

Linux keeps VMAs in a maple tree (mm/mmap.c, lib/maple_tree.c); a sorted
Python list with ``bisect`` gives the same O(log n) lookup for the sizes
modelled here.  VMAs are split at range edges (``__split_vma``, mm/vma.c)
and merged with compatible neighbours where mmap and mprotect change them
(``vma_merge_new_range``, ``vma_merge_existing_range``, Linux 6.18).
``anon`` labels the VMA's ``anon_vma`` within its address space (0: none);
``forked`` marks one fork gave it (its ``anon_vma_chain`` is not singular).
``huge`` marks a hugetlb VMA (``VM_HUGETLB``): it splits only on 2 MiB
boundaries (``hugetlb_vm_op_split``, mm/hugetlb.c) and never merges
(``VM_DONTEXPAND`` is in ``VM_SPECIAL``, mm/vma.c).  ``thp`` is the THP advice,
``"hugepage"`` (``VM_HUGEPAGE``), ``"nohugepage"`` (``VM_NOHUGEPAGE``) or ``""``: a flag merging compares.
Page numbers (vpn), not addresses, throughout.
"""

from __future__ import annotations

import bisect


class Vma:
    """Pages ``start .. end-1``: rights, private or shared (with its object and offset), and ``anon_vma``."""

    __slots__ = ("anon", "end", "exec", "forked", "huge", "obj", "pgoff", "read", "shared", "start", "thp", "write")

    def __init__(
        self,
        start: int,
        end: int,
        rwx: tuple[bool, bool, bool],
        shared: bool,
        obj: int = 0,
        pgoff: int = 0,
        anon: int = 0,
        forked: bool = False,
        huge: bool = False,
        thp: str = "",
    ) -> None:
        self.start, self.end = start, end
        self.read, self.write, self.exec = rwx
        self.shared, self.obj, self.pgoff, self.anon, self.forked = shared, obj, pgoff, anon, forked
        self.huge, self.thp = huge, thp

    def __repr__(self) -> str:
        rwx = ("r" if self.read else "-") + ("w" if self.write else "-") + ("x" if self.exec else "-")
        return (
            f"Vma({self.start:#x}..{self.end:#x} {rwx} shared={self.shared} obj={self.obj} "
            f"anon={self.anon} forked={self.forked}{' huge' if self.huge else ''}{' ' + self.thp if self.thp else ''})"
        )

    @property
    def flags(self) -> tuple[bool, bool, bool, bool, bool]:
        """What ``is_mergeable_vma`` compares: rights, ``VM_SHARED`` and ``VM_ACCOUNT``.

        ``VM_ACCOUNT`` (mm/mmap.c ``accountable_mapping``, mm/mprotect.c
        ``mprotect_fixup``): set on a private VMA while it is writable, and
        kept after that only if it has an anon_vma.
        """
        account = not self.shared and (self.write or self.anon != 0)
        return self.read, self.write, self.exec, self.shared, account

    @property
    def accessible(self) -> bool:
        """Any right at all (``vma_is_accessible``)."""
        return self.read or self.write or self.exec

    def copy(self, start: int | None = None, end: int | None = None) -> Vma:
        """A copy, optionally of a sub-range (the object offset follows the start)."""
        lo = self.start if start is None else start
        hi = self.end if end is None else end
        rwx = (self.read, self.write, self.exec)
        pgoff = self.pgoff + lo - self.start
        return Vma(lo, hi, rwx, self.shared, self.obj, pgoff, self.anon, self.forked, self.huge, self.thp)

    def merges_with(self, upper: Vma) -> bool:
        """``upper`` begins where this ends and one VMA can cover both (``can_vma_merge_after``, mm/vma.c)."""
        if self.huge or upper.huge or self.end != upper.start or self.flags != upper.flags or self.thp != upper.thp:
            return False
        if (self.shared or self.obj or upper.obj) and (
            self.obj != upper.obj or self.pgoff + self.end - self.start != upper.pgoff
        ):
            return False
        if self.anon and upper.anon:
            return self.anon == upper.anon
        if self.anon:
            return not self.forked
        return not upper.anon or not upper.forked


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

    def split_refused(self, vpn: int) -> bool:
        """Splitting at ``vpn`` would cut a hugetlb VMA off a 2 MiB boundary (``hugetlb_vm_op_split``: EINVAL)."""
        vma = self.find(vpn)
        return vma is not None and vma.huge and vma.start < vpn and vpn % 512 != 0

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

    def merge(self, lo: int, hi: int) -> list[Vma]:
        """Merge, left to right, neighbours meeting at a page in ``lo .. hi``; returns the VMAs merged away."""
        i = max(0, bisect.bisect_left(self.starts, lo) - 1)
        gone: list[Vma] = []
        while i + 1 < len(self.vmas) and self.starts[i + 1] <= hi:
            lower, upper = self.vmas[i], self.vmas[i + 1]
            if self.starts[i + 1] >= lo and lower.merges_with(upper):
                lower.end = upper.end
                if not lower.anon:
                    lower.anon, lower.forked = upper.anon, upper.forked
                del self.vmas[i + 1]
                del self.starts[i + 1]
                gone.append(upper)
            else:
                i += 1
        return gone

    def prepare_anon(self, vma: Vma) -> None:
        """Give ``vma`` an anon_vma (``__anon_vma_prepare``): a neighbour's unforked one if it can, else a new one.

        ``find_mergeable_anon_vma`` (mm/rmap.c) tries the next VMA, then the
        previous: touching, private, the same ``VM_ACCOUNT``, with an anon_vma
        not inherited at fork.  A new label is the least one unused here.
        """
        if vma.anon:
            return
        i = bisect.bisect_left(self.starts, vma.start)
        neighbours = []
        if i + 1 < len(self.vmas) and self.starts[i + 1] == vma.end:
            neighbours.append(self.vmas[i + 1])
        if i > 0 and self.vmas[i - 1].end == vma.start:
            neighbours.append(self.vmas[i - 1])
        for other in neighbours:
            compatible = other.flags[4] == vma.flags[4] and other.huge == vma.huge and other.obj == vma.obj
            compatible = compatible and other.thp == vma.thp
            if not other.shared and other.anon and not other.forked and compatible:
                vma.anon = other.anon
                return
        used = {v.anon for v in self.vmas}
        vma.anon = 1
        while vma.anon in used:
            vma.anon += 1

    def fork_copy(self) -> VmaList:
        """The child's VMAs (``dup_mmap``): each anon_vma holder gets a new one of its own (``anon_vma_fork``)."""
        out = self.copy()
        label = 0
        for vma in out.vmas:
            if vma.anon:
                label += 1
                vma.anon, vma.forked = label, True
        return out

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
