"""The branch-coverage gate of ``nox -s verify -- --coverage``: impl/'s branches reached by verify's checks alone.

``coverage run -m proofs.verify`` (configured in ``[tool.coverage.run]``)
records every branch verify's checks take in ``impl/`` and ``spec/``; this
module reads coverage.py's JSON report of that run and judges it:

- the branch coverage of each module and of ``impl/`` as a whole (branches
  only: a branch is one arc out of a line with two or more);
- every branch of ``impl/`` not taken must be listed in
  :data:`LISTING` (``docs/uncovered-branches.toml``) with the reason it is
  not (unreachable by construction, a defensive check of bad input that
  ``tests/`` covers, ...); a branch missing from the listing fails the gate,
  and so does a listed branch that verify now takes (the listing stays exact);
- ``impl/`` below :data:`TARGET` percent fails the gate;
- so does a function of ``impl/`` the benchmarks time (:data:`BENCH_PATHS`,
  ``docs/bench-paths.txt``, written by ``python -m benchmarks.paths``) of
  which verify's checks ran no line: a speed figure is worth something only
  for a path a refinement check drives.

A branch is named by where it is, not by line numbers, so the listing
survives edits elsewhere in the file: the module, the enclosing function's
qualified name, the source text of the line the branch leaves and of the line
it goes to (``exit`` when it leaves the function), and, when that text repeats
within the function, ``#2``, ``#3`` in source order.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TARGET = 97.0
LISTING = Path("docs/uncovered-branches.toml")
BENCH_PATHS = Path("docs/bench-paths.txt")
GATED = "impl/"


@dataclass(frozen=True, slots=True)
class ModuleCoverage:
    """One module's branches: how many, how many verify took, and the names of those it did not."""

    path: str
    branches: int
    covered: int
    missing: tuple[str, ...]

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.branches if self.branches else 100.0


def enclosing_functions(source: str) -> dict[int, str]:
    """Each line of ``source`` that lies in a function, mapped to that function's qualified name (innermost)."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                        owner[line] = name
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return owner


def branch_names(path: str, source: str, arcs: Sequence[tuple[int, int]]) -> list[str]:
    """Stable names of the branches ``arcs`` (coverage.py's (from line, to line); a negative end leaves the
    function) of the module at ``path`` with ``source``."""
    lines = source.splitlines()
    owner = enclosing_functions(source)
    seen: Counter[str] = Counter()
    names = []
    for start, end in sorted(arcs):
        where = owner.get(start, "<module>")
        leaving = lines[start - 1].strip()
        going = "exit" if end < 0 else lines[end - 1].strip()
        name = f"{path}::{where}: {leaving} -> {going}"
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return names


def modules(report: Mapping[str, object], root: Path) -> list[ModuleCoverage]:
    """Every module of coverage.py's JSON ``report`` (``coverage json``), with its missed branches named."""
    files = report["files"]
    assert isinstance(files, dict)
    result = []
    for path, data in sorted(files.items()):
        summary = data["summary"]
        source = (root / path).read_text()
        missing = branch_names(path, source, [tuple(arc) for arc in data.get("missing_branches", [])])
        result.append(ModuleCoverage(path, summary["num_branches"], summary["covered_branches"], tuple(missing)))
    return result


def reached_functions(report: Mapping[str, object]) -> set[str]:
    """Every function of the JSON ``report`` with a line run, as ``path::qualified name`` (coverage.py's names)."""
    files = report["files"]
    assert isinstance(files, dict)
    return {
        f"{path}::{name}"
        for path, data in files.items()
        for name, function in data.get("functions", {}).items()
        if function.get("executed_lines")
    }


def load_bench_paths(path: Path) -> set[str]:
    """The functions the benchmarks call (``docs/bench-paths.txt``: one a line, ``#`` comments)."""
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def load_listing(path: Path) -> dict[str, str]:
    """The listed branches, each with its reason; an entry without a reason is an error."""
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("branch", [])
    listing = {}
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: the branch {entry.get('name')!r} is listed without a reason")
        listing[str(entry["name"])] = str(entry["reason"])
    return listing


def judge(
    found: Sequence[ModuleCoverage],
    listing: Mapping[str, str],
    benched: set[str] | None = None,
    reached: set[str] | None = None,
) -> tuple[list[str], bool]:
    """The gate's lines and its verdict (True: passed); ``benched`` functions must be among the ``reached``."""
    gated = [m for m in found if m.path.startswith(GATED)]
    branches = sum(m.branches for m in gated)
    covered = sum(m.covered for m in gated)
    percent = 100.0 * covered / branches if branches else 100.0
    lines = [f"  {m.path:34} {m.covered:5} of {m.branches:5} branches {m.percent:6.1f}%" for m in found]
    missing = {name for m in gated for name in m.missing}
    unlisted = sorted(missing - set(listing))
    stale = sorted(set(listing) - missing)
    lines += [f"not taken by verify and not listed in {LISTING}: {name}" for name in unlisted]
    lines += [f"listed in {LISTING} but taken by verify now (remove it): {name}" for name in stale]
    unchecked = sorted((benched or set()) - (reached or set()))
    lines += [f"timed by the benchmarks ({BENCH_PATHS}) but run by no verify check: {name}" for name in unchecked]
    ok = percent >= TARGET and not unlisted and not stale and not unchecked
    verdict = "passed" if ok else "FAILED"
    lines.append(
        f"coverage gate {verdict}: {GATED} {covered} of {branches} branches taken by verify ({percent:.1f}%, "
        f"target {TARGET:.0f}%), {len(missing)} not taken ({len(missing) - len(unlisted)} listed with a reason); "
        f"{len(benched or ()) - len(unchecked)} of {len(benched or ())} benchmarked functions run by verify"
    )
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proofs.coverage_gate", description=__doc__.split("\n\n")[0])
    p.add_argument("report", type=Path, help="coverage.py's JSON report of a `coverage run -m proofs.verify`")
    p.add_argument("--listing", type=Path, default=LISTING, help=f"the listed branches (default {LISTING})")
    p.add_argument(
        "--bench-paths", type=Path, default=BENCH_PATHS, help=f"the benchmarked functions (default {BENCH_PATHS})"
    )
    args = p.parse_args(argv)
    try:
        report = json.loads(args.report.read_text())
        listing = load_listing(args.listing)
        benched = load_bench_paths(args.bench_paths)
    except (OSError, ValueError) as exc:
        print(f"coverage gate: {exc}", file=sys.stderr)
        return 2
    lines, ok = judge(modules(report, Path.cwd()), listing, benched, reached_functions(report))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
