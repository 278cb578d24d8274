"""Running a refinement machine as a ``verify`` check.

Every machine drives a :class:`properties.recording.RecordingLockstep`,
which writes the ops of a failing run to ``<counterexamples>/<name>.json``.
Hypothesis replays the shrunk example last, so that file ends up holding
its shortest sequence; :func:`run_machine` then minimises it further
(:mod:`properties.minimise`) and reports where it is.

:func:`run_machine` is the one way to run a machine, for ``verify``, the
mutant hunt, the fuzzer's checks, the benchmarks and the tests alike.  A
machine states how it wants to be run with two class attributes, read by
:func:`machine_settings`: ``shrink_phase`` (False: no Hypothesis shrink phase, the
saved scenario is minimised by replay instead, in seconds where shrinking
long programs took minutes) and ``examples_divisor`` (a machine whose
programs are costly runs that fraction of the profile's examples).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from lang.scenario import dump, load
from lang.verdict import Status
from properties.minimise import minimise
from properties.recording import counterexample_folder


def counterexample_path(machine: type[RuleBasedStateMachine]) -> Path:
    """Where a failing run of ``machine`` leaves its counterexample scenario (named after ``machine.name``)."""
    name: Any = getattr(machine, "name")  # noqa: B009 - a class attribute every project machine defines
    return counterexample_folder() / f"{name}.json"


def failure_text(exc: BaseException) -> str:
    """The failure and the notes Hypothesis attached (the falsifying program, the saved file)."""
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes])


def save_minimised(path: Path) -> str:
    """Minimise the saved counterexample at ``path`` in place; say how long it was and is."""
    shrunk = load(path)
    minimal = minimise(shrunk)
    dump(minimal, path)
    return f"counterexample of {len(minimal.ops)} steps ({len(shrunk.ops)} as the machine saved it): {path}"


def machine_settings(machine: type[RuleBasedStateMachine], run_settings: settings | None = None) -> settings:
    """``run_settings`` (default: the loaded profile) stopping at the first bug, as ``machine`` asks to be run."""
    base = settings(run_settings or settings(), report_multiple_bugs=False)
    if getattr(machine, "shrink_phase", True) is False:
        base = settings(base, phases=[phase for phase in base.phases if phase is not Phase.shrink])
    divisor: int = getattr(machine, "examples_divisor", 1)
    if divisor > 1:
        base = settings(base, max_examples=max(1, base.max_examples // divisor))
    return base


def run_machine(machine: type[RuleBasedStateMachine], run_settings: settings | None = None) -> tuple[Status, str]:
    """Run ``machine`` under :func:`machine_settings`; a failure comes back with its minimised scenario."""
    target = counterexample_path(machine)
    before = target.stat().st_mtime_ns if target.exists() else None
    try:
        run_state_machine_as_test(machine, settings=machine_settings(machine, run_settings))
    except Exception as exc:
        after = target.stat().st_mtime_ns if target.exists() else None
        saved = save_minimised(target) if after is not None and after != before else "no counterexample saved"
        return Status.REFUTED, f"{failure_text(exc)}\n{saved}"
    return Status.CONFIRMED, ""
