"""A Linux-style buddy allocator: per-frame metadata, one free list per order.

The per-frame arrays play the part of ``struct page``: ``_buddy[pfn]`` is
``PageBuddy`` (set on the first frame of a free block only), ``_order[pfn]``
is ``page_private`` of a free block or the order of an allocated one, and
``_refcount[pfn]`` is the page count, 1 on the first frame of an allocated
block.  Each order's free list is a dict used as an insertion-ordered set:
adding, removing an arbitrary block (the buddy being merged) and taking the
most recently added block are all O(1), so allocation and freeing cost
O(max_order) whatever the size of memory.  Taking the most recently added
block is what ``list_add`` at the head plus ``list_first_entry`` do in
``__rmqueue_smallest`` (mm/page_alloc.c).

Only setting up memory touches every frame.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from lang.errors import (
    BlockOutOfRange,
    ConfigError,
    DoubleFree,
    MisalignedBlock,
    NotAllocated,
    OrderOutOfRange,
    WrongOrder,
)

DEFAULT_MAX_ORDER = 10
LIMIT_ORDER = 52


def find_buddy_pfn(pfn: int, order: int) -> int:
    """``__find_buddy_pfn`` (mm/internal.h): the pfn differing from ``pfn`` in bit ``order``."""
    return pfn ^ (1 << order)


def combined_pfn(pfn: int, order: int) -> int:
    """The merged block's pfn, ``buddy_pfn & pfn`` in ``__free_one_page``: bit ``order`` cleared."""
    return pfn & ~(1 << order)


def upper_half_pfn(pfn: int, order: int) -> int:
    """``&page[size]`` in ``expand()``: the upper half of the order-``order`` block at ``pfn``."""
    return pfn + (1 << (order - 1))


def is_aligned(pfn: int, order: int) -> bool:
    """True when ``pfn`` is a multiple of ``2**order``."""
    return pfn & ((1 << order) - 1) == 0


class BuddyAllocator:
    """The free lists and per-frame metadata of one zone of ``frames`` frames, orders ``0 .. max_order``."""

    __slots__ = ("_buddy", "_free_lists", "_order", "_refcount", "frames", "max_order", "nr_free")

    def __init__(self, frames: int, max_order: int = DEFAULT_MAX_ORDER) -> None:
        if frames < 1:
            raise ConfigError(f"frames must be at least 1, got {frames}")
        if not 0 <= max_order <= LIMIT_ORDER:
            raise ConfigError(f"max_order must be 0..{LIMIT_ORDER}, got {max_order}")
        self.frames = frames
        self.max_order = max_order
        self._buddy = bytearray(frames)
        self._order = bytearray(frames)
        self._refcount = array("i", bytes(4 * frames))
        self._free_lists: list[dict[int, None]] = [{} for _ in range(max_order + 1)]
        self.nr_free = [0] * (max_order + 1)
        self._free_boot_memory()

    def clone(self) -> BuddyAllocator:
        """An independent copy: metadata arrays and free lists (in their order) copied."""
        new = BuddyAllocator.__new__(BuddyAllocator)
        new.frames, new.max_order = self.frames, self.max_order
        new._buddy, new._order = bytearray(self._buddy), bytearray(self._order)
        new._refcount = array("i", self._refcount)
        new._free_lists = [dict(free_list) for free_list in self._free_lists]
        new.nr_free = list(self.nr_free)
        return new

    def _free_boot_memory(self) -> None:
        """Hand every frame to the free lists in the largest aligned blocks (``__free_pages_memory``, mm/memblock.c)."""
        pfn = 0
        while pfn < self.frames:
            order = self.max_order if pfn == 0 else min(self.max_order, (pfn & -pfn).bit_length() - 1)
            while pfn + (1 << order) > self.frames:
                order -= 1
            self._add_to_free_list(pfn, order)
            pfn += 1 << order

    # --- free list primitives (mm/page_alloc.c __add_to_free_list, __del_page_from_free_list) ---

    def _add_to_free_list(self, pfn: int, order: int) -> None:
        self._free_lists[order][pfn] = None
        self._buddy[pfn] = 1
        self._order[pfn] = order
        self.nr_free[order] += 1

    def _del_from_free_list(self, pfn: int, order: int) -> None:
        del self._free_lists[order][pfn]
        self._buddy[pfn] = 0
        self._order[pfn] = 0
        self.nr_free[order] -= 1

    def _is_buddy(self, pfn: int, order: int) -> bool:
        """``page_is_buddy`` (mm/internal.h): inside memory, the head of a free block, of the same order."""
        return pfn < self.frames and self._buddy[pfn] == 1 and self._order[pfn] == order

    # --- allocation ---

    def alloc(self, order: int) -> int | None:
        """The pfn of a newly allocated order-``order`` block, or None when nothing fits (ENOMEM).

        ``__rmqueue_smallest``: the first non-empty list from ``order`` up,
        its most recently added block, split by :meth:`_expand`.
        """
        if not 0 <= order <= self.max_order:
            raise OrderOutOfRange(f"order {order} is out of range: allowed 0..{self.max_order}")
        for current in range(order, self.max_order + 1):
            free_list = self._free_lists[current]
            if free_list:
                pfn, _ = free_list.popitem()
                self._buddy[pfn] = 0
                self.nr_free[current] -= 1
                pfn = self._expand(pfn, order, current)
                self._order[pfn] = order
                self._refcount[pfn] = 1
                return pfn
        return None

    def _expand(self, pfn: int, low: int, high: int) -> int:
        """``expand()``: halve the order-``high`` block at ``pfn`` down to ``low``, freeing each upper half.

        Returns the pfn of the order-``low`` block kept for the caller: always
        the lowest one, ``pfn`` itself.
        """
        while high > low:
            self._add_to_free_list(upper_half_pfn(pfn, high), high - 1)
            high -= 1
        return pfn

    # --- freeing ---

    def free(self, pfn: int, order: int) -> None:
        """Return the allocated block at ``pfn`` of ``order`` and merge it (``__free_one_page``).

        Anything else raises a :class:`~lang.errors.BuddyError` and changes nothing.
        """
        self._check_free(pfn, order)
        self._refcount[pfn] = 0
        self._order[pfn] = 0
        self._merge(pfn, order)

    def split_page(self, pfn: int, order: int) -> None:
        """The allocated order-``order`` block at ``pfn`` becomes ``2**order`` allocated order-0 blocks, each freed on
        its own later (``split_page``, mm/page_alloc.c)."""
        self._check_free(pfn, order)
        for frame in range(pfn, pfn + (1 << order)):
            self._order[frame] = 0
            self._refcount[frame] = 1

    def _merge(self, pfn: int, order: int) -> None:
        """The merge loop of ``__free_one_page``: absorb free buddies up to ``max_order``, then list the result."""
        while order < self.max_order:
            buddy = find_buddy_pfn(pfn, order)
            if not self._is_buddy(buddy, order):
                break
            self._del_from_free_list(buddy, order)
            pfn = combined_pfn(pfn, order)
            order += 1
        self._add_to_free_list(pfn, order)

    def _check_free(self, pfn: int, order: int) -> None:
        """Raise unless ``pfn`` heads an allocated block of exactly ``order``; O(max_order)."""
        if not 0 <= order <= self.max_order:
            raise OrderOutOfRange(f"order {order} is out of range: allowed 0..{self.max_order}")
        if pfn < 0 or pfn + (1 << order) > self.frames:
            raise BlockOutOfRange(
                f"block at pfn {pfn:#x} of order {order} is outside memory: "
                f"pfn + 2**order must be at most the frame count, {self.frames:#x}"
            )
        if not is_aligned(pfn, order):
            raise MisalignedBlock(
                f"pfn {pfn:#x} is not aligned to order {order}: it must be a multiple of {1 << order}"
            )
        if self._refcount[pfn] and self._order[pfn] == order:
            return
        head, head_order, is_free = self._block_containing(pfn)
        if is_free:
            raise DoubleFree(
                f"frame {pfn:#x} is already free (in free block at {head:#x} of order {head_order}): "
                "only allocated blocks can be freed"
            )
        if head == pfn:
            raise WrongOrder(f"block at pfn {pfn:#x} was allocated with order {head_order}: free it with that order")
        raise NotAllocated(
            f"pfn {pfn:#x} is inside the allocated block at {head:#x} of order {head_order}: "
            "free the block by its first pfn"
        )

    def _block_containing(self, pfn: int) -> tuple[int, int, bool]:
        """The block frame ``pfn`` lies in, as (first pfn, order, is free): the block of order k that
        contains it starts at ``pfn`` with the low k bits cleared, so try each order."""
        for order in range(self.max_order + 1):
            head = pfn & ~((1 << order) - 1)
            if (self._buddy[head] or self._refcount[head]) and self._order[head] == order:
                return head, order, self._buddy[head] == 1
        raise AssertionError(f"frame {pfn:#x} lies in no block: the per-frame metadata is corrupt")

    # --- observation ---

    def free_list(self, order: int) -> list[int]:
        """The pfns on the free list of ``order``, in the order :meth:`alloc` would take them."""
        return list(reversed(self._free_lists[order]))

    def free_blocks(self) -> Iterator[tuple[int, int]]:
        """Every block on a free list, as ``(pfn, order)``."""
        for order, free_list in enumerate(self._free_lists):
            for pfn in free_list:
                yield pfn, order

    def allocated_blocks(self) -> Iterator[tuple[int, int]]:
        """Every allocated block, as ``(pfn, order)``, found by walking memory block by block.

        Costs one step per block, free or allocated; a frame that heads no
        block is skipped one frame at a time.
        """
        pfn = 0
        while pfn < self.frames:
            if self._refcount[pfn]:
                yield pfn, self._order[pfn]
                pfn += 1 << self._order[pfn]
            elif self._buddy[pfn]:
                pfn += 1 << self._order[pfn]
            else:
                pfn += 1

    def buddyinfo(self) -> str:
        """The zone's line of ``/proc/buddyinfo`` (``frag_show_print``, mm/vmstat.c)."""
        return f"Node {0}, zone {'Normal':>8} " + "".join(f"{count:6d} " for count in self.nr_free) + "\n"
