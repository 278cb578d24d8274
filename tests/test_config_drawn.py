"""Every config knob is drawn by verify: each Config field takes at least two values among verify's machines.

A value no machine runs with leaves the code reached only under it unchecked
by ``verify`` (the full-flush paths below the default ``flush_ceiling`` were
such code).  The machines' configurations are the Config values their modules
define: ``CONFIG``, tuples of configs a machine draws from, and the ``config``
of machine classes.
"""

from __future__ import annotations

import dataclasses
import importlib

from hypothesis.stateful import RuleBasedStateMachine

from lang.scenario import Config
from proofs import verify


def machine_configs() -> dict[str, list[Config]]:
    """The Config values of each verify module that defines a machine."""
    found: dict[str, list[Config]] = {}
    for name in verify.CHECK_MODULES:
        module = importlib.import_module(name)
        values = list(vars(module).values())
        if not any(isinstance(v, type) and issubclass(v, RuleBasedStateMachine) for v in values):
            continue
        configs = [v for v in values if isinstance(v, Config)]
        configs += [c for v in values if isinstance(v, tuple) for c in v if isinstance(c, Config)]
        configs += [getattr(v, "config") for v in values if isinstance(v, type) and isinstance(getattr(v, "config", None), Config)]  # noqa: B009, E501
        found[name] = configs
    return found


def test_every_machine_module_has_a_config() -> None:
    assert [] == [name for name, configs in machine_configs().items() if not configs]


def test_every_config_field_takes_two_values_in_verify() -> None:
    configs = [c for cs in machine_configs().values() for c in cs]
    single = {
        f.name: {getattr(c, f.name) for c in configs}
        for f in dataclasses.fields(Config)
        if len({getattr(c, f.name) for c in configs}) < 2
    }
    assert {} == single, "config fields every verify machine runs with one value only"


# Values issue #25 names for the knobs whose edge cases reach their own code: one CPU to four (each CPU's own
# TLB and the shootdown's targets), a one-entry TLB (eviction on every fill), both paging modes, the ends of
# MAXPHYADDR, flush ceilings that flush everything (0), at the one-page boundary (1) and the default, and
# CPUs with and without PCIDs.
REQUIRED: dict[str, set[object]] = {
    "cpus": {1, 2, 3, 4},
    "tlb_entries": {1},
    "levels": {4, 5},
    "maxphyaddr": {36, 52},
    "flush_ceiling": {0, 1, 33},
    "pcid": {True, False},
}


def test_the_edge_values_are_drawn_in_verify() -> None:
    configs = [c for cs in machine_configs().values() for c in cs]
    missing = {name: want - {getattr(c, name) for c in configs} for name, want in REQUIRED.items()}
    assert {} == {name: values for name, values in missing.items() if values}, "values no verify machine runs with"
    assert set(REQUIRED) <= {f.name for f in dataclasses.fields(Config)}
