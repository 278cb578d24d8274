"""mmcheck plot: free blocks per order over a buddy scenario's steps; the figure's data, not its pixels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dependencies import import_or_skip

from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views.plot import free_block_series

PLOT_EXTRA = "matplotlib is not installed: pip install -e '.[plot]'"

BUDDY = Path(__file__).parent / "scenarios" / "buddy-expand-merge.json"

# buddy-expand-merge.json on 8 frames, orders 0-3, index 0 the start, index k the state after op k-1, derived
# from expand() and __free_one_page: op 0 splits [0..7] for an order-1 block (free: [2,3] order 1, [4..7] order 2),
# op 2 splits [2,3] (free: 3), op 3 frees [0,1] (its buddy [2,3] is not free), ops 4 and 5 are refused (a double
# free, a wrong order), op 6 frees 2 and merges up to [0..7], op 8 takes it, ops 9 and 10 are refused, op 11 frees it.
EXPECTED = {
    0: [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    1: [0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    2: [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    3: [1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1],
}


def test_the_series_counts_free_blocks_per_order_after_each_op() -> None:
    assert EXPECTED == free_block_series(load(BUDDY))


def test_the_figure_draws_one_line_per_order_with_the_series() -> None:
    import_or_skip("matplotlib", PLOT_EXTRA)
    from mmcheck.views.plot import free_block_figure

    figure = free_block_figure(load(BUDDY), "buddy-expand-merge.json")
    (axes,) = figure.axes
    lines = axes.get_lines()
    assert [f"order {o} ({4 << o} KiB)" for o in range(4)] == [line.get_label() for line in lines]
    for order, line in enumerate(lines):
        assert list(range(13)) == [int(x) for x in line.get_xdata()]
        assert EXPECTED[order] == [int(y) for y in line.get_ydata()]
    assert "free blocks" == axes.get_ylabel()


def test_the_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_or_skip("matplotlib", PLOT_EXTRA)
    out = tmp_path / "out.png"
    assert 0 == main(["plot", str(BUDDY), "-o", str(out)])
    assert f"wrote {out}\n" == capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG")


def test_without_matplotlib_the_cli_exits_2_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing matplotlib (an import that fails) is a clear error, exit 2, and no file."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "out.png"
    assert 2 == main(["plot", str(BUDDY), "-o", str(out)])
    assert "mmcheck plot needs matplotlib, which is not installed" in capsys.readouterr().err
    assert not out.exists()


def test_a_scenario_without_buddy_ops_is_refused() -> None:
    with pytest.raises(Exception, match="needs alloc_pages / free_pages ops"):
        free_block_series(load(Path(__file__).parent / "scenarios" / "linux-kernel-cow-fork.json"))
