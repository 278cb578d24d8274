"""Every subcommand of ``mmcheck --help`` runs, as its own process, without a traceback: ``--help`` and one real use.

A subcommand whose dependency is missing here (an optional extra, an
oracle's program) must say so and exit 2, not raise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcheck.cli import build_parser
from oracles.linux import oracle as linux_oracle
from oracles.linux.pressure_host import unavailable_pressure
from oracles.qemu import oracle as qemu_oracle

SCENARIOS = Path(__file__).parent / "scenarios"
BUDDY = str(SCENARIOS / "buddy-expand-merge.json")
COW = str(SCENARIOS / "cow-basic-after-fork.json")
SDM = str(SCENARIOS / "sdm-mmu-walk.json")
SLAB = str(SCENARIOS / "slab-object-caching.json")

# subcommand -> (arguments of one real use, why it cannot run here or None)
USES: dict[str, tuple[list[str], str | None]] = {
    "replay": (["replay", BUDDY], None),
    "walk": (["walk", "--va", "0x1010", SDM], None),
    "explain": (["explain", COW], None),
    "explore": (["explore", "--layer", "buddy", "--frames", "4", "--depth", "3"], None),
    "quiz": (["quiz", "--seed", "1", "-c"], None),
    "oracle": (["oracle", "qemu", SDM], qemu_oracle.missing_tools()),
    "buddy": (["buddy", BUDDY], None),
    "mutants": (["mutants", "--name", "buddy-plus", "--jobs", "1"], None),
    "draw": (["draw", COW], None),
    "report": (["report", COW, "-o", "{tmp}/report.html"], None),
    "slab": (["slab", SLAB], None),
    "lru": (["lru", str(SCENARIOS / "pressure-page-life.json")], None),
    "plot": (["plot", BUDDY, "-o", "{tmp}/free.png"], None if importlib.util.find_spec("matplotlib") else "matplotlib"),
    "new": (["new", "pressure"], None),
    "scenarios": (["scenarios", str(SCENARIOS)], None),
}


def subcommands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return list(sub.choices or {})  # type: ignore[call-overload]


def mmcheck(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MMCHECK_COUNTEREXAMPLES": str(cwd / "counterexamples")}
    return subprocess.run(
        [sys.executable, "-m", "mmcheck", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_every_subcommand_has_a_use_here() -> None:
    assert sorted(subcommands()) == sorted(USES)


@pytest.mark.parametrize("name", sorted(USES))
def test_help_runs(name: str, tmp_path: Path) -> None:
    done = mmcheck([name, "--help"], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert 0 == done.returncode, done.stderr
    assert f"usage: mmcheck {name}" in done.stdout


@pytest.mark.parametrize("name", sorted(USES))
def test_one_real_use_runs(name: str, tmp_path: Path) -> None:
    args, missing = USES[name]
    done = mmcheck([a.replace("{tmp}", str(tmp_path)) for a in args], tmp_path)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    if missing is None:
        assert 0 == done.returncode, done.stdout[-2000:] + done.stderr
        assert done.stdout.strip()
    else:
        assert 2 == done.returncode, done.stderr
        assert "mmcheck: error:" in done.stderr


def test_the_linux_oracle_runs_or_says_why_not(tmp_path: Path) -> None:
    done = mmcheck(["oracle", "linux", str(SCENARIOS / "linux-cow" / "basic-cow-after-fork.json")], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert (0 if linux_oracle.unavailable() is None else 2) == done.returncode, done.stderr


def test_the_pressure_oracle_runs_or_says_why_not(tmp_path: Path) -> None:
    scenario = str(SCENARIOS / "linux-pressure" / "file-mappings.json")
    done = mmcheck(["oracle", "pressure", scenario, "--json"], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert (0 if unavailable_pressure() is None else 2) == done.returncode, done.stderr
    if done.returncode == 0:
        out = json.loads(done.stdout)
        assert out["mem_available"]["agree"] and out["agreement"]["spec"]["contents"][0] > 0


def test_the_thp_oracle_runs_or_says_why_not(tmp_path: Path) -> None:
    from oracles.linux.thp import unavailable_thp

    done = mmcheck(["oracle", "thp", "--json"], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert (0 if unavailable_thp() is None else 2) == done.returncode, done.stderr
    if done.returncode == 0:
        out = json.loads(done.stdout)
        assert out["disagreements"] == [] and out["agreement"]["impl"]["AnonHugePages"][0] > 0
