"""``nox -s mutmut``'s runner: mutmut's status line read, shown, and the budget enforced."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from proofs import mutmut_run
from proofs.progress import Meter

LINE = "⠋ 120/3876  🎉 97 🫥 2  ⏰ 3  🤔 0  🙁 18  🔇 0  🧙 0"


def test_a_status_line_is_parsed_and_any_other_line_is_not() -> None:
    status = mutmut_run.parse_status(LINE)
    expected = mutmut_run.Status(done=120, total=3876, killed=97, untested=2, timeout=3, suspicious=0, survived=18)
    assert expected == status
    assert "120/3876: 100 killed, 18 survived" == status.note()
    assert mutmut_run.parse_status("Running mutation testing") is None


def test_the_stream_is_cut_at_carriage_returns() -> None:
    raw = ("generating\n" + "\r".join(LINE.replace("120/", f"{n}/") for n in (1, 2, 3)) + "\ndone\n").encode()
    assert ["generating", *(LINE.replace("120/", f"{n}/") for n in (1, 2, 3)), "done"] == list(
        mutmut_run.pieces(io.BufferedReader(io.BytesIO(raw)))
    )


def test_off_a_terminal_status_lines_are_thinned_and_other_lines_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """Plain output: every non-status line, and a status line only every PLAIN_EVERY seconds of the clock."""
    raw = "\r".join(LINE.replace("120/", f"{n}/") for n in range(1, 6)) + "\nRunning\n"
    ticks = iter([0.0, 10.0, 31.0, 40.0, 70.0, 71.0, 72.0])
    last = mutmut_run.follow(
        io.BufferedReader(io.BytesIO(raw.encode())),
        Meter("mutmut", "mutants", console=Console(file=io.StringIO())),
        now=lambda: next(ticks),
    )
    assert last is not None and 5 == last.done
    out = capsys.readouterr().out.splitlines()
    assert ["mutmut: 1/3876: 100 killed, 18 survived", "mutmut: 3/3876: 100 killed, 18 survived",
            "mutmut: 5/3876: 100 killed, 18 survived", "Running"] == out  # fmt: skip


def test_on_a_terminal_the_display_counts_the_mutants() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    with Meter("mutmut", "mutants", budget=60, console=console) as meter:
        mutmut_run.follow(io.BufferedReader(io.BytesIO(LINE.encode())), meter)
    shown = buffer.getvalue()
    assert "120 mutants" in shown and "100 killed, 18 survived" in shown and "left of 60s" in shown


def test_the_budget_stops_the_run_with_sigint() -> None:
    """A child that would run a minute is interrupted after the budget; its last status is kept."""
    program = f"import sys, time; sys.stdout.write({LINE!r}); sys.stdout.flush(); time.sleep(60)"
    meter = Meter("mutmut", "mutants", console=Console(file=io.StringIO()))
    code, stopped, last = mutmut_run.run([sys.executable, "-c", program], 1.0, meter)
    assert stopped and code != 0
    assert last is not None and 120 == last.done


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert 2 == mutmut_run.main(["--budget", "0"])
    assert "--budget must be a positive" in capsys.readouterr().err
