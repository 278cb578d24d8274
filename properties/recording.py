"""Counterexamples as scenarios.

Every checker that drives operations records them here.  When a run fails,
the operations so far are written as a scenario file, so ``mmcheck replay``
reproduces the failure.  Hypothesis re-runs the shrunk example last, so the
file left behind after a machine fails holds the shortest sequence it found.

Files go to ``counterexamples/`` (or ``$MMCHECK_COUNTEREXAMPLES``), one per
checker name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lang.errors import MMCheckError
from lang.scenario import Config, Op, Result, Scenario, dump
from properties.drivers import DivergenceError, Lockstep

DEFAULT_FOLDER = "counterexamples"


def counterexample_folder() -> Path:
    """Where counterexample scenarios are written."""
    return Path(os.environ.get("MMCHECK_COUNTEREXAMPLES", DEFAULT_FOLDER))


def save_counterexample(name: str, config: Config, ops: list[Op], problem: str, **extra: Any) -> Path:
    """Write ``ops`` under ``config`` as ``<folder>/<name>.json`` with the problem described."""
    scenario = Scenario(config, tuple(ops), about=f"counterexample found by {name}: {problem}", extra=extra)
    return dump(scenario, counterexample_folder() / f"{name}.json")


class RecordingLockstep:
    """A :class:`Lockstep` that remembers its ops and saves them when a divergence is found."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.ops: list[Op] = []
        self.lockstep = Lockstep(config)

    def apply(self, op: Op) -> Result:
        """Run ``op`` on both sides; on divergence save the scenario and re-raise.

        Bad input that both sides refused alike changed nothing, so it is not
        recorded: a saved scenario replays without input errors.
        """
        self.ops.append(op)
        try:
            return self.lockstep.apply(op)
        except DivergenceError as exc:
            path = save_counterexample(self.name, self.config, self.ops, exc.divergence.describe())
            exc.add_note(f"counterexample saved: {path} (replay with: mmcheck replay {path})")
            raise
        except MMCheckError:
            self.ops.pop()
            raise

    def try_apply(self, op: Op) -> Result | None:
        """:meth:`apply`, with bad input that both sides refused alike (and that changed nothing) as None."""
        try:
            return self.apply(op)
        except MMCheckError:
            return None
