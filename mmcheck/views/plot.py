"""A plot of a scenario over its steps (x: 0 is the start, k the state after op k-1).

A buddy scenario: how many free blocks each order has (:func:`mmcheck.views.buddyview.buddy_json`), the
same numbers ``mmcheck buddy`` prints as ``/proc/buddyinfo`` lines.  A kernel scenario (memory pressure's
included): each live process's Rss and Pss, as ``stat`` (``/proc/PID/smaps_rollup``,
:func:`spec.mm.accounting.stat`) would answer after that step, and the buddy's free frames
(:func:`kernel_series`).  Drawing needs
matplotlib, an optional extra (``pip install -e .[plot]``); without it
:class:`MissingMatplotlib` says so and the command exits 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lang.errors import InvalidArgument, MMCheckError
from lang.kernel_ops import KernelOp
from lang.scenario import Scenario
from mmcheck import output
from mmcheck.views.buddyview import BUDDY_OPS, buddy_json, spec_free_lists
from properties.drivers import SpecRunner
from spec.mm.accounting import stat

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class MissingMatplotlib(MMCheckError):
    """The plot needs matplotlib, which is not installed."""


def is_kernel(scenario: Scenario) -> bool:
    return any(isinstance(op, KernelOp) for op in scenario.ops)


def free_block_series(scenario: Scenario, model: str = "spec") -> dict[int, list[int]]:
    """Free blocks of each order (``order -> counts``): index 0 is the start, index k the state after op k-1."""
    if not any(isinstance(op, BUDDY_OPS) for op in scenario.ops):
        raise MMCheckError(
            "plot draws a buddy scenario (alloc_pages / free_pages ops) or a kernel one (spawn, mmap, ...)"
        )
    run = buddy_json(scenario, model)
    steps = cast(list[dict[str, object]], run["steps"])
    states = [cast(list[list[int]], run["start"]), *(cast(list[list[int]], step["free_lists"]) for step in steps)]
    return {order: [len(lists[order]) for lists in states] for order in range(cast(int, run["max_order"]) + 1)}


@dataclass(frozen=True, slots=True)
class KernelSeries:
    """A kernel scenario over its steps, index 0 the start and index k after op k-1 (None: no such process)."""

    rss_kb: dict[int, list[int | None]]
    pss_kb: dict[int, list[int | None]]
    free_frames: list[int]

    @property
    def steps(self) -> int:
        return len(self.free_frames)


def kernel_series(scenario: Scenario) -> KernelSeries:
    """Run the spec op by op; after each, every live process's Rss and Pss (kB) and the buddy's free frames."""
    if not is_kernel(scenario):
        raise MMCheckError("kernel_series needs a kernel scenario (spawn, mmap, ...)")
    runner = SpecRunner(scenario.config)
    states: list[tuple[dict[int, tuple[int, int]], int]] = []

    def record() -> None:
        free = sum(len(blocks) << order for order, blocks in enumerate(spec_free_lists(runner)))
        k = runner.kernel.kernel
        procs = {} if k is None else {pid: stat(k, pid) for pid in sorted(k.procs)}
        states.append(({pid: (s.rss_kb, s.pss_kb) for pid, s in procs.items()}, free))

    record()
    for op in scenario.ops:
        runner.apply(op)
        record()
    pids = sorted({pid for procs, _ in states for pid in procs})
    return KernelSeries(
        {pid: [procs[pid][0] if pid in procs else None for procs, _ in states] for pid in pids},
        {pid: [procs[pid][1] if pid in procs else None for procs, _ in states] for pid in pids},
        [free for _, free in states],
    )


def _matplotlib() -> tuple[type[Figure], Any]:
    """matplotlib's Figure and MaxNLocator (the Agg backend), or :class:`MissingMatplotlib` saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise MissingMatplotlib(
            "mmcheck plot needs matplotlib, which is not installed: pip install -e '.[plot]'"
        ) from exc
    return Figure, MaxNLocator


def kernel_figure(scenario: Scenario, title: str) -> Figure:
    """Above: Rss (solid) and Pss (dashed) of each process over the steps; below: the buddy's free frames."""
    figure_type, integer_ticks = _matplotlib()

    series = kernel_series(scenario)
    figure = figure_type(figsize=(8, 6))
    memory, free = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    steps = list(range(series.steps))
    for index, pid in enumerate(series.rss_kb):
        colour = f"C{index % 10}"
        rss = [math.nan if v is None else v for v in series.rss_kb[pid]]
        pss = [math.nan if v is None else v for v in series.pss_kb[pid]]
        marker = "os^Dv<>ph*"[index % 10]
        memory.step(steps, rss, where="post", color=colour, marker=marker, markersize=3, label=f"pid {pid} Rss")
        memory.step(steps, pss, where="post", color=colour, linestyle="--", label=f"pid {pid} Pss")
    memory.set_ylabel("kB")
    memory.set_title(f"{title}: Rss and Pss per process, free frames (spec)")
    memory.yaxis.set_major_locator(integer_ticks(integer=True))
    if series.rss_kb:
        memory.legend(loc="upper left", fontsize="small", ncols=2)
    free.step(steps, series.free_frames, where="post", color="black", label="free frames")
    free.set_ylabel("free 4 KiB frames")
    free.set_xlabel("step (0: start, k: after op k-1)")
    free.yaxis.set_major_locator(integer_ticks(integer=True))
    free.xaxis.set_major_locator(integer_ticks(integer=True))
    return figure


def free_block_figure(scenario: Scenario, title: str, model: str = "spec") -> Figure:
    """One step line per order over the ops (x: 0 is the start, k is after op k-1); needs matplotlib."""
    figure_type, integer_ticks = _matplotlib()

    series = free_block_series(scenario, model)
    figure = figure_type(figsize=(8, 4.5))
    axes = figure.add_subplot()
    steps = list(range(len(next(iter(series.values())))))
    for order, counts in series.items():
        axes.step(
            steps, counts, where="post", marker="os^Dvp<>h*"[order % 10], label=f"order {order} ({4 << order} KiB)"
        )
    axes.yaxis.set_major_locator(integer_ticks(integer=True))
    axes.set_xlabel("step (0: start, k: after op k-1)")
    axes.set_ylabel("free blocks")
    axes.set_title(f"{title}: free blocks per order ({model})")
    axes.set_xticks(steps)
    axes.legend(loc="upper right", fontsize="small")
    return figure


FORMATS = ("png", "svg", "pdf")


def write_plot(scenario: Scenario, title: str, path: Path, model: str = "spec", force: bool = False) -> str:
    """Save the figure to ``path`` (format from the suffix: png, svg, pdf); the note to print.

    An existing file is replaced only with ``force`` (see :mod:`mmcheck.output`).
    """
    fmt = output.output_format(path, FORMATS)
    output.check_writable(path, force)
    if is_kernel(scenario):
        if model != "spec":
            raise InvalidArgument("--model: a kernel scenario's plot shows the spec's state (--model spec)")
        figure = kernel_figure(scenario, title)
    else:
        figure = free_block_figure(scenario, title, model)
    output.write_file(path, lambda temporary: figure.savefig(temporary, format=fmt))
    return f"wrote {path}"
