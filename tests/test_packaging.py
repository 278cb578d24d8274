"""What ``pip install -e .`` brings is all the tool needs; the exact pins of ``constraints.txt`` are what nox installs.

An import of a third-party package by the code of the floors, at load time
or inside a function, must come from a ``[project]`` dependency unless it is
under ``TYPE_CHECKING`` or guarded by ``except ImportError`` (an optional
extra, reported as such): otherwise a plain install fails with
ModuleNotFoundError when the command reaches it.  The fuzz runner is the one
exception: it runs only as ``nox -s fuzz``, with the ``check`` and ``fuzz``
extras.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FLOORS = ("lang", "spec", "impl", "properties", "proofs", "oracles", "mmcheck")
NOX_ONLY = {"proofs.fuzz", "proofs.fuzz_session"}
CORE = ("hypothesis", "crosshair-tool", "z3-solver")


def requirements(entries: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(entry) for entry in entries)
    return {canonicalize_name(r.name): r for r in parsed}


def pins() -> dict[str, str]:
    """``constraints.txt`` as {distribution: exact version}."""
    found: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            found[canonicalize_name(name)] = version
    return found


def guarded(tree: ast.Module) -> set[int]:
    """Ids of the import nodes that need not succeed: under TYPE_CHECKING, in try/except ImportError."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        optional = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        optional |= isinstance(node, ast.Try) and any(
            h.type is not None and re.search(r"\b(ImportError|ModuleNotFoundError)\b", ast.unparse(h.type))
            for h in node.handlers
        )
        if optional:
            skipped.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    return skipped


def third_party_imports() -> Iterator[tuple[str, str]]:
    """(module of the floors, top-level package it imports) for every unguarded non-project, non-stdlib import."""
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text())
            skipped = guarded(tree)
            for node in ast.walk(tree):
                if id(node) in skipped:
                    continue
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in FLOORS and top not in sys.stdlib_module_names and top != "__future__":
                        yield module, top


def test_the_harness_tools_are_project_dependencies_with_ranges() -> None:
    """Hypothesis, CrossHair and Z3 come with ``pip install -e .``, as version ranges, never exact pins."""
    dependencies = requirements(PYPROJECT["project"]["dependencies"])
    for name in CORE:
        assert name in dependencies, f"{name} must be a [project] dependency"
        specifier = dependencies[name].specifier
        assert specifier and not any(s.operator == "==" for s in specifier), f"{name}: a range, not {specifier}"


def test_every_unguarded_import_comes_with_a_plain_install() -> None:
    """Each third-party package the floors import at load time is installed by ``[project] dependencies``."""
    dependencies = set(requirements(PYPROJECT["project"]["dependencies"]))
    distributions = importlib.metadata.packages_distributions()
    missing = sorted(
        f"{module} imports {top} ({', '.join(distributions.get(top, ['not installed']))})"
        for module, top in third_party_imports()
        if module not in NOX_ONLY and not {canonicalize_name(d) for d in distributions.get(top, [top])} & dependencies
    )
    assert [] == missing


def test_every_nox_session_installs_with_the_constraints() -> None:
    """Each ``session.install`` in noxfile.py starts with ``-c constraints.txt``."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "install"
    ]
    assert calls
    for call in calls:
        first = [constants.get(a.id) if isinstance(a, ast.Name) else getattr(a, "value", None) for a in call.args[:2]]
        assert ["-c", "constraints.txt"] == first, f"noxfile.py line {call.lineno}: {ast.unparse(call)}"


def declared() -> dict[str, list[Requirement]]:
    """Every requirement of pyproject.toml, core and extras, by distribution."""
    entries = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        entries += extra
    found: dict[str, list[Requirement]] = {}
    for entry in entries:
        requirement = Requirement(entry)
        found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


@pytest.mark.parametrize("name", sorted(declared()))
def test_each_requirement_has_a_pin_inside_its_range(name: str) -> None:
    """constraints.txt pins every declared distribution at a version its pyproject ranges allow."""
    pinned = pins()
    assert name in pinned, f"{name} is declared in pyproject.toml but not pinned in constraints.txt"
    for requirement in declared()[name]:
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]}: {requirement}"


def test_constraints_pin_nothing_undeclared() -> None:
    """A pin with no requirement behind it is stale."""
    assert [] == sorted(set(pins()) - set(declared()))
