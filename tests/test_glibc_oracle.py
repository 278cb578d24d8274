"""The glibc oracle: generated single-threaded sequences answer exactly as real glibc 2.36 does.

``MMCHECK_GLIBC_SEQUENCES`` sets how many sequences run (default 40, of
``MMCHECK_GLIBC_LENGTH`` calls each, default 80); a disagreement is saved as a
scenario in ``MMCHECK_GLIBC_MISMATCHES`` (default: the test's tmp folder)
and the test fails naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dependencies import requires

from lang import ualloc_ops as uops
from lang.scenario import load, loads
from oracles.glibc import oracle

SEQUENCES = int(os.environ.get("MMCHECK_GLIBC_SEQUENCES", "40"))
LENGTH = int(os.environ.get("MMCHECK_GLIBC_LENGTH", "80"))
REASON = oracle.unavailable()
SCENARIOS = Path(__file__).parent / "scenarios" / "malloc"

pytestmark = requires("glibc 2.36 and gcc", REASON)


def test_generated_sequences_agree_exactly(tmp_path: Path) -> None:
    folder = Path(os.environ.get("MMCHECK_GLIBC_MISMATCHES", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for seed in range(SEQUENCES):
        comparison = oracle.compare(oracle.generate(seed, LENGTH))
        if not comparison.agrees:
            path = folder / f"glibc-mismatch-{seed}.json"
            path.write_text(json.dumps(oracle.mismatch_scenario(comparison, seed), indent=1) + "\n")
            saved.append(f"{path}: {comparison.describe()}")
    print(f"glibc oracle: {SEQUENCES - len(saved)} of {SEQUENCES} sequences of {LENGTH} calls agree exactly")
    assert not saved, "\n".join(saved)


def test_a_sequence_exercises_every_region() -> None:
    """The comparison is not vacuous: glibc's answers place chunks on the heap, in mappings, and move the break."""
    ops = (
        uops.Malloc(24), uops.Malloc(200_000), uops.Free(1), uops.Malloc(200_000), uops.Malloc(1000),
        uops.Free(4), uops.Free(0), uops.MallocTrim(0),
    )
    comparison = oracle.compare(ops)
    assert comparison.agrees, comparison.describe()
    regions = [answer.region for answer in comparison.glibc]
    assert regions == ["heap", "mmapped", "none", "heap", "heap", "none", "none", "none"]
    # the free of the 200,000-byte mapping raised the threshold: the next one came from the heap, growing the break
    assert comparison.glibc[3].brk > comparison.glibc[1].brk


def test_double_free_aborts_with_glibcs_message() -> None:
    ops = (uops.Malloc(40), uops.Free(0), uops.Free(0))
    comparison = oracle.compare(ops)
    assert comparison.glibc[-1].abort == "free(): double free detected in tcache 2"
    assert comparison.agrees, comparison.describe()


def test_a_mismatch_becomes_a_scenario() -> None:
    ops = (uops.Malloc(24), uops.Malloc(48))
    real = oracle.run_glibc(ops)
    wrong = (real[0], uops.MallocAnswer("heap", 0, 0, 40, real[1].brk, 0, real[1].mallinfo))
    comparison = oracle.Comparison(ops, real, wrong)
    assert comparison.first_difference == 1
    scenario = loads(json.dumps(oracle.mismatch_scenario(comparison, 7)))
    assert [op.to_json() for op in scenario.ops] == [op.to_json() for op in ops]
    assert scenario.expected_results is not None and scenario.expected_results[1] == real[1].to_json()


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.json")), ids=lambda p: p.stem)
def test_the_malloc_scenarios_are_glibcs_answers(path: Path) -> None:
    """The teaching scenarios' expected results are what glibc answers (and the model, by the replay tests)."""
    scenario = load(path)
    ops = [op for op in scenario.ops if isinstance(op, uops.UallocOp)]
    assert ops and len(ops) == len(scenario.ops)
    assert scenario.expected_results is not None
    assert [answer.to_json() for answer in oracle.run_glibc(ops)] == list(scenario.expected_results)
