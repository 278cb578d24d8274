"""NUMA placement: first-touch allocations per second with 1, 2, 4 and 8 nodes, implementation against spec.

One process runs on every CPU (one CPU a node), its region interleaved over all the nodes (``mbind``), and
each page is written once from a CPU in turn: every write is a fault that asks the policy for a node, walks that
node's zonelist and counts ``zone_statistics``.  The memory is 64 frames a node more than the pages need, so
nothing falls back.  Both sides run the same ops through the replay runners (:class:`properties.drivers.
ImplRunner`, :class:`properties.drivers.SpecRunner`); the setup is not timed.  The implementation keeps one set
of free lists per node and precomputed zonelists, so its cost per allocation should not grow with the nodes;
the spec filters the free set by node on every allocation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lang.kernel_ops import Mmap, Spawn, Store, Switch
from lang.numa_ops import Mbind
from lang.scenario import Config, Op
from properties.drivers import ImplRunner, SpecRunner

BASE = 0x7F0000000000
NODES = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class Rate:
    """First-touch allocations per second on each side with ``nodes`` nodes."""

    nodes: int
    pages: int
    impl_per_second: float
    spec_per_second: float


def config(nodes: int, pages: int) -> Config:
    per_node = -(-(pages + 64 * nodes) // nodes)
    per_node += -per_node % 16
    return Config(frames=per_node * nodes, cpus=nodes, max_order=4, nodes=nodes)


def setup(nodes: int, pages: int) -> list[Op]:
    ops: list[Op] = [Spawn(), *(Switch(cpu, 1) for cpu in range(nodes)), Mmap(1, BASE, pages, "rw-", False)]
    return [*ops, Mbind(1, BASE, pages, "interleave", tuple(range(nodes)))]


def touches(nodes: int, pages: int) -> list[Op]:
    return [Store(i % nodes, BASE + i * 4096, 1) for i in range(pages)]


def timed(runner: ImplRunner | SpecRunner, nodes: int, pages: int) -> float:
    for op in setup(nodes, pages):
        runner.apply(op)
    start = time.perf_counter()
    for op in touches(nodes, pages):
        runner.apply(op)
    return pages / (time.perf_counter() - start)


def rate(nodes: int, pages: int, spec_pages: int) -> Rate:
    """Allocations per second with ``nodes`` nodes: ``pages`` on the implementation, ``spec_pages`` on the spec."""
    impl = timed(ImplRunner(config(nodes, pages)), nodes, pages)
    spec = timed(SpecRunner(config(nodes, spec_pages)), nodes, spec_pages)
    return Rate(nodes, pages, impl, spec)
