"""A progress display for long runs: Rich on a terminal, the plain lines (or nothing) elsewhere.

:class:`Meter` shows what is done (states, mutants), the rate, the time spent
and the time left in the budget when there is one.  On a terminal it is a
Rich progress bar that redraws itself in place; anywhere else it prints
nothing of its own, so piped output, files and tests keep the plain lines
the caller prints (:meth:`Meter.plain`) byte for byte.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    """``1,234 states/s``: items done per second since the start."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f} {self.unit}/s" if rate < 10 else f"{rate:,.0f} {self.unit}/s", style="cyan")


class BudgetColumn(ProgressColumn):
    """``52s left of 60s``: what remains of the time budget, or nothing without one."""

    def render(self, task: Task) -> Text:
        budget = task.fields.get("budget")
        if budget is None:
            return Text("")
        left = max(0.0, float(budget) - (task.elapsed or 0.0))
        return Text(f"{left:,.0f}s left of {float(budget):,.0f}s", style="yellow")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (standard output by default) is an interactive terminal."""
    return (sys.stdout if stream is None else stream).isatty()


class Meter:
    """Progress of one run: ``description``, items counted in ``unit``, out of ``total`` if known, within
    ``budget`` seconds if there is one.  ``console`` decides the branch: a terminal console (a Console with
    ``force_terminal``, or standard output on a terminal by default) draws a Rich display; otherwise the
    meter is silent and :meth:`plain` prints the caller's lines."""

    def __init__(
        self,
        description: str,
        unit: str,
        total: int | None = None,
        budget: float | None = None,
        console: Console | None = None,
    ) -> None:
        self.console = console if console is not None else Console(file=sys.stdout)
        self.live = self.console.is_terminal
        self.unit = unit
        self.start = time.perf_counter()
        self.progress: Progress | None = None
        if self.live:
            columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}")]
            if total is not None:
                columns += [BarColumn(), MofNCompleteColumn()]
            else:
                columns.append(TextColumn("{task.completed:,.0f} " + unit))
            columns += [RateColumn(unit), TimeElapsedColumn(), BudgetColumn(), TextColumn("{task.fields[note]}")]
            self.progress = Progress(*columns, console=self.console, transient=False)
            self.task = self.progress.add_task(description, total=total, budget=budget, note="")

    def __enter__(self) -> Meter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, done: float, note: str = "") -> None:
        """``done`` items so far (a count, not an increment), with a short ``note`` (depth, the last verdict)."""
        if self.progress is not None:
            self.progress.update(self.task, completed=done, note=note)

    def advance(self, note: str = "") -> None:
        """One more item done."""
        if self.progress is not None:
            self.progress.update(self.task, advance=1, note=note)

    def plain(self, line: str) -> None:
        """A line of the plain output: printed as it is off a terminal, above the display on one."""
        if self.progress is not None:
            self.progress.console.print(Text(line))
        else:
            print(line, flush=True)

    def quiet(self, line: str) -> None:
        """A line of the plain output that the live display replaces on a terminal (a periodic progress line)."""
        if self.progress is None:
            print(line, flush=True)
