"""Rich output on a terminal, plain text otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views import console
from mmcheck.views.buddyview import buddy_json

BUDDY = Path(__file__).parent / "scenarios" / "buddy-expand-merge.json"


def test_not_a_terminal_prints_the_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    """Captured output is not a terminal: the plain lines, no table borders, no escape codes."""
    assert 0 == main(["buddy", str(BUDDY)])
    out = capsys.readouterr().out
    assert out.startswith("8 frames, max_order 3, spec free lists\n")
    assert "\x1b[" not in out and "┃" not in out


def test_a_terminal_gets_a_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal the same run is one table: a row per op, a column per order."""
    monkeypatch.setattr(console, "is_terminal", lambda stream=None: True)
    monkeypatch.setenv("COLUMNS", "200")
    assert 0 == main(["buddy", str(BUDDY)])
    out = capsys.readouterr().out
    assert "order 3" in out and "alloc_pages(order=1)" in out and "DoubleFree" in out


def test_table_rows_follow_the_run() -> None:
    table = console.buddy_table(buddy_json(load(BUDDY)))
    assert 1 + len(load(BUDDY).ops) == table.row_count
    text = io.StringIO()
    console.print_table(table, text)
    assert "0x4" in text.getvalue()
