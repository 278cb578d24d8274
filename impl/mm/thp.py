"""Transparent huge pages in the implementation: the sysfs policy, the THP counters, ``MADV_[NO]HUGEPAGE``.

The policy is ``/sys/kernel/mm/transparent_hugepage/{enabled,defrag,use_zero_page}`` (mm/huge_memory.c
``enabled_store``, ``defrag_store``, ``use_zero_page_store``); the counters are ``/proc/vmstat``'s
``thp_fault_alloc``, ``thp_fault_fallback`` and ``thp_split_pmd``.  Boots with ``enabled`` at ``never``.
``madvise(MADV_HUGEPAGE / MADV_NOHUGEPAGE)`` sets the VMA flag (mm/khugepaged.c ``hugepage_madvise``),
splitting the VMAs at the range's edges and merging them with compatible neighbours (``madvise_update_vma``
→ ``vma_modify_flags_name``, mm/vma.c), ENOMEM after the change if the range has a hole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lang.errors import InvalidArgument, NotModelled

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel, Process
    from impl.mm.vma import Vma

Result = dict[str, Any]
THP_VALUES = {
    "enabled": ("always", "madvise", "never"),
    "defrag": ("always", "defer", "defer+madvise", "madvise", "never"),
    "use_zero_page": ("0", "1"),
}
DEFAULTS = {"enabled": "never", "defrag": "madvise", "use_zero_page": "1"}
HUGE_PAGES, HUGE_ORDER = 512, 9
_P, _RW, _US, _A, _D, _PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
_PFN = ((1 << 52) - 1) & ~0xFFF
_PAGE_TABLE = _P | _RW | _US | _A | _D
PG_ANON, PG_EXCLUSIVE, PG_HUGE, PG_THP = 1, 2, 4, 32
MM_RSS, MM_TABLES = 0, 2  # indexes of Kernel.mm_counters (impl.mm.kernel)
ANON_INACTIVE = 0


class Thp:
    """The THP state of one kernel: settings by sysfs name, the huge zero page's frame (0: none yet), counters."""

    __slots__ = ("deposits", "fault_alloc", "fault_fallback", "k", "settings", "split_pmd", "zero_pfn")

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.settings = dict(DEFAULTS)
        self.zero_pfn: int | None = None
        self.fault_alloc = self.fault_fallback = self.split_pmd = 0
        self.deposits: dict[tuple[int, int], int] = {}

    def clone(self, k: Kernel) -> Thp:
        new = Thp(k)
        new.settings = dict(self.settings)
        new.zero_pfn, new.fault_alloc = self.zero_pfn, self.fault_alloc
        new.fault_fallback, new.split_pmd = self.fault_fallback, self.split_pmd
        new.deposits = dict(self.deposits)
        return new

    @property
    def shown(self) -> bool:
        """THP is on, or was: its vmstat counters and smaps/meminfo fields are shown."""
        counters = (self.fault_alloc, self.fault_fallback, self.split_pmd)
        return self.settings != DEFAULTS or self.zero_pfn is not None or any(counters)

    def set_setting(self, name: str, value: str) -> Result:
        """Write ``value`` to the sysfs file ``name``."""
        allowed = THP_VALUES.get(name)
        if allowed is None:
            raise InvalidArgument(f"THP setting {name!r} does not exist: allowed {', '.join(THP_VALUES)}")
        if value not in allowed:
            raise InvalidArgument(f"THP setting {name} cannot be {value!r}: allowed {', '.join(allowed)}")
        self.settings[name] = value
        return {"ok": True}

    def madvise(self, pid: int, va: int, pages: int, advice: str) -> Result:
        """``madvise(va, pages * 4096, MADV_HUGEPAGE or MADV_NOHUGEPAGE)``."""
        proc = self.k.proc(pid)
        if va % 4096:
            return {"error": "EINVAL"}
        if pages == 0:
            return {"ok": True}
        lo, hi = va >> 12, (va >> 12) + pages
        vmas = proc.vmas
        if any(v.huge and v.end > lo and v.start < hi for v in vmas):
            raise NotModelled(f"madvise {advice} over a hugetlb mapping is not modelled: advise normal mappings only")
        if not vmas.intersects(lo, hi):
            return {"error": "ENOMEM"}
        cut_at = [e for e in (lo, hi) if (v := vmas.find(e)) is not None and v.start < e and v.thp != advice]
        self.split_edges(proc, *cut_at)  # vma_adjust_trans_huge
        self.k._split(proc, lo)
        self.k._split(proc, hi)
        for vma in vmas.within(lo, hi):
            vma.thp = advice
        self.k._merge(proc, lo, hi)
        return {"ok": True} if vmas.mapped_pages(lo, hi) == hi - lo else {"error": "ENOMEM"}

    def allowed(self, vma: Vma, head: int) -> bool:
        """``thp_vma_allowable_order`` in a fault: private anonymous, not ``VM_NOHUGEPAGE``, ``enabled`` always
        (or madvise with ``VM_HUGEPAGE``), and the aligned 2 MiB at ``head`` inside the VMA."""
        if vma.shared or vma.huge or vma.obj or vma.thp == "nohugepage":
            return False
        enabled = self.settings["enabled"]
        if not (enabled == "always" or (enabled == "madvise" and vma.thp == "hugepage")):
            return False
        return head % HUGE_PAGES == 0 and vma.start <= head and head + HUGE_PAGES <= vma.end

    # --- PMDs ------------------------------------------------------------------------------------

    def is_thp(self, entry: int) -> bool:
        """``entry`` is a THP's PMD or the huge zero page's (a PD entry with PS=1 outside hugetlb)."""
        pfn = (entry & _PFN) >> 12
        return bool(entry & _PS) and (pfn == self.zero_pfn or bool(self.k.flags[pfn] & PG_THP))

    def deposit(self, pid: int, head: int) -> None:
        """``pte_alloc_one`` + ``pgtable_trans_huge_deposit``: a zeroed PT kept under the PMD at ``head``, counted in
        the process's page tables (``mm_inc_nr_ptes`` in ``__do_huge_pmd_anonymous_page`` and ``copy_huge_pmd``)."""
        self.deposits[(pid, head)] = self.k._alloc(("table", pid, 1, head >> 9))
        self.k.mm_counters.setdefault(pid, [0, 0, 0])[MM_TABLES] += 1

    def withdraw_and_free(self, pid: int, head: int) -> None:
        """``zap_deposited_table``: the deposited PT freed at once (``pte_free``; never walked, so no gather) and
        no longer counted (``mm_dec_nr_ptes``)."""
        buddy = self.k.buddy
        getattr(buddy, "buddy", buddy).free(self.deposits.pop((pid, head)), 0)
        self.k.mm_counters[pid][MM_TABLES] -= 1

    def deposit_frames(self, pid: int) -> set[int]:
        """The deposited PTs of process ``pid``."""
        return {pfn for (owner, _), pfn in self.deposits.items() if owner == pid}

    def fault(self, proc: Process, vma: Vma, vpn: int, write: bool) -> tuple[Result | None, bool]:
        """``create_huge_pmd`` (mm/memory.c, mm/huge_memory.c ``do_huge_pmd_anonymous_page``): the failure (None:
        fixed) and whether it was handled; not handled, the fault goes on to 4 KiB pages (``VM_FAULT_FALLBACK``),
        counted in ``thp_fault_fallback`` when an order-9 block was wanted and none was free.

        The PMD goes into an empty PD entry (a PT there means 4 KiB pages, ``pmd_none`` in ``__handle_mm_fault``)
        and, a 2 MiB leaf like hugetlb's, stays out of the reverse map (:meth:`impl.mm.kernel.Kernel.rmapped`)."""
        k, head = self.k, vpn - vpn % HUGE_PAGES
        if not self.allowed(vma, head) or k._leaf_entry(proc.root, head) is not None:
            return None, False
        if k.free_frames() < k._missing_tables(proc.root, head, 2):
            return {"error": "ENOMEM"}, True
        pa = k._pte_pa_alloc(proc.pid, proc.root, head, 2)
        proc.vmas.prepare_anon(vma)
        if not write and self.settings["use_zero_page"] == "1":
            if k.free_frames() < 1:
                return {"error": "ENOMEM"}, True
            if self.zero_pfn is None:
                if not k.can_alloc_huge():
                    self.fault_fallback += 1
                    return None, False
                self.zero_pfn = k._alloc(("hugezero", 0, 0, 0), HUGE_ORDER)
            self.deposit(proc.pid, head)
            k.mem.write(pa, k._leaf(vma, self.zero_pfn, False, dirty=False) | _PS)
            return None, True
        if not k.can_alloc_huge():
            self.fault_fallback += 1
            return None, False
        if k.free_frames() < HUGE_PAGES + 1:
            return {"error": "ENOMEM"}, True
        pfn = k._alloc(("thp", proc.pid, head, 0), HUGE_ORDER)
        k.refcount[pfn], k.mapcount[pfn] = 1, 1
        k.flags[pfn] = PG_ANON | PG_EXCLUSIVE | PG_HUGE | PG_THP
        self.deposit(proc.pid, head)
        self.fault_alloc += 1
        k.mem.write(pa, k._leaf(vma, pfn, vma.write, dirty=True) | _PS)
        k.mm_counters.setdefault(proc.pid, [0, 0, 0])[MM_RSS] += HUGE_PAGES  # add_mm_counter(MM_ANONPAGES, 512)
        return None, True

    def split(self, proc: Process, head: int, pa: int, entry: int) -> None:
        """``__split_huge_pmd`` of the PMD ``entry`` at ``pa``: its deposited PT filled and put in the tree.

        The huge zero page's 512 entries map the 4 KiB zero page read-only; an anonymous THP's map its frames with
        the PMD's bits, and the folio is split into order-0 pages at once (``split_huge_page``), each with the
        folio's counts and flags, on the inactive anonymous LRU.  Only a THP one PMD maps alone is split
        (NotModelled otherwise, before anything changes).

        The 512 PTEs enter the reverse map (:meth:`impl.mm.kernel.Kernel.set_pte`; ``__split_huge_pmd_locked``
        moves the mapping from the PMD to the PTEs, ``folio_add_anon_rmap_ptes``, mm/huge_memory.c); the PMD leaf,
        like every 2 MiB leaf (hugetlb's too), was never in it, and it now points to a table, not a frame.
        """
        k = self.k
        pfn = (entry & _PFN) >> 12
        zero = pfn == self.zero_pfn
        self.refuse_shared(proc, head, entry)
        self.split_pmd += 1
        table = self.deposits.pop((proc.pid, head))
        if zero:
            vma = proc.vmas.find(head)
            assert vma is not None
            pte = k._leaf(vma, k.zero_pfn, False)
            for i in range(HUGE_PAGES):
                k.set_pte((table << 12) + 8 * i, pte, proc.pid, head + i)
        else:
            flags = k.flags[pfn]
            bits = entry & ~_PFN & ~_PS
            sub = PG_ANON | (flags & PG_EXCLUSIVE)  # no PG_dirty on anonymous pages: the PTEs' D bits say it
            k.buddy.split_page(pfn, HUGE_ORDER)
            for i in range(HUGE_PAGES):
                k.set_pte((table << 12) + 8 * i, bits | ((pfn + i) << 12), proc.pid, head + i)
                k.refcount[pfn + i], k.mapcount[pfn + i], k.flags[pfn + i] = 1, 1, sub
                k.pressure.lru_add(pfn + i, ANON_INACTIVE)
            k.mm_counters[proc.pid][MM_RSS] -= HUGE_PAGES  # the PMD's 512 pages, now counted by the PTEs
        k.mem.write(pa, (table << 12) | _PAGE_TABLE)

    def refuse_shared(self, proc: Process, head: int, entry: int) -> None:
        """:class:`NotModelled` unless the PMD ``entry`` maps the huge zero page or a THP it alone maps."""
        k, pfn = self.k, (entry & _PFN) >> 12
        if pfn != self.zero_pfn and (k.refcount[pfn] != 1 or k.mapcount[pfn] != 1):
            raise NotModelled(
                f"splitting the THP at {head << 12:#x} of pid {proc.pid}, shared by {k.mapcount[pfn]} mappings "
                f"and {k.refcount[pfn]} references: a large folio mapped by PTEs in one process and a PMD in "
                "another is not modelled; split a THP only while one process maps it"
            )

    def thp_pmd(self, proc: Process, vpn: int) -> tuple[int, int, int] | None:
        """(head, pa, entry) of the THP PMD covering ``vpn``, if one does."""
        head = vpn - vpn % HUGE_PAGES
        found = self.k._leaf_entry(proc.root, head)
        if found is None or not self.is_thp(found[1]):
            return None
        return head, found[0], found[1]

    def split_edges(self, proc: Process, *edges: int) -> None:
        """Split the THP PMDs a range edge falls inside (``vma_adjust_trans_huge``, ``zap_pmd_range``,
        ``change_pmd_range``); every refusal is raised before any PMD changes."""
        found = [pmd for edge in edges if edge % HUGE_PAGES and (pmd := self.thp_pmd(proc, edge)) is not None]
        for head, _, entry in found:
            self.refuse_shared(proc, head, entry)
        done: set[int] = set()
        for head, pa, entry in found:
            if head not in done:
                done.add(head)
                self.split(proc, head, pa, entry)

    def wp(self, proc: Process, vma: Vma, vpn: int, head: int, pa: int, entry: int) -> Result | None:
        """``do_huge_pmd_wp_page``: the huge zero page's PMD split and one 4 KiB page copied; an exclusive or singly
        referenced THP reused (writable, dirty); a shared one refused as not modelled (its split)."""
        k = self.k
        pfn = (entry & _PFN) >> 12
        if pfn == self.zero_pfn:
            self.split(proc, head, pa, entry)
            pte_pa = k._pte_pa(proc.root, vpn)
            assert pte_pa is not None
            return k._wp(proc, vma, vpn, pte_pa, k.mem.read(pte_pa))
        if k.flags[pfn] & PG_EXCLUSIVE or k.refcount[pfn] == 1:
            k.flags[pfn] |= PG_EXCLUSIVE
            k.mem.write(pa, entry | _RW | _D)
            return None
        self.split(proc, head, pa, entry)
        return None
