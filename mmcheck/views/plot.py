"""A plot of a buddy scenario: how many free blocks each order has, at the start and after every op.

The numbers are the spec's (:func:`mmcheck.views.buddyview.buddy_json`), the same
ones ``mmcheck buddy`` prints as ``/proc/buddyinfo`` lines.  Drawing needs
matplotlib, an optional extra (``pip install -e .[plot]``); without it
:class:`MissingMatplotlib` says so and the command exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from lang.errors import MMCheckError
from lang.scenario import Scenario
from mmcheck import output
from mmcheck.views.buddyview import BUDDY_OPS, buddy_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class MissingMatplotlib(MMCheckError):
    """The plot needs matplotlib, which is not installed."""


def free_block_series(scenario: Scenario, model: str = "spec") -> dict[int, list[int]]:
    """Free blocks of each order (``order -> counts``): index 0 is the start, index k the state after op k-1."""
    if not any(isinstance(op, BUDDY_OPS) for op in scenario.ops):
        raise MMCheckError("plot draws a buddy scenario: it needs alloc_pages / free_pages ops")
    run = buddy_json(scenario, model)
    steps = cast(list[dict[str, object]], run["steps"])
    states = [cast(list[list[int]], run["start"]), *(cast(list[list[int]], step["free_lists"]) for step in steps)]
    return {order: [len(lists[order]) for lists in states] for order in range(cast(int, run["max_order"]) + 1)}


def free_block_figure(scenario: Scenario, title: str, model: str = "spec") -> Figure:
    """One step line per order over the ops (x: 0 is the start, k is after op k-1); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise MissingMatplotlib(
            "mmcheck plot needs matplotlib, which is not installed: pip install -e '.[plot]'"
        ) from exc
    series = free_block_series(scenario, model)
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    steps = list(range(len(next(iter(series.values())))))
    for order, counts in series.items():
        axes.step(
            steps, counts, where="post", marker="os^Dvp<>h*"[order % 10], label=f"order {order} ({4 << order} KiB)"
        )
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
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
    figure = free_block_figure(scenario, title, model)
    output.write_file(path, lambda temporary: figure.savefig(temporary, format=fmt))
    return f"wrote {path}"
