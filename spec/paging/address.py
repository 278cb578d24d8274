"""Linear and physical addresses of x86-64 paging.

With 4-level paging (CR4.LA57=0) a linear address has 48 implemented bits:
bits 47:39 index the PML4, 38:30 the PDPT, 29:21 the page directory, 20:12 the
page table, and 11:0 are the offset into a 4 KiB page.  5-level paging
(LA57=1) adds the PML5, indexed by bits 56:48.  (Intel SDM Vol. 3A 4.5.)

An address is *canonical* when bits 63 down to the top implemented bit are
all equal; any other address raises #GP before paging is consulted
(Intel SDM Vol. 1 3.3.7.1, Vol. 3A 4.5).

Levels are numbered as Linux and the SDM tables do, from the leaf up:
1 = page table (PTE), 2 = page directory (PDE), 3 = PDPT, 4 = PML4, 5 = PML5.
"""

from __future__ import annotations

from typing import NewType

VirtAddr = NewType("VirtAddr", int)
PhysAddr = NewType("PhysAddr", int)
Pfn = NewType("Pfn", int)
Vpn = NewType("Vpn", int)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
WORD_SIZE = 8
ENTRIES_PER_TABLE = 512
INDEX_BITS = 9
MASK64 = (1 << 64) - 1

LEVEL_NAMES = {5: "PML5", 4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}


def address_width(levels: int) -> int:
    """Implemented linear-address bits: 48 for 4-level, 57 for 5-level paging."""
    return PAGE_SHIFT + INDEX_BITS * levels


def level_shift(level: int) -> int:
    """Lowest linear-address bit that the index of table ``level`` uses.

    Level 1 (PT) starts at bit 12, level 2 (PD) at 21, level 3 (PDPT) at 30.
    It is also log2 of the size a leaf at that level maps.
    """
    return PAGE_SHIFT + INDEX_BITS * (level - 1)


def table_index(va: int, level: int) -> int:
    """The 9-bit index that ``va`` selects in the table at ``level`` (SDM 4.5.4)."""
    return (va >> level_shift(level)) & (ENTRIES_PER_TABLE - 1)


def page_offset(va: int, level: int) -> int:
    """Offset of ``va`` inside the page a leaf at ``level`` maps (12, 21 or 30 bits)."""
    return va & ((1 << level_shift(level)) - 1)


def is_canonical(va: int, levels: int) -> bool:
    """True when bits 63 .. width-1 of the 64-bit ``va`` are all equal (SDM Vol. 3A 4.5)."""
    top = va >> (address_width(levels) - 1)
    return top == 0 or top == (1 << (65 - address_width(levels))) - 1


def split(va: int, levels: int) -> tuple[tuple[int, ...], int]:
    """Decompose ``va`` into table indices, top level first, and the 4 KiB page offset.

    pre: levels in (4, 5) and 0 <= va < 2 ** 64
    post: len(__return__[0]) == levels
    post: all(0 <= i < ENTRIES_PER_TABLE for i in __return__[0]) and 0 <= __return__[1] < PAGE_SIZE
    """
    indices = tuple(table_index(va, level) for level in range(levels, 0, -1))
    return indices, page_offset(va, 1)


def join(indices: tuple[int, ...], offset: int, levels: int) -> int:
    """Rebuild the canonical address with these indices (top level first) and offset.

    The inverse of :func:`split` on canonical addresses: the top implemented
    bit is copied into bits 63 .. width (sign extension).

    pre: levels in (4, 5) and len(indices) == levels and 0 <= offset < PAGE_SIZE
    pre: all(0 <= i < ENTRIES_PER_TABLE for i in indices)
    post: split(__return__, levels) == (indices, offset)
    post: is_canonical(__return__, levels)
    """
    va = offset
    for level, index in zip(range(levels, 0, -1), indices, strict=True):
        va |= index << level_shift(level)
    width = address_width(levels)
    if va >> (width - 1):
        va |= MASK64 ^ ((1 << width) - 1)
    return va


def pfn_of(pa: int) -> Pfn:
    """Frame number holding physical address ``pa``."""
    return Pfn(pa >> PAGE_SHIFT)


def frame_base(pfn: int) -> PhysAddr:
    """Physical address of the first byte of frame ``pfn``."""
    return PhysAddr(pfn << PAGE_SHIFT)
