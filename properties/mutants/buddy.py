"""Buddy allocator mutants (``impl.alloc.buddy``): the classic bugs of linux-mm.md's mutant table."""

from __future__ import annotations

import impl.alloc.buddy
from impl.alloc.buddy import BuddyAllocator
from properties.mutants.catalogue import Mutant, Replace, SourcePatch

REFINES = "buddy: impl free lists and allocated blocks, abstracted, equal the spec state; alloc picks an allowed block"


def buddy_plus(pfn: int, order: int) -> int:
    """The buddy as ``pfn + (1 << order)``: right for a lower half, wrong for an upper one."""
    return pfn + (1 << order)


def method_patch(name: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.alloc.buddy.BuddyAllocator`."""
    return SourcePatch(BuddyAllocator, name, edits)


BUDDY_MUTANTS = (
    Mutant(
        "buddy-plus",
        "textbook error: the buddy computed as pfn + (1 << order) instead of pfn ^ (1 << order) (__find_buddy_pfn)",
        f"{REFINES}; blocks aligned and disjoint",
        "buddy",
        Replace(impl.alloc.buddy, "find_buddy_pfn", buddy_plus),
    ),
    Mutant(
        "merge-stops-early",
        "B-30 off-by-one: while (order < MAX_PAGE_ORDER - 1) in __free_one_page, max blocks never re-form",
        f"{REFINES}; fully coalesced",
        "buddy",
        method_patch("_merge", ("while order < self.max_order:", "while order < self.max_order - 1:")),
    ),
    Mutant(
        "merge-ignores-order",
        "page_is_buddy without buddy_order(buddy) == order: a free head of another order is merged",
        f"{REFINES}; free + allocated = all frames, each once",
        "buddy",
        method_patch("_is_buddy", (" and self._order[pfn] == order", "")),
    ),
    Mutant(
        "split-keeps-upper",
        "textbook error: expand() hands out the upper half and frees the lower ones",
        f"{REFINES}; alloc returns the lowest sub-block",
        "buddy",
        method_patch(
            "_expand",
            (
                "self._add_to_free_list(upper_half_pfn(pfn, high), high - 1)",
                "self._add_to_free_list(pfn, high - 1)\n        pfn = upper_half_pfn(pfn, high)",
            ),
        ),
    ),
    Mutant(
        "alloc-skips-max-order",
        "B-30 off-by-one: for (o = order; o < MAX_PAGE_ORDER; ...) in __rmqueue_smallest, spurious ENOMEM",
        f"{REFINES}; ENOMEM only when no block of the order or above is free",
        "buddy",
        method_patch(
            "alloc",
            ("for current in range(order, self.max_order + 1):", "for current in range(order, self.max_order):"),
        ),
    ),
    Mutant(
        "merge-past-max-order",
        "B-30 off-by-one: while (order <= MAX_PAGE_ORDER), two max blocks merge past free_area[]",
        f"{REFINES}; orders within 0..max_order",
        "buddy",
        method_patch("_merge", ("while order < self.max_order:", "while order <= self.max_order:")),
    ),
    Mutant(
        "buddy-past-end",
        "B-29 class: page_is_buddy consulted for a buddy outside the zone (no hole / end-of-memory check)",
        f"{REFINES}; a buddy past the end of memory never merges",
        "buddy",
        method_patch("_is_buddy", ("pfn < self.frames and ", "")),
    ),
)
