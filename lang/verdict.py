"""Three-valued verdicts, and the registry of checks ``verify`` runs.

A check is *confirmed* (it held: a proof went through, a machine found no
counterexample within its budget), *refuted* (with a counterexample), or
*unknown* (a solver or tool timed out, or could not decide).  Unknown is
reported as such and is never counted as a pass.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class Status(enum.Enum):
    CONFIRMED = "confirmed"
    REFUTED = "refuted"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check; ``detail`` holds the counterexample or the reason."""

    name: str
    status: Status
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Only a confirmed check passes."""
        return self.status is Status.CONFIRMED


@dataclass(frozen=True, slots=True)
class Check:
    """A named check in a group (``z3``, ``crosshair``, ``machine``)."""

    group: str
    name: str
    run: Callable[[], Verdict]


CHECKS: list[Check] = []


def check(group: str, name: str) -> Callable[[Callable[[], Verdict]], Callable[[], Verdict]]:
    """Register a function returning a :class:`Verdict` as a ``verify`` check."""

    def deco(fn: Callable[[], Verdict]) -> Callable[[], Verdict]:
        CHECKS.append(Check(group, name, fn))
        return fn

    return deco


def timed(name: str, fn: Callable[[], tuple[Status, str]]) -> Verdict:
    """Run ``fn`` and wrap its status and detail in a :class:`Verdict` with the time taken."""
    start = time.perf_counter()
    status, detail = fn()
    return Verdict(name, status, detail, time.perf_counter() - start)
