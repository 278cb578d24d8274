"""The model's own run of live OOM cases (:mod:`oracles.linux.oom_model`) against the kernel's recorded answers.

``tests/oracle-logs/oom-own-runs-6.18.json`` holds the victims the live kernel killed, in order, for generated
cases without swap and without a negative ``oom_score_adj`` (recorded on Linux 6.18 x86-64 by the live OOM
oracle, ``MemTotal`` of the machine, no swap on).  The model runs each case itself: its memory cgroup,
faulting in the same pages, must kill the same processes in the same order.  The fast test runs the smallest
recorded cases; the slow one every record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lang.errors import InvalidArgument
from oracles.linux import oom
from oracles.linux.oom_model import ModelOom, comparable, compare, load_records, model_run

RECORDS = load_records(json.loads((Path(__file__).parent / "oracle-logs" / "oom-own-runs-6.18.json").read_text()))
SMALLEST = sorted(RECORDS, key=lambda r: (r[0].limit, sum(p for p, _ in r[0].tasks)))[:2]


def test_the_records_are_the_cases_the_model_can_run() -> None:
    assert len(RECORDS) >= 20
    assert all(comparable(case) is None and min(case.adjs) >= 0 for case, _, _ in RECORDS)
    assert all(killed and not stuck for _, killed, stuck in RECORDS)  # something is killable in each


@pytest.mark.parametrize(("case", "killed", "stuck"), SMALLEST, ids=lambda v: getattr(v, "describe", str)())
def test_the_model_kills_the_kernels_victims_in_order(case: oom.OomCase, killed: list[int], stuck: bool) -> None:
    assert compare(killed, stuck, model_run(case)) == []


@pytest.mark.slow
def test_every_recorded_case_agrees() -> None:
    disagreements = [
        (case.describe(), problems)
        for case, killed, stuck in RECORDS
        if (problems := compare(killed, stuck, model_run(case)))
    ]
    assert disagreements == []


def test_the_recorded_log_case_agrees() -> None:
    """The 16 MiB case of tests/oracle-logs/oom-memcg-6.18.txt: adj 500 (2,000 points in a 4,096-page group)
    dies first, then the offender, bigger than the 1,280-page process by then."""
    case = oom.OomCase(4096, False, ((768, 0), (1280, 0), (512, 500)), 0, 12288)
    assert model_run(case) == ModelOom((2, 3), False)


def test_a_different_order_or_a_stuck_offender_is_a_disagreement() -> None:
    assert compare([2, 3], False, ModelOom((3,), False)) == [
        "the kernel killed processes [2, 3] in order, the model's own run [3]"
    ]
    assert compare([], True, ModelOom((), False)) == ["only the kernel's offender was left retrying its fault"]


def test_a_case_with_swap_is_not_compared_and_bad_records_are_named() -> None:
    reason = comparable(oom.OomCase(2048, True, ((10, 0),), 0, 6144))
    assert reason is not None and "reclaim" in reason
    with pytest.raises(InvalidArgument, match="with a records list, not list"):
        load_records([])
    with pytest.raises(InvalidArgument, match="record 0: needs case, killed"):
        load_records({"records": [{"case": {}}]})
