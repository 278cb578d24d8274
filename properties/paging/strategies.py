"""Hypothesis strategies for the hardware layer: page-table memory, control state, accesses.

Random 64-bit words almost never form a page table, and random 48-bit
addresses almost never reach one.  So everything here is drawn from a small
world where collisions are the rule:

- memory is :data:`FRAMES` frames; the first :data:`TABLE_FRAMES` are where
  tables live, CR3 points at one of them, and table pointers mostly point at
  them (a table may point at itself, as a recursive mapping does);
- entry slots and address indices are mostly drawn from :data:`HOT_INDICES`
  (the first entries and the last), so an address generated independently of
  the tables still walks through the entries written;
- entry words are well-formed pointers and leaves (4 KiB, 2 MiB, 1 GiB) with
  random R/W, U/S, XD, A, D, PS, G, caching bits, or garbage: any 64-bit
  word, or a well-formed one with a reserved bit set (MAXPHYADDR bits, the
  low bits of a large leaf, XD without NXE, PS in a PML4E);
- addresses are canonical for 4- or 5-level paging, with occasionally one
  bit of the sign extension flipped to make them non-canonical.

Strategies return :mod:`lang.scenario` operations, so whatever they build
can be saved and replayed as a scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from hypothesis import strategies as st

from lang.hardware_ops import Access, ReadPhys, SetCpu, WritePhys
from lang.scenario import KINDS, MODES, Op
from spec.paging.address import (
    ENTRIES_PER_TABLE,
    MASK64,
    PAGE_SHIFT,
    PAGE_SIZE,
    WORD_SIZE,
    address_width,
    join,
    level_shift,
)
from spec.paging.pte import PAT_LARGE, PCD, PS, PWT, RW, US, XD, A, D, G, P

FRAMES = 16
CPUS = 2
MAXPHYADDR = 46
TABLE_FRAMES = 2
# Frames a well-formed path may place its lower tables in (distinct along one path).
TREE_FRAMES = 6
HOT_INDICES = (0, 1, 2, ENTRIES_PER_TABLE - 1)
MAX_LEVELS = 5

# An address field beyond memory but below MAXPHYADDR: a walk through it is a machine check.
FAR_PFN = (1 << (MAXPHYADDR - PAGE_SHIFT)) - 1
# Bits an entry must not set (SDM 4.5.4): 51:MAXPHYADDR, the low address bits of
# a large leaf, and XD when EFER.NXE=0.  PS is reserved only in a PML5E/PML4E.
HIGH_RESERVED_BITS = tuple(range(MAXPHYADDR, 52))
LARGE_LEAF_RESERVED_BITS = tuple(range(13, 30))
IGNORED_BITS = (9, 10, 11, *range(52, 63))


def union(*bits: int) -> int:
    """The OR of ``bits``: an entry assembled from its parts."""
    word = 0
    for part in bits:
        word |= part
    return word


def present_entry(pfn: int, *flags: int) -> int:
    """A present entry pointing at frame ``pfn`` with ``flags``."""
    return union(P, pfn << PAGE_SHIFT, *flags)


def frame_address(pfn: int) -> int:
    """The physical address of frame ``pfn``."""
    return pfn * PAGE_SIZE


def word_address(word: int) -> int:
    """The physical address of the ``word``-th 64-bit word of memory."""
    return word * WORD_SIZE


def entry_address(pfn: int, index: int) -> int:
    """The physical address of entry ``index`` of the table in frame ``pfn``."""
    return pfn * PAGE_SIZE + index * WORD_SIZE


def set_bit(word: int, bit: int) -> int:
    """``word`` with ``bit`` set."""
    return word | 1 << bit


def flip_bit(word: int, bit: int) -> int:
    """``word`` with ``bit`` inverted."""
    return word ^ (1 << bit)


def clear_present(word: int) -> int:
    """``word`` with P clear: a not-present entry, whose other bits are ignored."""
    return word & ~P


@cache
def indices() -> st.SearchStrategy[int]:
    """A table index, usually one of :data:`HOT_INDICES`."""
    return st.one_of(st.sampled_from(HOT_INDICES), st.sampled_from(HOT_INDICES), st.integers(0, ENTRIES_PER_TABLE - 1))


@cache
def table_pfns() -> st.SearchStrategy[int]:
    """A frame that holds page tables."""
    return st.integers(0, TABLE_FRAMES - 1)


@cache
def pointer_pfns() -> st.SearchStrategy[int]:
    """Where a non-leaf entry points: mostly a table frame, sometimes any frame, rarely beyond memory."""
    return st.one_of(table_pfns(), table_pfns(), st.integers(0, FRAMES - 1), st.sampled_from((FRAMES, FAR_PFN)))


@cache
def data_pfns() -> st.SearchStrategy[int]:
    """Where a 4 KiB leaf points: any frame of memory, or far above it (a leaf need not map memory)."""
    return st.one_of(st.integers(0, FRAMES - 1), st.sampled_from((FRAMES, FAR_PFN)))


@cache
def entry_slots() -> st.SearchStrategy[int]:
    """The physical address of an entry in one of the table frames."""
    return st.builds(entry_address, table_pfns(), indices())


@cache
def rights_bits() -> st.SearchStrategy[int]:
    """R/W and U/S, usually both: a path needs them on every level to grant a user write."""
    return st.sampled_from((RW | US, RW | US, RW | US, US, RW, 0))


@cache
def sometimes(bit: int) -> st.SearchStrategy[int]:
    """``bit`` one time in four, else 0."""
    return st.sampled_from((0, 0, 0, bit))


@cache
def rarely(bit: int) -> st.SearchStrategy[int]:
    """``bit`` one time in eight, else 0."""
    return st.sampled_from((0,) * 7 + (bit,))


@cache
def attribute_bits() -> st.SearchStrategy[int]:
    """XD, accessed, dirty, global and caching bits as software might leave them.

    XD is rare: with EFER.NXE=0 (the reset state) it is a reserved bit, and a
    path with one on it only ever gives a reserved-bit fault.
    """
    parts = (rarely(XD), st.sampled_from((0, A, D, A | D)), sometimes(G), st.sampled_from((0, PWT, PCD)))
    return st.builds(union, *parts)


@cache
def table_entries() -> st.SearchStrategy[int]:
    """A present non-leaf entry pointing at a table (PS clear)."""
    return st.builds(present_entry, pointer_pfns(), rights_bits(), attribute_bits())


@cache
def small_leaves() -> st.SearchStrategy[int]:
    """A present 4 KiB leaf; bit 7 is PAT in a PTE, so it may be set."""
    return st.builds(
        present_entry,
        data_pfns(),
        rights_bits(),
        attribute_bits(),
        sometimes(PS),
    )


@cache
def large_leaves_at(bases: tuple[int, ...]) -> st.SearchStrategy[int]:
    """A present large leaf (PS set) mapping one of ``bases``, with PAT (bit 12) sometimes set."""
    parts = (st.sampled_from(bases), rights_bits(), attribute_bits(), sometimes(PAT_LARGE))
    return st.builds(union, st.just(P | PS), *parts)


@cache
def large_leaves() -> st.SearchStrategy[int]:
    """A present 2 MiB or 1 GiB leaf; a 2 MiB-aligned base in a PDPTE sets reserved bits."""
    return large_leaves_at((0, 1 << 21, 1 << 30, 3 << 21, 5 << 30))


@cache
def not_present_entries() -> st.SearchStrategy[int]:
    """An entry with P clear: zero, or any word with bit 0 clear (the rest is ignored)."""
    return st.one_of(st.just(0), st.integers(0, (1 << 64) - 1).map(clear_present))


@cache
def reserved_bits() -> st.SearchStrategy[int]:
    """A bit position that is reserved in some entry: 51:MAXPHYADDR, 29:13 of a large leaf, XD, PS."""
    return st.one_of(
        st.sampled_from(HIGH_RESERVED_BITS), st.sampled_from(LARGE_LEAF_RESERVED_BITS), st.sampled_from((63, 7))
    )


@cache
def garbage_entries() -> st.SearchStrategy[int]:
    """Words a buggy kernel or a stray store could leave: reserved bits set, or anything at all."""
    well_formed = st.one_of(table_entries(), small_leaves(), large_leaves())
    return st.one_of(
        st.builds(set_bit, well_formed, reserved_bits()),
        st.builds(set_bit, well_formed, reserved_bits()),
        st.builds(flip_bit, well_formed, st.sampled_from(IGNORED_BITS)),
        st.integers(0, (1 << 64) - 1),
    )


@cache
def entry_words() -> st.SearchStrategy[int]:
    """Any entry: well-formed pointers and leaves of every size, not-present words, garbage."""
    return st.one_of(table_entries(), small_leaves(), large_leaves(), not_present_entries(), garbage_entries())


@cache
def write_entries() -> st.SearchStrategy[WritePhys]:
    """Store one entry word into a table frame."""
    return st.builds(WritePhys, entry_slots(), entry_words())


@cache
def read_entries() -> st.SearchStrategy[ReadPhys]:
    """Load one entry word back (to see the A/D bits the walker set)."""
    return st.builds(ReadPhys, entry_slots())


@cache
def levels() -> st.SearchStrategy[int]:
    """4- or 5-level paging."""
    return st.sampled_from((4, 5))


@cache
def cpu_ids(cpus: int = CPUS) -> st.SearchStrategy[int]:
    """A CPU that exists, usually CPU 0 (so consecutive steps tend to share one address space)."""
    return st.one_of(st.just(0), st.just(0), st.integers(0, cpus - 1))


@cache
def set_cpus(cpus: int = CPUS) -> st.SearchStrategy[SetCpu]:
    """Load a CPU's controls: CR3 at a table frame, every control bit free.

    WP, SMEP, SMAP and NXE are set three times in four, as a Linux kernel
    runs with them; AC (only meaningful under SMAP) half the time; LA57 one
    time in four.  Shrinking goes to the reset state, every bit clear.
    """
    usually = st.sampled_from((False, True, True, True))
    return st.builds(
        SetCpu,
        cpu_ids(cpus),
        st.one_of(st.just(0), table_pfns().map(frame_address)),
        wp=usually,
        smep=usually,
        smap=usually,
        ac=st.booleans(),
        nxe=usually,
        la57=st.sampled_from((False, False, False, True)),
    )


# Index paths are always five long, top (PML5) first; 4-level paging uses the last four.
def index_paths() -> st.SearchStrategy[tuple[int, ...]]:
    """Five table indices, PML5 first."""
    return st.tuples(*(indices() for _ in range(MAX_LEVELS)))


@cache
def page_offsets() -> st.SearchStrategy[int]:
    """An offset inside a 4 KiB page: its first or last word, or any byte."""
    return st.one_of(st.sampled_from((0, 8, PAGE_SIZE - 8)), st.integers(0, PAGE_SIZE - 1))


@cache
def sign_flips() -> st.SearchStrategy[int | None]:
    """Usually ``None`` (canonical); one time in five a bit position above the implemented ones to flip.

    The flip is given relative to the top implemented bit: 0 flips bit 47 (or
    56), the bit an off-by-one canonical check misses; 16 flips bit 63.
    """
    return st.one_of(st.none(), st.none(), st.none(), st.none(), st.sampled_from((0, 0, 1, 8, 16)))


def virtual_address(path: tuple[int, ...], offset: int, levels: int, flip: int | None = None) -> int:
    """The canonical address with the last ``levels`` indices of ``path``, optionally made non-canonical.

    Flipping one bit among bits 63..width-1 of a canonical address, which are
    all equal, always gives a non-canonical one.
    """
    va = join(tuple(path[MAX_LEVELS - levels :]), offset, levels)
    if flip is None:
        return va
    return flip_bit(va, address_width(levels) - 1 + min(flip, 64 - address_width(levels)))


def present_indices(words: Mapping[int, int], table: int) -> list[int]:
    """Indices of the present entries of the table at ``table``, given memory's non-zero words."""
    end = table + PAGE_SIZE
    return sorted((pa - table) // WORD_SIZE for pa, word in words.items() if table <= pa < end and word & P)


def present_path(words: Mapping[int, int], cr3: int, levels: int, choices: tuple[int, ...]) -> tuple[int, ...]:
    """Five indices (PML5 first) whose walk follows present entries as far as memory allows.

    At each level the walk takes the present entry ``choices`` selects for
    it (modulo how many there are; the choice itself when none is present),
    and stops choosing at a leaf, a not-present entry or an entry that points
    outside memory's small world.  So the address reaches the deepest
    structure memory holds, garbage included, whatever was written where.
    """
    path = list(choices[: MAX_LEVELS - levels])
    walked = choices[MAX_LEVELS - levels :]
    table = cr3
    for depth, level in enumerate(range(levels, 0, -1)):
        present = present_indices(words, table)
        index = present[walked[depth] % len(present)] if present else walked[depth]
        path.append(index)
        word = words.get(table + index * WORD_SIZE, 0)
        if not word & P or level == 1 or (level in (2, 3) and word & PS):
            path.extend(walked[depth + 1 :])
            break
        table = word & ((1 << MAXPHYADDR) - 1) & ~(PAGE_SIZE - 1)
    return tuple(path)


@cache
def virtual_addresses(levels: int) -> st.SearchStrategy[int]:
    """Addresses that walk through the hot entries of the generated tables."""
    return st.builds(virtual_address, index_paths(), page_offsets(), st.just(levels), sign_flips())


@cache
def accesses(levels: int, cpus: int = CPUS) -> st.SearchStrategy[Access]:
    """One access by an existing CPU running ``levels``-level paging."""
    return st.builds(Access, cpu_ids(cpus), virtual_addresses(levels), st.sampled_from(KINDS), st.sampled_from(MODES))


@dataclass(frozen=True, slots=True)
class PathMapping:
    """A well-formed path from a root table to a leaf, ready to be written.

    ``path`` holds five indices (PML5 first), ``tables`` distinct frames for
    the tables below the root (top first; the root's own frame is skipped so
    no entry of the path overwrites another), ``links`` the non-leaf entries' flag
    bits (top first), ``leaf`` the leaf's flags and address.  With
    ``levels``-level paging the entries written are those of levels
    ``levels`` down to ``leaf_level``.  ``flaw``, when given, is
    ``(depth, bit)``: the entry written at that depth (0 for the root's) also
    sets ``bit``, usually a reserved one, so the path is valid but for one bit.
    """

    path: tuple[int, ...]
    tables: tuple[int, ...]
    links: tuple[int, ...]
    leaf_level: int
    leaf: int
    flaw: tuple[int, int] | None = None

    def ops(self, root: int, levels: int, nxe: bool = True) -> list[WritePhys]:
        """The stores that make this path reachable from the table at physical address ``root``.

        With ``nxe`` false, XD is a reserved bit, so a well-formed entry leaves it clear.
        """
        keep = MASK64 if nxe else MASK64 & ~XD
        out: list[WritePhys] = []
        table = root
        below = [pfn for pfn in self.tables if pfn * PAGE_SIZE != root]
        walked = self.path[MAX_LEVELS - levels :]
        for depth, level in enumerate(range(levels, self.leaf_level - 1, -1)):
            slot = table + walked[depth] * WORD_SIZE
            flaw = 1 << self.flaw[1] if self.flaw and self.flaw[0] == depth else 0
            if level == self.leaf_level:
                out.append(WritePhys(slot, self.leaf & keep | flaw))
                break
            table = below[depth] * PAGE_SIZE
            out.append(WritePhys(slot, (P | self.links[depth] | table) & keep | flaw))
        return out

    def address(self, levels: int, offset: int = 0) -> int:
        """The canonical address that walks this path under ``levels``-level paging."""
        return virtual_address(self.path, offset, levels)


@cache
def link_bits() -> st.SearchStrategy[int]:
    """Flag bits of a well-formed non-leaf entry: as a kernel builds them, usually R/W and U/S both set."""
    rights = st.sampled_from((RW | US, RW | US, RW | US, RW | US, RW | US, US, RW, 0))
    return st.builds(union, rights, attribute_bits())


@cache
def leaf_words(level: int) -> st.SearchStrategy[int]:
    """A well-formed leaf for ``level`` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB)."""
    if level == 1:
        return small_leaves()
    size = 1 << level_shift(level)
    return large_leaves_at((0, size, 3 * size))


@cache
def path_mappings() -> st.SearchStrategy[PathMapping]:
    """A valid path of tables ending in a 4 KiB, 2 MiB or 1 GiB leaf."""
    tables = st.permutations(range(TREE_FRAMES)).map(tuple)
    links = st.tuples(*(link_bits() for _ in range(MAX_LEVELS - 1)))
    flaws = st.one_of(st.none(), st.none(), st.tuples(st.integers(0, MAX_LEVELS - 1), reserved_bits()))
    by_level = (
        st.builds(PathMapping, index_paths(), tables, links, st.just(n), leaf_words(n), flaws) for n in (1, 2, 3)
    )
    return st.one_of(*by_level)


@st.composite
def page_tables(draw: st.DrawFn, root: int = 0, levels: int = 4, max_paths: int = 3) -> list[WritePhys]:
    """The stores that build a valid tree of one to ``max_paths`` paths under the table at ``root``."""
    mappings = draw(st.lists(path_mappings(), min_size=1, max_size=max_paths))
    return [op for mapping in mappings for op in mapping.ops(root, levels)]


@cache
def raw_memories(max_words: int = 24) -> st.SearchStrategy[list[WritePhys]]:
    """Table frames filled with any mix of well-formed and garbage entries."""
    return st.lists(write_entries(), max_size=max_words)


@cache
def misaligned_pas(frames: int = FRAMES) -> st.SearchStrategy[int]:
    """A physical address inside memory that is not 8-byte aligned."""
    return st.builds(union, st.integers(0, frames * 512 - 1).map(word_address), st.integers(1, WORD_SIZE - 1))


@cache
def outside_pas(frames: int = FRAMES) -> st.SearchStrategy[int]:
    """An aligned physical address at or beyond the end of memory (still a 64-bit value)."""
    size = frames * PAGE_SIZE
    return st.one_of(st.just(size), st.integers(size // WORD_SIZE, (1 << 61) - 1).map(word_address))


@cache
def bad_inputs(frames: int = FRAMES, cpus: int = CPUS) -> st.SearchStrategy[Op]:
    """Operations outside their domain: each must be refused by both sides and change nothing.

    Misaligned or out-of-memory physical addresses, CPUs that do not exist,
    and CR3 values that are not a frame of memory.
    """
    bad_pa = st.one_of(misaligned_pas(frames), outside_pas(frames))
    no_cpu = st.integers(cpus, 63)
    size = frames * PAGE_SIZE
    bad_cr3 = st.one_of(
        st.builds(union, st.integers(0, frames - 1).map(frame_address), st.integers(1, PAGE_SIZE - 1)),
        st.integers(frames, 1 << 40).map(frame_address),
        st.just(size),
    )
    return st.one_of(
        st.builds(WritePhys, bad_pa, entry_words()),
        st.builds(ReadPhys, bad_pa),
        st.builds(SetCpu, no_cpu, table_pfns().map(frame_address)),
        st.builds(SetCpu, cpu_ids(cpus), bad_cr3),
        st.builds(Access, no_cpu, st.just(0), st.sampled_from(KINDS), st.sampled_from(MODES)),
    )
