"""``python -m benchmarks.memory``: each probe's exit code and peak RSS are read from its own process (the
figures themselves are measured by running it, never asserted here beyond the budget's verdict)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.memory import BUDGET_MIB, PROBES, Probe, measure

ROOT = Path(__file__).resolve().parent.parent


def test_two_probes_run_and_report_their_figures(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--only", "deep-nesting", "--only", "max-mapped-total",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"deep-nesting", "max-mapped-total"}
    assert (rows["deep-nesting"]["exit_code"], rows["max-mapped-total"]["exit_code"]) == (2, 0)
    assert all(row["ok"] and 0 < row["peak_mib"] < BUDGET_MIB for row in rows.values())
    assert f"budget {BUDGET_MIB} MiB" in done.stdout


def test_a_probe_with_the_wrong_exit_code_fails(tmp_path: Path) -> None:
    wrong = Probe("wrong", "bad input said to be good", 0, lambda: b"[" * 100)
    measured = measure(wrong, tmp_path)
    assert measured.exit_code == 2 and not measured.ok


def test_every_probe_has_a_distinct_name_and_the_bad_ones_run_quick() -> None:
    names = [p.name for p in PROBES]
    assert len(names) == len(set(names))
    assert all(p.quick for p in PROBES if p.exit_code == 2)
