"""The malloc quiz: its answers are what real glibc does, and each reason names what happened."""

from __future__ import annotations

import pytest
from dependencies import requires

from lang.ualloc_ops import Free, Malloc, UallocOp
from mmcheck.views import quiz_malloc
from oracles.glibc import oracle

SEEDS = range(30)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_reasons_match_the_results(seed: int) -> None:
    quiz = quiz_malloc.generate(seed)
    steps = quiz_malloc.solve(quiz)
    assert len(steps) == len(quiz.scenario.ops) - quiz.setup
    for step in steps:
        if isinstance(step.op, Malloc):
            mapped = step.result["ptr"]["region"] == "mmapped"
            assert ("a mapping of its own" in step.why) == mapped, step
        else:
            assert isinstance(step.op, Free)
            assert ("RSS drops" in step.why) == ("RSS stays" not in step.why), step


@requires("glibc 2.36 and gcc", oracle.unavailable())
@pytest.mark.parametrize("seed", SEEDS)
def test_the_answers_are_glibcs(seed: int) -> None:
    quiz = quiz_malloc.generate(seed)
    ops = [op for op in quiz.scenario.ops if isinstance(op, UallocOp)]
    real = oracle.run_glibc(ops)
    steps = quiz_malloc.solve(quiz)
    assert [step.result for step in steps] == [answer.to_json() for answer in real[quiz.setup :]]
    for step, before, after in zip(steps, real[quiz.setup - 1 :], real[quiz.setup :], strict=False):
        if isinstance(step.op, Free):
            gave_back = after.brk < before.brk or after.mallinfo[4] < before.mallinfo[4]  # the break, hblkhd
            assert gave_back == ("RSS drops" in step.why), step
