"""``nox -s bench``: every benchmark in one run, one table, JSON and a plot.

Each row is measured in this run on the implementation and on the spec
(or against a reference design, or, for the harness, as one rate):

- translation: loads per second with TLB hits, with misses (a full 4-level
  walk) and with 5-level paging (:mod:`benchmarks.translation`);
- buddy: alloc+free pairs per second (:mod:`benchmarks.bench_buddy`);
- slab: kmalloc+kfree pairs per second, 10**3 to 10**6 live objects (:mod:`benchmarks.bench_slab`);
- kernel: fork, COW faults, munmap of 512 pages, loads (:mod:`benchmarks.bench_kernel`);
- pressure: faults per second by kind (minor zero page, minor page-cache hit,
  major file read, major swap-in) and reclaim of up to 10**5 page-cache pages
  and of anonymous pages to swap (:mod:`benchmarks.bench_pressure`);
- oom: the OOM killer's scan, ``oom_badness`` of 10**4 processes (:mod:`benchmarks.bench_oom`);
- numa: first-touch allocations per second with 1, 2, 4 and 8 nodes under interleave (:mod:`benchmarks.bench_numa`);
- shootdown: IPIs, INVLPGs and full flushes of a munmap against a broadcast
  (:mod:`benchmarks.bench_tlb`; counts, not timings);
- malloc: malloc+free pairs per second, the ptmalloc model against glibc itself and against the
  contract's checks (:mod:`benchmarks.bench_malloc`);
- harness: state-machine steps per second, the spec explorer's and the lockstep
  explorer's distinct states per second, and the spec explorer run to exhaustion
  on each configuration of :data:`benchmarks.harness.EXHAUST` (:mod:`benchmarks.harness`).

Buddy, fork, translation, faults and reclaim also run at three sizes each; the growth of the
per-unit cost from one size to the next is reported and plotted (one panel
per family).  Targets are shown as met or MISSED; a missed target does not
fail the run, a crash does.  ``--quick`` runs small sizes in seconds (a
smoke run: its figures are not measurements).  Results go to
``bench-results/`` (``bench.json`` and ``bench.png``; ``bench-quick.*``
with ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from benchmarks import (
    bench_buddy,
    bench_kernel,
    bench_malloc,
    bench_numa,
    bench_oom,
    bench_pressure,
    bench_slab,
    bench_thp,
    bench_tlb,
    harness,
    translation,
)
from benchmarks.report import (
    Report,
    Row,
    Scaling,
    Target,
    against_baseline,
    at_least,
    compared,
    print_report,
    sizes_text,
    write_json,
    write_plot,
)

DEFAULT_OUT = Path("bench-results")
SEED = 20241  # of the buddy workload


@dataclass(frozen=True, slots=True)
class Plan:
    """How much each benchmark runs: the full run or the quick smoke run."""

    buddy_shifts: tuple[int, ...]
    buddy_impl_pairs: int
    buddy_spec_pairs: int
    repeats: int
    fork_shifts: tuple[int, ...]
    spec_fork_shifts: tuple[int, ...]
    munmap_pages: int
    tlb_sizes: tuple[int, ...]
    translation_seconds: float
    translation_sizes: tuple[int, ...]
    translation_size_seconds: float
    machine_examples: int
    explorer_states: int | None
    smp_explorer_seconds: float
    spec_explorer_seconds: float
    exhaust_seconds: float
    exhaust_only: int | None
    shared_processes: int
    fault_pages: int
    swapin_pages: int
    fault_sizes: tuple[int, ...]
    spec_fault_sizes: tuple[int, ...]
    cache_reclaim_sizes: tuple[int, ...]
    spec_cache_reclaim_sizes: tuple[int, ...]
    anon_reclaim_sizes: tuple[int, ...]
    spec_anon_reclaim_sizes: tuple[int, ...]
    oom_processes: int
    malloc_pairs: int
    parallel: str  # which of harness.PARALLEL_BOUNDS the parallel search exhausts
    numa_pages: int = 2048
    spec_numa_pages: int = 256

    def __post_init__(self) -> None:
        if self.spec_fork_shifts[-1] != self.fork_shifts[0]:
            raise ValueError("the spec's largest fork must be the implementation's smallest, to compare them")


FULL = Plan(
    buddy_shifts=(14, 17, 20),
    buddy_impl_pairs=50_000,
    buddy_spec_pairs=2_000,
    repeats=3,
    fork_shifts=(12, 14, 16),
    spec_fork_shifts=(8, 10, 12),
    munmap_pages=512,
    tlb_sizes=bench_tlb.SIZES,
    translation_seconds=1.5,
    translation_sizes=(128, 256, 448),
    translation_size_seconds=0.2,
    machine_examples=50,
    explorer_states=None,
    smp_explorer_seconds=15.0,
    spec_explorer_seconds=20.0,
    exhaust_seconds=60.0,
    exhaust_only=None,
    shared_processes=6,
    fault_pages=256,
    swapin_pages=128,
    fault_sizes=(256, 1024, 4096),
    spec_fault_sizes=(64, 128, 256),
    cache_reclaim_sizes=(1_000, 10_000, 100_000),
    spec_cache_reclaim_sizes=(128, 256, 512),
    anon_reclaim_sizes=(128, 256, 512),
    spec_anon_reclaim_sizes=(32, 64, 128),
    oom_processes=10_000,
    malloc_pairs=50_000,
    parallel="full",
)
QUICK = Plan(
    buddy_shifts=(10, 12, 14),
    buddy_impl_pairs=2_000,
    buddy_spec_pairs=200,
    repeats=1,
    fork_shifts=(8, 9, 10),
    spec_fork_shifts=(6, 7, 8),
    munmap_pages=64,
    tlb_sizes=(1, 40),
    translation_seconds=0.1,
    translation_sizes=(128, 192, 256),
    translation_size_seconds=0.02,
    machine_examples=2,
    explorer_states=300,
    smp_explorer_seconds=0.5,
    spec_explorer_seconds=0.5,
    exhaust_seconds=2.0,
    exhaust_only=3,
    shared_processes=3,
    fault_pages=32,
    swapin_pages=16,
    fault_sizes=(16, 32, 64),
    spec_fault_sizes=(8, 16, 32),
    cache_reclaim_sizes=(16, 32, 64),
    spec_cache_reclaim_sizes=(8, 16, 32),
    anon_reclaim_sizes=(8, 16, 32),
    spec_anon_reclaim_sizes=(4, 8, 16),
    oom_processes=200,
    malloc_pairs=500,
    numa_pages=64,
    spec_numa_pages=32,
    parallel="quick",
)

TRANSLATION_HIT_RATIO = 20.0
TRANSLATION_MODES = (
    (4, True, "TLB hits"),
    (4, False, "TLB misses, 4-level walk"),
    (5, False, "TLB misses, 5-level walk"),
)
BUDDY_RATIO = 50.0
FLAT = 1.5
MACHINE_STEPS = 1_000.0
EXPLORER_STATES = 20_000.0
PARALLEL_SPEEDUP = 1.7
MUSIL = "musil not run: no interpreter with musil (nox -s musil once, or MMCHECK_MUSIL_PYTHON)"
MUSIL_RATIO = 2.0


def say(text: str) -> None:
    """Progress, on standard error: standard output holds the table alone."""
    print(text, file=sys.stderr, flush=True)


def translation_family(plan: Plan, report: Report) -> None:
    say(f"translation: loads through the TLB and the walk, {plan.translation_seconds}s a side")
    for levels, hits, what in TRANSLATION_MODES:
        run = translation.measure_translation(levels, hits, plan.translation_seconds)
        impl, spec = float(run["impl_loads_per_s"]), float(run["spec_loads_per_s"])
        row = compared(
            "translation", f"loads/s, {what}", "loads/s", impl, spec, rate=True, note=f"{run['pages']} pages"
        )
        if hits:
            row = at_least(row, "ratio", TRANSLATION_HIT_RATIO, f"impl >= {TRANSLATION_HIT_RATIO:.0f}x spec")
        report.rows.append(row)
    impl_costs, spec_costs = [], []
    for pages in plan.translation_sizes:
        impl_load, addresses = translation.impl_loader(4, pages)
        spec_load, _ = translation.spec_loader(4, pages)
        impl_costs.append(1e6 / best_rate(impl_load, addresses, plan.translation_size_seconds, plan.repeats))
        spec_costs.append(1e6 / best_rate(spec_load, addresses, plan.translation_size_seconds, plan.repeats))
    sizes = plan.translation_sizes
    report.scalings.append(
        Scaling(
            "translation",
            "us per load, TLB misses",
            "pages loaded in turn (4-level paging)",
            sizes,
            tuple(impl_costs),
            sizes,
            tuple(spec_costs),
        )
    )


def best_rate(load: Callable[[int], int], addresses: list[int], seconds: float, windows: int) -> float:
    """Loads per second: the best of ``windows`` runs of ``seconds`` each."""
    return max(translation.loads_per_second(load, addresses, seconds)[0] for _ in range(windows))


def buddy_family(plan: Plan, report: Report) -> None:
    say(f"buddy: alloc+free pairs, seed {SEED}, {plan.buddy_impl_pairs} impl pairs, {plan.buddy_spec_pairs} spec pairs")
    work = bench_buddy.Workload.make(SEED, max(plan.buddy_impl_pairs, plan.buddy_spec_pairs))
    runs = [
        bench_buddy.measure(1 << shift, work, plan.buddy_impl_pairs, plan.buddy_spec_pairs, plan.repeats)
        for shift in plan.buddy_shifts
    ]
    for (impl, spec), shift in zip(runs, plan.buddy_shifts, strict=True):
        row = compared(
            "buddy",
            f"alloc+free pairs/s at 2^{shift} frames",
            "pairs/s",
            impl.pairs_per_second,
            spec.pairs_per_second,
            rate=True,
        )
        if shift == plan.buddy_shifts[-1]:
            row = at_least(row, "ratio", BUDDY_RATIO, f"impl >= {BUDDY_RATIO:.0f}x spec")
        report.rows.append(row)
    impl_cost = tuple(impl.microseconds_per_pair for impl, _ in runs)
    end_to_end = impl_cost[-1] / impl_cost[0]
    report.scalings.append(
        Scaling(
            "buddy",
            "us per alloc+free pair",
            "frames",
            tuple(1 << s for s in plan.buddy_shifts),
            impl_cost,
            tuple(1 << s for s in plan.buddy_shifts),
            tuple(spec.microseconds_per_pair for _, spec in runs),
            Target(
                f"impl cost {sizes_text([1 << plan.buddy_shifts[-1]])} / {sizes_text([1 << plan.buddy_shifts[0]])} "
                f"<= {FLAT}x (is {end_to_end:.2f}x)",
                end_to_end,
                end_to_end <= FLAT,
            ),
        )
    )


@dataclass(frozen=True, slots=True)
class SlabPlan:
    """How much the slab benchmark runs: live objects for the implementation and for the spec, pairs timed, and
    random object touches timed for the memory floor."""

    impl_lives: tuple[int, ...]
    spec_lives: tuple[int, ...]
    impl_pairs: int
    spec_pairs: int
    touches: int


SLAB_FULL = SlabPlan((1_000, 30_000, 1_000_000), (300, 1_000, 3_000), 20_000, 500, 100_000)
SLAB_QUICK = SlabPlan((100, 300, 1_000), (30, 100, 300), 500, 50, 1_000)
SLAB_SEED = 20242
SLAB_RATIO = 10.0


def slab_family(plan: Plan, report: Report) -> None:
    slab = SLAB_QUICK if plan is QUICK else SLAB_FULL
    say(f"slab: kmalloc+kfree pairs, seed {SLAB_SEED}, live objects {sizes_text(slab.impl_lives)}")
    work = bench_slab.Workload.make(SLAB_SEED, max(slab.impl_lives), max(slab.impl_pairs, slab.spec_pairs))
    impl = [
        bench_slab.best_of(plan.repeats, partial(bench_slab.run_impl, live, work, slab.impl_pairs))
        for live in slab.impl_lives
    ]
    spec = [bench_slab.run_spec(live, work, slab.spec_pairs) for live in slab.spec_lives]
    by_live = {m.live: m for m in spec}
    common = max(set(slab.impl_lives) & set(slab.spec_lives))
    for run in impl:
        measure = f"kmalloc+kfree pairs/s, {sizes_text([run.live])} live objects"
        other = by_live.get(run.live)
        if other is None:
            note = (
                f"spec not run at this size: its cost grows with the pool; it runs up to {sizes_text([spec[-1].live])}"
            )
            report.rows.append(Row("slab", measure, "pairs/s", "impl-vs-spec", impl=run.pairs_per_second, note=note))
            continue
        row = compared("slab", measure, "pairs/s", run.pairs_per_second, other.pairs_per_second, rate=True)
        if run.live == common:
            row = at_least(row, "ratio", SLAB_RATIO, f"impl >= {SLAB_RATIO:.0f}x spec")
        report.rows.append(row)
    calls = [bench_slab.calls_per_pair(live, work, slab.impl_pairs) for live in slab.impl_lives]
    floors = [bench_slab.touch_floor(live, work, slab.touches) for live in slab.impl_lives]
    for live, count, floor in zip(slab.impl_lives, calls, floors, strict=True):
        report.rows.append(
            Row(
                "slab",
                f"calls per kmalloc+kfree pair, {sizes_text([live])} live objects",
                "calls",
                "impl-vs-spec",
                impl=count,
                note=(
                    f"cProfile's count of the timed loop; a random live object taken from the pool and its word "
                    f"read+written: {floor:.2f} us"
                ),
            )
        )
    call_spread = max(calls) / min(calls)
    report.rows[-1] = replace(
        report.rows[-1],
        target=Target(
            f"impl calls per pair within {FLAT}x across sizes (is {call_spread:.2f}x)", call_spread, call_spread <= FLAT
        ),
    )
    costs = tuple(m.microseconds_per_pair for m in impl)
    growth, floor_growth = costs[-1] / costs[0], floors[-1] / floors[0]
    report.scalings.append(
        Scaling(
            "slab",
            "us per kmalloc+kfree pair",
            "live objects",
            slab.impl_lives,
            costs,
            slab.spec_lives,
            tuple(m.microseconds_per_pair for m in spec),
            Target(
                f"impl cost {sizes_text([slab.impl_lives[-1]])} / {sizes_text([slab.impl_lives[0]])} no more than a "
                f"random object's take and touch's growth (is {growth:.2f}x, touch {floor_growth:.2f}x)",
                growth,
                growth <= floor_growth,
            ),
        )
    )


def kernel_family(plan: Plan, report: Report) -> None:
    say("kernel: fork, COW faults, munmap, loads")
    # Small forks are timed more often (down to as many pages in all as the largest), being more easily disturbed.
    largest = plan.fork_shifts[-1]
    impl_runs = [
        bench_kernel.bench_impl(1 << shift, False, max(plan.repeats, 1 << (largest - shift)))
        for shift in plan.fork_shifts
    ]
    spec_runs = [bench_kernel.bench_spec(1 << shift) for shift in plan.spec_fork_shifts]
    same, spec = impl_runs[0], spec_runs[-1]  # the same size (see Plan)
    for run in impl_runs:
        measure = f"fork of {sizes_text([run.pages])} written pages"
        if run is same:
            report.rows.append(
                compared("kernel", measure, "ms", 1e3 * run.fork_seconds, 1e3 * spec.fork_seconds, rate=False)
            )
        else:
            note = f"spec not run at this size: its fork is superlinear; it runs up to {sizes_text([spec.pages])}"
            report.rows.append(Row("kernel", measure, "ms", "impl-vs-spec", impl=1e3 * run.fork_seconds, note=note))
    spread = bench_kernel.bench_impl(same.pages, True)
    report.rows.append(
        Row(
            "kernel",
            f"fork of {sizes_text([spread.pages])} pages, one per page table",
            "ms",
            "impl-vs-spec",
            impl=1e3 * spread.fork_seconds,
            note="impl only: the spec's page tables are abstract",
        )
    )
    size_note = f"{sizes_text([same.pages])} pages"
    report.rows.append(
        compared(
            "kernel",
            "COW faults/s after fork",
            "faults/s",
            same.cow_faults_per_second,
            spec.cow_faults_per_second,
            rate=True,
            note=size_note,
        )
    )
    report.rows.append(
        compared(
            "kernel",
            "loads/s through the kernel's access path",
            "loads/s",
            same.loads_per_second,
            spec.loads_per_second,
            rate=True,
            note=size_note,
        )
    )
    pages = plan.munmap_pages
    impl_munmap = bench_kernel.munmap_impl(pages, plan.repeats)
    spec_munmap = bench_kernel.munmap_spec(pages, plan.repeats)
    report.rows.append(
        compared("kernel", f"munmap of {pages} written pages", "ms", 1e3 * impl_munmap, 1e3 * spec_munmap, rate=False)
    )
    costs = tuple(run.fork_us_per_page for run in impl_runs)
    spread_factor = max(costs) / min(costs)
    report.scalings.append(
        Scaling(
            "fork",
            "us per mapped page",
            "written pages",
            tuple(r.pages for r in impl_runs),
            costs,
            tuple(r.pages for r in spec_runs),
            tuple(r.fork_us_per_page for r in spec_runs),
            Target(
                f"impl cost per page within {FLAT}x across sizes (is {spread_factor:.2f}x)",
                spread_factor,
                spread_factor <= FLAT,
            ),
        )
    )


def pressure_family(plan: Plan, report: Report) -> None:
    say(
        f"pressure: faults by kind at {plan.fault_pages} pages (swap-in {plan.swapin_pages}), reclaim up to "
        f"{plan.cache_reclaim_sizes[-1]:,} pages"
    )
    bp = bench_pressure
    for kind in bp.KINDS:
        pages = plan.swapin_pages if kind == "major, swap-in" else plan.fault_pages
        work = bp.fault_workload(kind, pages)
        impl, spec = bp.best(plan.repeats, "impl", work, kind), bp.run("spec", work, kind)
        note = f"{pages} pages, one load each, through the replay runners"
        report.rows.append(
            compared(
                "pressure", f"faults/s, {kind}", "faults/s", impl.per_second, spec.per_second, rate=True, note=note
            )
        )
    impl_faults = [bp.run("impl", bp.fault_workload(bp.KINDS[0], n), bp.KINDS[0]) for n in plan.fault_sizes]
    spec_faults = [bp.run("spec", bp.fault_workload(bp.KINDS[0], n), bp.KINDS[0]) for n in plan.spec_fault_sizes]
    report.scalings.append(
        flat_series(
            "faults",
            "us per minor zero-page fault",
            "pages mapped and faulted",
            plan.fault_sizes,
            impl_faults,
            plan.spec_fault_sizes,
            spec_faults,
        )
    )
    for name, workload, impl_sizes, spec_sizes, family in (
        (
            "clean page-cache pages",
            bp.cache_reclaim_workload,
            plan.cache_reclaim_sizes,
            plan.spec_cache_reclaim_sizes,
            "reclaim, page cache",
        ),
        (
            "mapped anonymous pages to swap",
            bp.anon_reclaim_workload,
            plan.anon_reclaim_sizes,
            plan.spec_anon_reclaim_sizes,
            "reclaim, anon to swap",
        ),
    ):
        impl_runs = [bp.run("impl", workload(n), name) for n in impl_sizes]
        spec_runs = [bp.run("spec", workload(n), name) for n in spec_sizes]
        same = bp.run("impl", workload(spec_sizes[-1]), name)
        report.rows.append(
            compared(
                "pressure",
                f"reclaim of {spec_sizes[-1]:,} {name}",
                "ms",
                1e3 * same.seconds,
                1e3 * spec_runs[-1].seconds,
                rate=False,
            )
        )
        largest = impl_runs[-1]
        report.rows.append(
            Row(
                "pressure",
                f"reclaim of {largest.units:,} {name}",
                "ms",
                "impl-vs-spec",
                impl=1e3 * largest.seconds,
                note=f"spec not run at this size: it runs up to {spec_sizes[-1]:,} pages",
            )
        )
        report.scalings.append(
            flat_series(family, "us per reclaimed page", "pages", impl_sizes, impl_runs, spec_sizes, spec_runs)
        )


def flat_series(
    family: str,
    cost: str,
    unit: str,
    sizes: tuple[int, ...],
    impl: list[bench_pressure.Measurement],
    spec_sizes: tuple[int, ...],
    spec: list[bench_pressure.Measurement],
) -> Scaling:
    """A scaling series of per-unit costs with the target that the implementation's stays within :data:`FLAT`."""
    costs = tuple(m.microseconds_per_unit for m in impl)
    growth = costs[-1] / costs[0]
    wanted = f"impl cost {sizes_text([sizes[-1]])} / {sizes_text([sizes[0]])} <= {FLAT}x (is {growth:.2f}x)"
    return Scaling(
        family,
        cost,
        unit,
        sizes,
        costs,
        spec_sizes,
        tuple(m.microseconds_per_unit for m in spec),
        Target(wanted, growth, growth <= FLAT),
    )


def oom_family(plan: Plan, report: Report) -> None:
    say(f"oom: select_bad_process over {plan.oom_processes:,} processes")
    result = bench_oom.scan(plan.oom_processes, plan.repeats)
    report.rows.append(
        compared(
            "oom",
            f"oom_badness scan of {result.processes:,} processes",
            "ms",
            1e3 * result.impl_seconds,
            1e3 * result.spec_seconds,
            rate=False,
            note=f"select_bad_process, best of {plan.repeats}; both chose pid {result.victim[0]}",
        )
    )


def malloc_family(plan: Plan, report: Report) -> None:
    say(f"malloc: {plan.malloc_pairs:,} free+malloc pairs over {bench_malloc.LIVE} live blocks")
    result = bench_malloc.measure(plan.malloc_pairs, plan.repeats)
    report.rows.append(
        compared(
            "malloc",
            "malloc+free pairs/s, the model against the contract's checks",
            "pairs/s",
            result.model,
            result.contract,
            rate=True,
            note=f"ptmalloc model, best of {plan.repeats}; the spec checks each answer",
        )
    )
    if result.glibc is None:
        report.rows.append(
            Row(
                "malloc",
                "malloc+free pairs/s, the model against glibc",
                "pairs/s",
                "impl-vs-native",
                impl=result.model,
                note=f"glibc not measured: {result.glibc_note}",
            )
        )
        return
    report.rows.append(
        Row(
            "malloc",
            "malloc+free pairs/s, the model against glibc",
            "pairs/s",
            "impl-vs-native",
            impl=result.model,
            baseline=result.glibc,
            ratio=result.model / result.glibc,
            note=result.glibc_note,
        )
    )
def numa_family(plan: Plan, report: Report) -> None:
    say(f"numa: first-touch allocations under interleave with {', '.join(map(str, bench_numa.NODES))} nodes")
    for nodes in bench_numa.NODES:
        result = bench_numa.rate(nodes, plan.numa_pages, plan.spec_numa_pages)
        report.rows.append(
            compared(
                "numa",
                f"allocations/s with {nodes} node{'s' * (nodes > 1)}",
                "/s",
                result.impl_per_second,
                result.spec_per_second,
                rate=True,
                note=f"{plan.numa_pages} pages on impl, {plan.spec_numa_pages} on spec, interleaved over every node",
            )
        )


def shootdown_family(plan: Plan, report: Report) -> None:
    sizes = ", ".join(map(str, plan.tlb_sizes))
    say(f"shootdown: munmap of {sizes} pages, {bench_tlb.CPUS} CPUs, {bench_tlb.RUNNING} of them ran the mm")
    for pages in plan.tlb_sizes:
        ours, broadcast = bench_tlb.munmap_events(pages), bench_tlb.naive(pages)
        for kind, name in (("ipi", "IPIs"), ("invlpg", "INVLPGs"), ("flush", "full flushes")):
            report.rows.append(
                against_baseline(
                    "shootdown", f"munmap of {pages} page{'s' * (pages > 1)}: {name}", "", ours[kind], broadcast[kind]
                )
            )


def thp_family(plan: Plan, report: Report) -> None:
    say(f"thp: writing one aligned 2 MiB range, a THP against {bench_thp.PAGES} 4 KiB pages")
    huge, small = bench_thp.touch_costs(True), bench_thp.touch_costs(False)
    for measure, count in huge.items():
        report.rows.append(against_baseline("thp", f"2 MiB written: {measure}", "", count, small[measure]))


def harness_family(plan: Plan, report: Report) -> None:
    say(f"harness: each machine for {plan.machine_examples} examples of up to {harness.STEPS_PER_EXAMPLE} steps")
    for name in harness.MACHINES:
        rate = harness.machine_rate(name, plan.machine_examples)
        row = Row(
            "harness",
            f"{name} machine steps/s",
            "steps/s",
            "harness",
            value=rate.steps_per_second,
            note=f"{rate.steps} steps in {rate.seconds:.1f}s",
        )
        report.rows.append(at_least(row, "value", MACHINE_STEPS, f">= {MACHINE_STEPS:,.0f} steps/s"))
    say(f"harness: the spec explorer, {plan.spec_explorer_seconds:g}s a system")
    for explored in harness.spec_explorer_rates(plan.spec_explorer_seconds):
        row = explorer_row(f"spec explorer distinct states/s, {explored.system}", explored, rate=True)
        row = replace(row, note=f"{row.note}; {explored.cpu:.1f} CPU s, {explored.cpu_rate:,.0f} states per CPU s")
        report.rows.append(at_least(row, "value", EXPLORER_STATES, f">= {EXPLORER_STATES:,.0f} states/s per core"))
    speedup = harness.parallel_speedup(harness.PARALLEL_BOUNDS[plan.parallel])
    say(f"harness: the parallel spec search, {speedup.workers} workers against one, {speedup.bounds}, exhausted")
    row = Row(
        "harness",
        f"spec explorer, {speedup.workers} workers against 1 (buddy, exhausted)",
        "x",
        "harness",
        value=speedup.ratio,
        note=(
            f"{speedup.parallel.distinct:,} states, {speedup.parallel.transitions:,} transitions each; "
            f"{speedup.sequential.seconds:.1f}s against {speedup.parallel.seconds:.1f}s wall, "
            f"{speedup.sequential_cpu:.1f} against {speedup.parallel_cpu:.1f} CPU s (x{speedup.overhead:.2f}); "
            f"{os.cpu_count()} cpus, load {load_average()}"
        ),
    )
    report.rows.append(at_least(row, "value", PARALLEL_SPEEDUP, f">= {PARALLEL_SPEEDUP}x on {speedup.workers} cores"))
    say("harness: the lockstep explorer (spec, implementation and L0 at every transition)")
    for explored in harness.explorer_rates(plan.explorer_states, plan.smp_explorer_seconds):
        report.rows.append(explorer_row(f"lockstep explorer distinct states/s, {explored.system}", explored, rate=True))
    say(f"harness: a shared model, the lost update of {plan.shared_processes} processes, by the explorer and SPIN")
    stats, spin, name = harness.shared_model(plan.shared_processes)
    agreed = "SPIN not installed" if spin is None else f"SPIN -DNOREDUCE stores {spin.states:,}: equal"
    report.rows.append(
        Row(
            "harness",
            f"shared model states/s, {name}: spec explorer",
            "states/s",
            "harness",
            value=stats.rate,
            note=f"{stats.distinct:,} states, exhausted, {stats.seconds:.2f}s; {agreed}",
        )
    )
    musil = harness.musil_rate(plan.shared_processes)
    if musil is None:
        say(f"harness: {MUSIL}")
    else:
        if musil.states != stats.distinct:
            raise harness.BenchmarkCrash(f"{name}: the explorer reached {stats.distinct} states, musil {musil.states}")
        row = compared(
            "harness",
            f"shared model states/s, {name}: spec explorer against musil",
            "states/s",
            stats.rate,
            musil.rate,
            rate=True,
            note=f"musil {musil.version}: {musil.states:,} states, {musil.seconds:.2f}s; the 'spec' column is musil",
        )
        report.rows.append(at_least(row, "ratio", MUSIL_RATIO, f"explorer >= {MUSIL_RATIO:.0f}x musil"))
    if spin is not None:
        report.rows.append(
            Row(
                "harness",
                f"shared model states/s, {name}: SPIN",
                "states/s",
                "harness",
                value=spin.rate,
                note=f"{spin.states:,} states stored, pan's run {spin.seconds:.2f}s with its start (not its build)",
            )
        )
    say(f"harness: the spec explorer to exhaustion, at most {plan.exhaust_seconds:g}s a configuration")
    for explored in harness.exhausted(plan.exhaust_seconds, plan.exhaust_only):
        report.rows.append(explorer_row(f"spec explorer states, {explored.system}", explored, rate=False))


def explorer_row(measure: str, explored: harness.ExplorerRate, rate: bool) -> Row:
    """A row of the explorer's rate (``rate``) or of the states it reached, with what it ran over and how far."""
    stats = explored.stats
    bound = "exhausted" if stats.exhausted else f"not exhausted ({stats.bound})"
    note = (
        f"{stats.distinct:,} states, {stats.transitions:,} transitions, depth {stats.depth}, {bound}, "
        f"{stats.seconds:.1f}s"
        + (f", {stats.rate:,.0f} states/s" if not rate else "")
        + (f"; {explored.bounds}" if explored.bounds else "")
    )
    value = stats.rate if rate else float(stats.distinct)
    return Row("harness", measure, "states/s" if rate else "states", "harness", value=value, note=note)


FAMILIES = {
    "translation": translation_family,
    "buddy": buddy_family,
    "slab": slab_family,
    "kernel": kernel_family,
    "pressure": pressure_family,
    "oom": oom_family,
    "malloc": malloc_family,
    "numa": numa_family,
    "shootdown": shootdown_family,
    "thp": thp_family,
    "harness": harness_family,
}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run of seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON and the plot")
    parser.add_argument("--only", choices=list(FAMILIES), action="append", help="run only this family (repeatable)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    name = "bench-quick" if args.quick else "bench"
    started = datetime.datetime.now(datetime.UTC)
    report = Report(
        meta={
            "mode": "quick" if args.quick else "full",
            "started": started.isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_average(),
            "buddy_seed": SEED,
        }
    )
    say(f"bench: {report.meta['mode']} run, load average {report.meta['load_average_before']}, {os.cpu_count()} cpus")
    start = time.perf_counter()
    for family, run in FAMILIES.items():
        if not args.only or family in args.only:
            gc.collect()  # each family starts from a collected heap
            run(plan, report)
    report.meta["seconds"] = round(time.perf_counter() - start, 1)
    report.meta["load_average_after"] = load_average()
    targets = report.targets()
    mode = "quick: a smoke run, not measurements" if args.quick else "full"
    title = (
        f"nox -s bench ({mode}): {report.meta['seconds']}s, load {report.meta['load_average_before']}"
        f" -> {report.meta['load_average_after']}; targets {sum(t.met for t in targets)} met, "
        f"{sum(not t.met for t in targets)} missed"
    )
    print_report(report, title)
    plot = args.out / f"{name}.png"
    report.meta["plot"] = str(plot) if report.scalings and write_plot(report, plot) else None
    write_json(report, args.out / f"{name}.json")
    print(f"written: {args.out / f'{name}.json'}")
    if report.meta["plot"] is None:
        print("no plot: matplotlib is not installed (pip install -e '.[plot]')" if report.scalings else "no plot")
    else:
        print(f"written: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
