"""The kernel's view of memory (L1): frames, address spaces, page tables, as one value.

The state holds

- the buddy allocator (:mod:`spec.alloc.buddy`), from which every frame comes: the
  shared zero page, the kernel page and the kernel's page tables at boot,
  then user pages and page-table pages;
- ``pages``: the ``struct page`` of every frame that holds user data, with
  its reference count, map count, whether it is anonymous and
  ``PageAnonExclusive``, and its words;
- one :class:`Space` per process: VMAs, the frame of its top-level table
  (PML4), the frames of its lower tables by the range they cover, its leaf
  entries by virtual page, and the kernel half it shares with every process;
- the shmem-like objects behind shared anonymous VMAs, the pins, and the
  process each CPU runs.

A hugetlb page (``huge``) is one ``struct page`` (the folio's head) for an
order-9 block of 512 frames, its words keyed by offset within the 2 MiB, and
one leaf: a PD entry with PS=1 keyed by the first virtual page it maps.

Counting follows Linux (include/linux/mm.h, mm/rmap.c): every page-table
mapping of a page takes one reference and one map count; a pin
(``get_user_pages``) and the page cache of a shmem object take a reference
each.  The zero page is never counted (``vm_normal_page`` returns NULL for it).

Where the kernel may choose (which free frame a new page or table gets), the
spec does not: each allocation has a *role* naming what it is for, the
implementation reports the frame it picked for each role, and :func:`take`
checks the pick is one the buddy allocator allows
(:func:`spec.alloc.buddy.allowed_pfns`).  Run alone, the spec takes the buddy's
least choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from lang.errors import ConfigError, DisallowedChoice, IdleCpu, UnknownCpu, UnknownPid
from lang.records import replace
from spec.alloc import buddy
from spec.memcg.state import NO_MEMCG, Memcg
from spec.mm.vma import HUGE_ORDER, HUGE_PAGES, KERNEL_VA, KERNEL_WORD, Vma
from spec.numa import policy as mempolicy
from spec.numa.topology import Topology, topology
from spec.paging.address import PAGE_SHIFT
from spec.paging.tlb import Tlb
from spec.smp.state import CpuTlb, Event, Flight

Role = tuple[str, int, int, int]
Choices = Mapping[Role, int]
NO_CHOICES: Choices = MappingProxyType({})
Words = Mapping[int, int]
NO_WORDS: Words = MappingProxyType({})

_K = TypeVar("_K")
_V = TypeVar("_V")


def frozen(mapping: Mapping[_K, _V]) -> Mapping[_K, _V]:
    """A read-only copy."""
    return MappingProxyType(dict(mapping))


def updated(mapping: Mapping[_K, _V], key: _K, value: _V) -> Mapping[_K, _V]:
    """A read-only copy with ``key`` set to ``value``."""
    out = dict(mapping)
    out[key] = value
    return MappingProxyType(out)


def without(mapping: Mapping[_K, _V], keys: Iterable[_K]) -> Mapping[_K, _V]:
    """A read-only copy without ``keys``."""
    gone = set(keys)
    return MappingProxyType({k: v for k, v in mapping.items() if k not in gone})


@dataclass(frozen=True, slots=True)
class Page:
    """The ``struct page`` of a frame holding user data, and its words (offset -> non-zero value).

    ``lru`` is the LRU list it is on (``"active"``, ``"inactive"``, or ``""`` for none; anonymous or file by
    ``anon``), ``dirty`` is ``PG_dirty``, ``referenced`` is ``PG_referenced`` and ``slot`` is the swap slot of a
    page in the swap cache (``folio->swap``, 0 for none): see :mod:`spec.pressure`.  A transparent huge page is
    ``huge`` and ``thp``: one ``struct page`` for its order-9 folio, words by offset in the 2 MiB, as a hugetlb page
    (:mod:`spec.mm.thp`).
    """

    refcount: int
    mapcount: int
    anon: bool
    exclusive: bool
    words: Words = field(default_factory=lambda: NO_WORDS)
    huge: bool = False
    lru: str = ""
    dirty: bool = False
    referenced: bool = False
    slot: int = 0
    thp: bool = False


@dataclass(frozen=True, slots=True)
class Leaf:
    """A leaf page-table entry as the hardware sees it: the frame and the rights over the whole walk.

    ``present`` is the P bit; a ``PROT_NONE`` entry keeps its frame with P
    clear (``_PAGE_PROTNONE``, arch/x86/include/asm/pgtable_types.h).
    ``huge`` is a PD entry with PS=1 mapping 2 MiB from ``pfn`` (SDM Vol. 3A
    4.5.4, Table 4-18).  ``young`` is the accessed bit: every entry the kernel writes has it
    (``pte_mkyoung``), the walker sets it on every access it allows, and only reclaim's aging clears it
    (:mod:`spec.pressure.lru`).  ``dirty`` is the dirty bit (SDM Vol. 3A 4.8): the walker sets it on every write it
    allows; the kernel sets it where Linux writes ``pte_mkdirty`` (a write fault: ``do_anonymous_page``,
    ``wp_page_reuse``, ``wp_page_copy``, ``finish_fault``/``set_pte_range`` with ``FAULT_FLAG_WRITE``,
    ``do_swap_page`` on a write), and clears it only in ``folio_mkclean`` (writeback); mprotect keeps it
    (``pte_modify``), fork copies it, a read fault maps clean (shmem too: its pages are not ``PG_dirty``
    here).  smaps counts a page dirty when its entry or the page is (:mod:`spec.mm.accounting`).
    """

    pfn: int
    present: bool = True
    writable: bool = False
    user: bool = True
    nx: bool = True
    huge: bool = False
    young: bool = True
    dirty: bool = False

    def __repr__(self) -> str:
        return (
            f"Leaf(pfn={self.pfn:#x}, present={self.present}, writable={self.writable}, user={self.user}, nx={self.nx}"
            + (", huge=True" if self.huge else "")
            + (", young=False" if not self.young else "")
            + (", dirty=True)" if self.dirty else ")")
        )

    @property
    def pages(self) -> int:
        """How many 4 KiB pages the entry maps."""
        return HUGE_PAGES if self.huge else 1

    def offset(self, va: int) -> int:
        """The byte offset of ``va`` in the page the entry maps."""
        return va % (self.pages << PAGE_SHIFT)


TableKey = tuple[int, int]
FAULT_AROUND_PAGES = 65536 >> PAGE_SHIFT  # mm/memory.c: fault_around_pages, 64 KiB by default


@dataclass(frozen=True, slots=True)
class File:
    """A file of the in-model file system: its page-cache object, its size in pages, and its pages on disk."""

    obj: int
    pages: int
    disk: Mapping[int, Words] = field(default_factory=lambda: MappingProxyType({}))


Shadow = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Workingset:
    """Refault-distance detection of file pages (mm/workingset.c; see :mod:`spec.pressure.workingset`).

    ``enabled`` is the config's ``workingset``; ``age`` is the node's ``lruvec->nonresident_age``; ``shadows``
    are the shadow entries reclaim left in the page caches, (object, index) -> the ``age`` at eviction
    (``pack_shadow``'s eviction timestamp, exact: no ``bucket_order`` shaving); ``refault_file`` and
    ``activate_file`` are ``/proc/vmstat``'s ``workingset_refault_file`` and ``workingset_activate_file``.
    Disabled, every field keeps its default.
    """

    enabled: bool = False
    age: int = 0
    shadows: Mapping[Shadow, int] = field(default_factory=lambda: MappingProxyType({}))
    refault_file: int = 0
    activate_file: int = 0


NO_WORKINGSET = Workingset()

THP_ENABLED = ("always", "madvise", "never")
THP_DEFRAG = ("always", "defer", "defer+madvise", "madvise", "never")


@dataclass(frozen=True, slots=True)
class Thp:
    """Transparent huge pages (:mod:`spec.mm.thp`): the policy of ``/sys/kernel/mm/transparent_hugepage`` and the
    ``/proc/vmstat`` THP counters.

    ``enabled`` and ``defrag`` are the sysfs files' settings (Documentation/admin-guide/mm/transhuge.rst);
    ``use_zero_page`` is ``use_zero_page``; ``zero_pfn`` is the huge zero page's order-9 block once
    ``mm_get_huge_zero_folio`` allocated it (None before); ``fault_alloc``, ``fault_fallback`` and ``split_pmd`` are
    ``thp_fault_alloc``, ``thp_fault_fallback`` and ``thp_split_pmd``; ``max_ptes_none``, ``max_ptes_swap`` and
    ``max_ptes_shared`` are khugepaged's limits (``khugepaged/`` in sysfs; mm/khugepaged.c defaults
    ``HPAGE_PMD_NR - 1``, ``HPAGE_PMD_NR / 8``, ``HPAGE_PMD_NR / 2``: :mod:`spec.mm.khugepaged`).  The model
    boots with ``enabled`` at ``never`` so that a config without THP behaves as before; Linux's boot default is a
    Kconfig choice (``CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS`` / ``_MADVISE`` / ``_NEVER``).
    """

    enabled: str = "never"
    defrag: str = "madvise"
    use_zero_page: bool = True
    zero_pfn: int | None = None
    fault_alloc: int = 0
    fault_fallback: int = 0
    split_pmd: int = 0
    max_ptes_none: int = 511
    max_ptes_swap: int = 64
    max_ptes_shared: int = 256

    @property
    def shown(self) -> bool:
        """The THP counters and fields appear in vmstat, smaps_rollup and meminfo once THP is on, or ever was."""
        return self != NO_THP


NO_THP = Thp()


@dataclass(frozen=True, slots=True)
class Space:
    """One address space (``mm_struct``).

    ``tables`` maps ``(level, vpn >> 9*level)`` to the frame of the table at
    ``level`` (3 PDPT, 2 PD, 1 PT) covering those pages; ``leaves`` maps user
    pages to their entries; ``kernel`` the kernel half's leaves.
    ``tlb_gen`` is ``mm->context.tlb_gen`` and ``cpumask`` is ``mm_cpumask``
    (arch/x86/mm/tlb.c): see :mod:`spec.smp.shootdown`.  ``swapped`` maps user pages whose entry is a swap
    entry to its slot; ``minflt`` and ``majflt`` are the process's fault counts (``/proc/PID/stat``).
    """

    vmas: tuple[Vma, ...]
    root: int
    tables: Mapping[TableKey, int] = field(default_factory=lambda: MappingProxyType({}))
    leaves: Mapping[int, Leaf] = field(default_factory=lambda: MappingProxyType({}))
    kernel: Mapping[int, Leaf] = field(default_factory=lambda: MappingProxyType({}))
    tlb_gen: int = 0
    cpumask: frozenset[int] = frozenset()
    swapped: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    minflt: int = 0
    majflt: int = 0


@dataclass(frozen=True, slots=True)
class Pin:
    """A read-only ``get_user_pages`` reference to word ``offset`` of frame ``pfn``."""

    pfn: int
    offset: int


@dataclass(frozen=True, slots=True)
class Kernel:
    """The whole kernel-level state; see the module docstring.

    ``boot`` holds the frames taken at boot: the zero page, the kernel page,
    the kernel's own PML4 (``init_mm``), and the kernel half's PDPT, PD and PT;
    ``boot[1]`` is the kernel page's current frame, which a kernel-mapping
    change (:func:`spec.smp.shootdown.kernel_remap`) replaces.

    The SMP part (:mod:`spec.smp.shootdown`): ``cpus`` is each CPU's
    ``cpu_tlbstate``, ``tlbs`` what each CPU's TLB may hold beyond its current
    translations, ``flights`` the mapping changes whose shootdown is under
    way, ``events`` the effects of the last operation.  While ``gathering``
    (an ``mmu_gather``), ``gathered`` collects the page-table frames given
    back and the page references dropped, each page once per reference:
    the gather holds them until the flight's last step, so a page a CPU may
    still reach through a stale TLB entry keeps its frame and its words
    (:func:`put_page`).

    Memory pressure (:mod:`spec.pressure`): ``files`` are the in-model file system by name (each file's page
    cache is its object in ``objects``); ``swap_slots`` is the swap device's size, ``swap_map`` the count of
    every slot in use (the swap entries and the swap-cache page that refer to it), ``swap_data`` what each
    slot holds, ``swap_cache`` the page of each slot still in memory; ``pgfault`` and ``pgmajfault`` are
    ``/proc/vmstat``'s; ``lru_steps`` counts the reclaim steps of the current operation; ``fault_around`` is
    ``fault_around_pages``, how many pages a read fault on a file or shmem mapping may map from the page cache
    (:func:`spec.pressure.files.fault_around`; 1 for none); ``workingset`` is the refault-distance state
    (:class:`Workingset`).

    The OOM killer (:mod:`spec.oom`): ``oom_score_adj`` of every process whose value is not 0, and the OOM
    sysctls (``vm.panic_on_oom``, ``vm.oom_kill_allocating_task``) that are not 0.

    The slab allocator (:mod:`spec.slab`) runs beside the kernel on its buddy allocator; ``slab`` holds the frames
    its slabs hold, as the kernel accounts them (``account_slab`` in mm/slab.h adds a new slab's pages to the
    node's ``NR_SLAB_UNRECLAIMABLE_B``, ``unaccount_slab`` takes them off when the slab goes back to the buddy).

    Transparent huge pages (:mod:`spec.mm.thp`): ``thp`` is the policy and the THP counters (:class:`Thp`).

    Memory cgroups (:mod:`spec.memcg`): the groups, their processes and the charges (:class:`Memcg`).

    NUMA (:mod:`spec.numa`): the nodes, the memory policies and the numastat counters (:class:`mempolicy.Numa`);
    every allocation goes to a node as :func:`place` says.
    """

    buddy: buddy.BuddyState
    boot: tuple[int, ...]
    current: tuple[int, ...]
    pages: Mapping[int, Page] = field(default_factory=lambda: MappingProxyType({}))
    procs: Mapping[int, Space] = field(default_factory=lambda: MappingProxyType({}))
    objects: Mapping[int, Mapping[int, int]] = field(default_factory=lambda: MappingProxyType({}))
    pins: Mapping[int, Pin] = field(default_factory=lambda: MappingProxyType({}))
    zero_words: Words = field(default_factory=lambda: NO_WORDS)
    kernel_words: Words = field(default_factory=lambda: NO_WORDS)
    next_pid: int = 1
    next_object: int = 1
    next_pin: int = 1
    cpus: tuple[CpuTlb, ...] = ()
    tlbs: tuple[Tlb, ...] = ()
    flights: Mapping[int, Flight] = field(default_factory=lambda: MappingProxyType({}))
    next_flight: int = 1
    events: tuple[Event, ...] = ()
    flush_ceiling: int = 33
    gathering: bool = False
    gathered: tuple[int, ...] = ()
    files: Mapping[str, File] = field(default_factory=lambda: MappingProxyType({}))
    swap_slots: int = 0
    swap_map: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    swap_data: Mapping[int, Words] = field(default_factory=lambda: MappingProxyType({}))
    swap_cache: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    pgfault: int = 0
    pgmajfault: int = 0
    lru_steps: int = 0
    fault_around: int = FAULT_AROUND_PAGES
    workingset: Workingset = NO_WORKINGSET
    oom_score_adj: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    oom_sysctls: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    slab: frozenset[int] = frozenset()
    thp: Thp = NO_THP
    memcg: Memcg = NO_MEMCG
    numa: mempolicy.Numa = field(default_factory=lambda: NO_NUMA)

    @property
    def zero_pfn(self) -> int:
        """The shared zero page (``my_zero_pfn``)."""
        return self.boot[0]

    @property
    def kernel_leaves(self) -> Mapping[int, Leaf]:
        """The kernel half every address space maps: one read-only, supervisor-only page (``PAGE_KERNEL_RO``)."""
        return MappingProxyType({KERNEL_VA >> PAGE_SHIFT: Leaf(self.boot[1], present=True, user=False, nx=True)})


BOOT_FRAMES = 6
NO_NUMA: mempolicy.Numa = mempolicy.initial(topology(1 << 52, 1, 1, 0, None))
DATA_ROLES = frozenset({"page", "thp", "huge"})
TASK_ROLES = frozenset({"table", "root"})


def leaf_of(leaves: Mapping[int, Leaf], vpn: int) -> tuple[int, Leaf] | None:
    """The entry that maps page ``vpn`` and the page it is keyed by: its own, or a huge one covering it."""
    leaf = leaves.get(vpn)
    if leaf is not None:
        return vpn, leaf
    head = vpn - vpn % HUGE_PAGES
    leaf = leaves.get(head)
    return (head, leaf) if leaf is not None and leaf.huge else None


# --- frames -------------------------------------------------------------------------------------


def free_frames(k: Kernel) -> int:
    """Frames the buddy allocator can still hand out one by one."""
    return sum(b.size for b in k.buddy.free)


def can_take_huge(k: Kernel) -> bool:
    """The buddy allocator has a free block of order 9 or more: a hugetlb page can be allocated."""
    return k.buddy.max_order >= HUGE_ORDER and bool(buddy.allowed_pfns(k.buddy, HUGE_ORDER))


def take(k: Kernel, role: Role, choices: Choices, order: int = 0) -> tuple[Kernel, int]:
    """Allocate one frame (or an order-``order`` block) for ``role``: the implementation's pick if it reported one,
    else the least choice.

    The caller has checked a block is free.  A pick the buddy does not allow
    raises :class:`DisallowedChoice`.
    """
    numa, where = place(k, role)
    node = first_node_with(k, where, order)
    assert node is not None, "take() needs a free block: check free_frames or can_take_huge first"
    pfn = choices.get(role)
    blocks = node_blocks(k, node, order)
    allowed = [b.pfn for b in blocks]
    if pfn is None:
        pfn = min(blocks, key=lambda b: (b.order, b.pfn)).pfn
    elif pfn not in allowed:
        raise DisallowedChoice(
            f"frame {pfn:#x} for {role} is not one the buddy allocator may hand out: "
            f"node {node}'s free blocks of order >= {order} start at {sorted(allowed)}"
        )
    numa = mempolicy.counted(numa, node, where, 1 << order)
    return replace(k, buddy=buddy.alloc_at(k.buddy, order, pfn), numa=numa), pfn


def node_blocks(k: Kernel, node: int, order: int) -> list[buddy.Block]:
    """The free blocks an order-``order`` allocation may split from node ``node``'s zone."""
    topo = k.numa.topology
    if topo.nodes == 1:
        return [b for b in k.buddy.free if b.order >= order]
    return [b for b in k.buddy.free if b.order >= order and topo.node_of_pfn(b.pfn) == node]


def node_free(k: Kernel, node: int) -> int:
    """The free frames of node ``node``'s zone (``NR_FREE_PAGES`` of its zone)."""
    return sum(b.size for b in node_blocks(k, node, 0))


def first_node_with(k: Kernel, where: mempolicy.Placement, order: int) -> int | None:
    """The first node of the placement's order with a free block of ``order`` or more: ``get_page_from_freelist``
    walking the zonelist (watermarks are not modelled); a strict bind falls back only for a role that cannot
    fail here (see :mod:`spec.numa.policy`)."""
    for node in where.first + where.then:
        if node_blocks(k, node, order):
            return node
    if where.strict:
        local = k.numa.topology.node_of_cpu(k.numa.cpu)
        return next((n for n in k.numa.topology.zonelists[local] if node_blocks(k, n, order)), None)
    return None


def can_place(k: Kernel, role: Role, order: int = 0) -> bool:
    """Some node the policy of ``role`` allows has a free block of ``order``: false only for a bind whose nodes
    are full, where ``__alloc_pages`` fails (the fault's ENOMEM here)."""
    where = place(k, role)[1]
    return any(node_blocks(k, node, order) for node in where.first + where.then)


def place(k: Kernel, role: Role) -> tuple[mempolicy.Numa, mempolicy.Placement]:
    """The policy an allocation for ``role`` follows and where that puts it (:mod:`spec.numa.policy`): a user
    page by its VMA's policy, else its process's, interleaved by its offset; a page table by the allocating
    task's policy, interleaved round robin; anything else on the local node."""
    numa = k.numa
    kind, pid = role[0], role[1]
    if kind == "migrate":  # alloc_migration_target: __GFP_THISNODE on the target node
        return numa, mempolicy.Placement((role[3],), (), role[3])
    if kind in DATA_ROLES and pid in k.procs:
        vpn = role[2]
        pol = mempolicy.vma_policy(numa, pid, vpn) or numa.task.get(pid, mempolicy.DEFAULT)
        return mempolicy.placement(numa, pol, interleave_offset(k, pid, vpn, kind != "page"))
    if kind in TASK_ROLES:
        return mempolicy.placement(numa, numa.task.get(numa.pid, mempolicy.DEFAULT), None)
    return mempolicy.placement(numa, mempolicy.DEFAULT, None)


def interleave_offset(k: Kernel, pid: int, vpn: int, huge: bool) -> int:
    """``interleave_nid``'s offset of page ``vpn``: ``vm_pgoff + (addr - vm_start) >> PAGE_SHIFT``, counted in
    huge pages for a huge page (``vm_pgoff >> 9`` plus the huge pages from ``vm_start``).  A private anonymous
    VMA's ``vm_pgoff`` is its first page (``do_mmap``); a hugetlb VMA is a file's, from offset ``pgoff``."""
    vma = next((v for v in k.procs[pid].vmas if v.start <= vpn < v.end), None)
    if vma is None:
        return vpn
    pgoff = vma.pgoff if vma.obj else vma.start
    if not huge:
        return pgoff + vpn - vma.start
    return (pgoff >> 9) + ((vpn - vma.start) >> 9)


def block_order(state: buddy.BuddyState, pfn: int) -> int:
    """The order of the allocated block that starts at ``pfn``."""
    return next(b.order for b in state.allocated if b.pfn == pfn)


def release(k: Kernel, pfn: int) -> Kernel:
    """Give the block at ``pfn`` back to the buddy allocator with its order; while gathering, queue it until the
    flush (a page table: ``pte_free_tlb`` / ``tlb_remove_table``, include/asm-generic/tlb.h)."""
    if k.gathering:
        return replace(k, gathered=(*k.gathered, pfn))
    return replace(k, buddy=buddy.free(k.buddy, pfn, block_order(k.buddy, pfn)))


def new_anon_page(k: Kernel, pfn: int, words: Words = NO_WORDS, huge: bool = False) -> Kernel:
    """A fresh anonymous page mapped once, exclusive (``folio_add_new_anon_rmap(..., RMAP_EXCLUSIVE)``;
    ``hugetlb_add_new_anon_rmap`` for a hugetlb page), on the inactive anonymous LRU unless hugetlb
    (``folio_add_lru_vma``; new anonymous pages start inactive since b518154e59aa)."""
    page = Page(1, 1, True, True, words, huge, lru="" if huge else "inactive")
    return replace(k, pages=updated(k.pages, pfn, page))


def new_shmem_page(k: Kernel, pfn: int, huge: bool = False) -> Kernel:
    """A fresh zeroed shmem (or shared hugetlbfs) page, referenced by its object's page cache only."""
    return replace(k, pages=updated(k.pages, pfn, Page(1, 0, False, False, huge=huge)))


def is_zero_pfn(k: Kernel, pfn: int) -> bool:
    """The shared zero page, or the huge zero page (``is_zero_pfn``, ``is_huge_zero_folio``): never counted."""
    return pfn == k.zero_pfn or pfn == k.thp.zero_pfn


def get_page(k: Kernel, pfn: int, maps: int = 1) -> Kernel:
    """One more reference, and ``maps`` more map counts (``folio_get`` + ``folio_add_*_rmap``)."""
    if is_zero_pfn(k, pfn):
        return k
    page = k.pages[pfn]
    return replace(
        k, pages=updated(k.pages, pfn, replace(page, refcount=page.refcount + 1, mapcount=page.mapcount + maps))
    )


def put_page(k: Kernel, pfn: int, unmaps: int = 1) -> Kernel:
    """``unmaps`` map counts fewer at once, and one reference fewer: at once, or while gathering at the flight's end.

    A zap removes the rmap at once (``folio_remove_rmap_ptes`` in
    ``zap_present_folio_ptes``, mm/memory.c) but hands the reference to the
    ``mmu_gather`` (``__tlb_remove_folio_pages``), which drops it only after
    the TLB flush: ``tlb_flush_mmu`` runs ``tlb_flush_mmu_tlbonly`` before
    ``tlb_batch_pages_flush`` → ``free_pages_and_swap_cache`` (mm/mmu_gather.c).
    So every reference a gather took, not only a page's last one, is held
    until the flight ends (:func:`drop_reference` then), and another mapper's
    write fault meanwhile sees the raised refcount and copies.
    """
    if is_zero_pfn(k, pfn):
        return k
    page = k.pages[pfn]
    k = with_page(k, pfn, mapcount=page.mapcount - unmaps)
    if k.gathering:
        return replace(k, gathered=(*k.gathered, pfn))
    return drop_reference(k, pfn)


def drop_reference(k: Kernel, pfn: int) -> Kernel:
    """One reference to page ``pfn`` fewer; the frame is freed with its last (``folio_put``)."""
    page = k.pages[pfn]
    if page.refcount == 1:
        return release(replace(k, pages=without(k.pages, [pfn])), pfn)
    return with_page(k, pfn, refcount=page.refcount - 1)


def with_page(k: Kernel, pfn: int, **changes: object) -> Kernel:
    """The state with fields of page ``pfn`` changed."""
    return replace(k, pages=updated(k.pages, pfn, replace(k.pages[pfn], **changes)))  # type: ignore[arg-type]


def page_words(k: Kernel, pfn: int) -> Words:
    """The words of a frame that holds data: a user page, the zero page (or the huge one) or the kernel page."""
    if is_zero_pfn(k, pfn):
        return k.zero_words
    if pfn == k.boot[1]:
        return k.kernel_words
    return k.pages[pfn].words


# --- processes and CPUs -------------------------------------------------------------------------


def space(k: Kernel, pid: int) -> Space:
    """Process ``pid``'s address space; :class:`UnknownPid` if there is none."""
    if pid not in k.procs:
        raise UnknownPid(f"pid {pid} is not a live process: allowed {sorted(k.procs)}")
    return k.procs[pid]


def with_space(k: Kernel, pid: int, sp: Space) -> Kernel:
    """The state with process ``pid``'s address space replaced."""
    return replace(k, procs=updated(k.procs, pid, sp))


def check_cpu(k: Kernel, cpu: int) -> None:
    """Raise :class:`UnknownCpu` unless ``cpu`` exists."""
    if not 0 <= cpu < len(k.current):
        raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(k.current) - 1}")


def running(k: Kernel, cpu: int) -> int:
    """The pid ``cpu`` runs; :class:`IdleCpu` when it runs none."""
    check_cpu(k, cpu)
    if not k.current[cpu]:
        raise IdleCpu(f"cpu {cpu} runs no process: switch it to a pid first")
    return k.current[cpu]


def boot(
    state: buddy.BuddyState,
    cpus: int,
    choices: Choices = NO_CHOICES,
    flush_ceiling: int = 33,
    pcid: bool = True,
    swap: int = 0,
    fault_around: int = FAULT_AROUND_PAGES,
    workingset: bool = False,
    nodes: Topology | None = None,
) -> Kernel:
    """Take the boot frames (roles ``("boot", i, 0, 0)``) and write the kernel page; every CPU idle on ``init_mm``,
    with CR4.PCIDE set when the CPUs have PCIDs (``pcid``); ``swap`` slots of swap space (``swapon``), all free;
    read faults map ``fault_around`` pages around them; refaults are detected when ``workingset``; the machine's
    NUMA nodes are ``nodes`` (None: one node).  The boot frames come from node 0, where the boot CPU is."""
    if free_frames(Kernel(state, (), ())) < BOOT_FRAMES:
        raise ConfigError(f"the kernel needs {BOOT_FRAMES} free frames to boot: give the config more frames")
    cpu = CpuTlb(pcide=pcid)
    numa = mempolicy.initial(topology(state.frames, cpus, 1, 0, None) if nodes is None else nodes)
    k = Kernel(state, (), (0,) * cpus, cpus=(cpu,) * cpus, tlbs=(Tlb(),) * cpus, flush_ceiling=flush_ceiling, numa=numa)
    frames = []
    for i in range(BOOT_FRAMES):
        k, pfn = take(k, ("boot", i, 0, 0), choices)
        frames.append(pfn)
    words = MappingProxyType({0: KERNEL_WORD})
    k = replace(k, boot=tuple(frames), kernel_words=words, swap_slots=swap, fault_around=fault_around)
    return replace(k, workingset=Workingset(enabled=True)) if workingset else k


def count_fault(k: Kernel, pid: int, major: bool) -> Kernel:
    """A fault the handler fixed, counted as Linux does (``mm_account_fault``, mm/memory.c): the process's
    ``maj_flt`` or ``min_flt`` and ``PGFAULT``; a major one also ``PGMAJFAULT`` (counted where the page was read,
    ``do_swap_page`` and ``filemap_fault``).  Faults ending in SIGSEGV never reach ``handle_mm_fault``; here a fault
    that fails with ENOMEM and a spurious one (nothing to fix, a stale TLB entry) are not counted either."""
    sp = space(k, pid)
    sp = replace(sp, majflt=sp.majflt + 1) if major else replace(sp, minflt=sp.minflt + 1)
    return replace(with_space(k, pid, sp), pgfault=k.pgfault + 1, pgmajfault=k.pgmajfault + int(major))
