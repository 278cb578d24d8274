"""The spec and the implementation are written apart: neither imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "spec": {"impl", "properties", "proofs"},
    "impl": {"spec", "properties", "proofs"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_other_side(package: str) -> None:
    """No module of spec/ imports impl/ (or the harness), and the reverse."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_mmcheck_imports_in_spec_and_impl_are_only_errors() -> None:
    """spec/ and impl/ may share the error hierarchy, nothing else of the front door."""
    for package in ("spec", "impl"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmcheck"):
                    assert node.module == "lang.errors", f"{path}: imports {node.module}"


def test_boundary_check_detects_a_violation(tmp_path: Path) -> None:
    """The detector itself finds an import of the other side."""
    module = tmp_path / "m.py"
    module.write_text("from impl.paging.mmu import Mmu\nimport spec.paging.walk\n")
    assert imported_packages(module) == {"impl", "spec"}
