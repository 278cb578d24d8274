"""``python -m benchmarks.memory``: each probe's exit code and peak RSS are read from its own process (the
figures themselves are measured by running it, never asserted here beyond the budget's verdict)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MIB = 1024


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


def test_a_probe_with_the_wrong_exit_code_fails_and_names_are_distinct(tmp_path: Path) -> None:
    """Run from the project root, as ``python -m benchmarks.memory`` is (benchmarks/ is not installed)."""
    code = f"""
from pathlib import Path
from benchmarks.memory import BUDGET_MIB, PROBES, Probe, measure
assert BUDGET_MIB == {BUDGET_MIB}
names = [p.name for p in PROBES]
assert len(names) == len(set(names))
assert all(p.quick for p in PROBES if p.exit_code == 2)
measured = measure(Probe("wrong", "bad input said to be good", 0, lambda: b"[" * 100), Path({str(tmp_path)!r}))
print(measured.exit_code, measured.ok)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "False"]
