"""The progress display of long runs: Rich on a terminal, the plain lines unchanged anywhere else."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from mmcheck.cli import main
from proofs import modelcheck
from proofs.progress import Meter

SCENARIOS = Path(__file__).parent / "scenarios"


def terminal(buffer: io.StringIO) -> Console:
    return Console(file=buffer, force_terminal=True, width=120, color_system=None)


def test_off_a_terminal_the_meter_prints_the_plain_lines_and_nothing_else(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    with Meter("explore", "states", budget=60, console=Console(file=buffer)) as meter:
        assert not meter.live
        meter.quiet("  ... 10 states")
        meter.update(10, "depth 2")
        meter.plain("   1/2 wp-ignored: caught by mmu")
        meter.advance()
    assert "  ... 10 states\n   1/2 wp-ignored: caught by mmu\n" == capsys.readouterr().out
    assert "" == buffer.getvalue()


def test_on_a_terminal_the_display_shows_count_rate_and_budget(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    with Meter("explore", "states", budget=60, console=terminal(buffer)) as meter:
        assert meter.live
        meter.quiet("  ... 10 states")
        meter.update(1234, "depth 7")
        meter.plain("a line kept above the display")
    shown = buffer.getvalue()
    assert "" == capsys.readouterr().out
    assert "1,234 states" in shown and "states/s" in shown and "depth 7" in shown
    assert "left of 60s" in shown
    assert "a line kept above the display" in shown
    assert "  ... 10 states" not in shown


def test_a_meter_with_a_total_counts_up_to_it() -> None:
    buffer = io.StringIO()
    with Meter("mutants", "mutants", total=3, console=terminal(buffer)) as meter:
        meter.advance("0 survived")
        meter.advance("1 survived")
    shown = buffer.getvalue()
    assert "2/3" in shown and "1 survived" in shown and "left of" not in shown


def test_explore_off_a_terminal_prints_what_it_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["explore", "--lockstep", "--frames", "6", "--max-order", "1"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "ARG layer buddy frames 6 max_order 1 alloc_order 1 depth 20 max_states None" == lines[0]
    assert lines[1].startswith("explore: 218 distinct states (218 explored), 1362 transitions") and 2 == len(lines)
    assert "\x1b[" not in out


def test_explore_on_a_terminal_draws_the_display(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("proofs.progress.Console", lambda file: terminal(buffer))
    assert 0 == main(["explore", "--lockstep", "--frames", "6", "--max-order", "1", "--time-limit", "30"])
    shown = buffer.getvalue()
    assert "explore" in shown and "states" in shown and "done" in shown and "left of 30s" in shown


def test_modelcheck_progress_goes_to_the_console_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    modelcheck.main(["--minutes", "0.01"], console=terminal(buffer))
    out = capsys.readouterr().out
    assert out.startswith(f"modelcheck: {len(modelcheck.RUNS)} runs, 0s each\n") and out.endswith(" failed\n")
    assert "    ... " not in out
    assert "left of" in buffer.getvalue() and "done" in buffer.getvalue()


def test_modelcheck_off_a_terminal_adds_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    modelcheck.main(["--minutes", "0.01"], console=Console(file=buffer))
    assert "" == buffer.getvalue()
    lines = capsys.readouterr().out.splitlines()
    assert f"modelcheck: {len(modelcheck.RUNS)} runs, 0s each" == lines[0]
    assert [line for line in lines if line.startswith("  ") and not line.startswith("    ")] == [
        f"  {run.name}" for run in modelcheck.RUNS
    ]
    table = lines[lines.index("run | states | transitions | diameter | seconds | exhausted") + 1 : -1]
    assert [f"{n}." for n in range(1, len(modelcheck.RUNS) + 1)] == [row.split()[0] for row in table]
    assert all(row.endswith(("| yes", ")")) for row in table)


def test_mutants_off_a_terminal_print_one_line_per_mutant(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert 0 == main(["mutants", "--name", "alloc-skips-max-order", "--jobs", "1", "--output", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert "   1/1 alloc-skips-max-order: caught by " in "\n".join(lines)
    assert lines[1].startswith("   1/1 alloc-skips-max-order: caught by ")
    assert "\x1b[" not in "\n".join(lines)


def test_mutants_on_a_terminal_show_the_display(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("proofs.progress.Console", lambda file: terminal(buffer))
    assert 0 == main(["mutants", "--name", "alloc-skips-max-order", "--jobs", "1", "--output", str(tmp_path)])
    shown = buffer.getvalue()
    assert "1/1" in shown and "0 survived" in shown and "alloc-skips-max-order: caught by" in shown
    out = capsys.readouterr().out
    assert "alloc-skips-max-order: caught by" not in out.splitlines()[1]
    assert "mutants: 1 killed of 1" == out.splitlines()[-1]


def long_scenario(tmp_path: Path, ops: int) -> Path:
    from mmcheck.cli import LONG_SCENARIO

    assert ops >= LONG_SCENARIO
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"config": {"frames": 16}, "ops": [{"op": "buddyinfo"}] * ops}))
    return path


def test_replay_off_a_terminal_prints_only_its_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["replay", str(long_scenario(tmp_path, 2500))])
    captured = capsys.readouterr()
    assert "" == captured.err
    assert 5000 == len(captured.out.splitlines()) and "\x1b[" not in captured.out


def test_replay_draws_progress_on_standard_error_of_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = long_scenario(tmp_path, 2500)
    assert 0 == main(["replay", str(path)])
    plain = capsys.readouterr().out
    buffer = io.StringIO()
    monkeypatch.setattr("mmcheck.cli.stderr_console", lambda force: terminal(buffer))
    assert 0 == main(["replay", str(path)])
    assert "2500/2500" in buffer.getvalue() and "ops/s" in buffer.getvalue()
    assert plain == capsys.readouterr().out, "the results on standard output do not change"


def test_replay_of_a_short_scenario_draws_nothing_even_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("mmcheck.cli.stderr_console", lambda force: terminal(buffer))
    assert 0 == main(["replay", str(SCENARIOS / "buddy-expand-merge.json")])
    assert "" == buffer.getvalue()
    assert 24 == len(capsys.readouterr().out.splitlines())


def test_replay_with_progress_draws_it_off_a_terminal_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["replay", str(SCENARIOS / "buddy-expand-merge.json"), "--progress"])
    captured = capsys.readouterr()
    assert "12/12" in captured.err and "replay" in captured.err
    assert 24 == len(captured.out.splitlines()) and "\x1b[" not in captured.out
