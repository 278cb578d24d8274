"""--json on the teaching commands: the same content as the text, as data a program can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcheck.cli import main
from mmcheck.views.quiz import generate
from properties.replay import replay

SCENARIOS = Path(__file__).parent / "scenarios"


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    code = main(args)
    out = json.loads(capsys.readouterr().out)
    assert 0 == code
    return out


@pytest.mark.parametrize("topic", ["walk", "permissions"])
def test_quiz_json_answers_are_what_the_implementation_gives(topic: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The answers in the JSON equal the implementation's results for the same problem, question by question."""
    out = run_json(["quiz", "--topic", topic, "--seed", "11", "--questions", "6", "-c", "--json"], capsys)
    assert isinstance(out, dict)
    quiz = generate(topic, 11, 6)
    impl_results = replay(quiz.scenario, "impl").results[-6:]
    assert impl_results == [q["answer"] for q in out["questions"]]
    assert {"topic": topic, "seed": 11} == {k: out[k] for k in ("topic", "seed")}


def test_quiz_json_without_c_has_no_answers(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(["quiz", "--seed", "2", "--json"], capsys)
    assert isinstance(out, dict)
    assert all("answer" not in q for q in out["questions"])


def test_buddy_json_follows_the_free_lists(capsys: pytest.CaptureFixture[str]) -> None:
    """Start: one order-3 block; after alloc(1): [2] on order 1 and [4] on order 2; the double free is refused."""
    out = run_json(["buddy", str(SCENARIOS / "buddy-expand-merge.json"), "--json"], capsys)
    assert isinstance(out, dict)
    assert [[], [], [], [0]] == out["start"]
    assert [[], [2], [4], []] == out["steps"][0]["free_lists"]
    assert out["steps"][4]["refused"].startswith("DoubleFree: ")


def test_explain_json_is_the_story_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(["explain", str(SCENARIOS / "linux-kernel-cow-fork.json"), "--json"], capsys)
    assert isinstance(out, dict)
    assert out["ok"] is True
    assert out["lines"][-1] == "all 18 ops ran; spec and implementation agree at every step"
