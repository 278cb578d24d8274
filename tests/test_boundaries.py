"""The floors hold: no package imports one above it, no modules import each other in a circle, the picture is current.

What each package may import is listed once, in :data:`mmcheck.architecture.FLOORS`:
``lang`` nothing of the project; ``spec`` and ``impl`` only ``lang`` (so neither
imports the other, which would make the refinement check vacuous); the
harness (``properties``) below the proofs and explorers (``proofs``) and the
oracles, the command line above them all.
"""

from __future__ import annotations

from pathlib import Path

from mmcheck import architecture
from mmcheck.architecture import FLOORS, ROOT, circles, floor_violations, module_graph


def test_no_package_imports_one_above_it() -> None:
    """Every import, in functions too, goes to the package's own floor or one it may use."""
    assert [] == floor_violations(module_graph())


def test_spec_and_impl_are_written_apart() -> None:
    """The hard rule, stated on its own: spec/ and impl/ share nothing but the ground floor."""
    assert FLOORS["spec"] == FLOORS["impl"] == frozenset({"lang"})
    assert FLOORS["lang"] == frozenset()


def test_no_import_circle() -> None:
    """No module imports another that (through any chain of module-level imports) imports it back."""
    assert [] == circles(module_graph(module_level_only=True))


def test_every_package_has_a_floor() -> None:
    """A new top-level package must be given its place before it can be imported from."""
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(FLOORS)


def test_the_picture_matches_the_code() -> None:
    """docs/architecture.dot is what ``nox -s architecture`` writes from today's imports."""
    assert (ROOT / "docs" / "architecture.dot").read_text() == architecture.dot()


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in FLOORS:
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


def test_the_checks_detect_a_violation_and_a_circle(tmp_path: Path) -> None:
    """A planted upward import and a planted circle are both reported; TYPE_CHECKING imports are not."""
    root = _tree(
        tmp_path,
        {
            "spec/__init__.py": "",
            "spec/a.py": "from impl.b import X\n",
            "impl/__init__.py": "",
            "impl/b.py": "import impl.c\n",
            "impl/c.py": "from impl import b\n",
            "lang/__init__.py": "",
            "lang/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from spec import a\n",
        },
    )
    graph = module_graph(root, module_level_only=True)
    assert ["spec.a imports impl.b"] == floor_violations(graph)
    assert [["impl.b", "impl.c"]] == circles(graph)


def test_readme_and_architecture_name_every_package() -> None:
    """The README's layout table and docs/architecture.md each describe every package of the floors."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Scenarios")]
    architecture_md = (ROOT / "docs" / "architecture.md").read_text()
    for package in FLOORS:
        assert f"| `{package}/` |" in layout, package
        assert f"**`{package}/`**" in architecture_md, package
