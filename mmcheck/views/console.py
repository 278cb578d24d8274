"""Terminal output: Rich tables and colours on a terminal, the plain text everywhere else.

Commands print plain lines by default; when standard output is a terminal
they may print the same content as a Rich table instead.  Piped output, files
and tests get the plain form, so it stays stable and greppable.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from proofs.explore import Stats


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (standard output by default) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    return stream.isatty()


def print_table(table: Table, stream: TextIO | None = None) -> None:
    """Render ``table`` to ``stream`` (standard output by default) with Rich."""
    Console(file=sys.stdout if stream is None else stream).print(table)


def blocks_text(pfns: Sequence[int]) -> str:
    """``0x2 0x6``: a free list's pfns."""
    return " ".join(f"{pfn:#x}" for pfn in pfns)


def buddy_table(run: Mapping[str, object]) -> Table:
    """The run :func:`~mmcheck.views.buddyview.buddy_json` describes, as a table: a row per op, a column per order."""
    start = run["start"]
    steps = run["steps"]
    assert isinstance(start, list) and isinstance(steps, list)
    table = Table(title=f"{run['frames']} frames, max_order {run['max_order']}, {run['model']} free lists (pfns)")
    table.add_column("#", justify="right")
    table.add_column("op")
    table.add_column("result")
    for order in range(len(start)):
        table.add_column(f"order {order}", style="green")
    table.add_row("", "start", "", *(blocks_text(pfns) for pfns in start))
    for index, step in enumerate(steps):
        op = {k: v for k, v in step["op"].items() if k != "op"}
        args = ", ".join(f"{k}={v}" for k, v in op.items())
        result = step.get("refused") or step["result"]
        style = "red" if "refused" in step or "error" in step["result"] else None
        # Text cells: results and messages hold brackets that Rich would read as markup.
        table.add_row(
            Text(str(index)),
            Text(f"{step['op']['op']}({args})"),
            Text(str(result), style=style or ""),
            *(Text(blocks_text(pfns)) for pfns in step["free_lists"]),
        )
    return table


def stats_table(title: str, stats: Mapping[str, object]) -> Table:
    """A two-column table of named figures."""
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for name, value in stats.items():
        table.add_row(name, str(value))
    return table


def explore_figures(stats: Stats) -> dict[str, object]:
    """The figures of an exploration, named for a table (the same as :meth:`Stats.summary`)."""
    return {
        "distinct states": stats.distinct,
        "explored": stats.explored,
        "transitions": stats.transitions,
        "depth": f"{stats.depth} ({stats.bound})",
        "states/s": f"{stats.rate:,.0f}",
        "time": f"{stats.seconds:.1f}s",
        "visited set": f"~{stats.visited_bytes / 2**20:.1f} MiB (getsizeof estimate)",
    }
