"""lib/slub_kunit.c's cases: each replayed as a scenario with KUnit's error count, or named in the docs as out
of scope with the model feature it needs (docs/slab-kunit.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lang import ops
from lang.scenario import Scenario, load
from properties.drivers import Lockstep
from properties.replay import result_matches
from spec.slab.cache import SlabState, cache_named

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"
DOC = ROOT / "docs" / "slab-kunit.md"

# Every KUNIT_CASE of the slub_test suite (Linux 6.15), its KUnit error counts, and its scenario (None: out of scope).
KUNIT_CASES: dict[str, tuple[tuple[int, ...], str | None]] = {
    "test_clobber_zone": ((2,), "slab-kunit-clobber-zone"),
    "test_next_pointer": ((3, 2, 0), "slab-kunit-next-pointer"),
    "test_first_word": ((2,), "slab-kunit-first-word"),
    "test_clobber_50th_byte": ((2,), "slab-kunit-clobber-50th-byte"),
    "test_clobber_redzone_free": ((2,), "slab-kunit-clobber-redzone-free"),
    "test_kmalloc_redzone_access": ((2,), "slab-kunit-kmalloc-redzone-access"),
    "test_kfree_rcu": ((0,), "slab-kunit-kfree-rcu"),
    "test_kfree_rcu_wq_destroy": ((0,), "slab-kunit-kfree-rcu-wq-destroy"),
    "test_leak_destroy": ((2,), "slab-kunit-leak-destroy"),
    "test_krealloc_redzone_zeroing": ((0,), None),
}
REPLAYED = [(case, scenario) for case, (_, scenario) in KUNIT_CASES.items() if scenario is not None]


def reports(before: SlabState, op: ops.SlabOp, result: dict[str, object]) -> int:
    """What slab_debug reports for ``op`` refused by the model, read off the state it left unchanged.

    A refused destroy: ``list_slab_objects`` (mm/slub.c) once per slab still holding objects (``slab_err``) and
    once per object in it (``slab_add_kunit_errors`` in its loop).  Any other refused op: one ``object_err`` or
    ``slab_err`` (a double free is "Object already free" under slab_debug=F).  An accepted op: none.
    """
    if result.get("error") != "EINVAL":
        return 0
    if result.get("type") == "CacheInUse":
        assert isinstance(op, ops.KmemCacheDestroy)
        cache = cache_named(before, op.cache)
        holding = [s for s in before.slabs.values() if s.cache == cache.name and s.inuse]
        return len(holding) + sum(s.inuse for s in holding)
    return 1


def model_counts(scenario: Scenario) -> tuple[int, ...]:
    """The reports slab_debug would count over a lockstep run of ``scenario`` (which must not diverge), as
    KUnit reads them: ``slab_errors`` at each ``validate_slab_cache`` (where each case checks it; the count
    starts again after, as ``test_next_pointer`` resets it), or the whole run's count if there is none."""
    lockstep = Lockstep(scenario.config)
    errors = 0
    counts: list[int] = []
    for index, op in enumerate(scenario.ops):
        before = lockstep.spec.slab.state
        result = lockstep.apply(op)
        if scenario.expected_results is not None:
            assert result_matches(scenario.expected_results[index], result), f"op {index}: {result}"
        if isinstance(op, ops.ValidateSlabCache):
            errors += result["errors"]
            counts.append(errors)
            errors = 0
        elif isinstance(op, ops.SlabOp) and before is not None:
            errors += reports(before, op, result)
    return tuple(counts) if counts else (errors,)


def model_errors(scenario: Scenario) -> int:
    """All the reports over a run of ``scenario``."""
    return sum(model_counts(scenario))


@pytest.mark.parametrize(("case", "name"), REPLAYED, ids=[case for case, _ in REPLAYED])
def test_replayed_case_gives_kunits_error_count(case: str, name: str) -> None:
    """The scenario agrees on both sides, gives its recorded results, and slab_debug's count is KUnit's."""
    scenario = load(SCENARIOS / f"{name}.json")
    assert case in scenario.about
    assert KUNIT_CASES[case][0] == model_counts(scenario)


def test_a_double_free_counts_one_report_per_refusal() -> None:
    """The count is read off the run: slab-double-free refuses two frees and one free off an object start."""
    assert 3 == model_errors(load(SCENARIOS / "slab-double-free.json"))


@pytest.mark.parametrize("case", KUNIT_CASES)
def test_every_case_is_in_the_docs_with_its_count_and_its_scenario_or_reason(case: str) -> None:
    counts, scenario = KUNIT_CASES[case]
    row = next(line for line in DOC.read_text().splitlines() if line.startswith(f"| `{case}` |"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert ", ".join(map(str, counts)) == cells[1]
    if scenario is None:
        assert cells[2].startswith("out of scope: needs ")
    else:
        assert cells[2].startswith(f"scenario `{scenario}`")
        assert (SCENARIOS / f"{scenario}.json").exists()
