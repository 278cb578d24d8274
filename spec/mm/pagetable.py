"""Abstract page tables of a process: which tables exist, and the leaf of each mapped page.

A leaf for page ``vpn`` needs the PDPT, PD and PT covering it; missing ones
are allocated top-down when a fault or fork first needs them
(``__pud_alloc``, ``__pmd_alloc``, ``__pte_alloc``, mm/memory.c).  Tables are
freed when no VMA is left in the range they cover, as ``free_pgtables``
does after an unmap (mm/memory.c ``free_pgd_range``), and all of them on exit.
Emptying a range with ``MADV_DONTNEED`` keeps its tables.  A hugetlb leaf
is a PD entry with PS=1 (``huge_pte_alloc``, arch/x86 uses the generic
mm/hugetlb.c version: ``pud_alloc`` then ``pmd_alloc``), so it needs only
the PDPT and the PD.

The protection a VMA gives a new leaf is ``vm_get_page_prot`` (arch/x86/mm/pgprot.c,
``protection_map``): ``PROT_NONE`` is not present; private writable mappings
are read-only (``PAGE_COPY``) until a write fault makes a page writable;
shared writable ones are writable; without ``PROT_EXEC`` the entry has XD.
"""

from __future__ import annotations

from lang.records import replace
from spec.alloc import buddy
from spec.mm.kernel import (
    Choices,
    Kernel,
    Leaf,
    Space,
    TableKey,
    put_page,
    release,
    space,
    take,
    updated,
    with_space,
    without,
)
from spec.mm.vma import Vma, intersects

TABLE_LEVELS = (3, 2, 1)
HUGE_TABLE_LEVELS = (3, 2)


def table_keys(vpn: int, huge: bool = False) -> tuple[TableKey, ...]:
    """The PDPT, PD and PT covering page ``vpn``, top-down (no PT for a hugetlb leaf)."""
    return tuple((level, vpn >> (9 * level)) for level in (HUGE_TABLE_LEVELS if huge else TABLE_LEVELS))


def table_span(key: TableKey) -> tuple[int, int]:
    """The pages a table covers: ``lo .. hi-1``."""
    level, index = key
    return index << (9 * level), (index + 1) << (9 * level)


def missing_tables(sp: Space, vpns: list[int], huge: frozenset[int] = frozenset()) -> list[TableKey]:
    """The tables, top-down and without repeats, that mapping ``vpns`` (those in ``huge`` by hugetlb leaves)
    would have to allocate."""
    missing: list[TableKey] = []
    for vpn in vpns:
        missing += [key for key in table_keys(vpn, vpn in huge) if key not in sp.tables and key not in missing]
    return missing


def ensure_tables(k: Kernel, pid: int, vpn: int, choices: Choices, huge: bool = False) -> Kernel:
    """Allocate the missing tables on the way to ``vpn`` (roles ``("table", pid, level, index)``)."""
    for key in missing_tables(space(k, pid), [vpn], frozenset({vpn}) if huge else frozenset()):
        k, pfn = take(k, ("table", pid, *key), choices)
        sp = space(k, pid)
        k = with_space(k, pid, replace(sp, tables=updated(sp.tables, key, pfn)))
    return k


def leaf_for(vma: Vma, pfn: int, writable: bool, dirty: bool | None = None, huge: bool | None = None) -> Leaf:
    """The entry ``vma`` gives page ``pfn``: present unless ``PROT_NONE``, XD unless executable; 2 MiB if hugetlb
    (or ``huge`` says so: a THP's PMD); dirty if ``dirty`` says so, else if it is writable (the write fault's
    ``pte_mkdirty``)."""
    present = vma.prot.accessible
    writable = writable and present
    dirty = writable if dirty is None else dirty
    huge = vma.huge if huge is None else huge
    return Leaf(pfn, present, writable, user=True, nx=not vma.prot.exec, huge=huge, dirty=dirty)


def deposit_key(head: int) -> TableKey:
    """The PT a THP's PMD keeps deposited (``pgtable_trans_huge_deposit``): the one that would cover its 2 MiB."""
    return (1, head >> 9)


def is_thp_leaf(sp: Space, vpn: int, leaf: Leaf) -> bool:
    """``leaf`` at ``vpn`` is a THP's PMD (or the huge zero page's): a 2 MiB leaf with a deposited PT under it; a
    hugetlb leaf has none."""
    return leaf.huge and deposit_key(vpn) in sp.tables


def set_leaf(k: Kernel, pid: int, vpn: int, leaf: Leaf) -> Kernel:
    """Install (or replace) the leaf of page ``vpn``; its tables must exist."""
    sp = space(k, pid)
    return with_space(k, pid, replace(sp, leaves=updated(sp.leaves, vpn, leaf)))


def zap(k: Kernel, pid: int, lo: int, hi: int) -> Kernel:
    """Clear the leaves and swap entries of pages ``lo .. hi-1`` and drop what they referenced (``zap_pte_range``;
    ``__unmap_hugepage_range`` for hugetlb leaves, whose callers never cut one; ``zap_huge_pmd`` for a THP's PMD,
    which callers split first unless the range covers it, and whose deposited PT goes too,
    ``zap_deposited_table``)."""
    sp = space(k, pid)
    gone = sorted(v for v in sp.leaves if lo <= v < hi)
    swapped = sorted(v for v in sp.swapped if lo <= v < hi)
    deposits = [deposit_key(v) for v in gone if is_thp_leaf(sp, v, sp.leaves[v])]
    leaves, tables = without(sp.leaves, gone), without(sp.tables, deposits)
    k = with_space(k, pid, replace(sp, leaves=leaves, swapped=without(sp.swapped, swapped), tables=tables))
    for key in deposits:
        k = replace(k, buddy=buddy.free(k.buddy, sp.tables[key], 0))  # pte_free: never walked, freed at once
    for vpn in gone:
        k = put_page(k, sp.leaves[vpn].pfn)
    for vpn in swapped:
        k = drop_swap_entry(k, sp.swapped[vpn])
    return k


def drop_swap_entry(k: Kernel, slot: int) -> Kernel:
    """A swap entry cleared (``free_swap_and_cache``): its slot's count drops, the slot is free at zero."""
    count = k.swap_map[slot] - 1
    if count:
        return replace(k, swap_map=updated(k.swap_map, slot, count))
    return replace(k, swap_map=without(k.swap_map, [slot]), swap_data=without(k.swap_data, [slot]))


def free_unused_tables(k: Kernel, pid: int) -> Kernel:
    """Free every table whose range no VMA reaches any more (``free_pgtables``)."""
    sp = space(k, pid)
    unused = sorted(key for key in sp.tables if not intersects(sp.vmas, *table_span(key)))
    k = with_space(k, pid, replace(sp, tables=without(sp.tables, unused)))
    for key in unused:
        k = release(k, sp.tables[key])
    return k
