"""The benchmark report: rows, scaling series and targets; printed as one table, saved as JSON and a plot.

A row is one measure taken in this run, of one of three kinds:

- ``impl-vs-spec``: the same workload on the implementation and on the spec;
  ``ratio`` is the implementation's advantage (impl/spec for a rate, spec/impl
  for a time), so above 1 means the implementation is faster;
- ``impl-vs-baseline``: a count of the implementation's design against a
  reference design (the shootdown against a broadcast); ``ratio`` is how many
  times fewer the implementation needs;
- ``impl-vs-native``: a rate of the implementation against the real system
  it models running the same workload (the ptmalloc model against glibc);
  ``ratio`` is the implementation's fraction of the real rate;
- ``harness``: a rate of the checking harness itself (lockstep machines, the
  explorer), which runs both sides at once, so it has one value.

A scaling series gives the per-unit cost at three sizes; its growth factor per
step is the cost at one size over the cost at the one before (1.0: flat).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rich.table import Table
from rich.text import Text

from mmcheck.views import console

Kind = Literal["impl-vs-spec", "impl-vs-baseline", "impl-vs-native", "harness"]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for one row or series: ``wanted`` in words, the ``value`` judged, and whether it was met."""

    wanted: str
    value: float
    met: bool

    def text(self) -> str:
        return f"{self.wanted}: {'met' if self.met else 'MISSED'}"


@dataclass(frozen=True, slots=True)
class Row:
    """One measure of this run (see the module docstring for the kinds)."""

    family: str
    measure: str
    unit: str
    kind: Kind
    impl: float | None = None
    spec: float | None = None
    baseline: float | None = None
    value: float | None = None
    ratio: float | None = None
    target: Target | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"family": self.family, "measure": self.measure, "unit": self.unit, "kind": self.kind}
        for name in ("impl", "spec", "baseline", "value", "ratio"):
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        if self.target is not None:
            record["target"] = {"wanted": self.target.wanted, "value": self.target.value, "met": self.target.met}
        if self.note:
            record["note"] = self.note
        return record


def compared(family: str, measure: str, unit: str, impl: float, spec: float, *, rate: bool, note: str = "") -> Row:
    """An ``impl-vs-spec`` row; ``rate`` says whether higher is better (a rate) or lower (a time)."""
    ratio = impl / spec if rate else spec / impl
    return Row(family, measure, unit, "impl-vs-spec", impl=impl, spec=spec, ratio=ratio, note=note)


def against_baseline(family: str, measure: str, unit: str, impl: float, baseline: float, note: str = "") -> Row:
    """An ``impl-vs-baseline`` row of counts (fewer is better); no ratio when either count is zero."""
    ratio = baseline / impl if impl and baseline else None
    return Row(family, measure, unit, "impl-vs-baseline", impl=impl, baseline=baseline, ratio=ratio, note=note)


def at_least(row: Row, judged: Literal["ratio", "value"], least: float, wanted: str) -> Row:
    """``row`` with a target: its ``judged`` figure must be at least ``least``."""
    got = getattr(row, judged)
    return replace(row, target=Target(wanted, got, got >= least))


@dataclass(frozen=True, slots=True)
class Scaling:
    """Per-unit cost at increasing sizes, for the implementation and the spec (which may run smaller sizes)."""

    family: str
    cost: str
    size_unit: str
    sizes: tuple[int, ...]
    impl: tuple[float, ...]
    spec_sizes: tuple[int, ...]
    spec: tuple[float, ...]
    target: Target | None = None

    @property
    def growth(self) -> tuple[float, ...]:
        """The implementation's cost at each size over its cost at the size before."""
        return _growth(self.impl)

    @property
    def spec_growth(self) -> tuple[float, ...]:
        return _growth(self.spec)

    def spread(self) -> float:
        """The implementation's largest cost over its least, across the sizes."""
        return max(self.impl) / min(self.impl)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "family": self.family,
            "cost": self.cost,
            "size_unit": self.size_unit,
            "sizes": list(self.sizes),
            "impl": list(self.impl),
            "growth": list(self.growth),
            "spec_sizes": list(self.spec_sizes),
            "spec": list(self.spec),
            "spec_growth": list(self.spec_growth),
        }
        if self.target is not None:
            record["target"] = {"wanted": self.target.wanted, "value": self.target.value, "met": self.target.met}
        return record


def _growth(costs: Sequence[float]) -> tuple[float, ...]:
    return tuple(later / earlier for earlier, later in itertools.pairwise(costs))


@dataclass
class Report:
    """Everything one run measured, with what it ran on."""

    meta: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    scalings: list[Scaling] = field(default_factory=list)

    def targets(self) -> list[Target]:
        return [t for t in [*(r.target for r in self.rows), *(s.target for s in self.scalings)] if t is not None]

    def to_json(self) -> dict[str, Any]:
        targets = self.targets()
        return {
            "meta": self.meta,
            "rows": [row.to_json() for row in self.rows],
            "scaling": [s.to_json() for s in self.scalings],
            "targets": {"met": sum(t.met for t in targets), "missed": sum(not t.met for t in targets)},
        }


def figure(value: float | None, unit: str = "") -> str:
    """A number as the table shows it: thousands separated when large, three significant digits when small."""
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def ratio_text(value: float | None) -> str:
    """``1,024x``, ``17.4x``, ``0.45x``: three significant digits or more."""
    if value is None:
        return ""
    return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def sizes_text(sizes: Sequence[int]) -> str:
    return " / ".join(f"2^{size.bit_length() - 1}" if size & (size - 1) == 0 else str(size) for size in sizes)


HEADER = ("family", "measure", "impl", "spec / baseline", "impl advantage", "target")


def cells(report: Report) -> list[tuple[str, ...]]:
    """The table's rows as text, the same for the Rich and the plain form."""
    lines: list[tuple[str, ...]] = []
    for row in report.rows:
        impl = figure(row.impl if row.kind != "harness" else row.value, row.unit)
        other = figure(row.spec, row.unit) if row.kind == "impl-vs-spec" else figure(row.baseline, row.unit)
        if row.kind == "impl-vs-baseline" and other:
            other += " (broadcast)"
        if row.kind == "impl-vs-native" and other:
            other += " (native)"
        measure = f"{row.measure} ({row.note})" if row.note else row.measure
        target = row.target.text() if row.target else ""
        lines.append((row.family, measure, impl, other, ratio_text(row.ratio), target))
    for s in report.scalings:
        measure = f"{s.cost}: growth per step, impl at {sizes_text(s.sizes)}"
        spec = ", ".join(f"x{g:.2f}" for g in s.spec_growth)
        spec = f"{spec} (at {sizes_text(s.spec_sizes)})" if s.spec else ""
        growth = ", ".join(f"x{g:.2f}" for g in s.growth)
        lines.append((f"scaling: {s.family}", measure, growth, spec, "", s.target.text() if s.target else ""))
    return lines


def rich_table(report: Report, title: str) -> Table:
    table = Table(title=title)
    for name in HEADER:
        table.add_column(name, justify="right" if name in ("impl", "spec / baseline", "impl advantage") else "left")
    for line in cells(report):
        style = "red" if line[-1].endswith("MISSED") else ("green" if line[-1].endswith("met") else "")
        table.add_row(*(Text(cell) for cell in line[:-1]), Text(line[-1], style=style))
    return table


def plain_lines(report: Report, title: str) -> list[str]:
    """The table as aligned plain text: a title, a header, one line per row."""
    rows = [HEADER, *cells(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    right = {2, 3, 4}
    body = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    return [title, *body]


def print_report(report: Report, title: str) -> None:
    """One table: Rich on a terminal, plain text otherwise."""
    if console.is_terminal():
        console.print_table(rich_table(report, title))
    else:
        print("\n".join(plain_lines(report, title)))


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=1) + "\n")


def write_plot(report: Report, path: Path) -> bool:
    """One panel per scaling family: per-unit cost against size, log-log, impl and spec; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(5 * len(report.scalings), 4.2), layout="constrained")
    for axes, s in zip(fig.subplots(1, len(report.scalings), squeeze=False)[0], report.scalings, strict=True):
        axes.plot(s.sizes, s.impl, marker="o", label="impl")
        if s.spec:
            axes.plot(s.spec_sizes, s.spec, marker="s", label="spec")
        axes.set_xscale("log", base=2)
        ticks = sorted({*s.sizes, *s.spec_sizes})
        axes.set_xticks(ticks, [sizes_text([size]) for size in ticks])
        axes.set_yscale("log")
        axes.set_xlabel(s.size_unit)
        axes.set_ylabel(s.cost)
        axes.set_title(s.family)
        axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True
