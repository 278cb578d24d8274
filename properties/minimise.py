"""Minimising a saved counterexample: drop operations while the replay still fails the same way.

Hypothesis shrinks the programs a machine runs, but its shrinker cannot
always delete a step: refused frees that changed nothing can be left in
front of the two operations that matter.  A scenario replays
deterministically, so a one-at-a-time deletion pass (the last stage of
delta debugging) finishes the job: an operation goes if the scenario
without it still fails with the same kind of failure.
The result is 1-minimal: removing any single operation loses the failure.

Pids are numbered in order of creation, so a ``spawn`` or ``fork`` whose
process the failure does not need can only go if the later pids move down
by one: when deleting such an op alone loses the failure, the deletion is
tried again with the later ops renumbered.  A user-space allocator op names
the block it frees, reallocs or writes by the index of the op that returned
it, so deleting any op of such a scenario is tried with the later indices
moved down too.  Passes repeat until one deletes nothing, since a deletion
late in a pass can free an earlier op.
"""

from __future__ import annotations

from dataclasses import replace

from lang.errors import MMCheckError
from lang.kernel_ops import Fork, Spawn
from lang.scenario import Op, Scenario
from lang.ualloc_ops import Free, HeapWrite, Realloc
from properties.replay import replay


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


def without_process(ops: list[Op], index: int) -> list[Op] | None:
    """``ops`` without the ``spawn``/``fork`` at ``index``, later pids above the one it made moved down by one.

    The pid it made is taken to be one more than the creating ops before it
    (a guess the replay then checks); None when a later op names that pid.
    """
    if not isinstance(ops[index], Spawn | Fork):
        return None
    made = 1 + sum(isinstance(op, Spawn | Fork) for op in ops[:index])
    later: list[Op] = []
    for op in ops[index + 1 :]:
        pid = getattr(op, "pid", None)
        if pid == made:
            return None
        later.append(replace(op, pid=pid - 1) if isinstance(pid, int) and pid > made else op)  # type: ignore[type-var]
    return ops[:index] + later


def without_call(ops: list[Op], index: int) -> list[Op] | None:
    """``ops`` without the op at ``index``, the later allocator ops' ``call`` indices above it moved down by one;
    None when a later op names the op deleted, or when no later op names a call past it."""
    later: list[Op] = []
    moved = False
    for op in ops[index + 1 :]:
        if isinstance(op, Free | Realloc | HeapWrite):
            if op.call == index:
                return None
            if op.call > index:
                moved = True
                op = replace(op, call=op.call - 1)
        later.append(op)
    return ops[:index] + later if moved else None


def minimise(scenario: Scenario) -> Scenario:
    """The scenario with every operation removed that the failure does not need (1-minimal)."""
    kind = failure_kind(scenario)
    if kind is None:
        return scenario
    ops = list(scenario.ops)
    before = len(ops) + 1
    while len(ops) < before:
        before, index = len(ops), 0
        while index < len(ops):
            for shorter in (ops[:index] + ops[index + 1 :], without_process(ops, index), without_call(ops, index)):
                candidate = replace(scenario, ops=tuple(shorter or ()), expected_results=None)
                if shorter is not None and failure_kind(candidate) == kind:
                    ops = shorter
                    break
            else:
                index += 1
    note = f"minimised from {len(scenario.ops)} to {len(ops)} ops, still failing with: {kind}"
    return replace(scenario, ops=tuple(ops), expected_results=None, about=f"{scenario.about}\n{note}".strip())
