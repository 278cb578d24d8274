"""Hypothesis profiles, registered in one place and loaded explicitly.

Hypothesis loads its own ``ci`` profile when the ``CI`` variable is set, and
a profile registered without ``parent=`` copies whatever is active at the
time.  So every profile here names its parent, and :func:`load` selects one
by name (``MMCHECK_PROFILE``, default ``dev``) after all are registered: a
run behaves the same locally and in CI.

- ``dev``: quick, randomized, with the local example database.
- ``ci``: derandomized (same examples every run), no database, budgeted for
  ``nox -s verify`` on 2 cores.
- ``thorough``: randomized, many more examples and longer runs, for hunting.
- ``fuzz``: ``thorough`` stopping at the first bug and without Hypothesis's
  shrink phase, for ``nox -s fuzz`` (:mod:`proofs.fuzz`): a time-boxed
  run must not spend its minutes shrinking; the saved scenario is minimised
  by replay instead.  The run sets the database and the batch size.
- ``mutmut``: derandomized, no database, a small budget: mutation testing
  runs the fast refinement tests once per mutant and its verdicts must be
  reproducible.  Chosen by default when mutmut's ``MUTANT_UNDER_TEST`` is set.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILES = ("dev", "ci", "thorough", "fuzz", "mutmut")
_BASE = settings.get_profile("default")
_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]

settings.register_profile(
    "dev", parent=_BASE, max_examples=50, stateful_step_count=30, deadline=None, suppress_health_check=_QUIET
)
settings.register_profile(
    "ci",
    parent=_BASE,
    max_examples=200,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=_QUIET,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "thorough",
    parent=_BASE,
    max_examples=5000,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=_QUIET,
)

settings.register_profile(
    "fuzz",
    parent=settings.get_profile("thorough"),
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)

settings.register_profile(
    "mutmut",
    parent=_BASE,
    max_examples=60,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=_QUIET,
)


def load(name: str | None = None) -> str:
    """Load profile ``name`` (or ``$MMCHECK_PROFILE``, or ``mutmut`` under mutmut, or ``dev``) and return its name."""
    default = "mutmut" if "MUTANT_UNDER_TEST" in os.environ else "dev"
    chosen = name or os.environ.get("MMCHECK_PROFILE", default)
    if chosen not in PROFILES:
        raise ValueError(f"unknown Hypothesis profile {chosen!r}: allowed {', '.join(PROFILES)}")
    settings.load_profile(chosen)
    return chosen


def ci_settings(shrink: bool = True) -> settings:
    """The ``ci`` profile stopping at the first bug, as ``verify`` runs machines; optionally without shrinking.

    Without Hypothesis's shrink phase the saved program is left to the scenario
    minimiser, which brings it to a 1-minimal one by replay in milliseconds.
    The examples tried are those ``verify`` tries, so a mutant is caught under
    these settings exactly when ``verify`` would catch it.
    """
    base = settings(settings.get_profile("ci"), report_multiple_bugs=False)
    if shrink:
        return base
    return settings(base, phases=[p for p in base.phases if p is not Phase.shrink])
