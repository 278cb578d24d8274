"""Reclaim protection of memory cgroups: ``memory.min`` and ``memory.low`` made effective (Linux 6.12
mm/page_counter.c ``effective_protection``, ``page_counter_calculate_protection``; include/linux/memcontrol.h
``mem_cgroup_below_min``, ``mem_cgroup_below_low``, ``mem_cgroup_unprotected``).

A reclaim aimed at a group (the *target*: ``sc->target_mem_cgroup``) computes, for every group below it in
pre-order, an effective minimum ``emin`` and an effective low boundary ``elow``:

- the target's own protection is ignored (``root == counter`` returns; ``mem_cgroup_protection`` gives 0 for
  ``root == memcg``), and the root group is never protected (``mem_cgroup_unprotected``);
- a child of the target gets its setting as it is (``parent == root``: ``emin = min``, ``elow = low``);
- deeper, ``effective_protection(usage, parent_usage, setting, parent_effective, siblings_protected)``:
  ``protected = min(usage, setting)``; if the siblings together claim more than the parent's effective
  protection (``siblings_protected``, the parent's ``children_min_usage`` / ``children_low_usage``: the sum of
  ``min(usage, setting)`` over its children, kept by ``propagate_protected_usage``), each gets its share in
  proportion, ``protected * parent_effective / siblings_protected`` (``mul_u64_u64_div_u64``, rounded down);
  else ``protected``.  The remainder distribution of ``memory_recursiveprot`` (the cgroup2 mount option, off by
  default: ``recursive_protection`` false) is not applied, as on a default mount.

A group of usage 0 keeps the values of its last computation in the kernel (``if (!usage) return``); here it gets
0, which changes nothing: it has no page to reclaim.  A group is *below min* when ``emin >= usage`` (reclaim
skips it always), *below low* when ``elow >= usage`` (skipped unless nothing else could be reclaimed).
"""

from __future__ import annotations

from collections.abc import Mapping

from spec.memcg.state import ROOT, Memcg


def effective_protection(
    usage: int,
    parent_usage: int,
    setting: int,
    parent_effective: int,
    siblings_protected: int,
    recursive_protection: bool = False,
) -> int:
    """mm/page_counter.c ``effective_protection``, in pages, with its integer arithmetic."""
    protected = min(usage, setting)
    if siblings_protected > parent_effective:
        return protected * parent_effective // siblings_protected
    ep = protected
    if not recursive_protection:
        return ep
    if parent_effective > siblings_protected and parent_usage > siblings_protected and usage > protected:
        parent_unclaimed = parent_effective - siblings_protected
        parent_unprotected = parent_usage - siblings_protected
        unprotected = min(usage - protected, parent_unprotected)
        ep += parent_unclaimed * unprotected // parent_unprotected
    return ep


def protections(m: Memcg, target: str, used: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """``(emin, elow)`` of every group strictly below ``target``, computed parents first as
    ``shrink_node_memcgs`` does (``mem_cgroup_calculate_protection`` in ``mem_cgroup_iter`` order)."""
    children: dict[str, list[str]] = {}
    for path, g in m.groups.items():
        if g.parent is not None:
            children.setdefault(g.parent, []).append(path)
    out: dict[str, tuple[int, int]] = {target: (0, 0)}

    def visit(parent: str) -> None:
        kids = sorted(children.get(parent, ()))
        min_usage = sum(min(used[c], m.groups[c].min) for c in kids)
        low_usage = sum(min(used[c], m.groups[c].low) for c in kids)
        pmin, plow = out[parent]
        for child in kids:
            g, usage = m.groups[child], used[child]
            if not usage:
                out[child] = (0, 0)
            elif parent == target:
                out[child] = (g.min, g.low)
            else:
                out[child] = (
                    effective_protection(usage, used[parent], g.min, pmin, min_usage),
                    effective_protection(usage, used[parent], g.low, plow, low_usage),
                )
            visit(child)

    visit(target)
    del out[target]
    return out


def below(m: Memcg, target: str, used: Mapping[str, int]) -> tuple[set[str], set[str]]:
    """The groups below ``target`` that are below their effective min, and those below their effective low
    only (``mem_cgroup_below_min`` / ``mem_cgroup_below_low``; the root is never protected)."""
    under_min, under_low = set(), set()
    for path, (emin, elow) in protections(m, target, used).items():
        if path == ROOT:
            continue
        if emin >= used[path]:
            under_min.add(path)
        elif elow >= used[path]:
            under_low.add(path)
    return under_min, under_low
