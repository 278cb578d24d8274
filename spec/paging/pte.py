"""Paging-structure entries: the 64-bit x86-64 format, decoded.

Layout (Intel SDM Vol. 3A 4.5, tables 4-15 to 4-20):

====  =====  ==========================================================
bit   name   meaning
====  =====  ==========================================================
0     P      present; when 0 every other bit is ignored
1     R/W    0: writes are not allowed through this entry
2     U/S    0: user-mode accesses are not allowed through this entry
3     PWT    page-level write-through
4     PCD    page-level cache disable
5     A      accessed, set by the processor
6     D      dirty, set by the processor in a leaf it writes through
7     PS     page size: a leaf in a PDPTE (1 GiB) or PDE (2 MiB);
             reserved in a PML4E/PML5E; PAT in a 4 KiB PTE
8     G      global (leaf only)
12    PAT    PAT in a 1 GiB or 2 MiB leaf
51:12        physical address (bits M-1:12, M = MAXPHYADDR; 51:M reserved)
63    XD     execute-disable when EFER.NXE=1; reserved when NXE=0
====  =====  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.paging.address import PAGE_SHIFT, level_shift

P = 1 << 0
RW = 1 << 1
US = 1 << 2
PWT = 1 << 3
PCD = 1 << 4
A = 1 << 5
D = 1 << 6
PS = 1 << 7
G = 1 << 8
PAT_LARGE = 1 << 12
XD = 1 << 63

ADDRESS_MASK_52 = ((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1)

FLAG_NAMES = (
    (P, "P"),
    (RW, "RW"),
    (US, "US"),
    (PWT, "PWT"),
    (PCD, "PCD"),
    (A, "A"),
    (D, "D"),
    (PS, "PS"),
    (G, "G"),
    (XD, "XD"),
)


@dataclass(frozen=True, slots=True)
class Pte:
    """A paging-structure entry, field by field.

    ``addr`` is the physical address field (bits 51:12) exactly as stored;
    for a large-page leaf bit 12 of the word is PAT, not address, and
    :func:`leaf_frame_base` strips it.
    """

    present: bool = False
    writable: bool = False
    user: bool = False
    pwt: bool = False
    pcd: bool = False
    accessed: bool = False
    dirty: bool = False
    ps: bool = False
    global_: bool = False
    addr: int = 0
    ignored: int = 0
    xd: bool = False


# Bits that the fields above do not name: 11:9 and 62:52 (ignored by the
# processor, available to software), kept so decode/encode is a bijection.
IGNORED_MASK = (0b111 << 9) | (((1 << 11) - 1) << 52)


def decode(word: int) -> Pte:
    """Split a 64-bit entry into its fields.

    pre: 0 <= word < 2 ** 64
    post: encode(__return__) == word
    """
    return Pte(
        present=bool(word & P),
        writable=bool(word & RW),
        user=bool(word & US),
        pwt=bool(word & PWT),
        pcd=bool(word & PCD),
        accessed=bool(word & A),
        dirty=bool(word & D),
        ps=bool(word & PS),
        global_=bool(word & G),
        addr=word & ADDRESS_MASK_52,
        ignored=word & IGNORED_MASK,
        xd=bool(word & XD),
    )


def encode(pte: Pte) -> int:
    """The 64-bit word of an entry; the inverse of :func:`decode`.

    post: 0 <= __return__ < 2 ** 64
    """
    flags = (
        (P if pte.present else 0)
        | (RW if pte.writable else 0)
        | (US if pte.user else 0)
        | (PWT if pte.pwt else 0)
        | (PCD if pte.pcd else 0)
        | (A if pte.accessed else 0)
        | (D if pte.dirty else 0)
        | (PS if pte.ps else 0)
        | (G if pte.global_ else 0)
        | (XD if pte.xd else 0)
    )
    return flags | (pte.addr & ADDRESS_MASK_52) | (pte.ignored & IGNORED_MASK)


def is_leaf(word: int, level: int) -> bool:
    """A present entry maps a page: every PTE, and a PDE or PDPTE with PS=1 (SDM 4.5.4)."""
    return level == 1 or (level in (2, 3) and bool(word & PS))


def reserved_mask(word: int, level: int, maxphyaddr: int, nxe: bool) -> int:
    """The bits of a present entry at ``level`` that must be zero (SDM 4.5.4, tables 4-15..4-20).

    - bits 51:MAXPHYADDR of every entry;
    - bit 63 (XD) when EFER.NXE=0;
    - PS (bit 7) of a PML5E or PML4E;
    - bits 29:13 of a 1 GiB leaf and bits 20:13 of a 2 MiB leaf (the address
      field there starts at bit 30 or 21; bit 12 is PAT).
    """
    mask = ((1 << 52) - 1) & ~((1 << maxphyaddr) - 1)
    if not nxe:
        mask |= XD
    if level >= 4:
        mask |= PS
    elif level in (2, 3) and word & PS:
        mask |= ((1 << level_shift(level)) - 1) & ~((1 << (PAGE_SHIFT + 1)) - 1)
    return mask


def has_reserved_bits(word: int, level: int, maxphyaddr: int, nxe: bool) -> bool:
    """True when a present entry sets a bit that :func:`reserved_mask` reserves."""
    return bool(word & reserved_mask(word, level, maxphyaddr, nxe))


def next_table_base(word: int, maxphyaddr: int) -> int:
    """Physical address of the table a non-leaf entry references (bits M-1:12)."""
    return word & ((1 << maxphyaddr) - 1) & ~((1 << PAGE_SHIFT) - 1)


def leaf_frame_base(word: int, level: int, maxphyaddr: int) -> int:
    """Physical base of the page a leaf at ``level`` maps: bits M-1:12, 21 or 30."""
    return word & ((1 << maxphyaddr) - 1) & ~((1 << level_shift(level)) - 1)


def flag_names(word: int) -> str:
    """Short human form of the set flags, e.g. ``"P RW US A"``."""
    return " ".join(name for bit, name in FLAG_NAMES if word & bit) or "-"
