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
    with pytest.raises(Exception, match="alloc_pages / free_pages ops"):
        free_block_series(load(Path(__file__).parent / "scenarios" / "linux-kernel-cow-fork.json"))


# --- a kernel scenario: Rss and Pss per process, free frames -------------------------------------------------

KERNEL = Path(__file__).parent / "scenarios" / "linux-kernel-cow-fork.json"
# linux-kernel-cow-fork.json on 1024 frames (index 0 the start, k after op k-1): booting and spawn take the
# zero page, the kernel page, init_mm's PML4 and the kernel half's PDPT, PD and PT, and pid 1's PML4 (1017 free);
# the store of op 3 faults in a page and its PDPT, PD and PT (1013); fork (op 4) gives pid 2 its own four
# tables and shares the page, so each process's Pss is half of it; the child's store (op 8) copies the page
# (1008 free) and each Pss is the whole page again.
KERNEL_RSS = {1: [None, 0, 0, 0] + [4] * 15, 2: [None] * 5 + [4] * 14}
KERNEL_PSS = {1: [None, 0, 0, 0, 4, 2, 2, 2, 2] + [4] * 10, 2: [None] * 5 + [2] * 4 + [4] * 10}
KERNEL_FREE = [1024, 1017, 1017, 1017, 1013, 1009, 1009, 1009, 1009] + [1008] * 10


def test_the_kernel_series_follows_fork_and_copy_on_write() -> None:
    from mmcheck.views.plot import kernel_series

    series = kernel_series(load(KERNEL))
    assert KERNEL_RSS == series.rss_kb
    assert KERNEL_PSS == series.pss_kb
    assert KERNEL_FREE == series.free_frames


@pytest.mark.parametrize(
    "name", ["linux-kernel-cow-fork.json", "cow-basic-after-fork.json", "hugetlb-stat-not-counted.json",
             "shared-anonymous-fork.json", "cve-2020-29374-pin-after-fork.json"],
)  # fmt: skip
def test_the_kernel_series_agrees_with_the_scenarios_own_stat_and_buddy(name: str) -> None:
    """Where a scenario reads stat, the series after that op is what it read; the free frames are the kernel's
    free lists as ``mmcheck buddy`` shows them."""
    from mmcheck.views.buddyview import buddy_json
    from mmcheck.views.plot import kernel_series
    from properties.replay import replay

    scenario = load(Path(__file__).parent / "scenarios" / name)
    series = kernel_series(scenario)
    results = replay(scenario, "spec").results
    stats = [(i, op.pid) for i, op in enumerate(scenario.ops) if op.name == "stat"]  # type: ignore[attr-defined]
    assert stats, name
    for index, pid in stats:
        assert results[index]["rss_kb"] == series.rss_kb[pid][index + 1]
        assert results[index]["pss_kb"] == series.pss_kb[pid][index + 1]
    run = buddy_json(scenario)
    lists = [run["start"], *(step["free_lists"] for step in run["steps"])]  # type: ignore[attr-defined]
    assert series.free_frames == [sum(len(b) << o for o, b in enumerate(free)) for free in lists]


def test_the_kernel_figure_draws_rss_pss_and_free_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_or_skip("matplotlib", PLOT_EXTRA)
    from mmcheck.views.plot import kernel_figure

    figure = kernel_figure(load(KERNEL), "linux-kernel-cow-fork.json")
    memory, free = figure.axes
    labels = [line.get_label() for line in memory.get_lines()]
    assert ["pid 1 Rss", "pid 1 Pss", "pid 2 Rss", "pid 2 Pss"] == labels
    pss2 = memory.get_lines()[3].get_ydata()
    assert [2, 2, 2, 2, 4] == [int(y) for y in pss2[5:10]]
    assert KERNEL_FREE == [int(y) for y in free.get_lines()[0].get_ydata()]
    out = tmp_path / "memory.svg"
    assert 0 == main(["plot", str(KERNEL), "-o", str(out)])
    assert f"wrote {out}\n" == capsys.readouterr().out
    assert "<svg" in out.read_text()


def test_a_kernel_plot_of_the_implementation_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_or_skip("matplotlib", PLOT_EXTRA)
    assert 2 == main(["plot", str(KERNEL), "-o", str(tmp_path / "x.png"), "--model", "impl"])
    assert "--model" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_slab_scenario_is_not_plotted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_or_skip("matplotlib", PLOT_EXTRA)
    slab = Path(__file__).parent / "scenarios" / "slab-object-caching.json"
    assert 2 == main(["plot", str(slab), "-o", str(tmp_path / "x.png")])
    assert "plot draws a buddy scenario" in capsys.readouterr().err
