"""pytest setup: load the project's Hypothesis profile explicitly (see properties/profiles.py).

In CI (``CI`` set, as ``.ci/run`` does) a test skipped because a dependency
is missing (:mod:`dependencies`) fails instead: CI installs every dependency,
so such a skip means a check silently did not run.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from dependencies import is_missing_dependency

from properties import profiles

profiles.load()


def skip_reason(report: pytest.TestReport) -> str | None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    assert isinstance(report, pytest.TestReport)
    reason = skip_reason(report)
    if os.environ.get("CI") and reason is not None and is_missing_dependency(reason):
        report.outcome = "failed"
        report.longrepr = f"{reason}\nCI installs every dependency (.ci/run): a skip for a missing one fails the run"
    return report
