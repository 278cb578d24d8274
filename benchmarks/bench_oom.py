"""The OOM killer's scan: ``oom_badness`` of every process (``select_bad_process``), implementation against spec.

The machine holds ``processes`` processes besides init, each with one or two anonymous pages stored and,
two in three, an ``oom_score_adj`` spread over -1000..1000 (so some are ineligible and the adjustment
decides); it is built once on the implementation through the replay runner's ops (not timed), and the spec's
state is its abstraction (:func:`properties.abstraction.abstract_kernel`), so both scan the same processes.
Timed: one whole scan, mm/oom_kill.c ``select_bad_process`` with the machine's ``totalpages``: the
implementation's :meth:`impl.oom.oom.Oom.select` (the mm counters the kernel keeps as leaves and tables
change, :attr:`impl.mm.kernel.Kernel.mm_counters`) and the spec's :func:`spec.oom.badness.select_bad_process`;
both must choose the same victim.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lang.kernel_ops import Mmap, Spawn, Store, Switch
from lang.oom_ops import OomScoreAdj
from lang.scenario import Config
from properties.abstraction import abstract_kernel
from properties.drivers import ImplRunner
from spec.oom.badness import select_bad_process, total_pages

ANON = 0x10000000
PAGE = 4096


@dataclass(frozen=True, slots=True)
class Scan:
    """The best time of a whole scan on each side, and the victim both chose."""

    processes: int
    impl_seconds: float
    spec_seconds: float
    victim: tuple[int, int]


def machine(processes: int) -> ImplRunner:
    """``processes`` processes after init, one or two pages each, most with an ``oom_score_adj``."""
    runner = ImplRunner(Config(frames=8 * processes + 64, cpus=1, max_order=10, swap=0))
    runner.apply(Spawn())
    for i in range(processes):
        pid = runner.apply(Spawn())["pid"]
        runner.apply(Mmap(pid, ANON, 2, "rw-", False))
        runner.apply(Switch(0, pid))
        for page in range(1 + i % 2):
            runner.apply(Store(0, ANON + page * PAGE, 1))
        if i % 3:
            runner.apply(OomScoreAdj(pid, (i * 37) % 2001 - 1000))
    return runner


def scan(processes: int, repeats: int) -> Scan:
    """Time ``select_bad_process`` over ``processes`` processes on both sides (best of ``repeats``)."""
    runner = machine(processes)
    impl = runner.kernel.kernel
    assert impl is not None
    spec = abstract_kernel(impl)
    totalpages = impl.oom.total_pages()
    if totalpages != total_pages(spec):
        raise AssertionError(f"totalpages: impl {totalpages}, spec {total_pages(spec)}")
    impl_best = spec_best = float("inf")
    chosen = spec_chosen = None
    for _ in range(repeats):
        start = time.perf_counter()
        chosen = impl.oom.select(totalpages)
        impl_best = min(impl_best, time.perf_counter() - start)
        start = time.perf_counter()
        spec_chosen = select_bad_process(spec, totalpages)
        spec_best = min(spec_best, time.perf_counter() - start)
    if chosen is None or chosen != spec_chosen:
        raise AssertionError(f"the victims differ: impl {chosen}, spec {spec_chosen}")
    return Scan(processes, impl_best, spec_best, chosen)
