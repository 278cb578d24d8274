"""The docs are run: every command a page shows, with the output it shows, must be what the code prints.

A page marks a session as a ```` ```console ```` block: lines starting with
``$ `` are commands, the lines after each (up to the next command or the end
of the block) are its expected output, stdout and stderr together.  The
commands of one page run in order in one ``bash`` session, in a fresh copy of
the project (so a page may edit the code, as the tutorial's bug hunt does,
without touching the tree under test), with ``mmcheck`` on the ``PATH`` as
``python -m mmcheck``, ``COLUMNS=100`` (``--help`` texts wrap at that
width) and output not a terminal (plain text, no colour).

The comparison is exact after one documented normalisation, :func:`normalise`:
time and memory figures of ``mmcheck explore`` (``1,234 states/s``,
``0.3s``, ``~0.1 MiB``) become ``N``.  Trailing spaces are ignored.

README.md's ```` ```sh ```` blocks list commands without output; each line
there that starts with ``mmcheck`` is run the same way and must exit 0.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COPIED = ("spec", "impl", "properties", "proofs", "mmcheck", "tests/scenarios", "pyproject.toml")
MARKER = "@@mmcheck-docs-command-{}@@"
TIMEOUT = 600


@dataclass(frozen=True, slots=True)
class Command:
    """One command shown on a page, where it is, and what the page says it prints (None: only exit 0 is checked)."""

    page: str
    line: int
    text: str
    expected: str | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: $ {self.text}"


def console_commands(page: str, text: str) -> list[Command]:
    """The commands of every ```console block, each with the output lines that follow it."""
    commands: list[Command] = []
    lines = text.splitlines()
    block: str | None = None
    current: tuple[int, str] | None = None
    output: list[str] = []

    def finish() -> None:
        if current is not None:
            expected = "\n".join(output) if block == "console" else None
            commands.append(Command(page, current[0], current[1], expected))

    for number, line in enumerate(lines, 1):
        if block is None:
            if line.startswith("```console") or line.startswith("```sh"):
                block = "console" if line.startswith("```console") else "sh"
            continue
        if line.startswith("```"):
            finish()
            block, current, output = None, None, []
        elif block == "console" and line.startswith("$ "):
            finish()
            current, output = (number, line[2:]), []
        elif block == "console":
            output.append(line)
        elif page == "README.md" and line.startswith("mmcheck "):
            current = (number, line.split("  #")[0].strip())
            output = []
            finish()
            current = None
    return commands


def normalise(text: str) -> str:
    """Time and memory figures replaced by ``N``; trailing spaces and blank lines at the end dropped."""
    text = re.sub(r"[\d,]+ states/s", "N states/s", text)
    text = re.sub(r"\b\d+\.\d+s\b", "Ns", text)
    text = re.sub(r"~\d+(\.\d+)? MiB", "~N MiB", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def sandbox(where: Path) -> Path:
    """A copy of the project with an ``mmcheck`` command that runs it."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, where / name)
    script = where / "bin" / "mmcheck"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mmcheck "$@"\n')
    script.chmod(0o755)
    return where


def run_session(commands: list[Command], where: Path) -> list[str]:
    """Run ``commands`` in order in one bash session inside a sandbox at ``where``; the output of each."""
    root = sandbox(where)
    lines = ["exec 2>&1"]
    for index, command in enumerate(commands):
        # The marker keeps the previous command's exit status, so a page can show `echo "exit $?"`.
        lines += [f"status=$?; echo '{MARKER.format(index)}'; (exit $status)", command.text]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MMCHECK_", "PYTEST_", "FORCE_COLOR", "CLICOLOR"))
    }
    env |= {
        "PATH": f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(root),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "COLUMNS": "100",
        "TERM": "dumb",
    }
    done = subprocess.run(
        ["bash", "-c", "\n".join(lines)], cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    pieces = re.split(r"@@mmcheck-docs-command-(\d+)@@\n", done.stdout)
    outputs = dict(zip((int(i) for i in pieces[1::2]), pieces[2::2], strict=True))
    return [outputs.get(index, "(not run)") for index in range(len(commands))]


def exit_status_wrapped(command: Command) -> Command:
    """An output-less README command, run so that its exit status is printed after it."""
    return Command(command.page, command.line, f'{command.text} > /dev/null; echo "exit $?"', "exit 0")


def page_commands(page: Path) -> list[Command]:
    """The commands of ``page`` as the session runs them."""
    commands = console_commands(page.name, page.read_text())
    return [c if c.expected is not None else exit_status_wrapped(c) for c in commands]


@functools.cache
def page_results(page: Path, where: Path) -> tuple[tuple[Command, str], ...]:
    """Each command of ``page`` with the output it really gave (one session per page, run once)."""
    commands = page_commands(page)
    return tuple(zip(commands, run_session(commands, where), strict=True))


def mismatches(results: tuple[tuple[Command, str], ...]) -> list[str]:
    """A report for every command whose output is not the one shown."""
    problems = []
    for command, actual in results:
        assert command.expected is not None
        if normalise(actual) != normalise(command.expected):
            problems.append(f"{command}\n--- the page shows:\n{command.expected}\n--- it prints:\n{actual}")
    return problems


@pytest.fixture(scope="session")
def docs_sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


@pytest.mark.parametrize("page", [p for p in PAGES if page_commands(p)], ids=lambda p: p.name)
def test_every_command_shown_prints_what_the_page_shows(page: Path, docs_sandboxes: Path) -> None:
    """Each ``$ command`` of the page, run in order in a fresh copy of the project, prints exactly what follows it."""
    results = page_results(page, docs_sandboxes / page.stem)
    problems = mismatches(results)
    assert not problems, "\n\n".join(problems)


def test_the_tutorial_and_the_readme_have_sessions() -> None:
    """The pages this test exists for do show commands (a parser that finds none would pass vacuously)."""
    assert len(page_commands(ROOT / "docs" / "tutorial.md")) >= 20
    assert any(c.expected == "exit 0" for c in page_commands(ROOT / "README.md"))
    assert any(
        c.text.startswith("mmcheck") and c.text.endswith("--help") for c in page_commands(ROOT / "docs" / "tutorial.md")
    )


def test_a_drifted_output_is_reported(tmp_path: Path) -> None:
    """A page whose shown output differs from the real one by one character fails, naming the command."""
    real = page_commands(ROOT / "docs" / "tutorial.md")[0]
    assert real.expected is not None
    drifted_text = real.expected.replace("0x", "0X", 1)
    assert drifted_text != real.expected
    page = tmp_path / "drifted.md"
    page.write_text(f"```console\n$ {real.text}\n{real.expected}\n$ {real.text}\n{drifted_text}\n```\n")
    problems = mismatches(page_results(page, tmp_path / "sandbox"))
    assert 1 == len(problems)
    second = 3 + len(real.expected.splitlines())
    assert problems[0].startswith(f"drifted.md:{second}: $ {real.text}\n--- the page shows:\n")


def test_a_failing_readme_command_is_reported(tmp_path: Path) -> None:
    """A README command that exits non-zero (here: a scenario that does not exist) is a mismatch."""
    page = tmp_path / "README.md"
    page.write_text("```sh\nmmcheck replay tests/scenarios/no-such-file.json   # oops\n```\n")
    problems = mismatches(page_results(page, tmp_path / "sandbox"))
    assert 1 == len(problems)
    assert "exit 2" in problems[0]


def test_normalise_touches_only_time_and_memory_figures() -> None:
    line = (
        "explore: 95 distinct states, 402 transitions, depth 7 (exhausted), 1,520 states/s, 0.1s, visited set ~0.0 MiB"
    )
    assert (
        "explore: 95 distinct states, 402 transitions, depth 7 (exhausted), N states/s, Ns, visited set ~N MiB"
        == normalise(line)
    )
