"""Running a refinement machine as a ``verify`` check.

Every machine drives a :class:`properties.recording.RecordingLockstep`,
which writes the ops of a failing run to ``<counterexamples>/<name>.json``.
Hypothesis replays the shrunk example last, so that file ends up holding
its shortest sequence; :func:`run_machine` then minimises it further
(:mod:`properties.minimise`) and reports where it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import settings
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


def run_machine(machine: type[RuleBasedStateMachine], run_settings: settings | None = None) -> tuple[Status, str]:
    """Run ``machine`` under ``run_settings`` (default: the loaded profile, reporting one bug)."""
    target = counterexample_path(machine)
    before = target.stat().st_mtime_ns if target.exists() else None
    try:
        run_state_machine_as_test(machine, settings=run_settings or settings(report_multiple_bugs=False))
    except Exception as exc:
        after = target.stat().st_mtime_ns if target.exists() else None
        saved = save_minimised(target) if after is not None and after != before else "no counterexample saved"
        return Status.REFUTED, f"{failure_text(exc)}\n{saved}"
    return Status.CONFIRMED, ""
