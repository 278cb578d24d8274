"""Reclaim inside a memory cgroup (Linux 6.12 mm/vmscan.c ``try_to_free_mem_cgroup_pages``,
``do_try_to_free_pages``, ``shrink_node_memcgs``): the pages a reclaim aimed at a group may take.

``try_to_free_mem_cgroup_pages(memcg, nr_pages)`` asks for ``max(nr_pages, SWAP_CLUSTER_MAX)`` pages
(``sc.nr_to_reclaim``) from the LRU lists of the group and its descendants, each group's own pages only (a
group's lruvec holds the pages charged to it).  It runs in up to two passes:

- the first skips every group below its effective ``memory.min`` and every group below its effective
  ``memory.low`` (``sc->memcg_low_skipped = 1``; :mod:`spec.memcg.protection`);
- only if the first freed nothing and skipped a group for its low boundary, the second (``memcg_low_reclaim``)
  takes from the groups below low too, counting a ``low`` event on each of them (``memcg_memory_event(memcg,
  MEMCG_LOW)``; the kernel counts one per visit of each priority round, the model one per pass); groups
  below min are never reclaimed.

Each pass is a sequence of the LRU steps of :mod:`spec.pressure.lru` (evict, activate, deactivate), each on a
page of a group the pass may reclaim; which page is the kernel's choice (its proportional scan,
``get_scan_count``, lowers the pressure on a group in proportion to its protection).  A pass may stop once it
freed what it was asked for, once it freed anything (the priority loop ends short of the target), or when no
page it may take is evictable; a pass that freed nothing with an evictable page left is a refusal
(:class:`~lang.errors.DisallowedChoice`).  The implementation reports its steps as the LRU's roles and the end of
each pass as role ``("memcg_reclaim", 2 * call + pass, 0, 0)`` with the step count there as its value; run
alone, the spec takes the least allowed page of the first kind that has an evictable one, up to the target.

Anonymous pages go only with swap space (``can_reclaim_anon_pages``); page tables and shmem are not
reclaimed here; swap slots are not charged (``memory.swap.*`` is not modelled), so an evicted page leaves the
group's usage.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

from lang.errors import DisallowedChoice
from spec.memcg.protection import below
from spec.memcg.state import Memcg, under
from spec.mm.kernel import Choices, Kernel, updated, with_page
from spec.pressure import workingset
from spec.pressure.files import flush_all
from spec.pressure.lru import ACTIVATE, DEACTIVATE, EVICT, STEP_NAMES, age, evict, evictable, referenced, scanned

SWAP_CLUSTER_MAX = 32
"""include/linux/swap.h: the least ``nr_to_reclaim`` of a reclaim."""
MAX_RECLAIM_RETRIES = 16
"""include/linux/swap.h: how often a charge (or a write of ``memory.max``/``memory.high``) retries a reclaim that
freed nothing."""
END = "memcg_reclaim"


def group_usages(m: Memcg) -> dict[str, int]:
    """Every group's usage (its pages and its descendants')."""
    own: dict[str, int] = {}
    for group, _ in m.charges.values():
        own[group] = own.get(group, 0) + 1
    return {path: sum(n for group, n in own.items() if under(group, path)) for path in m.groups}


def pass_scope(
    k: Kernel, target: str, low_reclaim: bool, may_swap: bool = True
) -> tuple[frozenset[int], list[str], bool]:
    """The pages a pass may step on (no anonymous page unless ``may_swap``), the groups reclaimed below their low
    boundary (second pass), and whether the pass skipped a group for its low boundary."""
    m = k.memcg
    under_min, under_low = below(m, target, group_usages(m))
    skip = under_min | (set() if low_reclaim else under_low)
    pages = frozenset(
        pfn
        for pfn, (group, kind) in m.charges.items()
        if kind != "table" and (may_swap or kind != "anon") and pfn in k.pages and under(group, target)
        and group not in skip
    )
    return pages, sorted(under_low) if low_reclaim else [], bool(under_low)


def uncharge_freed(k: Kernel) -> Kernel:
    """The charges of the frames reclaim freed dropped."""
    m = k.memcg
    kept = {pfn: c for pfn, c in m.charges.items() if c[1] == "table" or pfn in k.pages}
    return k if len(kept) == len(m.charges) else replace(k, memcg=replace(m, charges=MappingProxyType(kept)))


def may_take(k: Kernel, kind: int, pfn: int) -> bool:
    """Step ``kind`` may take page ``pfn`` (:func:`spec.pressure.lru.allowed`, for one page)."""
    page = k.pages[pfn]
    if not scanned(k, pfn):
        return False
    if kind == EVICT:
        return page.lru == "inactive" and evictable(k, pfn) and not referenced(k, pfn)
    if kind == ACTIVATE:
        return page.lru == "inactive" and referenced(k, pfn)
    return page.lru == "active"


def own_step(k: Kernel, pages: frozenset[int]) -> tuple[int, int] | None:
    """The spec's own step among ``pages``: the least evictable page of the first kind that has one."""
    options = sorted(pfn for pfn in pages if scanned(k, pfn) and evictable(k, pfn))
    for kind in (EVICT, ACTIVATE, DEACTIVATE):
        for pfn in options:
            if may_take(k, kind, pfn):
                return kind, pfn
    return None


def take_step(k: Kernel, kind: int, pfn: int, choices: Choices) -> Kernel:
    """One reclaim step on a page of the groups reclaimed, as :func:`spec.pressure.lru.apply_step` takes it."""
    if not may_take(k, kind, pfn):
        raise DisallowedChoice(f"memcg reclaim may not {STEP_NAMES[kind]} frame {pfn:#x}")
    if kind == EVICT:
        k = evict(k, pfn, choices)
    else:
        k = with_page(age(k, pfn), pfn, lru="active" if kind == ACTIVATE else "inactive")
        k = flush_all(workingset.age_nonresident(k) if kind == ACTIVATE else k)
    return replace(k, lru_steps=k.lru_steps + 1)


def reclaim_pass(
    k: Kernel, pages: frozenset[int], target: int, choices: Choices, end: int | None
) -> tuple[Kernel, int]:
    """One pass over ``pages``: the implementation's steps up to step ``end``, or the spec's own; pages freed."""
    done = 0
    while True:
        left = frozenset(pfn for pfn in pages if pfn in k.pages)
        if end is None:
            step = None if done >= target else own_step(k, left)
            if step is None:
                return k, done
            kind, pfn = step
        elif k.lru_steps >= end:
            if done == 0 and done < target and any(scanned(k, pfn) and evictable(k, pfn) for pfn in left):
                raise DisallowedChoice(f"memcg reclaim freed nothing with evictable pages {sorted(left)} left")
            return k, done
        else:
            code = choices.get(("lru", k.lru_steps, 0, 0))
            if code is None:
                raise DisallowedChoice(f"memcg reclaim step {k.lru_steps} is not reported")
            kind, pfn = code % 4, code // 4
            if pfn not in left:
                raise DisallowedChoice(
                    f"memcg reclaim may not {STEP_NAMES[kind]} frame {pfn:#x}: not a page of a group it reclaims"
                )
        k = take_step(k, kind, pfn, choices)
        done += kind == EVICT


def bump_low(k: Kernel, groups: list[str]) -> Kernel:
    """One ``low`` event on each group reclaimed below its low boundary."""
    m = k.memcg
    out = dict(m.groups)
    for path in groups:
        out[path] = replace(out[path], low_events=out[path].low_events + 1)
    return replace(k, memcg=replace(m, groups=MappingProxyType(out)))


def try_to_free(
    k: Kernel, target: str, nr_pages: int, choices: Choices, call: int, may_swap: bool = True
) -> tuple[Kernel, int]:
    """``try_to_free_mem_cgroup_pages(target, nr_pages)``, the ``call``-th of its operation: the state after it
    and the pages it freed, their charges dropped; without ``may_swap`` (a memsw limit) no anonymous page."""
    nr_to_reclaim = max(nr_pages, SWAP_CLUSTER_MAX)
    reported = any(role[0] == END for role in choices)
    freed = 0
    for second in (False, True):
        end = choices.get((END, 2 * call + second, 0, 0))
        if reported and end is None and not second:
            raise DisallowedChoice(f"memcg reclaim call {call} is not reported")
        pages, low, skipped = pass_scope(k, target, second, may_swap)
        if second:
            k = bump_low(k, low)
        k, done = reclaim_pass(k, pages, nr_to_reclaim, choices, end)
        freed += done
        k = uncharge_freed(k)
        if freed or not skipped:
            break
    if reported and (not second) and choices.get((END, 2 * call + 1, 0, 0)) is not None:
        raise DisallowedChoice(f"memcg reclaim call {call} ran a second pass after its first freed {freed} pages")
    return k, freed


def with_group(k: Kernel, path: str, **fields: int) -> Kernel:
    """Group ``path`` with ``fields`` replaced (``oom_group`` given as 0 or 1)."""
    m = k.memcg
    g = m.groups[path]
    changes: dict[str, Any] = {name: bool(v) if name == "oom_group" else v for name, v in fields.items()}
    g = replace(g, **changes)
    return replace(k, memcg=replace(m, groups=updated(m.groups, path, g)))
