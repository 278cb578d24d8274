"""``nox -s bench -- --quick``: the report's structure, not its figures (speed is measured, never asserted).

The quick run is started as ``nox -s bench`` starts it, ``python -m
benchmarks.run`` from the project root.  The step counter of the harness
benchmark is checked against a machine that counts its own rules.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dependencies import skip_without
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = {
    *("translation", "buddy", "slab", "kernel", "pressure", "oom"),
    *("malloc", "numa", "shootdown", "thp", "harness"),
}
MACHINES = {"mmu", "buddy", "kernel", "smp"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, out


@pytest.fixture(scope="module")
def report(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    done, out = quick_run
    assert 0 == done.returncode, done.stderr
    loaded: dict[str, Any] = json.loads((out / "bench-quick.json").read_text())
    return loaded


def test_the_quick_run_prints_one_plain_table(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Not a terminal: a title, a header and one line per row, no Rich borders; progress goes to stderr."""
    done, out = quick_run
    lines = done.stdout.splitlines()
    assert lines[0].startswith("nox -s bench (quick: a smoke run, not measurements): ")
    assert lines[1].split()[:3] == ["family", "measure", "impl"]
    assert f"written: {out / 'bench-quick.json'}" in lines
    assert "┃" not in done.stdout and "\x1b[" not in done.stdout
    assert "translation: " in done.stderr


def test_every_family_has_rows_and_every_row_its_figures(report: dict[str, Any]) -> None:
    """impl-vs-spec rows carry both sides and the ratio (or say why the spec did not run); counts a baseline."""
    assert FAMILIES == {row["family"] for row in report["rows"]}
    for row in report["rows"]:
        if row["kind"] == "impl-vs-spec":
            assert row["impl"] > 0, row
            if "spec" in row:
                expected = row["impl"] / row["spec"] if row["unit"].endswith("/s") else row["spec"] / row["impl"]
                assert expected == pytest.approx(row["ratio"]), row
            else:
                assert "ratio" not in row and row["note"], row
        elif row["kind"] == "impl-vs-native":
            assert row["impl"] > 0, row
            assert ("ratio" in row) == ("baseline" in row), row
            if "baseline" in row:
                assert row["impl"] / row["baseline"] == pytest.approx(row["ratio"]), row
        elif row["kind"] == "impl-vs-baseline":
            assert row["impl"] >= 0 and row["baseline"] >= 0, row
            assert ("ratio" in row) == (row["impl"] > 0 and row["baseline"] > 0), row
        else:
            assert "harness" == row["kind"] and row["value"] > 0, row


def test_the_rows_cover_what_the_issue_lists(report: dict[str, Any]) -> None:
    measures = [row["measure"] for row in report["rows"]]
    for what in ("TLB hits", "TLB misses, 4-level walk", "TLB misses, 5-level walk"):
        assert f"loads/s, {what}" in measures
    assert sum(m.startswith("alloc+free pairs/s at 2^") for m in measures) == 3
    assert any(m.startswith("fork of ") for m in measures) and "COW faults/s after fork" in measures
    assert any(m.startswith("munmap of ") and m.endswith("written pages") for m in measures)
    for name in ("IPIs", "INVLPGs", "full flushes"):
        assert any(m.endswith(f": {name}") for m in measures)
    assert {f"{name} machine steps/s" for name in MACHINES} <= set(measures)
    for explorer in ("spec", "lockstep"):
        assert {f"{explorer} explorer distinct states/s, {s}" for s in ("buddy", "smp")} <= set(measures)
    assert {"spec explorer states, buddy, verify's bound", "spec explorer states, smp, verify's bound"} <= set(measures)
    assert "shared model states/s, lost update, 3 processes: spec explorer" in measures
    kinds = ("minor, anonymous zero page", "minor, page-cache hit", "major, file read", "major, swap-in")
    assert {f"faults/s, {kind}" for kind in kinds} <= set(measures)
    assert sum(m.startswith("reclaim of ") and m.endswith("clean page-cache pages") for m in measures) == 2
    assert sum(m.startswith("reclaim of ") and m.endswith("anonymous pages to swap") for m in measures) == 2
    assert sum(m.startswith("oom_badness scan of ") and m.endswith(" processes") for m in measures) == 1
    assert {
        "malloc+free pairs/s, the model against glibc",
        "malloc+free pairs/s, the model against the contract's checks",
    } <= set(measures)


def test_scaling_has_three_sizes_and_the_growth_between_them(report: dict[str, Any]) -> None:
    assert {"translation", "buddy", "slab", "fork", "faults", "reclaim, page cache", "reclaim, anon to swap"} == {
        s["family"] for s in report["scaling"]
    }
    for series in report["scaling"]:
        assert 3 == len(series["sizes"]) == len(series["impl"]) == len(series["spec"]), series
        assert series["sizes"] == sorted(set(series["sizes"]))
        impl = series["impl"]
        assert pytest.approx([impl[1] / impl[0], impl[2] / impl[1]]) == series["growth"]


def test_targets_are_judged_and_counted(report: dict[str, Any]) -> None:
    """Seventeen targets (translation, buddy and slab ratios; the slab's calls per pair flat; buddy, slab, fork, fault
    and two reclaim scalings; four machines, two explorers, the parallel search's speedup), each judged."""
    judged = [r["target"] for r in report["rows"] if "target" in r] + [
        s["target"] for s in report["scaling"] if "target" in s
    ]
    # and the spec explorer against musil on the shared model, when an interpreter with musil is at hand
    expected = 17 + any(r["measure"].endswith("against musil") for r in report["rows"])
    assert expected == len(judged)
    assert all(isinstance(t["met"], bool) and t["wanted"] for t in judged)
    assert sum(t["met"] for t in judged) == report["targets"]["met"]
    assert expected == report["targets"]["met"] + report["targets"]["missed"]


def test_meta_records_the_run(report: dict[str, Any]) -> None:
    meta = report["meta"]
    assert "quick" == meta["mode"]
    assert 3 == len(meta["load_average_before"]) == len(meta["load_average_after"])
    assert meta["seconds"] > 0


def test_the_plot_is_written(quick_run: tuple[subprocess.CompletedProcess[str], Path], report: dict[str, Any]) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        skip_without("matplotlib", "the plot extra is not installed: pip install -e '.[plot]'")
    png = quick_run[1] / "bench-quick.png"
    assert str(png) == report["meta"]["plot"]
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


class Counted(RuleBasedStateMachine):
    """A machine that counts the rules it runs, to check the benchmark's counter against."""

    runs = 0

    @initialize()
    def start(self) -> None:
        Counted.runs += 1

    @rule()
    def tick(self) -> None:
        Counted.runs += 1

    @precondition(lambda self: False)
    @rule()
    def never(self) -> None:
        Counted.runs += 1

    @invariant()
    def holds(self) -> None:
        pass


def test_the_step_counter_counts_every_rule_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.harness import counting, fixed_settings

    machine, count = counting(Counted)
    Counted.runs = 0
    run_state_machine_as_test(machine, settings=settings(fixed_settings(20), stateful_step_count=7))
    assert Counted.runs > 20
    assert Counted.runs == count.steps


@pytest.mark.parametrize("side", ["impl", "spec"])
def test_pressure_workloads_do_what_they_are_named_for(side: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fault workload makes faults of its kind, each reclaim frees every page; a mislabel is caught."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_pressure as bp

    for kind in bp.KINDS:
        assert bp.run(side, bp.fault_workload(kind, 4), kind).units == 4
    assert bp.run(side, bp.cache_reclaim_workload(4), "cache").units == 4
    assert bp.run(side, bp.anon_reclaim_workload(4), "anon").units == 4
    with pytest.raises(bp.WrongResult):
        bp.run(side, bp.fault_workload("minor, page-cache hit", 4), "major, file read")
    with pytest.raises(bp.WrongResult):
        bp.run(side, bp.fault_workload("major, file read", 4), "minor, page-cache hit")
