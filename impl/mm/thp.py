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
    from impl.mm.kernel import Kernel
    from impl.mm.vma import Vma

Result = dict[str, Any]
THP_VALUES = {
    "enabled": ("always", "madvise", "never"),
    "defrag": ("always", "defer", "defer+madvise", "madvise", "never"),
    "use_zero_page": ("0", "1"),
}
DEFAULTS = {"enabled": "never", "defrag": "madvise", "use_zero_page": "1"}
HUGE_PAGES = 512


class Thp:
    """The THP state of one kernel: settings by sysfs name, the huge zero page's frame (0: none yet), counters."""

    __slots__ = ("fault_alloc", "fault_fallback", "k", "settings", "split_pmd", "zero_pfn")

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.settings = dict(DEFAULTS)
        self.zero_pfn = self.fault_alloc = self.fault_fallback = self.split_pmd = 0

    def clone(self, k: Kernel) -> Thp:
        new = Thp(k)
        new.settings = dict(self.settings)
        new.zero_pfn, new.fault_alloc = self.zero_pfn, self.fault_alloc
        new.fault_fallback, new.split_pmd = self.fault_fallback, self.split_pmd
        return new

    @property
    def shown(self) -> bool:
        """THP is on, or was: its vmstat counters and smaps/meminfo fields are shown."""
        counters = (self.zero_pfn, self.fault_alloc, self.fault_fallback, self.split_pmd)
        return self.settings != DEFAULTS or any(counters)

    def set(self, name: str, value: str) -> Result:
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
