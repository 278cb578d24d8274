"""Running a refinement machine as a ``verify`` check.

Every machine drives a :class:`properties.recording.RecordingLockstep`,
which writes the ops of a failing run to ``<counterexamples>/<name>.json``.
Hypothesis replays the shrunk example last, so that file ends up holding
its shortest sequence; :func:`run_machine` then minimises it further
(:mod:`properties.minimise`) and reports where it is.

:func:`run_machine` is the one way to run a machine, for ``verify``, the
mutant hunt, the fuzzer's checks, the benchmarks and the tests alike.  A
machine states how it wants to be run with two class attributes, set by
:func:`run_as` after the class body and read by :func:`machine_settings`:
``shrink_phase`` (False: no Hypothesis shrink phase, the saved scenario is
minimised by replay instead, in seconds where shrinking long programs took
minutes) and ``examples_divisor`` (a machine whose
programs are costly runs that fraction of the profile's examples).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import Phase, settings
from hypothesis.internal.conjecture import providers
from hypothesis.internal.constants_ast import Constants
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


def run_as(
    machine: type[RuleBasedStateMachine], *, shrink_phase: bool | None = None, examples_divisor: int | None = None
) -> None:
    """Set how ``machine`` asks to be run (read by :func:`machine_settings`), after its class body.

    The options are keywords, so a misspelt one is a TypeError where the
    machine is defined rather than an option silently ignored.  They are set
    here, not in the class body, because Hypothesis seeds a derandomized run
    from the class's source: a run option must not change the programs drawn.
    """
    if shrink_phase is not None:
        setattr(machine, "shrink_phase", shrink_phase)  # noqa: B010 - a run option, read by machine_settings
    if examples_divisor is not None:
        if examples_divisor < 1:
            raise ValueError(f"examples_divisor must be at least 1, got {examples_divisor}")
        setattr(machine, "examples_divisor", examples_divisor)  # noqa: B010


def machine_settings(machine: type[RuleBasedStateMachine], run_settings: settings | None = None) -> settings:
    """``run_settings`` (default: the loaded profile) stopping at the first bug, as ``machine`` asks to be run."""
    base = settings(run_settings or settings(), report_multiple_bugs=False)
    if getattr(machine, "shrink_phase", True) is False:
        base = settings(base, phases=[phase for phase in base.phases if phase is not Phase.shrink])
    divisor: int = getattr(machine, "examples_divisor", 1)
    if divisor > 1:
        base = settings(base, max_examples=max(1, base.max_examples // divisor))
    return base


@contextlib.contextmanager
def history_free_generation() -> Iterator[None]:
    """Inside the block Hypothesis draws no constants taken from the modules this process has imported.

    Hypothesis (6.131 on) now and then draws, instead of a random choice, a
    literal found in the source of the local modules loaded so far
    (``hypothesis/internal/conjecture/providers.py``, ``_get_local_constants``).
    Which modules are loaded depends on what ran before in the same process
    (a test module, a mutant's minimiser, ``mmcheck.cli``), so a derandomized
    machine run would draw different programs alone, after another check, or
    under pytest-xdist, and a mutant caught in one setting would survive in
    another.  Without the local pool a derandomized run depends only on the
    machine's source and its settings; Hypothesis's own constants stay.
    """
    pool: Any = Constants()
    cache: Any = providers.CONSTANTS_CACHE
    original: Any = providers._get_local_constants
    cache.cache.clear()
    providers._get_local_constants = lambda: pool
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def run_machines(*machines: type[RuleBasedStateMachine]) -> tuple[Status, str]:
    """:func:`run_machine` on each of ``machines`` in turn; the first that is not confirmed is the answer, named."""
    for machine in machines:
        status, detail = run_machine(machine)
        if status is not Status.CONFIRMED:
            return status, f"{getattr(machine, 'name', machine.__name__)}: {detail}"
    return Status.CONFIRMED, ""


def run_machine(machine: type[RuleBasedStateMachine], run_settings: settings | None = None) -> tuple[Status, str]:
    """Run ``machine`` under :func:`machine_settings`; a failure comes back with its minimised scenario.

    A derandomized run draws its programs under :func:`history_free_generation`,
    so it is the same whatever ran before it in the process.
    """
    target = counterexample_path(machine)
    before = target.stat().st_mtime_ns if target.exists() else None
    chosen = machine_settings(machine, run_settings)
    generation = history_free_generation() if chosen.derandomize else contextlib.nullcontext()
    try:
        with generation:
            run_state_machine_as_test(machine, settings=chosen)
    except Exception as exc:
        after = target.stat().st_mtime_ns if target.exists() else None
        saved = save_minimised(target) if after is not None and after != before else "no counterexample saved"
        return Status.REFUTED, f"{failure_text(exc)}\n{saved}"
    return Status.CONFIRMED, ""
