"""mutmut's configuration covers all of impl/: every module is mutated (the packages' ``__init__`` files hold only
their docstrings), and every selected test exists."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def test_every_impl_module_is_mutated() -> None:
    modules = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "impl").rglob("*.py")
        if len(ast.parse(path.read_text()).body) > (path.name == "__init__.py")
    }
    assert modules == set(CONFIG["only_mutate"])


def test_every_selected_test_file_exists() -> None:
    for selected in CONFIG["pytest_add_cli_args_test_selection"]:
        assert (ROOT / selected.split("::")[0]).is_file(), selected
