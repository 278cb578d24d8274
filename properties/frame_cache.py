"""The non-zero words of the implementation's frames, reused while a frame holds the same bytes.

The abstraction functions decode page tables and ``struct page`` words from
the implementation's memory after every operation, and most frames have not
changed since the last check.  :class:`FrameCache` keeps, per frame, a copy
of its bytes and its non-zero words; when the frame still holds exactly those
bytes (compared in full, without trusting any record of writes) the words are
reused, otherwise read again.  Equal bytes have equal words, so an
abstraction read through the cache is the one read without it: the cache
changes how long a check takes, never what it finds.  The same holds for a
whole decoded page-table tree (:attr:`FrameCache.decoded`), kept with the
bytes of every frame it was read from and reused only while all of them are
unchanged.  One cache serves one
memory for one run; it lives in the harness, never in ``spec/`` or ``impl/``.
"""

from __future__ import annotations

from impl.paging.physmem import PhysMem

Entries = list[tuple[int, int]]


class FrameCache:
    """:meth:`impl.paging.physmem.PhysMem.frame_entries` of ``mem``, reused while a frame's bytes are unchanged."""

    def __init__(self, mem: PhysMem) -> None:
        self.mem = mem
        self.seen: dict[int, tuple[bytes, Entries]] = {}
        self.decoded: dict[object, tuple[tuple[tuple[int, bytes], ...], object]] = {}
        self.hits = self.misses = 0

    def entries(self, pfn: int) -> Entries:
        """The non-zero words of frame ``pfn`` as ``(index, value)`` in index order; the caller must not change
        the list."""
        seen = self.seen.get(pfn)
        if seen is not None and self.mem.frame_matches(pfn, seen[0]):
            self.hits += 1
            return seen[1]
        self.misses += 1
        entries = self.mem.frame_entries(pfn)
        self.seen[pfn] = (self.mem.frame_snapshot(pfn), entries)
        return entries

    def snapshot(self, pfn: int) -> bytes:
        """The bytes of frame ``pfn`` as :meth:`entries` last read them."""
        return self.seen[pfn][0] if pfn in self.seen else self.mem.frame_snapshot(pfn)

    def unchanged(self, frames: tuple[tuple[int, bytes], ...]) -> bool:
        """Every frame still holds the bytes recorded with it."""
        return all(self.mem.frame_matches(pfn, snapshot) for pfn, snapshot in frames)
