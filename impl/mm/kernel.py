"""Address spaces on real x86-64 page tables: processes, faults, COW fork, syscalls.

Every frame comes from the buddy allocator (:mod:`impl.alloc.buddy`): at boot the
zero page, one kernel page and the kernel's tables (``init_mm``); then each
process's PML4, its lower tables, and user pages.  Page tables are real
4-level tables in simulated physical memory, walked by :class:`impl.paging.mmu.Mmu`;
a #PF goes to :meth:`Kernel._fault`, and the access is retried.

Per-frame ``struct page`` fields live in arrays: ``refcount``, ``mapcount``
and ``flags`` (``PG_ANON``, ``PG_EXCLUSIVE`` for ``PageAnonExclusive``).
The zero page is never counted.  Each allocation is reported in
:attr:`Kernel.effects` as ``(role, pfn)`` so a harness can check the choice.

Hugetlb mappings (``MAP_HUGETLB``, mm/hugetlb.c): each 2 MiB page is an
order-9 block from the buddy allocator, mapped by a PD entry with PS=1 (SDM
Vol. 3A 4.5.4), its ``struct page`` fields on the head frame with
``PG_HUGE``.  Faults (``hugetlb_no_page``, ``hugetlb_wp``: reuse on
``folio_mapcount == 1``), fork (``copy_hugetlb_page_range``), the 2 MiB
split rule (``hugetlb_vm_op_split``), ``MADV_DONTNEED``'s rounding
(``madvise_dontneed_free_valid_vma``) and ``smaps``/``pagemap``
(``smaps_hugetlb_range``, ``pagemap_hugetlb_range``) follow Linux 6.12.

Linux sources followed: mm/memory.c (``do_anonymous_page``, ``do_wp_page``,
``wp_page_copy``, ``copy_present_ptes``, ``zap_pte_range``,
``free_pgd_range``), mm/mprotect.c (``change_pte_range``,
``can_change_pte_writable``), mm/mmap.c, mm/madvise.c, mm/gup.c,
fs/proc/task_mmu.c, arch/x86/mm/fault.c (``access_error``),
arch/x86/mm/pgprot.c (``protection_map``).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

from impl.alloc.buddy import BuddyAllocator
from impl.memcg.memcg import MemCgroups
from impl.mm.thp import PG_THP, Thp
from impl.mm.vma import Vma, VmaList
from impl.oom.oom import Oom
from impl.paging.mmu import WRITE, Fault, Mmu, Translated
from impl.pressure.pressure import ANON_INACTIVE, FAULT_AROUND_PAGES, PG_DIRTY, Pressure, is_swap, swp_offset
from lang.errors import AddressError, ConfigError, IdleCpu, NotModelled, UnknownCpu, UnknownPid, UnknownPin

Result = dict[str, Any]
Role = tuple[str, int, int, int]

_P, _RW, _US, _A, _D, _PS, _G = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100
_PROTNONE = 0x100  # _PAGE_PROTNONE reuses the global bit of a non-present entry
_NX = 1 << 63
_PFN = ((1 << 52) - 1) & ~0xFFF
MM_RSS, MM_SWAPENTS, MM_TABLES = 0, 1, 2  # the indexes of Kernel.mm_counters
_PAGE_TABLE = _P | _RW | _US | _A | _D
_KERNPG_TABLE = _P | _RW | _A | _D
_PAGE_KERNEL_RO = _P | _A | _G | _NX

PG_ANON, PG_EXCLUSIVE, PG_HUGE = 1, 2, 4
HUGE_PAGES, HUGE_ORDER = 512, 9

PAGE_SIZE = 4096
TASK_SIZE = (1 << 47) - PAGE_SIZE
USER_PAGES = 1 << 35
MMAP_MIN_ADDR = 0x10000
KERNEL_VA = 0xFFFFFFFF80000000
KERNEL_WORD = 0x4C494E5558
PSS_SHIFT = 12
SMAPS_FIELDS = (
    *("Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean", "Shared_Dirty"),
    *("Private_Clean", "Private_Dirty", "Anonymous", "Swap", "SwapPss"),
)
PSS_FIELDS = frozenset({"Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "SwapPss"})

OK: Result = {"ok": True}


def errno(name: str) -> Result:
    return {"error": name}


def segv(code: int) -> Result:
    return {"signal": "SIGSEGV", "error_code": code}


class Process:
    """A process: its pid, the frame of its PML4, its VMAs, and its fault counts (``min_flt``, ``maj_flt``)."""

    __slots__ = ("maj_flt", "min_flt", "pid", "root", "vmas")

    def __init__(self, pid: int, root: int, vmas: VmaList, min_flt: int = 0, maj_flt: int = 0) -> None:
        self.pid, self.root, self.vmas = pid, root, vmas
        self.min_flt, self.maj_flt = min_flt, maj_flt


class Kernel:
    """The kernel over one MMU and one buddy allocator; see the module docstring."""

    def __init__(
        self,
        mmu: Mmu,
        buddy: BuddyAllocator,
        swap: int = 0,
        fault_around: int = FAULT_AROUND_PAGES,
        workingset: bool = False,
    ) -> None:
        self.mmu, self.mem, self.buddy = mmu, mmu.mem, buddy
        frames = buddy.frames
        self.refcount = array("i", bytes(4 * frames))
        self.mapcount = array("i", bytes(4 * frames))
        self.flags = bytearray(frames)
        self.effects: list[tuple[Role, int]] = []
        self.procs: dict[int, Process] = {}
        self.objects: dict[int, dict[int, int]] = {}
        self.obj_users: dict[int, int] = {}
        self.pins: dict[int, tuple[int, int]] = {}
        self.next_pid = self.next_object = self.next_pin = 1
        self.current = [0] * len(mmu.cpus)
        self.gathered: list[int] | None = None
        self.rmap: dict[int, dict[int, tuple[int, int]]] = {}
        # The slab allocator's frames on this kernel's buddy, as account_slab (mm/slab.h) counts them.
        self.slab_frames: set[int] = set()
        # The mm counters oom_badness reads, kept as the kernel keeps them, by pid: [``get_mm_rss``,
        # ``MM_SWAPENTS``, ``mm_pgtables_bytes / PAGE_SIZE``].  The first two by :meth:`set_pte` from
        # :meth:`mm_counter` of the old and new leaf (include/linux/mm.h ``add_mm_counter``), the third as tables
        # are made and freed (mm/memory.c ``__pte_alloc`` -> ``mm_inc_nr_ptes``, ``__pmd_alloc`` ->
        # ``mm_inc_nr_pmds``, ``__pud_alloc`` -> ``mm_inc_nr_puds``; ``free_pte_range`` -> ``mm_dec_nr_ptes``).
        self.mm_counters: dict[int, list[int]] = {}
        self.pressure = Pressure(self, swap, fault_around, workingset)
        self.oom = Oom(self)
        self.thp = Thp(self)
        self.memcg = MemCgroups(self)
        if self.free_frames() < 6:
            raise ConfigError("the kernel needs 6 free frames to boot: give the config more frames")
        self.boot = tuple(self._alloc(("boot", i, 0, 0)) for i in range(6))
        self.zero_pfn, self.kernel_pfn, self.init_root = self.boot[0], self.boot[1], self.boot[2]
        self._build_kernel_half()
        for cpu in range(len(mmu.cpus)):
            self._load_cr3(cpu, self.init_root)

    # Attributes :meth:`clone` knows: the immutable ones are shared, every container is copied.
    _CLONED = frozenset(
        {
            *("mmu", "mem", "buddy", "refcount", "mapcount", "flags", "effects", "procs", "objects", "obj_users"),
            *("pins", "next_pid", "next_object", "next_pin", "current", "boot", "zero_pfn", "kernel_pfn", "init_root"),
            "gathered",
            "rmap",
            "slab_frames",
            "pressure",
            "oom",
            "thp",
            "mm_counters",
            "memcg",
        }
    )

    def clone(self, mmu: Mmu, buddy: BuddyAllocator) -> Kernel:
        """An independent copy over ``mmu`` and ``buddy`` (clones of this kernel's), every container copied.

        An attribute this method does not know raises, so one added later cannot end up shared between copies.
        """
        unknown = self.__dict__.keys() - self._CLONED
        if unknown:
            raise AssertionError(f"Kernel.clone does not copy {sorted(unknown)}: add them to it")
        new = Kernel.__new__(Kernel)
        new.__dict__.update(self.__dict__)
        new.mmu, new.mem, new.buddy = mmu, mmu.mem, buddy
        new.refcount, new.mapcount = array("i", self.refcount), array("i", self.mapcount)
        new.flags = bytearray(self.flags)
        new.effects = list(self.effects)
        new.procs = {pid: Process(p.pid, p.root, p.vmas.copy(), p.min_flt, p.maj_flt) for pid, p in self.procs.items()}
        new.objects = {obj: dict(cache) for obj, cache in self.objects.items()}
        new.obj_users, new.pins, new.current = dict(self.obj_users), dict(self.pins), list(self.current)
        new.gathered = None if self.gathered is None else list(self.gathered)
        new.rmap = {pfn: dict(users) for pfn, users in self.rmap.items()}
        new.slab_frames = set(self.slab_frames)
        new.pressure = self.pressure.clone(new)
        new.oom = self.oom.clone(new)
        new.thp = self.thp.clone(new)
        new.mm_counters = {pid: list(counts) for pid, counts in self.mm_counters.items()}
        new.memcg = self.memcg.clone(new)
        return new

    # --- frames ---------------------------------------------------------------------------------

    def free_frames(self) -> int:
        """Frames the buddy allocator can still hand out."""
        return sum(count << order for order, count in enumerate(self.buddy.nr_free))

    def can_alloc_huge(self) -> bool:
        """A free block of order 9 or more exists: a hugetlb page can be allocated."""
        return any(self.buddy.nr_free[HUGE_ORDER:])

    def _alloc(self, role: Role, order: int = 0) -> int:
        pfn = self.buddy.alloc(order)
        assert pfn is not None, "callers check free_frames() or can_alloc_huge() first"
        for frame in range(pfn, pfn + (1 << order)):
            self.mem.zero_frame(frame)
        self.effects.append((role, pfn))
        return pfn

    def _get(self, pfn: int, maps: int = 1) -> None:
        if pfn != self.zero_pfn and pfn != self.thp.zero_pfn:
            self.refcount[pfn] += 1
            self.mapcount[pfn] += maps

    def _put(self, pfn: int, unmaps: int = 1) -> None:
        """``unmaps`` map counts fewer at once; one reference fewer at once, or, while a mapping change is edited
        (:attr:`gathered` is a list), queued in its ``mmu_gather`` until after the TLB flush.

        ``zap_present_folio_ptes`` (mm/memory.c) removes the rmap at once
        (``folio_remove_rmap_ptes``) and batches the page with
        ``__tlb_remove_folio_pages``; ``tlb_flush_mmu`` flushes
        (``tlb_flush_mmu_tlbonly``) before ``tlb_batch_pages_flush`` drops the
        references (``free_pages_and_swap_cache``, mm/mmu_gather.c).
        """
        if pfn == self.zero_pfn or pfn == self.thp.zero_pfn:
            return
        self.mapcount[pfn] -= unmaps
        if self.gathered is not None:
            self.gathered.append(pfn)
            return
        self.drop_reference(pfn)

    def drop_reference(self, pfn: int) -> bool:
        """One reference to page ``pfn`` fewer (``folio_put``); True when that was its last and the frame is free."""
        self.refcount[pfn] -= 1
        if self.refcount[pfn]:
            return False
        order = HUGE_ORDER if self.flags[pfn] & PG_HUGE else 0
        self.pressure.lru_del(pfn)
        self.mapcount[pfn] = 0
        self.flags[pfn] = 0
        self.buddy.free(pfn, order)
        return True

    # --- page tables ----------------------------------------------------------------------------

    def _build_kernel_half(self) -> None:
        """init_mm: PML4[511] -> PDPT[510] -> PD[0] -> PT[0] -> the kernel page, read-only and global."""
        _, kpage, root, pdpt, pd, pt = self.boot
        write = self.mem.write
        write((root << 12) + 511 * 8, (pdpt << 12) | _KERNPG_TABLE)
        write((pdpt << 12) + 510 * 8, (pd << 12) | _KERNPG_TABLE)
        write(pd << 12, (pt << 12) | _KERNPG_TABLE)
        write(pt << 12, (kpage << 12) | _PAGE_KERNEL_RO)
        write(kpage << 12, KERNEL_WORD)

    def move_kernel_page(self) -> int | None:
        """The kernel half's page moved to a new frame (role ``("kernel", 0, 0, 0)``) with its contents copied, as
        ``vfree`` + ``vmalloc`` of the page would; the old frame is returned, not freed: the caller frees it
        after ``flush_tlb_kernel_range`` (:meth:`impl.smp.shootdown.Smp.kernel_remap`).  None if no frame is free.

        The kernel half's PT is shared by every PML4 (``pgd_alloc`` copies PML4[256..511]), so one PTE write
        changes the mapping of every address space.
        """
        if self.free_frames() < 1:
            return None
        old = self.kernel_pfn
        new = self._alloc(("kernel", 0, 0, 0))
        self.mem.copy_frame(old, new)
        pt = self.boot[5]
        self.mem.write(pt << 12, (new << 12) | _PAGE_KERNEL_RO)
        self.boot = (self.boot[0], new, *self.boot[2:])
        self.kernel_pfn = new
        return old

    def _new_root(self, pid: int) -> int:
        """A PML4 with the kernel half copied from init_mm (``pgd_alloc``)."""
        root = self._alloc(("root", pid, 0, 0))
        for i in range(256, 512):
            entry = self.mem.read((self.init_root << 12) + i * 8)
            if entry:
                self.mem.write((root << 12) + i * 8, entry)
        return root

    def _load_cr3(self, cpu: int, root: int) -> None:
        self.mmu.set_cpu(cpu, cr3=root << 12, wp=True, smep=False, smap=False, ac=False, nxe=True, la57=False)

    def _pte_pa(self, root: int, vpn: int) -> int | None:
        """Physical address of the PTE for ``vpn``, or None if a table on the way is missing."""
        table = root
        for level in (4, 3, 2):
            entry = self.mem.read_unchecked((table << 12) + ((vpn >> (9 * (level - 1))) & 511) * 8)
            if not entry & _P:
                return None
            table = (entry & _PFN) >> 12
        return (table << 12) + (vpn & 511) * 8

    def _leaf_entry(self, root: int, vpn: int) -> tuple[int, int] | None:
        """(pa, entry) of the leaf mapping ``vpn``: a PTE, or a PD entry with PS=1; None if a table is missing."""
        table = root
        for level in (4, 3, 2):
            pa = (table << 12) + ((vpn >> (9 * (level - 1))) & 511) * 8
            entry = self.mem.read_unchecked(pa)
            if level == 2 and entry & _PS:
                return pa, entry
            if not entry & _P:
                return None
            table = (entry & _PFN) >> 12
        pa = (table << 12) + (vpn & 511) * 8
        return pa, self.mem.read_unchecked(pa)

    def _missing_tables(self, root: int, vpn: int, leaf_level: int = 1) -> int:
        """How many of the tables a leaf for ``vpn`` at ``leaf_level`` needs are missing (1: a PTE, 2: a hugetlb
        PD entry, which needs only the PDPT and PD)."""
        table = root
        for level in range(4, leaf_level, -1):
            entry = self.mem.read_unchecked((table << 12) + ((vpn >> (9 * (level - 1))) & 511) * 8)
            if not entry & _P:
                return level - leaf_level
            table = (entry & _PFN) >> 12
        return 0

    def _pte_pa_alloc(self, pid: int, root: int, vpn: int, leaf_level: int = 1) -> int:
        """The address of the entry for ``vpn`` at ``leaf_level`` (1: the PTE, like :meth:`_pte_pa`; 2: the PD
        entry of a hugetlb leaf, ``huge_pte_alloc``), allocating missing tables top-down (``__pud_alloc`` ...
        ``__pte_alloc``)."""
        table = root
        for level in range(4, leaf_level, -1):
            pa = (table << 12) + ((vpn >> (9 * (level - 1))) & 511) * 8
            entry = self.mem.read_unchecked(pa)
            if not entry & _P:
                child = self._alloc(("table", pid, level - 1, vpn >> (9 * (level - 1))))
                entry = (child << 12) | _PAGE_TABLE
                self.mem.write(pa, entry)
                self.mm_counters.setdefault(pid, [0, 0, 0])[MM_TABLES] += 1
            table = (entry & _PFN) >> 12
        return (table << 12) + ((vpn >> (9 * (leaf_level - 1))) & 511) * 8

    def _ptes(self, table: int, level: int, base: int, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """Every non-empty leaf for pages ``lo .. hi-1`` under ``table`` at ``level``: (vpn, pa, entry); a 2 MiB
        leaf (PD entry with PS=1) overlapping the range comes as the first page it maps."""
        shift = 9 * (level - 1)
        first = max(0, (lo - base) >> shift)
        last = min(512, ((hi - 1 - base) >> shift) + 1)
        for i, entry in self.mem.frame_entries(table, first, last):
            pa = (table << 12) + i * 8
            if level == 1 or (level == 2 and entry & _PS):
                yield base + (i << shift), pa, entry
            elif entry & _P:
                yield from self._ptes((entry & _PFN) >> 12, level - 1, base + (i << shift), lo, hi)

    def _tables(self, table: int, level: int, base: int, lo: int, hi: int) -> Iterator[tuple[int, int, int, int]]:
        """Tables below ``table`` whose range overlaps ``lo .. hi-1``, children first: (level, key, parent pa, pfn)."""
        shift = 9 * (level - 1)
        first = max(0, (lo - base) >> shift)
        last = min(512, ((hi - 1 - base) >> shift) + 1)
        for i, entry in self.mem.frame_entries(table, first, last):
            pa = (table << 12) + i * 8
            if not entry & _P or (level == 2 and entry & _PS):
                continue
            child, child_base = (entry & _PFN) >> 12, base + (i << shift)
            if level > 2:
                yield from self._tables(child, level - 1, child_base, lo, hi)
            yield level - 1, child_base >> shift, pa, child

    def user_ptes(self, proc: Process, lo: int = 0, hi: int = USER_PAGES) -> Iterator[tuple[int, int, int]]:
        """The process's non-empty PTEs in pages ``lo .. hi-1``."""
        return self._ptes(proc.root, 4, 0, lo, min(hi, USER_PAGES))

    def set_pte(self, pa: int, entry: int, pid: int, vpn: int) -> None:
        """Write the leaf at ``pa`` (``pid``'s entry for page ``vpn``) and keep the reverse map: the frame it maps
        loses this entry and the frame ``entry`` maps gains it (``folio_remove_rmap_pte`` /
        ``folio_add_anon_rmap_pte``, ``folio_add_file_rmap_pte``, mm/rmap.c).

        Every leaf write that can change which 4 KiB frame an entry maps, or whether it maps one (present or
        PROT_NONE, not a 2 MiB leaf: the entries :meth:`rmapped` counts), goes through here; writes that only
        change the A, D or R/W bits of a mapping entry leave the reverse map as it is.
        """
        was = self.mem.read_unchecked(pa)
        old = self.rmapped(was)
        if old is not None:
            users = self.rmap[old]
            del users[pa]
            if not users:
                del self.rmap[old]
        new = self.rmapped(entry)
        if new is not None:
            self.rmap.setdefault(new, {})[pa] = (pid, vpn)
        gone, came = self.mm_counter(was), self.mm_counter(entry)
        if gone is not None or came is not None:
            counts = self.mm_counters.setdefault(pid, [0, 0, 0])
            if gone is not None:
                counts[gone] -= HUGE_PAGES if was & _PS else 1
            if came is not None:
                counts[came] += HUGE_PAGES if entry & _PS else 1
        self.mem.write(pa, entry)

    def mm_counter(self, entry: int) -> int | None:
        """Which of :attr:`mm_counters` the leaf ``entry`` counts in: :data:`MM_SWAPENTS` for a swap entry,
        :data:`MM_RSS` for one mapping a 4 KiB frame other than the zero page, or a THP's PMD (512 pages; mm/memory.c
        and mm/huge_memory.c count no zero-page, huge-zero-page or hugetlb leaf in the rss), else None."""
        if not entry:
            return None
        if not entry & (_P | _PROTNONE):
            return MM_SWAPENTS  # is_swap_pte
        if entry & _PS:  # a THP's PMD counts its 512 pages (__do_huge_pmd_anonymous_page: add_mm_counter)
            pfn = (entry & _PFN) >> 12
            return MM_RSS if pfn != self.thp.zero_pfn and self.flags[pfn] & PG_THP else None
        return None if (entry & _PFN) >> 12 == self.zero_pfn else MM_RSS

    @staticmethod
    def rmapped(entry: int) -> int | None:
        """The frame a leaf entry maps for the reverse map: present or PROT_NONE, not a 2 MiB leaf; else None."""
        if entry & (_P | _PROTNONE) and not entry & _PS:
            return (entry & _PFN) >> 12
        return None

    def page_tables_scan(self) -> tuple[dict[int, dict[int, tuple[int, int]]], dict[int, tuple[int, int, int]]]:
        """What the page tables hold, read in one walk of every process's: the reverse map (what :attr:`rmap`
        must equal) and each process's mm counters (what :attr:`mm_counters` must hold)."""
        found: dict[int, dict[int, tuple[int, int]]] = {}
        counted: dict[int, tuple[int, int, int]] = {}
        for pid, proc in self.procs.items():
            counts = [0, 0, 0]
            for vpn, pa, entry in self.user_ptes(proc):
                pfn = self.rmapped(entry)
                if pfn is not None:
                    found.setdefault(pfn, {})[pa] = (pid, vpn)
                counter = self.mm_counter(entry)
                if counter is not None:
                    counts[counter] += HUGE_PAGES if entry & _PS else 1
            tables = sum(1 for _ in self._tables(proc.root, 4, 0, 0, USER_PAGES))
            counts[MM_TABLES] = tables + len(self.thp.deposit_frames(pid))
            counted[pid] = (counts[0], counts[1], counts[2])
        return found, counted

    def rmap_scan(self) -> dict[int, dict[int, tuple[int, int]]]:
        """The reverse map read off every process's page tables: what :attr:`rmap` must equal."""
        return self.page_tables_scan()[0]

    def rmap_problem(self, found: dict[int, dict[int, tuple[int, int]]] | None = None) -> str | None:
        """The self-check of the reverse map: None if :attr:`rmap` equals :meth:`rmap_scan` (or ``found``, the
        reverse map of a :meth:`page_tables_scan` of this state), else what differs."""
        if found is None:
            found = self.rmap_scan()
        if found == self.rmap:
            return None
        wrong = sorted(pfn for pfn in found.keys() | self.rmap.keys() if found.get(pfn) != self.rmap.get(pfn))
        pfn = wrong[0]
        return (
            f"reverse map of frame {pfn:#x} is {self.rmap.get(pfn, {})} but the page tables map it at "
            f"{found.get(pfn, {})} (pte address: (pid, vpn)); {len(wrong)} frame(s) differ"
        )

    def mm_counts(self, pid: int) -> tuple[int, int, int]:
        """``pid``'s kept mm counters: (``get_mm_rss``, ``MM_SWAPENTS``, ``mm_pgtables_bytes / PAGE_SIZE``)."""
        rss, swapents, tables = self.mm_counters.get(pid, (0, 0, 0))
        return rss, swapents, tables

    def mm_counters_scan(self) -> dict[int, tuple[int, int, int]]:
        """Every process's mm counters read off its page tables: what :attr:`mm_counters` must hold."""
        return self.page_tables_scan()[1]

    def mm_counters_problem(self, found: dict[int, tuple[int, int, int]] | None = None) -> str | None:
        """The self-check of the kept mm counters: None if they equal :meth:`mm_counters_scan` (or ``found``, the
        counters of a :meth:`page_tables_scan` of this state), else what differs."""
        stale = sorted(self.mm_counters.keys() - self.procs.keys())
        if stale:
            return f"mm counters kept for processes that are gone: {stale}"
        if found is None:
            found = self.mm_counters_scan()
        wrong = sorted(pid for pid in found if found[pid] != self.mm_counts(pid))
        if not wrong:
            return None
        pid = wrong[0]
        return (
            f"process {pid}'s mm counters are {self.mm_counts(pid)} but its page tables hold {found[pid]}"
            f" (rss, swap entries, table pages); {len(wrong)} process(es) differ"
        )

    def _leaf(self, vma: Vma, pfn: int, writable: bool, dirty: bool | None = None) -> int:
        """``vm_get_page_prot`` plus the per-entry write bit: PROT_NONE is not present, XD unless executable; D if
        ``dirty``, else if writable (a write fault's ``pte_mkdirty``)."""
        if not vma.accessible:
            return (pfn << 12) | _PROTNONE | _A | _NX | (_PS if vma.huge else 0) | (_D if dirty else 0)
        entry = (pfn << 12) | _P | _US | _A | (0 if vma.exec else _NX) | (_PS if vma.huge else 0)
        return entry | (_RW if writable else 0) | (_D if (writable if dirty is None else dirty) else 0)

    # --- processes ------------------------------------------------------------------------------

    def set_dirty(self, proc: Process, vpn: int, pfn: int) -> None:
        """A write through a TLB entry for frame ``pfn``: these TLBs do not cache the dirty bit, so the CPU sets it,
        with the accessed bit, in the current leaf if it still maps that frame (SDM Vol. 3A 4.8)."""
        if vpn << 12 >= TASK_SIZE:
            return
        found = self._leaf_entry(proc.root, vpn)
        if found is None:
            return
        pa, entry = found
        if entry & _P and (entry & _PFN) >> 12 == pfn and entry & (_A | _D) != _A | _D:
            self.mem.write(pa, entry | _A | _D)

    def proc(self, pid: int) -> Process:
        """Process ``pid``, or :class:`UnknownPid`."""
        proc = self.procs.get(pid)
        if proc is None:
            raise UnknownPid(f"pid {pid} is not a live process: allowed {sorted(self.procs)}")
        return proc

    def spawn(self) -> Result:
        """A process with an empty address space."""
        if self.free_frames() < 1:
            return errno("ENOMEM")
        pid = self.next_pid
        self.procs[pid] = Process(pid, self._new_root(pid), VmaList())
        self.next_pid += 1
        return {"pid": pid}

    def fork(self, pid: int) -> Result:
        """``dup_mmap``: copy the VMAs, and the PTEs of private VMAs with anonymous memory, write-protected."""
        parent = self.proc(pid)
        copied = [
            pte
            for vma in parent.vmas
            if not vma.shared and vma.anon
            for pte in self.user_ptes(parent, vma.start, vma.end)
        ]
        thp = self.thp
        keys = {
            (level, vpn >> (9 * level))
            for vpn, _, entry in copied
            for level in ((2, 3) if entry & _PS and not thp.is_thp(entry) else (1, 2, 3))
        }
        if self.free_frames() < 1 + len(keys):
            return errno("ENOMEM")
        child = self.next_pid
        self.next_pid += 1
        root = self._new_root(child)
        for vpn, pa, entry in copied:
            if is_swap(entry):
                self.set_pte(self._pte_pa_alloc(child, root, vpn), entry, child, vpn)
                self.pressure.swap_map[swp_offset(entry)] += 1
                continue
            if entry & _RW:
                entry &= ~_RW
                self.mem.write(pa, entry)
            leaf_level = 2 if entry & _PS else 1
            self.set_pte(self._pte_pa_alloc(child, root, vpn, leaf_level), entry, child, vpn)
            if thp.is_thp(entry):
                thp.deposit(child, vpn)  # copy_huge_pmd: pte_alloc_one for the child's deposit
            pfn = (entry & _PFN) >> 12
            if pfn != self.zero_pfn and pfn != thp.zero_pfn:
                self._get(pfn)
                self.flags[pfn] &= ~PG_EXCLUSIVE
        vmas = parent.vmas.fork_copy()
        for vma in vmas:
            if vma.shared:
                self.obj_users[vma.obj] += 1
        self.procs[child] = Process(child, root, vmas)
        return {"pid": child}

    def exit(self, pid: int) -> Result:
        """Unmap everything, free every table and the PML4; CPUs running ``pid`` go idle on init_mm."""
        proc = self.proc(pid)
        self._zap(proc, 0, USER_PAGES)
        for _, _, _, pfn in list(self._tables(proc.root, 4, 0, 0, USER_PAGES)):
            self.buddy.free(pfn, 0)
        self.buddy.free(proc.root, 0)
        self.mm_counters.pop(pid, None)
        for vma in proc.vmas:
            if vma.shared:
                self._unuse_object(vma.obj)
        del self.procs[pid]
        for cpu, running in enumerate(self.current):
            if running == pid:
                self.current[cpu] = 0
                self._load_cr3(cpu, self.init_root)
        return OK

    def switch(self, cpu: int, pid: int) -> Result:
        """Run ``pid`` on ``cpu``: load its PML4 into CR3."""
        if not 0 <= cpu < len(self.current):
            raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(self.current) - 1}")
        proc = self.proc(pid)
        self.current[cpu] = pid
        self._load_cr3(cpu, proc.root)
        return OK

    # --- mappings -------------------------------------------------------------------------------

    def _zap(self, proc: Process, lo: int, hi: int) -> None:
        """``zap_pte_range``, and ``zap_huge_pmd`` for a THP PMD (callers split one the range cuts), whose deposited
        PT goes with it."""
        for vpn, pa, entry in list(self.user_ptes(proc, lo, hi)):
            self.set_pte(pa, 0, proc.pid, vpn)
            if entry & _PS and self.thp.is_thp(entry):
                self.thp.withdraw_and_free(proc.pid, vpn)
            if is_swap(entry):
                self.pressure.swap_free(swp_offset(entry))
            else:
                self._put((entry & _PFN) >> 12)

    def _unuse_object(self, obj: int) -> None:
        self.obj_users[obj] -= 1
        if self.obj_users[obj] == 0:
            del self.obj_users[obj]
            for pfn in self.objects.pop(obj).values():
                self._put(pfn, 0)

    def _split(self, proc: Process, vpn: int) -> None:
        upper = proc.vmas.split_at(vpn)
        if upper is not None and upper.shared:
            self.obj_users[upper.obj] += 1

    def _merge(self, proc: Process, lo: int, hi: int) -> None:
        """Merge compatible VMAs meeting in ``lo .. hi`` (mm/vma.c); a shared one merged away drops its object use."""
        for vma in proc.vmas.merge(lo, hi):
            if vma.shared:
                self.obj_users[vma.obj] -= 1

    def _unmap(self, proc: Process, lo: int, hi: int) -> None:
        """Split the THP PMDs the edges cut, zap, remove the VMAs, free the tables no VMA reaches, drop unused
        objects."""
        self.thp.split_edges(proc, lo, hi)
        self._zap(proc, lo, hi)
        self._split(proc, lo)
        self._split(proc, hi)
        for vma in proc.vmas.remove(lo, hi):
            if vma.shared:
                self._unuse_object(vma.obj)
        for level, key, parent_pa, pfn in list(self._tables(proc.root, 4, 0, lo, hi)):
            span = 9 * level
            if not proc.vmas.intersects(key << span, (key + 1) << span):
                self.mem.write(parent_pa, 0)
                self.buddy.free(pfn, 0)
                self.mm_counters[proc.pid][MM_TABLES] -= 1

    @staticmethod
    def _mmap_error(va: int, pages: int, huge: bool) -> str | None:
        """``do_mmap``'s checks; with ``MAP_HUGETLB`` the length is rounded up to 2 MiB first
        (``ksys_mmap_pgoff``) and the address must be 2 MiB aligned (``prepare_hugepage_range``)."""
        size = -(-pages // HUGE_PAGES) * HUGE_PAGES * PAGE_SIZE if huge else pages * PAGE_SIZE
        if pages <= 0 or (va % PAGE_SIZE and not huge):
            return "EINVAL"
        if huge and size > TASK_SIZE:
            return "ENOMEM"
        if huge and va % (HUGE_PAGES * PAGE_SIZE):
            return "EINVAL"
        if va + size > TASK_SIZE:
            return "ENOMEM"
        if va < MMAP_MIN_ADDR:
            return "EPERM"
        return None

    def mmap(
        self, pid: int, va: int, pages: int, rwx: tuple[bool, bool, bool], shared: bool, huge: bool = False
    ) -> Result:
        """``mmap(va, pages * 4096, prot, MAP_FIXED | MAP_ANONYMOUS | MAP_PRIVATE or MAP_SHARED [| MAP_HUGETLB])``."""
        proc = self.proc(pid)
        error = self._mmap_error(va, pages, huge)
        if error:
            return errno(error)
        if huge:
            pages = -(-pages // HUGE_PAGES) * HUGE_PAGES
        lo = va >> 12
        if proc.vmas.split_refused(lo) or proc.vmas.split_refused(lo + pages):
            return errno("EINVAL")
        self._unmap(proc, lo, lo + pages)
        obj = 0
        if shared or huge:
            obj = self.next_object
            self.next_object += 1
        if shared:
            self.objects[obj] = {}
            self.obj_users[obj] = 1
        proc.vmas.insert(Vma(lo, lo + pages, rwx, shared, obj, huge=huge))
        self._merge(proc, lo, lo + pages)
        return OK

    def munmap(self, pid: int, va: int, pages: int) -> Result:
        """``munmap``; EINVAL if an edge would split a hugetlb VMA off 2 MiB (``hugetlb_vm_op_split``)."""
        proc = self.proc(pid)
        if va % PAGE_SIZE or pages <= 0 or va + pages * PAGE_SIZE > TASK_SIZE:
            return errno("EINVAL")
        lo, hi = va >> 12, (va >> 12) + pages
        if proc.vmas.split_refused(lo) or proc.vmas.split_refused(hi):
            return errno("EINVAL")
        self._unmap(proc, lo, hi)
        return OK

    def mprotect(self, pid: int, va: int, pages: int, rwx: tuple[bool, bool, bool]) -> Result:
        """``mprotect``: the mapped run at ``va`` gets ``rwx``; ENOMEM where it stops short."""
        proc = self.proc(pid)
        if va % PAGE_SIZE:
            return errno("EINVAL")
        if pages == 0:
            return OK
        lo, hi = va >> 12, (va >> 12) + pages
        end = proc.vmas.covered_until(lo, hi)
        if end == lo:
            return errno("ENOMEM")
        if proc.vmas.split_refused(lo):
            return errno("EINVAL")
        result = OK if end == hi else errno("ENOMEM")
        if proc.vmas.split_refused(end):
            last = proc.vmas.find(end)
            assert last is not None
            end, result = max(lo, last.start), errno("EINVAL")
            if end == lo:
                return result
        # mprotect_fixup leaves a VMA whose flags do not change alone (mm/mprotect.c: newflags == oldflags), so
        # only an edge inside a VMA that changes splits a THP PMD there (vma_adjust_trans_huge).
        cut_at = [
            e
            for e in (lo, end)
            if (v := proc.vmas.find(e)) is not None and v.start < e and (v.read, v.write, v.exec) != rwx
        ]
        self.thp.split_edges(proc, *cut_at)
        self._split(proc, lo)
        self._split(proc, end)
        for vma in proc.vmas.within(lo, end):
            vma.read, vma.write, vma.exec = rwx
            for vpn, pa, entry in list(self.user_ptes(proc, vma.start, vma.end)):
                if not is_swap(entry):
                    self.set_pte(pa, self._changed(vma, entry), proc.pid, vpn)
        self._merge(proc, lo, end)
        return result

    def _changed(self, vma: Vma, entry: int) -> int:
        """``change_pte_range``: the new protection; private entries stay writable only if exclusive anon."""
        pfn = (entry & _PFN) >> 12
        if vma.shared:
            clean_file = not self.flags[pfn] & (PG_ANON | PG_DIRTY) and self.pressure.is_file(vma)
            writable = vma.write and not clean_file  # write-notify: a clean file page stays read-only
        elif vma.huge:
            writable = False  # hugetlb_change_protection: huge_pte_modify, no upgrade
        else:  # change_pte_range, or change_huge_pmd for a THP PMD (can_change_pmd_writable), never a zero page
            exclusive_anon = self.flags[pfn] & (PG_ANON | PG_EXCLUSIVE) == PG_ANON | PG_EXCLUSIVE
            writable = vma.write and pfn != self.zero_pfn and pfn != self.thp.zero_pfn and exclusive_anon
        return self._leaf(vma, pfn, writable, dirty=bool(entry & _D)) | (entry & _PS)  # pte_modify keeps D

    def madvise_dontneed(self, pid: int, va: int, pages: int) -> Result:
        """``madvise(MADV_DONTNEED)``: zap the range VMA by VMA, keep the tables; in a hugetlb VMA the start must be
        2 MiB aligned and the end is rounded down (``madvise_dontneed_free_valid_vma``)."""
        proc = self.proc(pid)
        if va % PAGE_SIZE:
            return errno("EINVAL")
        if pages == 0:
            return OK
        lo, hi = va >> 12, (va >> 12) + pages
        for vma in list(proc.vmas):
            start, end = max(vma.start, lo), min(vma.end, hi)
            if start >= end:
                continue
            if vma.huge:
                if start % HUGE_PAGES:
                    return errno("EINVAL")
                end -= end % HUGE_PAGES
            self.thp.split_edges(proc, start, end)
            self._zap(proc, start, end)
        return OK if proc.vmas.mapped_pages(lo, hi) == hi - lo else errno("ENOMEM")

    # --- access and faults ----------------------------------------------------------------------

    def running(self, cpu: int) -> Process:
        """The process ``cpu`` runs."""
        if not 0 <= cpu < len(self.current):
            raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(self.current) - 1}")
        if not self.current[cpu]:
            raise IdleCpu(f"cpu {cpu} runs no process: switch it to a pid first")
        return self.procs[self.current[cpu]]

    @staticmethod
    def check_va(va: int) -> None:
        """Canonical (4-level) and 8-byte aligned, else :class:`AddressError`."""
        if not 0 <= va < 1 << 64 or (va >> 47) not in (0, (1 << 17) - 1):
            raise AddressError(f"virtual address {va:#x} is not canonical: bits 63..47 must be equal")
        if va & 7:
            raise AddressError(f"virtual address {va:#x} is not 8-byte aligned: accesses are 64-bit words")

    def access(self, cpu: int, va: int, kind: int, user: bool, value: int = 0) -> Result:
        """A load, store or fetch through the MMU; a #PF runs the fault handler, then the access is retried."""
        proc = self.running(cpu)
        self.check_va(va)
        for _ in range(3):
            outcome = self.mmu.access(cpu, va, kind, user)
            if isinstance(outcome, Translated):
                if kind == WRITE:
                    self.mem.write(outcome.pa, value)
                    return OK
                return {"value": self.mem.read(outcome.pa)}
            assert isinstance(outcome, Fault)
            failed = self._fault(proc, va, kind, outcome.error_code)
            if failed is not None:
                return failed
        raise AssertionError(f"access to {va:#x} still faults after three fixes")

    def _fault(self, proc: Process, va: int, kind: int, code: int) -> Result | None:
        """``do_user_addr_fault``: None when fixed, else SIGSEGV or ENOMEM."""
        vpn = va >> 12
        vma = proc.vmas.find(vpn) if va < TASK_SIZE else None
        if vma is None:
            return segv(code)
        if kind == WRITE:
            if not vma.write:
                return segv(code)
        elif code & _P or not vma.accessible:
            return segv(code)
        if vma.huge:
            head = vpn - vpn % HUGE_PAGES
            found = self._leaf_entry(proc.root, head)
            fixes = found is None or not found[1] or (kind == WRITE and not found[1] & _RW)
            failed = self._huge_fault(proc, vma, head, kind == WRITE)
            if failed is None and fixes:
                self.pressure.count_fault(proc, False)
            return failed
        pmd = self.thp.thp_pmd(proc, vpn)
        if pmd is not None:  # a THP PMD: only a write to a read-only one is a fault to fix (do_huge_pmd_wp_page)
            if kind != WRITE or pmd[2] & _RW:
                return None
            failed = self.thp.wp(proc, vma, vpn, *pmd)
            if failed is None:
                self.pressure.count_fault(proc, False)
            return failed
        pa = self._pte_pa(proc.root, vpn)
        entry = 0 if pa is None else self.mem.read(pa)
        if not entry:
            return self._missing(proc, vma, vpn, kind == WRITE)
        assert pa is not None
        if is_swap(entry):
            failed = self.pressure.swap_fault(proc, vma, vpn, pa, entry, kind == WRITE)
            entry = self.mem.read(pa)
            if failed is not None or kind != WRITE or entry & _RW:
                return failed
            # do_swap_page with FAULT_FLAG_WRITE ends in do_wp_page within the same fault: counted once
            self.pressure.free_if_only_cache((entry & _PFN) >> 12)
            return self._wp(proc, vma, vpn, pa, entry)
        if kind == WRITE and not entry & _RW:
            if vma.shared and self.pressure.is_file(vma):
                self.flags[(entry & _PFN) >> 12] |= PG_DIRTY  # wp_page_shared: dirty, then writable
                self.mem.write(pa, entry | _RW | _D)
                failed = None
            else:
                self.pressure.free_if_only_cache((entry & _PFN) >> 12)
                failed = self._wp(proc, vma, vpn, pa, entry)
            if failed is None:
                self.pressure.count_fault(proc, False)
            return failed
        return None

    def _missing(self, proc: Process, vma: Vma, vpn: int, write: bool) -> Result | None:
        """``do_anonymous_page`` (zero page on read), ``shmem_fault`` for a shared VMA, ``filemap_fault`` for a file
        mapping (:meth:`impl.pressure.pressure.Pressure.file_fault`); a fixed fault is counted.  A read fault in a
        file or shmem mapping (``do_read_fault``) maps its neighbours from the cache
        (:meth:`impl.pressure.pressure.Pressure.fault_around`)."""
        if self.pressure.is_file(vma):
            failed = self.pressure.file_fault(proc, vma, vpn, write)
        elif vma.shared:
            failed = self._counted(proc, self._shmem(proc, vma, vpn))
        else:
            return self._counted(proc, self._anon_missing(proc, vma, vpn, write))
        if failed is None and not write:
            self.pressure.fault_around(proc, vma, vpn)
        return failed

    def _counted(self, proc: Process, failed: Result | None) -> Result | None:
        """A minor fault counted when it was fixed (``mm_account_fault``)."""
        if failed is None:
            self.pressure.count_fault(proc, False)
        return failed

    def _anon_missing(self, proc: Process, vma: Vma, vpn: int, write: bool) -> Result | None:
        """``do_anonymous_page``: the zero page, read-only, for a read; a new exclusive page for a write; first a THP
        where one may go (:meth:`impl.mm.thp.Thp.fault`)."""
        failed, handled = self.thp.fault(proc, vma, vpn, write)
        if handled:
            return failed
        if self.free_frames() < self._missing_tables(proc.root, vpn) + (1 if write else 0):
            return errno("ENOMEM")
        pa = self._pte_pa_alloc(proc.pid, proc.root, vpn)
        if not write:
            self.set_pte(pa, self._leaf(vma, self.zero_pfn, False), proc.pid, vpn)
            return None
        pfn = self._alloc(("page", proc.pid, vpn, 0))
        self.refcount[pfn], self.mapcount[pfn], self.flags[pfn] = 1, 1, PG_ANON | PG_EXCLUSIVE
        self.pressure.lru_add(pfn, ANON_INACTIVE)
        proc.vmas.prepare_anon(vma)
        self.set_pte(pa, self._leaf(vma, pfn, True), proc.pid, vpn)
        return None

    def _shmem(self, proc: Process, vma: Vma, vpn: int) -> Result | None:
        index = vma.pgoff + vpn - vma.start
        cache = self.objects[vma.obj]
        pfn = cache.get(index)
        if self.free_frames() < self._missing_tables(proc.root, vpn) + (1 if pfn is None else 0):
            return errno("ENOMEM")
        pa = self._pte_pa_alloc(proc.pid, proc.root, vpn)
        if pfn is None:
            pfn = cache[index] = self._alloc(("shmem", vma.obj, index, 0))
            self.refcount[pfn], self.mapcount[pfn], self.flags[pfn] = 1, 0, 0
        self._get(pfn)
        # a read maps clean; the store sets D
        self.set_pte(pa, self._leaf(vma, pfn, vma.write, dirty=False), proc.pid, vpn)
        return None

    def _wp(self, proc: Process, vma: Vma, vpn: int, pa: int, entry: int) -> Result | None:
        """``do_wp_page``: reuse an exclusive or singly-referenced anonymous page, else copy it."""
        old = (entry & _PFN) >> 12
        anon = old != self.zero_pfn and self.flags[old] & PG_ANON
        if anon and (self.flags[old] & PG_EXCLUSIVE or self.refcount[old] == 1):
            self.flags[old] |= PG_EXCLUSIVE
            self.mem.write(pa, entry | _RW | _D)
            return None
        if self.free_frames() < 1:
            return errno("ENOMEM")
        new = self._alloc(("page", proc.pid, vpn, 0))
        if old != self.zero_pfn:
            self.mem.copy_frame(old, new)
        self.refcount[new], self.mapcount[new], self.flags[new] = 1, 1, PG_ANON | PG_EXCLUSIVE
        self.pressure.lru_add(new, ANON_INACTIVE)
        proc.vmas.prepare_anon(vma)
        self.set_pte(pa, (entry & ~_PFN) | (new << 12) | _RW | _D, proc.pid, vpn)
        self._put(old)
        return None

    def _huge_fault(self, proc: Process, vma: Vma, head: int, write: bool) -> Result | None:
        """``hugetlb_fault`` on the 2 MiB page at ``head``: no entry (``hugetlb_no_page``) or a COW write."""
        found = self._leaf_entry(proc.root, head)
        if found is None or not found[1]:
            return self._huge_missing(proc, vma, head, write)
        pa, entry = found
        if write and not entry & _RW:
            return self._huge_wp(proc, vma, head, pa, entry)
        return None

    def _huge_missing(self, proc: Process, vma: Vma, head: int, write: bool) -> Result | None:
        """``hugetlb_no_page``: the tables, then a zeroed 2 MiB page: private and anonymous (read-only on a read,
        writable on a write), or the shared file's page for the offset (writable if the VMA is)."""
        index = vma.pgoff + head - vma.start
        cache = self.objects[vma.obj] if vma.shared else {}
        pfn = cache.get(index)
        tables = self._missing_tables(proc.root, head, 2)
        if self.free_frames() < tables or (pfn is None and not self.can_alloc_huge()):
            return errno("ENOMEM")
        pa = self._pte_pa_alloc(proc.pid, proc.root, head, 2)
        if pfn is None and not self.can_alloc_huge():
            return errno("ENOMEM")
        if not vma.shared:
            pfn = self._alloc(("huge", proc.pid, head, 0), HUGE_ORDER)
            self.refcount[pfn], self.mapcount[pfn] = 1, 1
            self.flags[pfn] = PG_ANON | PG_EXCLUSIVE | PG_HUGE
            proc.vmas.prepare_anon(vma)
            self.mem.write(pa, self._leaf(vma, pfn, write))
            return None
        if pfn is None:
            pfn = cache[index] = self._alloc(("hugeshm", vma.obj, index, 0), HUGE_ORDER)
            self.refcount[pfn], self.mapcount[pfn], self.flags[pfn] = 1, 0, PG_HUGE
        self._get(pfn)
        self.mem.write(pa, self._leaf(vma, pfn, vma.write))
        return None

    def _huge_wp(self, proc: Process, vma: Vma, head: int, pa: int, entry: int) -> Result | None:
        """``hugetlb_wp``: reuse an anonymous page mapped once (``folio_mapcount == 1``), else copy the 2 MiB."""
        old = (entry & _PFN) >> 12
        if self.flags[old] & PG_ANON and self.mapcount[old] == 1:
            self.flags[old] |= PG_EXCLUSIVE
            self.mem.write(pa, entry | _RW | _D)
            return None
        if not self.can_alloc_huge():
            return errno("ENOMEM")
        new = self._alloc(("huge", proc.pid, head, 0), HUGE_ORDER)
        for i in range(HUGE_PAGES):
            self.mem.copy_frame(old + i, new + i)
        self.refcount[new], self.mapcount[new] = 1, 1
        self.flags[new] = PG_ANON | PG_EXCLUSIVE | PG_HUGE
        proc.vmas.prepare_anon(vma)
        self.mem.write(pa, (entry & ~_PFN) | (new << 12) | _RW | _D)
        self._put(old)
        return None

    # --- pins -----------------------------------------------------------------------------------

    def pin(self, pid: int, va: int) -> Result:
        """``get_user_pages`` without FOLL_WRITE: fault the page in for reading and take a reference."""
        proc = self.proc(pid)
        self.check_va(va)
        vpn = va >> 12
        vma = proc.vmas.find(vpn) if va < TASK_SIZE else None
        if vma is None or not vma.read:
            return errno("EFAULT")
        if vma.huge:
            raise NotModelled(f"pin of {va:#x}: pinning a hugetlb page is not modelled: pin a page of a normal mapping")
        if self.thp.thp_pmd(proc, vpn) is not None or self.thp.allowed(vma, vpn - vpn % HUGE_PAGES):
            raise NotModelled(f"pin of {va:#x}: pinning a transparent huge page is not modelled: pin where THP is off")
        pa = self._pte_pa(proc.root, vpn)
        if pa is not None and is_swap(self.mem.read(pa)):
            failed = self.pressure.swap_fault(proc, vma, vpn, pa, self.mem.read(pa), False)
            if failed is not None:
                return failed
        elif pa is None or not self.mem.read(pa):
            failed = self._missing(proc, vma, vpn, False)
            if failed is not None:
                return failed
            pa = self._pte_pa(proc.root, vpn)
            assert pa is not None
        pfn = (self.mem.read(pa) & _PFN) >> 12
        self._get(pfn, 0)
        number = self.next_pin
        self.next_pin += 1
        self.pins[number] = (pfn, va & 0xFFF)
        return {"pin": number}

    def _pin(self, number: int) -> tuple[int, int]:
        if number not in self.pins:
            raise UnknownPin(f"pin {number} is not held: allowed {sorted(self.pins)}")
        return self.pins[number]

    def read_pin(self, number: int) -> Result:
        """The pinned word, read through the reference."""
        pfn, offset = self._pin(number)
        return {"value": self.mem.read((pfn << 12) + offset)}

    def unpin(self, number: int) -> Result:
        """Drop the pin's reference."""
        pfn, _ = self._pin(number)
        del self.pins[number]
        self._put(pfn, 0)
        return OK

    # --- observations ---------------------------------------------------------------------------

    def smaps(self, pid: int) -> Result:
        """``/proc/PID/smaps_rollup`` in kB (fs/proc/task_mmu.c ``smaps_pte_entry``, ``smaps_account``,
        ``smaps_page_accumulate``): private when referenced once or mapped fewer than twice, dirty by the PTE's D
        bit or ``PG_dirty``; a swap entry's SwapPss is its share of the slot's swap entries (``swp_swapcount``)."""
        proc = self.proc(pid)
        pressure = self.pressure
        files = {f.obj for f in pressure.files.values()}
        in_file = {pfn for obj, cache in self.objects.items() if obj in files for pfn in cache.values()}
        out = dict.fromkeys((*SMAPS_FIELDS, "AnonHugePages"), 0)
        whole = PAGE_SIZE << PSS_SHIFT
        for _, _, entry in self.user_ptes(proc):
            if is_swap(entry):
                slot = swp_offset(entry)
                count = pressure.swap_map[slot] - (1 if slot in pressure.swap_cache else 0)
                out["Swap"] += PAGE_SIZE
                out["SwapPss"] += whole // count if count >= 2 else whole
                continue
            pfn = (entry & _PFN) >> 12
            thp = bool(entry & _PS) and self.thp.is_thp(entry)
            if pfn == self.zero_pfn or pfn == self.thp.zero_pfn or (entry & _PS and not thp):
                continue  # hugetlb pages count as Private_Hugetlb / Shared_Hugetlb only (smaps_hugetlb_range)
            flags, mapcount = self.flags[pfn], self.mapcount[pfn]
            n = HUGE_PAGES if thp else 1  # smaps_pmd_entry: the THP's 512 pages, each by the PMD map count
            private = self.refcount[pfn] == 1 or mapcount < 2
            share = (whole if private else whole // mapcount) * n
            dirty = bool(entry & _D or flags & PG_DIRTY)
            out["Rss"] += PAGE_SIZE * n
            out["Anonymous"] += PAGE_SIZE * n if flags & PG_ANON else 0
            out["AnonHugePages"] += PAGE_SIZE * n if thp else 0
            out[("Private_" if private else "Shared_") + ("Dirty" if dirty else "Clean")] += PAGE_SIZE * n
            out["Pss"] += share
            out["Pss_Dirty"] += share if dirty else 0
            out["Pss_Anon" if flags & PG_ANON else "Pss_File" if pfn in in_file else "Pss_Shmem"] += share
        if not self.thp.shown:
            del out["AnonHugePages"]
        return {key: value >> (10 + (PSS_SHIFT if key in PSS_FIELDS else 0)) for key, value in out.items()}

    def stat(self, pid: int) -> Result:
        """``smaps_rollup``'s Rss, Pss, USS (Private_Clean + Private_Dirty), Anonymous in kB."""
        s = self.smaps(pid)
        uss = s["Private_Clean"] + s["Private_Dirty"]
        return {"rss_kb": s["Rss"], "pss_kb": s["Pss"], "uss_kb": uss, "anon_kb": s["Anonymous"]}

    def pagemap(self, pid: int, va: int) -> Result:
        """One ``/proc/PID/pagemap`` entry: present, pfn, exclusive (mapped once)."""
        proc = self.proc(pid)
        self.check_va(va & ~7)
        vpn = va >> 12
        found = self._leaf_entry(proc.root, vpn) if va < TASK_SIZE else None
        entry = 0 if found is None else found[1]
        if not entry:
            return {"present": False, "pfn": 0, "exclusive": False}
        if is_swap(entry):  # PM_SWAP, with the swap offset where the pfn would be (type 0)
            return {"present": False, "pfn": swp_offset(entry), "exclusive": False, "swapped": True}
        pfn = (entry & _PFN) >> 12
        if entry & _PS and self.thp.is_thp(entry):  # pagemap_pmd_range: exclusive if the precise map count is 1
            exclusive = pfn != self.thp.zero_pfn and self.mapcount[pfn] == 1
            return {"present": True, "pfn": pfn + vpn % HUGE_PAGES, "exclusive": exclusive}
        if entry & _PS:  # pagemap_hugetlb_range: the subpage's pfn; exclusive unless mapped shared
            return {"present": True, "pfn": pfn + vpn % HUGE_PAGES, "exclusive": self.mapcount[pfn] <= 1}
        return {"present": True, "pfn": pfn, "exclusive": pfn != self.zero_pfn and self.mapcount[pfn] == 1}
