"""External fragmentation of a zone, from its free blocks per order: Linux's integer formulas.

The input is a zone's ``nr_free`` per order, the numbers a ``/proc/buddyinfo`` line prints
(:func:`spec.alloc.buddy.free_counts`).  Everything here is mm/vmstat.c's arithmetic, in integers as the kernel
does it (``div_u64`` rounds down), so the results can be compared with the kernel's digit for digit:

- :func:`contig_info` is ``fill_contig_page_info``: free pages, free blocks, and free blocks of at least the
  requested order counted in units of that order;
- :func:`fragmentation_index` is ``__fragmentation_index`` (``/sys/kernel/debug/extfrag/extfrag_index``, and
  what compaction consults): -1000 when the request could be met, otherwise 0 .. 1000, towards 0 when it fails
  for lack of memory and towards 1000 when it fails for fragmentation;
- :func:`unusable_index` is ``unusable_free_index`` (``/sys/kernel/debug/extfrag/unusable_index``): the share,
  in thousandths, of free memory in blocks too small for the order;
- :func:`extfrag_for_order` is ``extfrag_for_order``, the same share in percent (used by proactive compaction);
- :func:`fragindex_allows_compaction` is the fragmentation test of ``compaction_suitable`` (mm/compaction.c):
  above ``PAGE_ALLOC_COSTLY_ORDER`` (3), compaction is not tried when the index is in
  ``0 .. vm.extfrag_threshold`` (500 by default): the failure is then put down to a lack of memory, which
  reclaim, not compaction, can fix.  (The watermark check ``__compaction_suitable`` comes first in the kernel
  and is not part of this function.)

All functions are pure; a bad order or a negative count raises :class:`~lang.errors.InvalidArgument`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lang.errors import InvalidArgument

PAGE_ALLOC_COSTLY_ORDER = 3  # include/linux/mmzone.h
EXTFRAG_THRESHOLD = 500  # mm/compaction.c sysctl_extfrag_threshold, vm.extfrag_threshold


@dataclass(frozen=True, slots=True)
class ContigInfo:
    """``struct contig_page_info`` (mm/vmstat.c)."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def _check(counts: Sequence[int], order: int) -> None:
    if not counts:
        raise InvalidArgument("free counts per order must not be empty: give one count per order 0 .. max_order")
    if any(c < 0 for c in counts):
        raise InvalidArgument(f"free counts must be 0 or more, not {list(counts)}")
    if not 0 <= order < len(counts):
        raise InvalidArgument(f"order {order} is out of range: allowed 0..{len(counts) - 1}")


def contig_info(counts: Sequence[int], order: int) -> ContigInfo:
    """``fill_contig_page_info(zone, order, &info)`` on the free counts ``counts`` (index: order)."""
    _check(counts, order)
    free_pages = sum(blocks << o for o, blocks in enumerate(counts))
    suitable = sum(blocks << (o - order) for o, blocks in enumerate(counts) if o >= order)
    return ContigInfo(free_pages, sum(counts), suitable)


def fragmentation_index(counts: Sequence[int], order: int) -> int:
    """``__fragmentation_index``: -1000 if a free block of ``order`` exists; 0 with no free blocks at all;
    otherwise ``1000 - (1000 + free_pages * 1000 / 2^order) / free_blocks_total``, in integers."""
    info = contig_info(counts, order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


def unusable_index(counts: Sequence[int], order: int) -> int:
    """``unusable_free_index``: 1000 with nothing free, else the free pages in blocks below ``order`` per 1000."""
    info = contig_info(counts, order)
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def extfrag_for_order(counts: Sequence[int], order: int) -> int:
    """``extfrag_for_order``: the percentage of free pages in blocks smaller than ``order`` (0 with none free)."""
    info = contig_info(counts, order)
    if info.free_pages == 0:
        return 0
    return (info.free_pages - (info.free_blocks_suitable << order)) * 100 // info.free_pages


def fragindex_allows_compaction(counts: Sequence[int], order: int, threshold: int = EXTFRAG_THRESHOLD) -> bool:
    """The fragmentation-index test of ``compaction_suitable``: false above the costly order when the index
    is in ``0 .. threshold`` (a lack of memory, not fragmentation); true otherwise."""
    if not 0 <= threshold <= 1000:
        raise InvalidArgument(f"extfrag_threshold must be 0..1000, not {threshold}")
    if order <= PAGE_ALLOC_COSTLY_ORDER:
        _check(counts, order)
        return True
    index = fragmentation_index(counts, order)
    return not 0 <= index <= threshold


def compact_gap(order: int) -> int:
    """``compact_gap`` (include/linux/compaction.h): ``2 << order``, the free pages compaction wants beyond the
    watermark, room for the migration targets while a block of ``order`` forms."""
    return 2 << order


def gap_allows_compaction(counts: Sequence[int], order: int, watermark: int = 0) -> bool:
    """The watermark test of ``__compaction_suitable`` (mm/compaction.c): order-0 ``__zone_watermark_ok`` with
    ``watermark + compact_gap(order)``, true when the free pages exceed it (``watermark``: the zone's min or,
    above the costly order, low watermark; 0 where the model keeps no reserve)."""
    return contig_info(counts, order).free_pages > watermark + compact_gap(order)


def index_text(index: int, width: int = 2) -> str:
    """An index as mm/vmstat.c prints it: ``"%2d.%03d"`` (``extfrag_show_print``; ``"%d.%03d"``, width 0, in
    ``unusable_show_print``) of ``index / 1000, index % 1000`` with C's division (towards zero): -1000 is
    ``-1.000``."""
    whole = abs(index) // 1000 * (-1 if index < 0 else 1)
    return f"{whole:{width}d}.{abs(index - whole * 1000):03d}" if width else f"{whole}.{abs(index - whole * 1000):03d}"


def extfrag_line(counts: Sequence[int], node: int = 0, zone: str = "Normal") -> str:
    """The zone's line of ``extfrag_index``: ``Node %d, zone %8s`` then each order's fragmentation index."""
    cells = "".join(f"{index_text(fragmentation_index(counts, o))} " for o in range(len(counts)))
    return f"Node {node}, zone {zone:>8} {cells}"


def unusable_line(counts: Sequence[int], node: int = 0, zone: str = "Normal") -> str:
    """The zone's line of ``unusable_index``: each order's unusable free index."""
    cells = "".join(f"{index_text(unusable_index(counts, o), 0)} " for o in range(len(counts)))
    return f"Node {node}, zone {zone:>8} {cells}"
