"""lang/records.py: the generated ``replace`` builds the record :func:`dataclasses.replace` builds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from lang.records import covered, replace
from proofs import smp_system
from proofs.spec_systems import SpecSmpSystem
from spec.alloc.buddy import Block, BuddyState
from spec.mm.kernel import Kernel, Space


def records(value: object, seen: dict[int, object]) -> None:
    """Every dataclass instance reachable from ``value``, by identity, into ``seen``."""
    if id(value) in seen:
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        seen[id(value)] = value
        for f in dataclasses.fields(value):
            records(getattr(value, f.name), seen)
    elif isinstance(value, (tuple, list, frozenset, set)):
        for item in value:
            records(item, seen)
    elif isinstance(value, dict) or hasattr(value, "items"):
        for k, v in value.items():  # type: ignore[attr-defined]
            records(k, seen)
            records(v, seen)


def spec_records() -> list[object]:
    """The records of some SMP spec states: the kernel, its spaces, CPUs, flights, pages, VMAs, buddy state."""
    system = SpecSmpSystem(smp_system.RATE_BOUNDS)
    states = [system.initial()]
    for state in list(states):
        states += [successor for _, successor in system.successors(state)]
    for state in list(states[1:40]):
        states += [successor for _, successor in system.successors(state)]
    seen: dict[int, object] = {}
    for state in states:
        records(state, seen)
    return list(seen.values())


def test_every_field_replaced_alone_gives_the_standard_record() -> None:
    """For every spec record reached and each of its fields, replacing that field (with another record's value of
    it, or its own) gives a record equal to, and of the type of, the standard one."""
    found = spec_records()
    kinds = {type(r) for r in found}
    assert {Kernel, Space, BuddyState, Block} <= kinds
    others: dict[tuple[type, str], object] = {}
    for record in found:
        for f in dataclasses.fields(record):  # type: ignore[arg-type]
            others.setdefault((type(record), f.name), getattr(record, f.name))
    for record in found:
        for f in dataclasses.fields(record):  # type: ignore[arg-type]
            value = others[(type(record), f.name)]
            ours = replace(record, **{f.name: value})  # type: ignore[type-var]
            standard = dataclasses.replace(record, **{f.name: value})  # type: ignore[type-var]
            assert type(ours) is type(standard) and ours == standard, (type(record).__name__, f.name)
            assert all(getattr(ours, g.name) is getattr(standard, g.name) for g in dataclasses.fields(ours))  # type: ignore[arg-type]
        assert replace(record) == record and replace(record) is not record  # type: ignore[type-var]


def test_the_spec_records_that_steps_replace_take_the_generated_path() -> None:
    for kind in (Kernel, Space, BuddyState, Block):
        assert covered(kind), kind


def test_a_name_that_is_not_a_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="nope"):
        replace(Block(0, 1), nope=3)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("value must be at least 0")


@dataclass(frozen=True)
class Counted:
    value: int
    seen: int = field(default=0, init=False)


@dataclass
class Mutable:
    value: int


def test_classes_it_does_not_cover_go_to_the_standard_replace() -> None:
    """A ``__post_init__`` still runs, an ``init=False`` field is still refused, mutable records still copy."""
    assert not covered(Checked) and not covered(Counted) and not covered(Mutable)
    with pytest.raises(ValueError, match="at least 0"):
        replace(Checked(1), value=-1)
    with pytest.raises(ValueError, match="init=False"):
        replace(Counted(1), seen=2)  # type: ignore[call-arg]
    assert Mutable(2) == replace(Mutable(1), value=2)
    with pytest.raises(TypeError):
        replace(object())  # type: ignore[type-var]
