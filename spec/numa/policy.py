"""Memory policies (Linux mm/mempolicy.c, 6.1) and where a page goes, with the numastat counters.

A *policy* is a mode and a node set.  A process has one (``set_mempolicy``, ``current->mempolicy``), each VMA may
have one (``mbind``, ``vma->vm_policy``); a page fault in a VMA uses the VMA's policy, else the process's, else
the default (``get_vma_policy``, ``get_task_policy``).  Where the page goes (``alloc_pages_vma``, 6.1):

- *default* and *local*: the faulting CPU's node (``numa_node_id()``): first touch;
- *preferred* ``{n}``: node ``n``, falling back through ``n``'s zonelist (``policy_node``);
- *bind* ``S``: the local node's zonelist cut to ``S`` (``policy_nodemask``); when no node of ``S`` has a free
  block, the allocation fails (ENOMEM for the fault here, where Linux would run the OOM killer of ``S``);
- *preferred_many* ``S``: the local zonelist cut to ``S`` first, then the whole local zonelist
  (``alloc_pages_preferred_many``);
- *interleave* ``S``: for a page of a VMA, the ``(index % |S|)``-th node of ``S`` in ascending order, where the
  index is the page's offset ``vm_pgoff + (addr - vm_start) >> PAGE_SHIFT`` cut to 32 bits (``offset_il_node``
  computes ``(unsigned int)n % nnodes`` in 6.1; ``interleave_nid``); a private anonymous VMA has
  ``vm_pgoff = vm_start >> PAGE_SHIFT`` (``do_mmap``), so the index is the virtual page number; for a huge page
  the offset is counted in huge pages (``shift = PAGE_SHIFT + order``).  An allocation without a VMA (a page
  table, ``alloc_pages``) takes the next node of ``S`` after ``current->il_prev`` (``interleave_nodes``), which
  ``set_mempolicy`` sets to ``MAX_NUMNODES - 1`` so the first is the lowest node of ``S``.  Either way the page
  then falls back through that node's zonelist (``alloc_page_interleave``).

Page tables follow the process policy as ``alloc_pages`` does, except that a bind whose nodes are full falls back
here (the model's table allocations cannot fail after their check); pages of shmem, files and the swap cache,
and the kernel's own frames, go to the local node (their shared policies are not modelled).

The counters (``zone_statistics``, mm/page_alloc.c; ``/sys/devices/system/node/nodeN/numastat``): the
*preferred zone* is the first zone of the zonelist inside the nodemask (``ac->preferred_zoneref``).  An
allocation of ``2**order`` pages on node ``z`` adds them to ``z``'s ``numa_hit`` when ``z`` is the preferred node,
else to ``z``'s ``numa_miss`` and the preferred node's ``numa_foreign``; and to ``z``'s ``local_node`` when ``z`` is
the node of the CPU allocating, else to its ``other_node``.  An interleaved allocation that lands on the node
interleave chose adds one to that node's ``interleave_hit`` (``alloc_page_interleave``, once per allocation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeVar

from spec.numa.topology import MAX_NUMNODES, Topology

_V = TypeVar("_V")

MODES = ("default", "preferred", "bind", "interleave", "local", "preferred_many")
"""The modes by their uapi numbers (include/uapi/linux/mempolicy.h: MPOL_DEFAULT = 0 .. MPOL_PREFERRED_MANY = 5)."""
FLAGS = ("static", "relative")
"""``MPOL_F_STATIC_NODES`` and ``MPOL_F_RELATIVE_NODES``."""
IL_INDEX_BITS = 32  # offset_il_node's (unsigned int) cast, Linux 6.1
STAT_NAMES = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")
"""The lines of ``nodeN/numastat`` in the order ``node_read_numastat`` prints them (drivers/base/node.c)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A ``struct mempolicy``: ``mode``, the nodes it uses (``pol->nodes``) and its flags; ``user`` is the node
    set as given (``w.user_nodemask``, kept with a flag for ``get_mempolicy`` to return)."""

    mode: str = "default"
    nodes: tuple[int, ...] = ()
    flags: tuple[str, ...] = ()
    user: tuple[int, ...] = ()


DEFAULT = Policy()


@dataclass(frozen=True, slots=True)
class NodeStat:
    """One node's numastat counters (:data:`STAT_NAMES`)."""

    numa_hit: int = 0
    numa_miss: int = 0
    numa_foreign: int = 0
    interleave_hit: int = 0
    local_node: int = 0
    other_node: int = 0


Range = tuple[int, int, Policy]
"""A VMA policy: pages ``lo`` .. ``hi`` (exclusive) of a process have ``Policy``."""


@dataclass(frozen=True, slots=True)
class Numa:
    """The NUMA state: the topology, the CPU and the process the current operation runs on (``cpu``, ``pid``: the
    task allocating, ``current``), each process's policy and
    ``il_prev`` (absent: default, ``MAX_NUMNODES - 1``), the VMA policies by process (sorted disjoint ranges:
    the VMAs ``mbind`` gave a policy, kept apart from :class:`spec.mm.vma.Vma`), and the counters by node."""

    topology: Topology
    cpu: int = 0
    pid: int = 0
    task: Mapping[int, Policy] = field(default_factory=lambda: MappingProxyType({}))
    il_prev: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    ranges: Mapping[int, tuple[Range, ...]] = field(default_factory=lambda: MappingProxyType({}))
    stats: tuple[NodeStat, ...] = ()


def initial(topology: Topology) -> Numa:
    """A fresh machine: every policy default, every counter 0."""
    return Numa(topology, stats=(NodeStat(),) * topology.nodes)


# --- building a policy (mpol_new, mpol_set_nodemask) --------------------------------------------


def relative_nodes(user: tuple[int, ...], allowed: tuple[int, ...]) -> tuple[int, ...]:
    """``mpol_relative_nodemask``: node ``i`` of the user's set means the ``(i % |allowed|)``-th allowed node
    (``nodes_fold`` then ``nodes_onto``)."""
    return tuple(sorted({allowed[n % len(allowed)] for n in user})) if allowed else ()


def new_policy(mode: str, nodes: tuple[int, ...], flags: tuple[str, ...], online: int) -> Policy | str | None:
    """The policy ``set_mempolicy``/``mbind`` install (None: the default), or the errno name they fail with.

    ``mpol_new``: *default* takes no nodes; *preferred* with none is *local* (EINVAL with a flag); *local* takes
    no nodes and no flags; every other mode needs nodes; both flags at once is EINVAL
    (``sanitize_mpol_flags``).  Then ``mpol_set_nodemask`` keeps only online nodes (the relative flag maps the
    set onto them), and a mode left with none is EINVAL (``mpol_new_nodemask``, ``mpol_new_preferred``);
    *preferred* keeps the first.
    """
    user = tuple(sorted(set(nodes)))
    if "static" in flags and "relative" in flags:
        return "EINVAL"
    if mode == "default":
        return "EINVAL" if user or flags else None
    if mode == "preferred" and not user:
        if flags:
            return "EINVAL"
        mode = "local"
    if mode == "local":
        return "EINVAL" if user or flags else Policy("local")
    if not user:
        return "EINVAL"
    allowed = tuple(range(online))
    kept = relative_nodes(user, allowed) if "relative" in flags else tuple(n for n in user if n < online)
    if not kept:
        return "EINVAL"
    if mode == "preferred":
        kept = kept[:1]
    return Policy(mode, kept, tuple(f for f in FLAGS if f in flags), user if flags else ())


def readback(policy: Policy) -> tuple[str, tuple[int, ...]]:
    """What ``get_mempolicy`` returns: the mode and ``pol->nodes``, the user's set with a flag
    (``get_policy_nodemask``, ``mpol_store_user_nodemask``)."""
    return policy.mode, policy.user if policy.flags else policy.nodes


# --- VMA policies -------------------------------------------------------------------------------


def cut(ranges: tuple[Range, ...], lo: int, hi: int) -> tuple[Range, ...]:
    """The ranges with pages ``lo`` .. ``hi`` taken out (a new or removed VMA there has no policy)."""
    out: list[Range] = []
    for a, b, pol in ranges:
        if a < lo:
            out.append((a, min(b, lo), pol))
        if b > hi:
            out.append((max(a, hi), b, pol))
    return tuple(r for r in out if r[0] < r[1])


def set_range(numa: Numa, pid: int, lo: int, hi: int, policy: Policy | None) -> Numa:
    """Pages ``lo`` .. ``hi`` of ``pid`` get ``policy`` (None: no VMA policy), ``mbind_range`` splitting VMAs."""
    ranges = cut(numa.ranges.get(pid, ()), lo, hi)
    if policy is not None:
        ranges = tuple(sorted((*ranges, (lo, hi, policy)), key=lambda r: r[0]))
    return replace(numa, ranges=_set(numa.ranges, pid, ranges))


def vma_policy(numa: Numa, pid: int, vpn: int) -> Policy | None:
    """The VMA policy at page ``vpn`` of ``pid``, or None."""
    for lo, hi, pol in numa.ranges.get(pid, ()):
        if lo <= vpn < hi:
            return pol
    return None


def _set(mapping: Mapping[int, _V], key: int, value: _V) -> Mapping[int, _V]:
    """A read-only copy with ``key`` set, or left out when ``value`` is the default one."""
    out = dict(mapping)
    if value in ((), None, DEFAULT, MAX_NUMNODES - 1):
        out.pop(key, None)
    else:
        out[key] = value
    return MappingProxyType(dict(sorted(out.items())))


def set_task(numa: Numa, pid: int, policy: Policy | None) -> Numa:
    """``do_set_mempolicy``: the process's policy replaced (None: the default); an interleave one resets
    ``il_prev``."""
    numa = replace(numa, task=_set(numa.task, pid, policy or DEFAULT))
    if policy is not None and policy.mode == "interleave":
        numa = replace(numa, il_prev=_set(numa.il_prev, pid, MAX_NUMNODES - 1))
    return numa


def forked(numa: Numa, parent: int, child: int) -> Numa:
    """``copy_process``: the child gets a copy of the parent's policy (``mpol_dup``) and ``il_prev`` (copied with
    the ``task_struct``); ``dup_mmap`` copies each VMA's policy (``vma_dup_policy``)."""
    numa = replace(numa, task=_set(numa.task, child, numa.task.get(parent, DEFAULT)))
    numa = replace(numa, il_prev=_set(numa.il_prev, child, numa.il_prev.get(parent, MAX_NUMNODES - 1)))
    return replace(numa, ranges=_set(numa.ranges, child, numa.ranges.get(parent, ())))


def pruned(numa: Numa, live: frozenset[int] | set[int]) -> Numa:
    """The state without processes that are gone (``exit_mempolicy``, ``remove_vma``'s ``mpol_put``)."""
    if all(p in live for p in (*numa.task, *numa.il_prev, *numa.ranges)):
        return numa
    return replace(
        numa,
        task=MappingProxyType({p: v for p, v in numa.task.items() if p in live}),
        il_prev=MappingProxyType({p: v for p, v in numa.il_prev.items() if p in live}),
        ranges=MappingProxyType({p: v for p, v in numa.ranges.items() if p in live}),
    )


# --- placement --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an allocation may go: the nodes to try in order (``first`` before ``then``), the node numastat
    counts as preferred, and the node interleave chose (None: not interleaved)."""

    first: tuple[int, ...]
    then: tuple[int, ...]
    preferred: int
    target: int | None = None
    strict: bool = False


def interleave_index(index: int) -> int:
    """``offset_il_node``'s ``(unsigned int)n``: the low 32 bits of the offset (Linux 6.1)."""
    return index & ((1 << IL_INDEX_BITS) - 1)


def placement(numa: Numa, policy: Policy, index: int | None) -> tuple[Numa, Placement]:
    """The nodes an allocation under ``policy`` tries, by the rules of the module docstring; ``index`` is the
    page's interleave offset in a VMA, None for an allocation without one (which advances the allocating task's
    ``il_prev``)."""
    topo = numa.topology
    local = topo.node_of_cpu(numa.cpu)
    zl = topo.zonelists
    mode = policy.mode
    if mode == "preferred":
        order = zl[policy.nodes[0]]
        return numa, Placement(order, (), order[0])
    if mode in ("bind", "preferred_many"):
        inside = tuple(n for n in zl[local] if n in policy.nodes)
        rest = zl[local] if mode == "preferred_many" else ()
        return numa, Placement(inside, rest, inside[0], strict=mode == "bind")
    if mode == "interleave":
        nodes = policy.nodes
        if index is not None:
            target = nodes[interleave_index(index) % len(nodes)]
        elif topo.nodes == 1:  # one node: interleave_nodes can only give node 0, and il_prev is never read
            target = nodes[0]
        else:
            target = next_node_in(numa.il_prev.get(numa.pid, MAX_NUMNODES - 1), nodes)
            numa = replace(numa, il_prev=_set(numa.il_prev, numa.pid, target))
        return numa, Placement(zl[target], (), target, target)
    return numa, Placement(zl[local], (), local)


def next_node_in(prev: int, nodes: tuple[int, ...]) -> int:
    """``next_node_in``: the first node of ``nodes`` after ``prev``, wrapping round."""
    return next((n for n in nodes if n > prev), nodes[0])


def counted(numa: Numa, node: int, where: Placement, pages: int) -> Numa:
    """``zone_statistics`` for ``pages`` pages on ``node``, and ``interleave_hit`` (see the module docstring)."""
    stats = list(numa.stats)
    local = numa.topology.node_of_cpu(numa.cpu)
    s = stats[node]
    s = (
        replace(s, numa_hit=s.numa_hit + pages)
        if node == where.preferred
        else replace(s, numa_miss=s.numa_miss + pages)
    )
    on_local = node == local
    s = replace(s, local_node=s.local_node + pages * on_local, other_node=s.other_node + pages * (not on_local))
    if where.target is not None and node == where.target:
        s = replace(s, interleave_hit=s.interleave_hit + 1)
    stats[node] = s
    if node != where.preferred:
        f = stats[where.preferred]
        stats[where.preferred] = replace(f, numa_foreign=f.numa_foreign + pages)
    return replace(numa, stats=tuple(stats))
