"""The NUMA invariants: zones inside their nodes, valid policies, counters that add up, pages where their policy
puts them.

State invariants (:func:`violations`, joined to :func:`spec.mm.invariants.violations`):

- ``zone_violations``: every buddy block, free or allocated, lies inside one node (a zone never spans two nodes,
  ``page_is_buddy`` compares the zones);
- ``policy_violations``: every policy is one ``mpol_new`` can build for this machine (its nodes online, sorted,
  one node for *preferred*, none for *local*), its VMA ranges sorted and disjoint;
- ``counter_violations``: ``zone_statistics`` counts every allocation once as a hit or a miss and once as local
  or other, and every miss once more as a foreign on the preferred node, so across the nodes
  ``numa_hit + numa_miss == local_node + other_node`` and ``numa_miss == numa_foreign``; an interleave hit is
  one allocation that also counted as a hit or miss.

Step invariants, over the allocations of one operation (the implementation's reported picks by role):

- ``placement_violations``: a migrated page is on its target node; a user page is on a node its policy allows:
  *bind* inside its nodes; a 4 KiB page
  under *preferred*, *interleave* or the default on the node they chose unless that node may have been full
  when the page was taken (then anywhere along the zonelist: the documented fallback);
- ``allocation_count_violations``: the counters grew by exactly the pages allocated (hits plus misses equal
  allocations).
"""

from __future__ import annotations

from collections.abc import Mapping

from spec.mm.kernel import DATA_ROLES, Kernel, Role, interleave_offset, node_free
from spec.mm.vma import HUGE_ORDER
from spec.numa import policy as mp

HUGE_ROLES = frozenset({"huge", "thp", "hugeshm", "hugezero"})


def zone_violations(k: Kernel) -> list[str]:
    """Blocks that cross a node boundary."""
    topo = k.numa.topology
    if topo.nodes == 1:
        return []
    return [
        f"block {b!r} spans nodes {topo.node_of_pfn(b.pfn)} and {topo.node_of_pfn(b.end - 1)}"
        for b in (*k.buddy.free, *k.buddy.allocated)
        if topo.node_of_pfn(b.pfn) != topo.node_of_pfn(b.end - 1)
    ]


def policy_problem(pol: mp.Policy, nodes: int) -> str | None:
    """What is wrong with ``pol`` on a machine of ``nodes`` nodes, or None."""
    if pol.mode not in mp.MODES or pol.mode == "default":
        return f"mode {pol.mode!r} is not a stored policy's"
    if list(pol.nodes) != sorted(set(pol.nodes)) or any(not 0 <= n < nodes for n in pol.nodes):
        return f"nodes {pol.nodes} are not sorted online nodes"
    if (pol.mode == "local") == bool(pol.nodes):
        return f"{pol.mode} with nodes {pol.nodes}"
    if pol.mode == "preferred" and len(pol.nodes) != 1:
        return f"preferred with {len(pol.nodes)} nodes"
    return None


def policy_violations(k: Kernel) -> list[str]:
    """Policies ``mpol_new`` could not have built, or overlapping ranges."""
    numa, nodes = k.numa, k.numa.topology.nodes
    out: list[str] = []
    for pid, pol in numa.task.items():
        problem = policy_problem(pol, nodes)
        if problem:
            out.append(f"pid {pid}'s policy: {problem}")
    for pid, ranges in numa.ranges.items():
        for (lo, hi, pol), after in zip(ranges, (*ranges[1:], None), strict=True):
            problem = policy_problem(pol, nodes) if pol != mp.DEFAULT else "a range with the default policy"
            if problem or lo >= hi or (after is not None and after[0] < hi):
                out.append(f"pid {pid}'s range {lo:#x}..{hi:#x}: {problem or 'empty or overlapping the next'}")
    return out


def counter_violations(k: Kernel) -> list[str]:
    """Counters that do not add up across the nodes."""
    stats = k.numa.stats
    hit, miss = sum(s.numa_hit for s in stats), sum(s.numa_miss for s in stats)
    local, other = sum(s.local_node for s in stats), sum(s.other_node for s in stats)
    foreign = sum(s.numa_foreign for s in stats)
    out = []
    if hit + miss != local + other:
        out.append(f"numa_hit + numa_miss = {hit + miss} but local_node + other_node = {local + other}")
    if miss != foreign:
        out.append(f"numa_miss = {miss} but numa_foreign = {foreign}")
    if sum(s.interleave_hit for s in stats) > hit + miss:
        out.append("more interleave hits than allocations")
    return out


INVARIANTS = (zone_violations, policy_violations, counter_violations)


def violations(k: Kernel) -> list[str]:
    """Every NUMA state invariant ``k`` breaks, each named by its function."""
    return [f"{check.__name__}: {problem}" for check in INVARIANTS for problem in check(k)]


def frames_of(role: Role) -> int:
    """The frames an allocation for ``role`` takes."""
    return 1 << HUGE_ORDER if role[0] in HUGE_ROLES else 1


def allocation_count_violations(before: Kernel, after: Kernel, allocs: Mapping[Role, int]) -> list[str]:
    """The counters grew by other than the frames the step allocated (frames freed and taken again within the
    step count each time; the roles report one pick each, so a step that allocates one role twice is skipped)."""
    grown = sum(s.numa_hit + s.numa_miss for s in after.numa.stats) - sum(
        s.numa_hit + s.numa_miss for s in before.numa.stats
    )
    taken = sum(frames_of(role) for role in allocs)
    if grown < taken:
        return [f"allocation_count_violations: {taken} frames allocated but numa_hit + numa_miss grew by {grown}"]
    return []


def placement_violations(before: Kernel, after: Kernel, allocs: Mapping[Role, int]) -> list[str]:
    """User pages the step allocated off the node their policy chose, where that node had room."""
    out = []
    topo = after.numa.topology
    for role, pfn in allocs.items():
        kind, pid, vpn = role[0], role[1], role[2]
        if kind == "migrate" and topo.node_of_pfn(pfn) != role[3]:
            out.append(f"placement_violations: {role} migrated to node {topo.node_of_pfn(pfn)}, not {role[3]}")
        if kind not in DATA_ROLES or pid not in after.procs:
            continue
        pol = mp.vma_policy(after.numa, pid, vpn) or after.numa.task.get(pid, mp.DEFAULT)
        node = topo.node_of_pfn(pfn)
        if pol.mode == "bind":
            if node not in pol.nodes:
                out.append(f"placement_violations: {role} on node {node}, outside bind {pol.nodes}")
            continue
        if pol.mode == "preferred_many" or kind != "page":
            continue
        if pol.mode == "preferred":
            chosen = pol.nodes[0]
        elif pol.mode == "interleave":
            chosen = pol.nodes[mp.interleave_index(interleave_offset(after, pid, vpn, kind != "page")) % len(pol.nodes)]
        else:
            chosen = topo.node_of_cpu(after.numa.cpu)
        # Frees only add room, so the chosen node had room at the page's allocation if it had more free frames
        # before the step than the step's other allocations took from it.
        others = sum(1 for r, p in allocs.items() if r != role and topo.node_of_pfn(p) == chosen)
        if node != chosen and node_free(before, chosen) > others:
            out.append(
                f"placement_violations: {role} on node {node}, but {pol.mode} chose node {chosen}, which had room"
            )
    return out
