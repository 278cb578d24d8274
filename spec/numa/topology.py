"""The machine's nodes: which CPUs and frames each has, how far apart they are, and each node's zonelist.

A node owns ``node_frames`` consecutive frames (node ``n`` the pfns ``n * node_frames`` up to the next node's
first) and ``cpus // nodes`` consecutive CPUs, as QEMU's ``-numa node,cpus=a-b,memdev=...`` lays them out and
as the oracle of ``docs/numa-oracle.md`` boots them.  Each node has one zone (``ZONE_NORMAL``) with its own
buddy free lists: the spec keeps one :class:`spec.alloc.buddy.BuddyState` over all frames, and a node's zone is
its part of it.  A node's frame count is a multiple of ``2**max_order``, so no block and no pair of buddies
crosses a node (Linux's ``page_is_buddy`` refuses a buddy in another zone, mm/internal.h).

The distance table is the ACPI SLIT as ``numactl --hardware`` prints it: 10 on the diagonal
(``LOCAL_DISTANCE``), 20 elsewhere by default (``REMOTE_DISTANCE``, include/linux/topology.h).

Zonelists (Linux mm/page_alloc.c, ``build_zonelists`` and ``find_next_best_node``, 6.1 and 6.12 alike):
node ``local`` lists itself first, then repeatedly the unused node of least
``(distance + (n < local)) * MAX_NUMNODES + node_load[n]``; ``node_load`` is one table for all nodes, built in
node order, and the first node of each new distance group gets one more load, which spreads the fallback of
nodes at equal distance round robin.  Every node here has CPUs and memory, so ``PENALTY_FOR_NODE_WITH_CPUS``
adds the same to every candidate and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from lang.errors import ConfigError

LOCAL_DISTANCE, REMOTE_DISTANCE = 10, 20
MAX_NUMNODES = 1024  # 1 << CONFIG_NODES_SHIFT, Debian's x86-64 config (NODES_SHIFT=10)


def default_distances(nodes: int) -> tuple[tuple[int, ...], ...]:
    """10 to itself, 20 to every other node: what Linux assumes without a SLIT (``__node_distance``)."""
    return tuple(tuple(LOCAL_DISTANCE if i == j else REMOTE_DISTANCE for j in range(nodes)) for i in range(nodes))


def check_distances(distances: tuple[tuple[int, ...], ...], nodes: int) -> None:
    """A square table of ``nodes`` rows, 10 on the diagonal and 11..254 elsewhere (ACPI 6.5, 5.2.17: the SLIT's
    entries; Linux's ``numa_set_distance`` refuses a local distance other than 10 and remote ones up to it)."""
    if len(distances) != nodes or any(len(row) != nodes for row in distances):
        raise ConfigError(f"distances must be {nodes} rows of {nodes} numbers, one per node")
    for i, row in enumerate(distances):
        for j, d in enumerate(row):
            if i == j and d != LOCAL_DISTANCE:
                raise ConfigError(f"distances[{i}][{i}] is {d}: a node's distance to itself must be 10")
            if i != j and not LOCAL_DISTANCE < d <= 254:
                raise ConfigError(f"distances[{i}][{j}] is {d}: a remote distance must be 11..254")


def zonelists(distances: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """Every node's fallback order, nearest first, built node by node as ``build_all_zonelists`` does."""
    nodes = len(distances)
    load = [0] * nodes
    lists = []
    for local in range(nodes):
        order: list[int] = []
        prev = local
        while len(order) < nodes:
            node = next_best_node(distances, local, order, load)
            if distances[local][node] != distances[local][prev]:
                load[node] += 1
            order.append(node)
            prev = node
        lists.append(tuple(order))
    return tuple(lists)


def next_best_node(distances: tuple[tuple[int, ...], ...], local: int, used: list[int], load: list[int]) -> int:
    """``find_next_best_node``: the local node first, then the unused node of least weighted distance."""
    if local not in used:
        return local
    candidates = [n for n in range(len(distances)) if n not in used]
    return min(candidates, key=lambda n: ((distances[local][n] + (n < local)) * MAX_NUMNODES + load[n], n))


@dataclass(frozen=True, slots=True)
class Topology:
    """``nodes`` nodes of ``node_frames`` frames and ``node_cpus`` CPUs each, ``distances`` between them, and the
    zonelist of each (:func:`zonelists`)."""

    nodes: int
    node_frames: int
    node_cpus: int
    distances: tuple[tuple[int, ...], ...]
    zonelists: tuple[tuple[int, ...], ...]

    def node_of_pfn(self, pfn: int) -> int:
        """The node frame ``pfn`` is on (``page_to_nid``)."""
        return min(pfn // self.node_frames, self.nodes - 1)

    def node_of_cpu(self, cpu: int) -> int:
        """The node CPU ``cpu`` is on (``cpu_to_node``)."""
        return min(cpu // self.node_cpus, self.nodes - 1)

    def span(self, node: int) -> range:
        """The pfns of node ``node`` (``node_start_pfn`` .. ``node_end_pfn``)."""
        return range(node * self.node_frames, (node + 1) * self.node_frames)


def topology(
    frames: int, cpus: int, nodes: int, max_order: int, distances: tuple[tuple[int, ...], ...] | None
) -> Topology:
    """The topology of a config; a :class:`ConfigError` naming the rule when the frames or CPUs do not divide."""
    table = default_distances(nodes) if distances is None else distances
    check_distances(table, nodes)
    if nodes == 1:
        return Topology(1, frames, cpus, table, zonelists(table))
    if frames % nodes or (frames // nodes) % (1 << max_order):
        raise ConfigError(
            f"{frames} frames do not split into {nodes} nodes of a multiple of 2**max_order = {1 << max_order} "
            "frames each: give frames = nodes * k * 2**max_order"
        )
    if cpus % nodes:
        raise ConfigError(f"{cpus} CPUs do not split evenly into {nodes} nodes: give a multiple of {nodes}")
    return Topology(nodes, frames // nodes, cpus // nodes, table, zonelists(table))
