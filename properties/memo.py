"""A one-entry memo of a pure check over the spec's frozen states.

The machines check the L1 invariants after every rule, and many rules leave
the state as it was: an observation, a load through a TLB entry, an eviction.
The spec's operations build a new :class:`~spec.mm.kernel.Kernel` for every step
but keep each part they did not change (the same mapping, the same tuple), so
a state whose every field is the *same object* as the last one checked is the
last state checked, and a pure check of it gives the last result.  Anything
else, even an equal copy, is checked again in full.  The memo keeps the last
fields alive, so their identities cannot be reused by other objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any


class LastState:
    """``check(state)``, reused while every field of ``state`` is the same object as in the last call."""

    def __init__(self, check: Callable[[Any], list[str]]) -> None:
        self.check = check
        self.fields: tuple[object, ...] | None = None
        self.result: list[str] = []
        self.hits = self.misses = 0

    def __call__(self, state: Any) -> list[str]:
        values = tuple(getattr(state, f.name) for f in fields(state))
        last = self.fields
        if last is not None and len(last) == len(values) and all(a is b for a, b in zip(last, values, strict=True)):
            self.hits += 1
            return list(self.result)
        self.misses += 1
        self.result = self.check(state)
        self.fields = values
        return list(self.result)
