"""The floors of the project and its import graph, read from the code.

The packages stand on each other in floors: a package may import the ones
below it and never one above it.  :data:`FLOORS` lists, once, what each may
import; ``tests/test_boundaries.py`` checks every module against it and that
no two modules import each other through a circle, and ``nox -s
architecture`` draws the graph (``docs/architecture.dot``, rendered to SVG by
Graphviz) from the imports as they are, so the picture cannot drift from the
code.

The imports are read with :mod:`ast`, never executed: absolute imports at any
depth of a module (in functions too), except those under ``if
TYPE_CHECKING:``, which exist for the type checker only.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each package may import, lowest floor first.
FLOORS: dict[str, frozenset[str]] = {
    "lang": frozenset(),
    "spec": frozenset({"lang"}),
    "impl": frozenset({"lang"}),
    "properties": frozenset({"lang", "spec", "impl"}),
    "proofs": frozenset({"lang", "spec", "impl", "properties"}),
    "oracles": frozenset({"lang", "spec", "impl", "properties"}),
    "mmcheck": frozenset({"lang", "spec", "impl", "properties", "proofs", "oracles"}),
    "benchmarks": frozenset({"lang", "spec", "impl", "properties", "proofs", "oracles", "mmcheck"}),
}
PACKAGES = tuple(FLOORS)


def module_name(path: Path, root: Path = ROOT) -> str:
    """``spec/mm/fault.py`` -> ``spec.mm.fault``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of import nodes inside ``if TYPE_CHECKING:`` blocks."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            hidden.update(id(inner) for inner in ast.walk(node))
    return hidden


def imports(path: Path, module_level_only: bool = False) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` gives ``a.b.c`` when that is a module)."""
    tree = ast.parse(path.read_text())
    hidden = _type_checking_only(tree)
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in FLOORS}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {module_name(path, root): path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}


def module_graph(root: Path = ROOT, module_level_only: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports (names that are not modules, such as classes, dropped)."""
    known = modules(root)
    return {
        name: {m for m in imports(path, module_level_only) if m in known and m != name} for name, path in known.items()
    }


def folder_graph(graph: Mapping[str, set[str]]) -> dict[str, dict[str, int]]:
    """Package -> package -> how many module pairs import across."""
    edges: dict[str, dict[str, int]] = {package: {} for package in PACKAGES}
    for source, targets in graph.items():
        for target in targets:
            a, b = source.split(".")[0], target.split(".")[0]
            if a != b:
                edges[a][b] = edges[a].get(b, 0) + 1
    return edges


def floor_violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Every import of a package that :data:`FLOORS` does not allow."""
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        if target.split(".")[0] != source.split(".")[0] and target.split(".")[0] not in FLOORS[source.split(".")[0]]
    )


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _dot_lines(edges: Mapping[str, Mapping[str, int]]) -> Iterator[str]:
    yield "digraph floors {"
    yield '  rankdir=BT; node [shape=box, fontname="Helvetica"]; edge [color="#555555"];'
    for package in PACKAGES:
        yield f'  {package} [label="{package}/"];'
    yield "  { rank=same; spec; impl; }"
    yield "  { rank=same; proofs; oracles; }"
    for source in PACKAGES:
        for target, count in sorted(edges[source].items()):
            yield f'  {source} -> {target} [label="{count}"];'
    yield "}"


def dot(root: Path = ROOT) -> str:
    """The package graph in Graphviz's language: an edge per importing pair, labelled with its module pairs."""
    return "\n".join(_dot_lines(folder_graph(module_graph(root)))) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m mmcheck.architecture [--dot FILE]``: check the floors; write the graph."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", type=Path, help="write the package graph here (Graphviz's language)")
    args = parser.parse_args(argv)
    graph = module_graph()
    problems = floor_violations(graph) + [" -> ".join(c) for c in circles(module_graph(module_level_only=True))]
    for problem in problems:
        print(f"architecture: {problem}")
    if args.dot:
        args.dot.write_text(dot())
        print(f"architecture: wrote {args.dot}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
