"""In CI a skip for a missing dependency fails the run; on a developer's machine it stays a skip with its reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent
SKIPPING = """
import pytest
from dependencies import import_or_skip, requires, skip_without

@requires("graphviz", "dot is not on PATH")
def test_marked():
    pass

def test_imperative():
    skip_without("redis-server", "not on PATH")

def test_import():
    import_or_skip("no_such_module_anywhere", "pip install it")

@pytest.mark.skip(reason="not a dependency")
def test_plain_skip():
    pass

@requires("gcc", None)
def test_available():
    pass
"""
EMPTY = """
import pytest

@pytest.mark.parametrize("case", [])
def test_empty(case):
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    for name in ("conftest.py", "dependencies.py"):
        shutil.copy(HERE / name, pytester.path / name)
    pytester.makepyfile(test_skipping=SKIPPING, test_empty=EMPTY)
    pytester.makeini("[pytest]\nempty_parameter_set_mark = fail_at_collect\n")
    return pytester


def test_missing_dependencies_fail_in_ci(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "test_skipping.py")
    result.assert_outcomes(errors=1, failed=2, skipped=1, passed=1)  # a skip mark acts in setup: an error
    result.stdout.fnmatch_lines(["*missing dependency graphviz: dot is not on PATH*", "*CI installs every dependency*"])


def test_missing_dependencies_skip_elsewhere(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "test_skipping.py")
    result.assert_outcomes(skipped=4, passed=1)
    result.stdout.fnmatch_lines(["*missing dependency redis-server: not on PATH*"])


def test_a_parametrised_test_without_cases_is_an_error(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "test_empty.py")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*Empty parameter set*"])
