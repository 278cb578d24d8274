"""What every quiz topic shares: the generated problem and the lines that echo its arguments.

A problem is an ordinary scenario.  Its first ``setup`` ops build the
situation the question describes; the ops after them are what the question
asks about.  The same seed gives the same scenario.
"""

from __future__ import annotations

from dataclasses import dataclass

from lang.scenario import Scenario


@dataclass(frozen=True, slots=True)
class Quiz:
    """A generated problem: the scenario that sets it up and asks it, and where the questions start."""

    topic: str
    seed: int
    scenario: Scenario
    setup: int = 0


def echo(quiz: Quiz, answers: bool, questions: int | None = None) -> list[str]:
    """The ``ARG`` lines every run starts with (OSTEP's habit: the arguments and the seed, so a run can be redone)."""
    lines = [f"ARG topic {quiz.topic}", f"ARG seed {quiz.seed}"]
    if questions is not None:
        lines.append(f"ARG questions {questions}")
    return [*lines, f"ARG answers {answers}", ""]


def pfns_text(pfns: object) -> str:
    """``0x4, 0x8`` for a collection of ints, lowest first, or ``none``."""
    assert isinstance(pfns, list | tuple | set | frozenset)
    return ", ".join(f"{p:#x}" for p in sorted(pfns)) or "none"
