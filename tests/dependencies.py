"""Skips for a missing dependency, in one recognizable form: ``missing dependency <tool>: <why>``.

On a developer's machine such a test skips and says why.  In CI (the ``CI``
environment variable, set by ``.ci/run``, which installs every dependency)
tests/conftest.py turns each of these skips into a failure.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NoReturn

import pytest

PREFIX = "missing dependency "


def reason_for(tool: str, why: str) -> str:
    return f"{PREFIX}{tool}: {why}"


def is_missing_dependency(reason: str) -> bool:
    return reason.removeprefix("Skipped: ").startswith(PREFIX)


def requires(tool: str, why: str | None) -> pytest.MarkDecorator:
    """Skip the test when ``why`` (the reason ``tool`` is unavailable) is not None."""
    return pytest.mark.skipif(why is not None, reason=reason_for(tool, why or ""))


def skip_without(tool: str, why: str) -> NoReturn:
    """Skip the running test: ``tool`` is unavailable for the reason ``why``."""
    pytest.skip(reason_for(tool, why))


def import_or_skip(module: str, why: str) -> ModuleType:
    """``module``, or skip the running test saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        skip_without(module, why)
