"""Abstraction functions: the spec state an implementation state stands for.

One function per implementation component.  The harness checks one
commuting square per operation: abstracting after the implementation's step
gives the state the spec's step reaches from the abstraction before it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain, compress
from types import MappingProxyType
from typing import Any, cast

from impl.alloc.buddy import BuddyAllocator
from impl.mm.kernel import HUGE_PAGES, PG_ANON, PG_EXCLUSIVE, PG_HUGE
from impl.mm.kernel import Kernel as ImplKernel
from impl.mm.kernel import Process as ImplProcess
from impl.mm.vma import Vma as ImplVma
from impl.paging.mmu import Mmu
from impl.paging.physmem import PhysMem
from impl.pressure.pressure import PG_DIRTY, PG_REFERENCED, PG_THP, is_swap, swp_offset
from properties.frame_cache import Entries, FrameCache
from spec.alloc.buddy import Block, BuddyState
from spec.memcg.state import NO_MEMCG, Group, Memcg
from spec.mm.kernel import File, Kernel, Leaf, Page, Pin, Space, Thp, Workingset
from spec.mm.vma import Prot
from spec.mm.vma import Vma as SpecVma
from spec.paging.mmu import MmuState
from spec.paging.permissions import Control
from spec.paging.physmem import PhysMemory


def abstract_memory(mem: PhysMem) -> PhysMemory:
    """The implementation's frames as the spec's map of non-zero words."""
    return PhysMemory(mem.frames, MappingProxyType(dict(mem.nonzero_words())))


def abstract_cpus(mmu: Mmu) -> tuple[Control, ...]:
    """Each implementation CPU's control registers as the spec's :class:`Control`."""
    return tuple(Control(c.cr3, c.wp, c.smep, c.smap, c.ac, c.nxe, c.la57) for c in mmu.cpus)


def abstract_mmu(mmu: Mmu) -> MmuState:
    """The whole hardware layer: memory, CPUs, MAXPHYADDR."""
    return MmuState(abstract_memory(mmu.mem), abstract_cpus(mmu), mmu.maxphyaddr)


def abstract_buddy(allocator: BuddyAllocator) -> BuddyState:
    """The allocator's free lists and allocated blocks as the spec's sets of blocks.

    Free blocks come from the free lists (what allocation actually uses), not
    from the per-frame flags; allocated ones from walking memory block by block.
    Costs one step per block, not per frame.
    """
    return BuddyState(
        allocator.frames,
        allocator.max_order,
        frozenset(Block(pfn, order) for pfn, order in allocator.free_blocks()),
        frozenset(Block(pfn, order) for pfn, order in allocator.allocated_blocks()),
    )


# --- the kernel layer ---------------------------------------------------------------------------

_KERNEL_HALF_SIGN = 0xFFFF << 48
_PTE_PFN = ((1 << 52) - 1) & ~0xFFF
_PTE_PROTNONE = 0x100
_PDE_PS = 0x80
_PTE_A = 0x20
_PTE_D = 0x40


def abstract_vma(vma: ImplVma) -> SpecVma:
    """An implementation VMA as the spec's."""
    prot = Prot(vma.read, vma.write, vma.exec)
    return SpecVma(vma.start, vma.end, prot, vma.shared, vma.obj, vma.pgoff, vma.anon, vma.forked, vma.huge, vma.thp)


def decode_leaf(entry: int, writable: bool, user: bool, nx: bool, huge: bool = False) -> Leaf:
    """A non-empty leaf (a PTE, or ``huge``: a PD entry with PS=1) with the rights of the walk above it: present,
    PROT_NONE, or something else."""
    pfn = (entry & _PTE_PFN) >> 12
    young, dirty = bool(entry & _PTE_A), bool(entry & _PTE_D)
    if entry & 1:
        rights = (writable and bool(entry & 2), user and bool(entry & 4), nx or bool(entry >> 63))
        return Leaf(pfn, True, *rights, huge=huge, young=young, dirty=dirty)
    if entry & _PTE_PROTNONE:
        return Leaf(pfn, present=False, writable=False, user=True, nx=True, huge=huge, young=young, dirty=dirty)
    return Leaf(pfn, present=False, writable=True, user=False, nx=False, huge=huge)


EntryReader = Callable[[int], Entries]


def decode_tables(
    mem: PhysMem, root: int, indices: range, entries: EntryReader | None = None
) -> tuple[dict[tuple[int, int], int], dict[int, Leaf]]:
    """Decode the real page table under ``root`` for PML4 ``indices``: its lower tables by key, its leaves by vpn.

    Rights are combined over the walk (R/W and U/S ANDed, XD ORed, SDM 4.6.1).
    Kernel-half vpns are those of the sign-extended (canonical) address.
    A table's non-zero entries come from ``entries`` (default
    :meth:`~impl.paging.physmem.PhysMem.frame_entries`; a :class:`FrameCache` gives the same).
    """
    read = entries or mem.frame_entries
    tables: dict[tuple[int, int], int] = {}
    leaves: dict[int, Leaf] = {}

    def visit(table: int, level: int, base: int, indices: range, rights: tuple[bool, bool, bool]) -> None:
        shift = 9 * (level - 1)
        mem.read(table << 12)  # a table outside memory raises, as reading its entries one by one would
        for i, entry in read(table):
            if i not in indices:
                continue
            vpn = base + (i << shift)
            if level == 1 or (level == 2 and entry & _PDE_PS):
                canonical = ((vpn << 12) | _KERNEL_HALF_SIGN if vpn >> 35 else vpn << 12) >> 12
                leaves[canonical] = decode_leaf(entry, *rights, huge=level == 2)
                continue
            if not entry & 1:
                continue
            child = (entry & _PTE_PFN) >> 12
            tables[(level - 1, vpn >> shift)] = child
            down = (rights[0] and bool(entry & 2), rights[1] and bool(entry & 4), rights[2] or bool(entry >> 63))
            visit(child, level - 1, vpn, range(512), down)

    visit(root, 4, 0, indices, (True, True, False))
    return tables, leaves


Decoded = tuple[dict[tuple[int, int], int], dict[int, Leaf]]


def decode_cached(mem: PhysMem, root: int, indices: range, frames: FrameCache | None) -> Decoded:
    """:func:`decode_tables`, reused from ``frames`` while the root and every table under it (the frames it read)
    hold the bytes they held when it was decoded."""
    if frames is None or frames.mem is not mem:
        return decode_tables(mem, root, indices)
    key = ("tables", root, indices.start, indices.stop)
    seen = frames.decoded.get(key)
    if seen is not None and frames.unchanged(seen[0]):
        return cast(Decoded, seen[1])
    decoded = decode_tables(mem, root, indices, frames.entries)
    read = {root, *decoded[0].values()}
    frames.decoded[key] = (tuple((pfn, frames.snapshot(pfn)) for pfn in sorted(read)), decoded)
    return decoded


def abstract_space(kernel: ImplKernel, proc: ImplProcess, frames: FrameCache | None = None) -> Space:
    """One process: VMAs, PML4 frame, user tables and leaves, and the kernel half's leaves."""
    tables, decoded = decode_cached(kernel.mem, proc.root, range(256), frames)
    deposits = {(1, head >> 9): pfn for (pid, head), pfn in kernel.thp.deposits.items() if pid == proc.pid}
    tables = {**tables, **deposits}  # a THP's deposited PT, under its PMD
    _, kernel_leaves = decode_cached(kernel.mem, proc.root, range(256, 512), frames)
    vmas = tuple(abstract_vma(v) for v in proc.vmas)
    swapped = {vpn: swp_offset(entry) for vpn, entry in swap_entries(kernel, proc, decoded)}
    leaves = {vpn: leaf for vpn, leaf in decoded.items() if vpn not in swapped}
    return Space(
        vmas,
        proc.root,
        MappingProxyType(tables),
        MappingProxyType(leaves),
        MappingProxyType(kernel_leaves),
        swapped=MappingProxyType(swapped),
        minflt=proc.min_flt,
        majflt=proc.maj_flt,
    )


def swap_entries(kernel: ImplKernel, proc: ImplProcess, decoded: dict[int, Leaf]) -> list[tuple[int, int]]:
    """(vpn, entry) of the swap entries among the decoded leaves (non-present, not PROT_NONE)."""
    out = []
    for vpn, leaf in decoded.items():
        if not leaf.present and not leaf.user:
            pa = kernel._pte_pa(proc.root, vpn)
            if pa is not None and is_swap(kernel.mem.read_unchecked(pa)):
                out.append((vpn, kernel.mem.read_unchecked(pa)))
    return out


def abstract_pages(kernel: ImplKernel, entries: EntryReader | None = None) -> dict[int, Page]:
    """The ``struct page`` arrays, for every frame with a reference, with the frame's words (a hugetlb page's
    head with the words of all its 512 frames, by offset in the 2 MiB)."""
    read = entries or kernel.mem.frame_entries
    pages = {}
    used = chain(*(compress(range(len(counts)), counts) for counts in (kernel.refcount, kernel.mapcount, kernel.flags)))
    for pfn in sorted(set(used)):
        flags = kernel.flags[pfn]
        huge = bool(flags & PG_HUGE)
        words = {
            (frame - pfn) * 4096 + index * 8: value
            for frame in range(pfn, pfn + (HUGE_PAGES if huge else 1))
            for index, value in read(frame)
        }
        anon, exclusive = bool(flags & PG_ANON), bool(flags & PG_EXCLUSIVE)
        pressure = kernel.pressure
        lru = ("inactive", "active")[(pressure.lru_of[pfn] - 1) % 2] if pressure.lru_of[pfn] else ""
        pages[pfn] = Page(
            kernel.refcount[pfn],
            kernel.mapcount[pfn],
            anon,
            exclusive,
            MappingProxyType(words),
            huge,
            lru=lru,
            dirty=bool(flags & PG_DIRTY),
            referenced=bool(flags & PG_REFERENCED),
            slot=pressure.swap_slot[pfn],
            thp=bool(flags & PG_THP),
        )
    return pages


def abstract_kernel(kernel: ImplKernel, frames: FrameCache | None = None) -> Kernel:
    """The whole kernel layer as the spec's :class:`~spec.mm.kernel.Kernel`, decoded from the real page tables.

    ``frames``, a cache of the kernel's memory the harness keeps from one check to the next, reads the
    frames that did not change faster; the result is the same.
    """
    entries = frames.entries if frames is not None and frames.mem is kernel.mem else None
    return Kernel(
        buddy=abstract_buddy(kernel.buddy),
        boot=tuple(kernel.boot),
        current=tuple(kernel.current),
        pages=MappingProxyType(abstract_pages(kernel, entries)),
        procs=MappingProxyType({pid: abstract_space(kernel, p, frames) for pid, p in sorted(kernel.procs.items())}),
        objects=MappingProxyType({obj: MappingProxyType(dict(c)) for obj, c in sorted(kernel.objects.items())}),
        pins=MappingProxyType({n: Pin(pfn, offset) for n, (pfn, offset) in sorted(kernel.pins.items())}),
        zero_words=MappingProxyType(kernel.mem.frame_words(kernel.zero_pfn)),
        kernel_words=MappingProxyType(kernel.mem.frame_words(kernel.kernel_pfn)),
        next_pid=kernel.next_pid,
        next_object=kernel.next_object,
        next_pin=kernel.next_pin,
        **abstract_pressure(kernel),
        oom_score_adj=MappingProxyType(dict(sorted(kernel.oom.adj.items()))),
        oom_sysctls=MappingProxyType(dict(sorted(kernel.oom.sysctls.items()))),
        slab=frozenset(kernel.slab_frames),
        thp=abstract_thp(kernel),
        memcg=abstract_memcg(kernel),
    )


def abstract_thp(kernel: ImplKernel) -> Thp:
    """The THP policy and counters (:class:`impl.mm.thp.Thp`) as the spec's :class:`~spec.mm.kernel.Thp`."""
    t = kernel.thp
    settings = t.settings
    return Thp(
        settings["enabled"],
        settings["defrag"],
        settings["use_zero_page"] == "1",
        t.zero_pfn,
        t.fault_alloc,
        t.fault_fallback,
        t.split_pmd,
    )


def abstract_memcg(kernel: ImplKernel) -> Memcg:
    """The memory cgroups: each group's limits and counters, the tasks, ``memcg_data`` as the charges."""
    m = kernel.memcg
    if not m.enabled:
        return NO_MEMCG
    groups = {}
    for path, g in sorted(m.groups.items()):
        groups[path] = Group(
            None if g.parent is None else m.parent_path(path),
            g.memory.max,
            g.memsw.max,
            g.memory.watermark,
            g.memsw.watermark,
            g.memory.failcnt,
            g.memsw.failcnt,
            g.oom,
            g.oom_kill,
        )
    return Memcg(
        True,
        MappingProxyType(groups),
        MappingProxyType(dict(sorted(m.tasks.items()))),
        MappingProxyType(dict(sorted(m.memcg_data.items()))),
    )


def abstract_pressure(kernel: ImplKernel) -> dict[str, Any]:
    """The memory-pressure fields of the kernel state: files, swap, the fault counters, workingset detection."""
    p = kernel.pressure
    files = {
        name: File(f.obj, f.pages, MappingProxyType({i: MappingProxyType(dict(w)) for i, w in sorted(f.disk.items())}))
        for name, f in sorted(p.files.items())
    }
    used = {slot: p.swap_map[slot] for slot in range(1, len(p.swap_map)) if p.swap_map[slot]}
    return {
        "files": MappingProxyType(files),
        "swap_slots": p.swap_slots,
        "swap_map": MappingProxyType(used),
        "swap_data": MappingProxyType({s: MappingProxyType(dict(w)) for s, w in sorted(p.swap_data.items())}),
        "swap_cache": MappingProxyType(dict(sorted(p.swap_cache.items()))),
        "pgfault": p.pgfault,
        "pgmajfault": p.pgmajfault,
        "lru_steps": p.lru_steps,
        "fault_around": p.fault_around_pages,
        "workingset": Workingset(
            p.workingset,
            p.nonresident_age,
            MappingProxyType(dict(sorted(p.shadows.items()))),
            p.workingset_refault_file,
            p.workingset_activate_file,
        ),
    }
