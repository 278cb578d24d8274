"""The buddy allocator as a value: the set of free blocks and the set of allocated ones.

Physical memory of ``frames`` frames is tiled by *blocks*: a block of order
``k`` is ``2**k`` frames starting at a pfn that is a multiple of ``2**k``.
Every frame lies in exactly one block, free or allocated.  Two blocks of
order ``k`` are *buddies* when they differ only in bit ``k`` of their pfn;
together they form the block of order ``k+1`` that starts at the lower one.
Orders run from 0 to ``max_order`` inclusive, as Linux 6.12's
``MAX_PAGE_ORDER`` does (include/linux/mmzone.h; default 10, a 4 MiB block).

- ``alloc(order)`` may hand out the lowest ``2**order`` frames of *any* free
  block of order ``order`` or above; the rest of that block goes back to the
  free lists as one block of each order in between, the upper halves, as
  Linux's ``expand()`` does (mm/page_alloc.c).  The spec does not choose:
  :func:`allowed_pfns` lists the allowed answers and :func:`alloc_at`
  continues from the one the implementation chose.  :func:`alloc` takes the
  least choice (the smallest order, then the lowest pfn) for a spec run alone.
  With nothing large enough free, the outcome is :class:`OutOfMemory`.
- ``free(pfn, order)`` returns an allocated block and merges it with its buddy
  while the buddy is free, of the same order and inside memory, up to
  ``max_order`` (``__free_one_page``, mm/page_alloc.c).

Memory need not be a power of two: the tail forms smaller blocks, like a zone
whose end is not aligned, and a block whose buddy would lie past the end never
merges.  Freeing anything but an allocated block with its own order is a
:class:`~lang.errors.BuddyError` and changes nothing.

The state is immutable; every rule returns a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import NewType

from lang.errors import (
    BlockOutOfRange,
    ConfigError,
    DoubleFree,
    InvalidArgument,
    MisalignedBlock,
    NotAllocated,
    OrderOutOfRange,
    WrongOrder,
)
from lang.records import replace

Order = NewType("Order", int)

DEFAULT_MAX_ORDER = 10
# The largest order accepted: proofs.buddy_lemmas proves the arithmetic for every pfn below 2**52
# and every order up to 52.
LIMIT_ORDER = 52


# --- Pure arithmetic on pfns (mm/internal.h) ---------------------------------------------------
#
# These functions take no branches, so proofs.buddy_lemmas can run them on Z3 bit-vectors
# and prove their properties for every pfn and order.


def buddy_pfn(pfn: int, order: int) -> int:
    """The pfn of the buddy of the order-``order`` block at ``pfn`` (``__find_buddy_pfn``).

    pre: 0 <= order <= 52
    pre: 0 <= pfn < 2 ** 52
    post: 0 <= __return__ < 2 ** 53
    post: __return__ != pfn
    """
    return pfn ^ (1 << order)


def combined_pfn(pfn: int, order: int) -> int:
    """The pfn of the order ``order+1`` block that the block at ``pfn`` and its buddy form.

    Linux computes ``buddy_pfn & pfn`` in ``__free_one_page``; clearing bit ``order`` is the same.

    pre: 0 <= order <= 52
    pre: 0 <= pfn < 2 ** 52
    post: __return__ <= pfn
    """
    return pfn & ~(1 << order)


def upper_half_pfn(pfn: int, order: int) -> int:
    """The pfn of the upper half when the order-``order`` block at ``pfn`` is split (``expand()``'s ``page[size]``).

    pre: 1 <= order <= 52
    pre: 0 <= pfn < 2 ** 52
    post: __return__ > pfn
    """
    return pfn + (1 << (order - 1))


def is_aligned(pfn: int, order: int) -> bool:
    """True when ``pfn`` is a multiple of ``2**order`` (the natural alignment of a block)."""
    return pfn & ((1 << order) - 1) == 0


# --- Blocks and outcomes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Block:
    """``2**order`` frames starting at ``pfn``."""

    pfn: int
    order: int

    def __repr__(self) -> str:
        return f"Block(pfn={self.pfn:#x}, order={self.order})"

    @property
    def size(self) -> int:
        """Frames in the block."""
        return 1 << self.order

    @property
    def end(self) -> int:
        """The first pfn after the block."""
        return self.pfn + self.size

    def contains(self, pfn: int) -> bool:
        """True when frame ``pfn`` lies in the block."""
        return self.pfn <= pfn < self.end


@dataclass(frozen=True, slots=True)
class OutOfMemory:
    """No free block of order ``order`` or above: ``alloc_pages`` returns NULL (ENOMEM)."""

    order: int


def buddy_of(block: Block) -> Block:
    """The block's buddy: same order, the pfn differing in bit ``order``."""
    return Block(buddy_pfn(block.pfn, block.order), block.order)


def parent_of(block: Block) -> Block:
    """The block of one order more that contains ``block`` and its buddy."""
    return Block(combined_pfn(block.pfn, block.order), block.order + 1)


def split_off(block: Block, order: int) -> tuple[Block, tuple[Block, ...]]:
    """Split ``block`` down to ``order``: its lowest order-``order`` block, and the upper halves left over.

    Linux's ``expand()`` halves the block repeatedly, keeps the lower half and
    puts the upper half on the free list of its order: splitting order 3 at
    pfn 0 for order 1 gives ``Block(0, 1)`` and the leftovers
    ``Block(4, 2)``, ``Block(2, 1)``.

    pre: 0 <= order <= block.order <= 52
    pre: 0 <= block.pfn < 2 ** 52
    post: __return__[0].pfn == block.pfn and __return__[0].order == order
    post: sum(b.size for b in __return__[1]) + (1 << order) == block.size
    """
    halves = tuple(Block(upper_half_pfn(block.pfn, high + 1), high) for high in range(block.order - 1, order - 1, -1))
    return Block(block.pfn, order), halves


def tiling(frames: int, max_order: int) -> tuple[Block, ...]:
    """The free blocks of fresh memory: from pfn 0 up, the largest aligned block that fits.

    This is how ``__free_pages_memory`` (mm/memblock.c) hands boot memory to
    the buddy allocator: each block is as large as the pfn's alignment,
    ``max_order`` and the end of memory allow.
    """
    blocks: list[Block] = []
    pfn = 0
    while pfn < frames:
        order = max_order
        while not is_aligned(pfn, order) or pfn + (1 << order) > frames:
            order -= 1
        blocks.append(Block(pfn, order))
        pfn += 1 << order
    return tuple(blocks)


# --- The state -----------------------------------------------------------------------------------


def _sorted_set(blocks: Iterable[Block]) -> str:
    items = ", ".join(repr(b) for b in sorted(blocks))
    return f"frozenset({{{items}}})" if items else "frozenset()"


@dataclass(frozen=True, slots=True)
class BuddyState:
    """Memory of ``frames`` frames tiled by ``free`` and ``allocated`` blocks of orders ``0 .. max_order``."""

    frames: int
    max_order: int
    free: frozenset[Block]
    allocated: frozenset[Block] = frozenset()

    def __repr__(self) -> str:
        return (
            f"BuddyState(frames={self.frames}, max_order={self.max_order}, "
            f"free={_sorted_set(self.free)}, allocated={_sorted_set(self.allocated)})"
        )


def initial(frames: int, max_order: int = DEFAULT_MAX_ORDER) -> BuddyState:
    """Fresh memory: every frame free, in the blocks of :func:`tiling`."""
    if frames < 1:
        raise ConfigError(f"frames must be at least 1, got {frames}")
    if not 0 <= max_order <= LIMIT_ORDER:
        raise ConfigError(f"max_order must be 0..{LIMIT_ORDER}, got {max_order}")
    return BuddyState(frames, max_order, frozenset(tiling(frames, max_order)))


def check_order(state: BuddyState, order: int) -> None:
    """Raise :class:`OrderOutOfRange` unless ``0 <= order <= max_order``."""
    if not 0 <= order <= state.max_order:
        raise OrderOutOfRange(
            f"order {order} is out of range: allowed 0..{state.max_order} (max_order is inclusive, like MAX_PAGE_ORDER)"
        )


def free_counts(state: BuddyState) -> tuple[int, ...]:
    """Free blocks per order, ``0 .. max_order``: the numbers ``/proc/buddyinfo`` prints (``nr_free``)."""
    return tuple(sum(1 for b in state.free if b.order == order) for order in range(state.max_order + 1))


def block_containing(state: BuddyState, pfn: int) -> tuple[Block, bool]:
    """The block that frame ``pfn`` lies in, and whether it is free.  ``pfn`` must be inside memory."""
    for block in state.free:
        if block.contains(pfn):
            return block, True
    return next(b for b in state.allocated if b.contains(pfn)), False


# --- Allocation ----------------------------------------------------------------------------------


def allowed_pfns(state: BuddyState, order: int) -> frozenset[int]:
    """Every pfn ``alloc(order)`` may return: the first frame of each free block of order ``order`` or above.

    Empty means the outcome must be :class:`OutOfMemory`.  Linux picks the
    head of the smallest non-empty list (``__rmqueue_smallest``), but per-CPU
    lists, migratetype fallbacks and list order make any of these possible
    from the outside; an implementation is free to choose.
    """
    check_order(state, order)
    return frozenset(b.pfn for b in state.free if b.order >= order)


def alloc_at(state: BuddyState, order: int, pfn: int) -> BuddyState:
    """The state after handing out the order-``order`` block at ``pfn``, split off the free block starting there.

    ``pfn`` must be one of :func:`allowed_pfns`; anything else is refused
    with :class:`~lang.errors.InvalidArgument`: the harness checks the choice first.
    """
    if pfn not in allowed_pfns(state, order):
        raise InvalidArgument(f"pfn {pfn:#x} does not start a free block of order >= {order}: not an allowed choice")
    source = next(b for b in state.free if b.pfn == pfn)
    given, leftovers = split_off(source, order)
    return replace(state, free=(state.free - {source}) | set(leftovers), allocated=state.allocated | {given})


def isolate_frame(state: BuddyState, pfn: int) -> BuddyState:
    """The state after taking the single free frame ``pfn`` out of the free block holding it, the rest of that block
    left free as the halves that do not hold it.

    Compaction's free scanner takes whole free blocks (``isolate_freepages_block`` → ``__isolate_free_page``),
    splits them into order-0 pages (``split_map_pages``, mm/compaction.c) and gives back those it did not use
    (``release_freepages``), which merge again: for the buddy, one frame taken.  A frame that is not free is
    refused with :class:`~lang.errors.InvalidArgument`.
    """
    if not 0 <= pfn < state.frames:
        raise InvalidArgument(f"pfn {pfn:#x} is outside memory: allowed 0 .. {state.frames - 1:#x}")
    block, free = block_containing(state, pfn)
    if not free:
        raise InvalidArgument(f"frame {pfn:#x} is not free: only a free frame can be isolated")
    pieces = []
    part = block
    while part.order > 0:
        low, high = Block(part.pfn, part.order - 1), Block(part.pfn + (1 << (part.order - 1)), part.order - 1)
        pieces.append(low if pfn >= high.pfn else high)
        part = high if pfn >= high.pfn else low
    return replace(state, free=(state.free - {block}) | set(pieces), allocated=state.allocated | {Block(pfn, 0)})


def least_choice(state: BuddyState, order: int) -> int | None:
    """The allowed pfn from the smallest sufficient order, lowest pfn first; None when there is none."""
    candidates = [b for b in state.free if b.order >= order]
    if not candidates:
        return None
    return min(candidates, key=lambda b: (b.order, b.pfn)).pfn


def alloc(state: BuddyState, order: int) -> tuple[BuddyState, Block | OutOfMemory]:
    """Allocate ``2**order`` frames, taking the least choice; :class:`OutOfMemory` when nothing fits."""
    check_order(state, order)
    pfn = least_choice(state, order)
    if pfn is None:
        return state, OutOfMemory(order)
    return alloc_at(state, order, pfn), Block(pfn, order)


# --- Freeing ------------------------------------------------------------------------------------


def check_free(state: BuddyState, pfn: int, order: int) -> None:
    """Raise the matching :class:`~lang.errors.BuddyError` unless ``Block(pfn, order)`` is allocated.

    The checks come in the order a caller can fix them: the order, the range,
    the alignment (the ``VM_BUG_ON`` preconditions of ``__free_one_page``),
    then what the frame at ``pfn`` currently is.
    """
    check_order(state, order)
    if pfn < 0 or pfn + (1 << order) > state.frames:
        raise BlockOutOfRange(
            f"block at pfn {pfn:#x} of order {order} is outside memory: "
            f"pfn + 2**order must be at most the frame count, {state.frames:#x}"
        )
    if not is_aligned(pfn, order):
        raise MisalignedBlock(f"pfn {pfn:#x} is not aligned to order {order}: it must be a multiple of {1 << order}")
    if Block(pfn, order) in state.allocated:
        return
    holder, is_free = block_containing(state, pfn)
    if is_free:
        raise DoubleFree(f"frame {pfn:#x} is already free (in free {holder!r}): only allocated blocks can be freed")
    if holder.pfn == pfn:
        raise WrongOrder(f"block at pfn {pfn:#x} was allocated with order {holder.order}: free it with that order")
    raise NotAllocated(f"pfn {pfn:#x} is inside allocated {holder!r}: free the block by its first pfn")


def merge(free: frozenset[Block], block: Block, max_order: int) -> tuple[frozenset[Block], Block]:
    """Coalesce ``block`` with its free buddies, order by order, up to ``max_order``.

    The merge loop of ``__free_one_page`` (mm/page_alloc.c): while the buddy is
    free with the same order (``page_is_buddy``, mm/internal.h), take it off
    the free set and continue with the combined block.  A buddy past the end of
    memory is never in the free set, so it never merges.
    """
    if block.order < max_order and buddy_of(block) in free:
        return merge(free - {buddy_of(block)}, parent_of(block), max_order)
    return free | {block}, block


def merged_buddies(free: frozenset[Block], block: Block, max_order: int) -> tuple[Block, ...]:
    """The free buddies :func:`merge` absorbs, in order, when ``block`` is freed into ``free``."""
    if block.order < max_order and buddy_of(block) in free:
        return (buddy_of(block), *merged_buddies(free - {buddy_of(block)}, parent_of(block), max_order))
    return ()


def free(state: BuddyState, pfn: int, order: int) -> BuddyState:
    """Return the allocated block ``Block(pfn, order)`` and merge it with its free buddies."""
    check_free(state, pfn, order)
    merged, _ = merge(state.free, Block(pfn, order), state.max_order)
    return replace(state, free=merged, allocated=state.allocated - {Block(pfn, order)})


def split_allocated(state: BuddyState, pfn: int, order: int) -> BuddyState:
    """The allocated block ``Block(pfn, order)`` as ``2**order`` allocated order-0 blocks, each freed on its own
    later (``split_page``, mm/page_alloc.c, as ``__split_huge_page`` leaves a split THP's pages)."""
    check_free(state, pfn, order)
    pieces = {Block(f, 0) for f in range(pfn, pfn + (1 << order))}
    return replace(state, allocated=(state.allocated - {Block(pfn, order)}) | pieces)


# --- Invariants (each returns the list of violations) --------------------------------------------


def aligned_violations(state: BuddyState) -> list[str]:
    """Every block, free or allocated, has an order in ``0 .. max_order`` and a pfn aligned to it."""
    return [
        f"{b!r} is misaligned or its order is out of 0..{state.max_order}"
        for b in sorted(state.free | state.allocated)
        if not (0 <= b.order <= state.max_order and is_aligned(b.pfn, b.order))
    ]


def disjoint_violations(state: BuddyState) -> list[str]:
    """No two blocks overlap, and no block is both free and allocated."""
    both = [f"{b!r} is both free and allocated" for b in sorted(state.free & state.allocated)]
    ordered = sorted(state.free | state.allocated)
    overlaps = [f"{a!r} overlaps {b!r}" for a, b in pairwise(ordered) if b.pfn < a.end]
    return both + overlaps


def coalesced_violations(state: BuddyState) -> list[str]:
    """Fully coalesced: no free block below ``max_order`` has its buddy free as well."""
    return [
        f"{b!r} and its buddy {buddy_of(b)!r} are both free"
        for b in sorted(state.free)
        if b.order < state.max_order and b.pfn < buddy_of(b).pfn and buddy_of(b) in state.free
    ]


def conservation_violations(state: BuddyState) -> list[str]:
    """Free and allocated blocks together cover frames ``0 .. frames-1``, each once, and nothing else."""
    ordered = sorted(state.free | state.allocated)
    covered = sum(b.size for b in ordered)
    problems = [] if covered == state.frames else [f"blocks cover {covered} frames, memory has {state.frames}"]
    if ordered and (ordered[0].pfn < 0 or ordered[-1].end > state.frames):
        problems.append(f"blocks reach outside memory 0 .. {state.frames - 1:#x}")
    return problems


def counts_violations(state: BuddyState, counts: tuple[int, ...]) -> list[str]:
    """``counts`` (a buddyinfo line, per order) equals the free blocks of each order."""
    expected = free_counts(state)
    return [] if tuple(counts) == expected else [f"buddyinfo counts {list(counts)}, free blocks per order {expected}"]


def violations(state: BuddyState) -> list[str]:
    """Every buddy invariant that ``state`` breaks (empty when it is well formed)."""
    return (
        aligned_violations(state)
        + disjoint_violations(state)
        + coalesced_violations(state)
        + conservation_violations(state)
    )


def well_formed(state: BuddyState) -> bool:
    """True exactly when :func:`violations` finds nothing, decided on ``(pfn, order)`` pairs in one pass.

    The blocks in (pfn, order) order tile ``0 .. frames-1`` when each starts where the one before it ended (the
    first at 0) and the last ends at ``frames``: no overlap, no gap, nothing outside memory, and a block both free
    and allocated would occur twice and fail the same test.  Each order is in ``0 .. max_order`` with its pfn aligned
    to it, and no free block below ``max_order`` has its free buddy beside it.  The explorer checks every state
    with it and asks :func:`violations` for the messages only when it fails.
    """
    limit = state.max_order
    free = {(b.pfn, b.order) for b in state.free}
    end = 0
    for pfn, order in sorted([*free, *((b.pfn, b.order) for b in state.allocated)]):
        if pfn != end or not 0 <= order <= limit or pfn & ((1 << order) - 1):
            return False
        end = pfn + (1 << order)
    if end != state.frames or len(free) != len(state.free):
        return False
    return not any(order < limit and (pfn ^ (1 << order), order) in free for pfn, order in free)
