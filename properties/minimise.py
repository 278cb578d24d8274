"""Minimising a saved counterexample: drop operations while the replay still fails the same way.

Hypothesis shrinks the programs a machine runs, but its shrinker cannot
always delete a step: refused frees that changed nothing can be left in
front of the two operations that matter.  A scenario replays
deterministically, so a one-at-a-time deletion pass (the last stage of
delta debugging) finishes the job: an operation goes if the scenario
without it still fails with the same kind of failure.
The result is 1-minimal: removing any single operation loses the failure.
"""

from __future__ import annotations

from dataclasses import replace

from mmcheck.errors import MMCheckError
from mmcheck.replay import replay
from mmcheck.scenario import Scenario


def failure_kind(scenario: Scenario) -> str | None:
    """How replaying ``scenario`` fails: the divergence's op and reason, or the crash's exception; None if it passes.

    Refused input (an operation outside its domain) is not a failure.
    """
    try:
        report = replay(scenario)
    except MMCheckError:
        return None
    except Exception as exc:
        return f"crash {type(exc).__name__}"
    if report.divergence is None:
        return None
    return f"{report.divergence.op.name}: {report.divergence.reason}"


def minimise(scenario: Scenario) -> Scenario:
    """The scenario with every operation removed that the failure does not need (1-minimal)."""
    kind = failure_kind(scenario)
    if kind is None:
        return scenario
    ops = list(scenario.ops)
    index = 0
    while index < len(ops):
        candidate = replace(scenario, ops=tuple(ops[:index] + ops[index + 1 :]), expected_results=None)
        if failure_kind(candidate) == kind:
            del ops[index]
        else:
            index += 1
    note = f"minimised from {len(scenario.ops)} to {len(ops)} ops, still failing with: {kind}"
    return replace(scenario, ops=tuple(ops), expected_results=None, about=f"{scenario.about}\n{note}".strip())
