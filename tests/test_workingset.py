"""Workingset detection (mm/workingset.c): shadow entries, nonresident_age and the refault distance, both sides."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from lang.errors import ScenarioError
from lang.scenario import Config, Scenario, load, parse_op
from properties.drivers import Lockstep
from properties.minimise import failure_kind
from properties.mutants import by_name
from properties.replay import replay
from spec.mm.kernel import NO_WORKINGSET, Kernel, Workingset
from spec.pressure import invariants, workingset

SCENARIO = Path(__file__).parent / "scenarios" / "pressure-workingset-refault.json"
MAP = 0x40000000
PAGE = 0x1000


def ops(*raw: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(parse_op(r, f"ops[{i}]") for i, r in enumerate(raw))


def mapped_file(pages: int = 8) -> list[dict[str, Any]]:
    """A process with a file of ``pages`` pages mapped shared and read-only at MAP."""
    return [
        {"op": "file_create", "file": "f", "pages": pages, "words": {"0x8": 5}},
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "mmap_file", "pid": 1, "va": hex(MAP), "pages": pages, "prot": "r--", "file": "f", "shared": True},
    ]


def touch(page: int) -> dict[str, Any]:
    return {"op": "load", "cpu": 0, "va": hex(MAP + page * PAGE + 8)}


def pageout(page: int, pages: int = 1) -> dict[str, Any]:
    return {"op": "madvise", "pid": 1, "va": hex(MAP + page * PAGE), "pages": pages, "advice": "pageout"}


def read(page: int) -> dict[str, Any]:
    return {"op": "file_read", "file": "f", "offset": hex(page * PAGE + 8)}


def lockstep(steps: list[dict[str, Any]], **config: Any) -> Lockstep:
    """Run ``steps`` in lockstep (each op checked on both sides) on a 32-frame machine with detection on."""
    runner = Lockstep(Config(frames=32, max_order=3, **{"workingset": 1, **config}))
    for op in ops(*steps):
        runner.apply(op)
    return runner


def spec_state(runner: Lockstep) -> Kernel:
    state = runner.spec.kernel.kernel
    assert state is not None
    return state


def file_lru(runner: Lockstep, page: int) -> str:
    k = spec_state(runner)
    obj = k.files["f"].obj
    return k.pages[k.objects[obj][page]].lru


def test_the_config_flag_defaults_off_and_is_zero_or_one() -> None:
    assert Config(frames=8).workingset == 0
    assert "workingset" not in Config(frames=8).to_json()
    assert Config.from_json({"frames": 8, "workingset": 1}).to_json()["workingset"] == 1
    with pytest.raises(ScenarioError, match=r"config\.workingset"):
        Config.from_json({"frames": 8, "workingset": 2})


@pytest.mark.parametrize("model", ["spec", "impl"])
def test_off_vmstat_has_no_workingset_counters(model: str) -> None:
    steps = [*mapped_file(), touch(1), pageout(1), read(1), {"op": "vmstat"}]
    results = replay(Scenario(Config(frames=32, max_order=3), ops(*steps)), model).results
    assert results[-1] == {"pgfault": 1, "pgmajfault": 1}


def test_off_nothing_is_recorded() -> None:
    """With the flag off an eviction leaves no shadow and no count moves, on either side (lockstep)."""
    runner = lockstep([*mapped_file(), touch(1), read(1), read(1), pageout(1), read(1)], workingset=0)
    assert spec_state(runner).workingset == NO_WORKINGSET
    assert file_lru(runner, 1) == "inactive"


def test_eviction_records_the_age_before_its_own() -> None:
    """workingset_eviction reads nonresident_age, then ages it: two evictions leave shadows 0 and 1, age 2."""
    runner = lockstep([*mapped_file(), touch(2), touch(3), pageout(2, 2)])
    ws = spec_state(runner).workingset
    obj = spec_state(runner).files["f"].obj
    assert (dict(ws.shadows), ws.age) == ({(obj, 2): 0, (obj, 3): 1}, 2)
    assert runner.impl.kernel.kernel is not None and runner.impl.kernel.kernel.pressure.shadows == dict(ws.shadows)


def test_activations_age_the_counter() -> None:
    """folio_mark_accessed activating a page (a second read) ages once; a first read does not."""
    runner = lockstep([*mapped_file(), read(0)])
    assert spec_state(runner).workingset.age == 0
    runner.apply(ops(read(0))[0])
    assert spec_state(runner).workingset.age == 1
    assert file_lru(runner, 0) == "active"


def test_a_short_refault_is_activated_a_long_one_is_not() -> None:
    """Page 1 back after one eviction, with one active file page: active.  Page 2 back after six, with two: not."""
    runner = lockstep([*mapped_file(), read(0), read(0), touch(1), pageout(1), read(1)])
    assert file_lru(runner, 1) == "active"
    ws = spec_state(runner).workingset
    assert (ws.refault_file, ws.activate_file) == (1, 1)
    for page in range(2, 8):
        runner.apply(ops(touch(page))[0])
    runner.apply(ops(pageout(2, 6))[0])
    runner.apply(ops(read(2))[0])
    assert file_lru(runner, 2) == "inactive"
    assert runner.apply(ops({"op": "vmstat"})[0])["workingset_activate_file"] == 1
    assert spec_state(runner).workingset.refault_file == 2


def test_the_distance_boundary_is_inclusive() -> None:
    """workingset_test_recent: refault_distance <= workingset_size activates; one more does not."""
    runner = lockstep([*mapped_file(), read(0), read(0)])
    k = spec_state(runner)
    obj = k.files["f"].obj
    assert workingset.workingset_size(k) == 1
    at_size = replace(k, workingset=replace(k.workingset, age=5, shadows=MappingProxyType({(obj, 4): 4})))
    assert workingset.refault(at_size, obj, 4, write=False)[1]
    past = replace(at_size, workingset=replace(at_size.workingset, shadows=MappingProxyType({(obj, 4): 3})))
    after, active = workingset.refault(past, obj, 4, write=False)
    assert not active
    assert (after.workingset.refault_file, after.workingset.activate_file, after.workingset.age) == (1, 0, 5)
    assert not after.workingset.shadows


def test_anonymous_lists_count_only_while_a_swap_slot_is_free() -> None:
    """With swap, the anonymous pages are part of the workingset size; with every slot in use they are not."""
    anon = [{"op": "mmap", "pid": 1, "va": "0x10000000", "pages": 2, "prot": "rw-"}]
    stores = [{"op": "store", "cpu": 0, "va": hex(0x10000000 + i * PAGE), "value": 1} for i in range(2)]
    runner = lockstep([*mapped_file(), *anon, *stores], swap=1)
    assert workingset.workingset_size(spec_state(runner)) == 2
    runner.apply(ops({"op": "madvise", "pid": 1, "va": "0x10000000", "pages": 1, "advice": "pageout"})[0])
    assert workingset.workingset_size(spec_state(runner)) == 0  # one anonymous page left, no slot free


def test_a_write_takes_the_shadow_without_a_refault() -> None:
    """filemap_add_folio skips workingset_refault under __GFP_WRITE: the shadow goes, nothing is counted."""
    runner = lockstep(
        [*mapped_file(), touch(1), pageout(1), {"op": "file_write", "file": "f", "offset": hex(PAGE), "value": 3}]
    )
    ws = spec_state(runner).workingset
    assert (dict(ws.shadows), ws.refault_file) == ({}, 0)
    assert file_lru(runner, 1) == "inactive"


def test_a_fault_is_a_refault_too() -> None:
    runner = lockstep([*mapped_file(), read(0), read(0), touch(1), pageout(1), touch(1)])
    assert (spec_state(runner).workingset.refault_file, file_lru(runner, 1)) == (1, "active")


def test_truncate_drops_the_shadows_past_the_end_only() -> None:
    runner = lockstep([*mapped_file(), touch(2), touch(5), pageout(2, 4), {"op": "truncate", "file": "f", "pages": 4}])
    obj = spec_state(runner).files["f"].obj
    assert dict(spec_state(runner).workingset.shadows) == {(obj, 2): 0}


def test_the_invariant_finds_a_shadow_past_the_end_or_over_a_cached_page() -> None:
    k = spec_state(lockstep([*mapped_file(4), read(0)]))
    obj = k.files["f"].obj
    assert invariants.workingset_violations(k) == []
    bad = replace(k, workingset=Workingset(True, 3, MappingProxyType({(obj, 9): 1, (obj, 0): 2})))
    problems = invariants.workingset_violations(bad)
    assert len(problems) == 2 and all("not an uncached page" in p for p in problems)
    off = replace(k, workingset=Workingset(False, 1))
    assert invariants.workingset_violations(off) != []


def test_the_shipped_scenario_fails_under_the_truncate_mutant() -> None:
    """The regression scenario passes on the implementation and diverges when truncate keeps the shadows."""
    scenario = load(SCENARIO)
    assert failure_kind(scenario) is None
    with by_name("shadow-kept-after-truncate").applied():
        kind = failure_kind(scenario)
    assert kind is not None and "truncate" in kind, kind
