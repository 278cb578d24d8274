"""Transparent huge pages: the policy, the per-VMA advice, and which faults may map 2 MiB at once.

The policy is machine-wide, as ``/sys/kernel/mm/transparent_hugepage/`` has it
(Documentation/admin-guide/mm/transhuge.rst, mm/huge_memory.c ``enabled_store``, ``defrag_store``,
``use_zero_page_store``):

- ``enabled``: ``always`` (every eligible anonymous VMA), ``madvise`` (only VMAs with ``VM_HUGEPAGE``) or
  ``never``;
- ``defrag``: how hard a THP allocation tries (``always``, ``defer``, ``defer+madvise``, ``madvise``,
  ``never``: ``vma_thp_gfp_mask``).  The model has no compaction or reclaim inside an allocation yet, so the
  setting is kept and reported but decides nothing: an order-9 block is free or it is not;
- ``use_zero_page``: a read fault maps the huge zero page (default on).

Per VMA, ``madvise(MADV_HUGEPAGE)`` sets ``VM_HUGEPAGE`` and clears ``VM_NOHUGEPAGE``, ``MADV_NOHUGEPAGE`` the
reverse (mm/khugepaged.c ``hugepage_madvise``); ``madvise_update_vma`` splits the VMAs at the range's edges
and merges them with compatible neighbours (``vma_modify_flags_name``, mm/vma.c), as mprotect does
(:func:`spec.mm.aspace.mprotect`); a hole in the range is ENOMEM after the mapped parts changed
(``madvise_walk_vmas``).  Hugetlb VMAs in the range are refused as not modelled.
"""

from __future__ import annotations

from dataclasses import replace

from lang.errors import InvalidArgument, NotModelled
from spec.mm.kernel import THP_DEFRAG, THP_ENABLED, Kernel, space, with_space
from spec.mm.vma import HUGE_PAGES, Vma, cut, has_hole, insert, inside, intersects, merge_at, range_error
from spec.outcome import ENOMEM, Errno, Ok, Outcome
from spec.paging.address import PAGE_SHIFT

THP_SETTINGS = {"enabled": THP_ENABLED, "defrag": THP_DEFRAG, "use_zero_page": ("0", "1")}
THP_ADVICE = {"hugepage": "hugepage", "nohugepage": "nohugepage"}


def set_policy(k: Kernel, name: str, value: str) -> tuple[Kernel, Outcome]:
    """Write ``value`` to ``/sys/kernel/mm/transparent_hugepage/<name>``; any other value is EINVAL in Linux, a
    typed error here."""
    allowed = THP_SETTINGS.get(name)
    if allowed is None:
        raise InvalidArgument(f"THP setting {name!r} does not exist: allowed {', '.join(THP_SETTINGS)}")
    if value not in allowed:
        raise InvalidArgument(f"THP setting {name} cannot be {value!r}: allowed {', '.join(allowed)}")
    if name == "use_zero_page":
        return replace(k, thp=replace(k.thp, use_zero_page=value == "1")), Ok()
    if name == "enabled":
        return replace(k, thp=replace(k.thp, enabled=value)), Ok()
    return replace(k, thp=replace(k.thp, defrag=value)), Ok()


def madvise_thp(k: Kernel, pid: int, va: int, pages: int, advice: str) -> tuple[Kernel, Outcome]:
    """``madvise(MADV_HUGEPAGE or MADV_NOHUGEPAGE)``: the VMAs of the range take the flag, split at its edges and
    merged where compatible; ENOMEM (after the change) if the range has a hole."""
    sp = space(k, pid)
    error = range_error(va)
    if error:
        return k, Errno(error)
    if pages == 0:
        return k, Ok()
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    if any(v.huge for v in inside(sp.vmas, lo, hi)):
        raise NotModelled(f"madvise {advice} over a hugetlb mapping is not modelled: advise normal mappings only")
    if not intersects(sp.vmas, lo, hi):
        return k, ENOMEM
    flag = THP_ADVICE[advice]
    changed = tuple(replace(v, thp=flag) for v in inside(sp.vmas, lo, hi))
    vmas = merge_at(insert(cut(sp.vmas, lo, hi), changed), lo, hi)
    k = with_space(k, pid, replace(sp, vmas=vmas))
    return k, ENOMEM if has_hole(sp.vmas, lo, hi) else Ok()


def thp_allowed(k: Kernel, vma: Vma, head: int) -> bool:
    """A fault at the 2 MiB range starting at page ``head`` may map a PMD (``thp_vma_allowable_order`` with
    ``TVA_IN_PF | TVA_ENFORCE_SYSFS``, ``__thp_vma_allowable_orders`` and ``thp_vma_suitable_order``,
    mm/huge_memory.c, include/linux/huge_mm.h).

    Only private anonymous memory (``vma_is_anonymous``; shmem THP follows ``shmem_enabled``, not modelled,
    and file THP needs ``CONFIG_READ_ONLY_THP_FOR_FS``); not with ``VM_NOHUGEPAGE``; ``enabled`` is ``always``,
    or ``madvise`` with ``VM_HUGEPAGE``; and the whole aligned 2 MiB inside the VMA.
    """
    if vma.shared or vma.huge or vma.obj or vma.thp == "nohugepage":
        return False
    enabled = k.thp.enabled
    if not (enabled == "always" or (enabled == "madvise" and vma.thp == "hugepage")):
        return False
    return head % HUGE_PAGES == 0 and vma.start <= head and head + HUGE_PAGES <= vma.end
