"""Every subcommand's ``--help`` ends with its exit codes and one example, and the example is a valid command."""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path

import pytest
from test_subcommands import subcommands

from mmcheck.cli import build_parser
from mmcheck.helptext import HELP

ROOT = Path(__file__).resolve().parent.parent


def help_text(name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        build_parser().parse_args([name, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def test_every_subcommand_has_exit_codes_and_an_example() -> None:
    assert sorted(HELP) == sorted(subcommands())


@pytest.mark.parametrize("name", sorted(HELP))
def test_help_ends_with_the_exit_codes_and_an_example(name: str) -> None:
    text = help_text(name)
    codes, example = text.rstrip("\n").rsplit("\nexample:\n", 1)
    assert "\nexit codes: 0 success" in codes
    listed = " ".join(codes.split("\nexit codes:")[1].split())
    assert "; 2 bad input" in listed and "141 closed pipe" in listed
    failed, shown = HELP[name]
    assert (failed is not None) == ("; 1 " in listed)
    assert example.strip() == shown


@pytest.mark.parametrize("name", sorted(HELP))
def test_the_example_parses_as_that_subcommand(name: str) -> None:
    words = shlex.split(HELP[name][1])
    assert words[:2] == ["mmcheck", name]
    args = build_parser().parse_args(words[1:])
    expected = build_parser().parse_args([name, *NEEDS.get(name, [])]).func
    assert args.func is expected
    for word in words:
        if word.endswith(".json") and "/" in word:
            assert (ROOT / word).is_file(), word


# The arguments a subcommand needs before argparse picks its function (to compare the example's with).
NEEDS = {
    "replay": ["x"], "walk": ["x", "--va", "0"], "explain": ["x"], "oracle": ["qemu"], "buddy": ["x"],
    "slab": ["x"], "draw": ["x"], "plot": ["x", "-o", "x.png"], "report": ["x", "-o", "x.html"], "new": ["kernel"],
    "lru": ["x"],
}  # fmt: skip
