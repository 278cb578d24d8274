"""Generated exercises: reproducible by seed, and the spec's answers agree with the implementation."""

from __future__ import annotations

import pytest

from mmcheck.cli import main
from mmcheck.views.quiz import TOPICS, generate, render
from properties.replay import replay


@pytest.mark.parametrize("topic", TOPICS)
def test_same_seed_same_problem(topic: str) -> None:
    assert render(generate(topic, 11), answers=True) == render(generate(topic, 11), answers=True)
    assert render(generate(topic, 11), answers=False) != render(generate(topic, 12), answers=False)


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("seed", range(30))
def test_answers_agree_with_the_implementation(topic: str, seed: int) -> None:
    """Replaying a quiz's scenario in lockstep finds no divergence."""
    report = replay(generate(topic, seed).scenario)
    assert report.divergence is None, report.divergence


def test_cli_echoes_arguments_and_answers_each_question(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", "permissions", "--seed", "3", "--questions", "4", "-c"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ["ARG topic permissions", "ARG seed 3", "ARG answers True"] == out[:3]
    assert 4 == sum(line.strip().startswith("answer:") for line in out)


def test_question_hides_the_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "answer:" not in out
    assert "-c" in out
