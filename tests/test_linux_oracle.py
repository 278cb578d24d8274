"""The live Linux kernel as an oracle: scenario files, then generated scenarios, on the kernel and the models.

``MMCHECK_LINUX_SCENARIOS`` sets how many generated scenarios run (default 5,
so ``nox -s tests`` stays fast; ``nox -s linux`` asks for 300).  A
disagreement is saved as a scenario file (``properties.recording``) with both
sides' observations, and fails the test; a disagreement that is an instance
of an already reported divergence (``linux_oracle.KNOWN_DIVERGENCES``) is
counted and ends that scenario's comparison.  Without root, Linux, x86-64 or
gcc every live test skips, saying which.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dependencies import requires
from hypothesis import given, settings

from impl.pressure.pressure import Pressure
from lang.errors import OracleUnsupported
from lang.kernel_ops import KernelOp, Load, StatOp
from lang.scenario import OP_TYPES, Scenario, load
from mmcheck.cli import main
from oracles.linux import oracle as linux_oracle
from oracles.linux.scenarios import linux_scenarios
from properties.recording import save_counterexample
from properties.replay import result_matches
from spec.pressure import files as spec_files

# The live kernel, its memory cgroups, swap files and page-cluster are shared: its tests run on one worker.
pytestmark = pytest.mark.xdist_group("live-kernel")

UNAVAILABLE = linux_oracle.unavailable()
needs_kernel = requires("root/gcc", UNAVAILABLE)

SCENARIOS = Path(__file__).parent / "scenarios"
DIVERGENCES = SCENARIOS / "linux-divergences"
ABSTRACTIONS = SCENARIOS / "linux-abstractions"
DOC = Path(__file__).parent.parent / "docs" / "linux-oracle.md"
GENERATED = int(os.environ.get("MMCHECK_LINUX_SCENARIOS", "5"))
STATS: Counter[str] = Counter()


def kernel_scenarios() -> list[object]:
    """Scenario files made only of kernel-layer ops the oracle runs: the top level and ``linux-cow/``."""
    params: list[object] = []
    for path in sorted([*SCENARIOS.glob("*.json"), *(SCENARIOS / "linux-cow").glob("*.json")]):
        raw = json.loads(path.read_text())
        names = {op["op"] for op in raw.get("scenario", raw)["ops"]}
        if names <= set(OP_TYPES) and all(issubclass(OP_TYPES[n], KernelOp) for n in names):
            scenario = load(path)
            try:
                linux_oracle.check_supported(scenario)
            except OracleUnsupported:
                continue
            params.append(pytest.param(path, id=path.parent.name + "/" + path.stem))
    return params


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """One line at the end: scenarios and steps run, agreement, known divergences, time per scenario."""
    yield
    if STATS["scenarios"]:
        per = STATS["microseconds"] / STATS["scenarios"] / 1e3
        known = ", ".join(f"{k[6:]}={v}" for k, v in sorted(STATS.items()) if k.startswith("known:")) or "none"
        line = (
            f"linux oracle: {STATS['scenarios']} generated scenarios ({STATS['steps']} steps) run on the live kernel"
            f" and on spec and impl; {STATS['agree']} agree throughout; stopped at a known divergence: {known};"
            f" {per:.0f} ms per scenario"
        )
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)


def fail_with_saved(scenario: Scenario, verdict: linux_oracle.OracleRun) -> None:
    """Save the scenario with every side's observations and fail, naming the file."""
    problem = "\n".join(d.describe() for d in verdict.disagreements)
    extra = {f"{side}_observations": verdict.observations(side) for side in ("linux", "spec", "impl")}
    path = save_counterexample("linux-oracle", scenario.config, list(scenario.ops), problem, **extra)
    pytest.fail(f"{problem}\nscenario saved: {path} (run: mmcheck oracle linux {path})")


@needs_kernel
@pytest.mark.parametrize("path", kernel_scenarios())
def test_scenario_file_agrees_with_the_kernel(path: Path) -> None:
    """Spec, impl and the live kernel agree after every step; the kernel gives the results the file records."""
    scenario = load(path)
    verdict = linux_oracle.run(scenario)
    assert verdict.agree, "\n".join(d.describe() for d in verdict.disagreements)
    if scenario.expected_results is not None:
        for index, (want, step) in enumerate(zip(scenario.expected_results, verdict.steps, strict=True)):
            got = step.results["linux"]
            if isinstance(step.op, StatOp):
                assert linux_oracle.stats_agree(want, got, 0), f"op {index}: expected {want}, kernel gave {got}"
            else:
                assert result_matches(want, got), f"op {index}: expected {want}, kernel gave {got}"


@needs_kernel
@pytest.mark.linux
@settings(max_examples=GENERATED)
@given(linux_scenarios())
def test_generated_scenarios_agree_with_the_kernel(scenario: Scenario) -> None:
    """Every generated scenario: spec and impl agree with the kernel after every step, or hit a known divergence."""
    started = time.monotonic()
    verdict = linux_oracle.run(scenario)
    STATS["microseconds"] += int((time.monotonic() - started) * 1e6)
    STATS["scenarios"] += 1
    STATS["steps"] += len(verdict.steps)
    unknown = [d for d in verdict.disagreements if linux_oracle.known_divergence(d) is None]
    if unknown:
        fail_with_saved(scenario, verdict)
    for name in {linux_oracle.known_divergence(d) for d in verdict.disagreements}:
        STATS[f"known:{name}"] += 1
    STATS["agree"] += verdict.agree


def test_reported_divergences_have_a_scenario_and_a_recogniser_each() -> None:
    """``linux-divergences/`` holds one scenario per entry of ``KNOWN_DIVERGENCES``, each with its recogniser.

    Today the registry is empty: every divergence found so far is modelled,
    and its scenario is a regression scenario with the kernel's results.
    """
    files = {path.stem for path in DIVERGENCES.glob("*.json")}
    assert files == set(linux_oracle.KNOWN_DIVERGENCES) == set(linux_oracle.RECOGNISERS)


@needs_kernel
def test_reported_divergences_still_show_and_are_not_yet_modelled() -> None:
    """Each reported divergence reproduces on this kernel, first at the recorded op, and is recognised by name.

    The models still disagree with the kernel on it; once they agree, the
    divergence is fixed and its scenario becomes a regression scenario.
    """
    for path in sorted(DIVERGENCES.glob("*.json")):
        scenario = load(path)
        verdict = linux_oracle.run(scenario)
        first = scenario.extra["first_disagreement"]
        assert not verdict.agree, f"{path.name}: the models now agree with the kernel; make it a regression scenario"
        assert {"spec", "impl"} == {d.model for d in verdict.disagreements}, path.name
        for d in verdict.disagreements:
            assert (first["op"], first["differs_in"]) == (d.index, list(d.what)), path.name
            assert scenario.extra["divergence"] == linux_oracle.known_divergence(d), path.name


def test_every_divergence_is_documented_and_no_abstraction_is_left() -> None:
    """Each divergence scenario has a section in docs/linux-oracle.md and a name the code knows.

    Fault-around, the one documented abstraction of the kernel layer, is modelled now: its scenario is a
    regression with the kernel's answers (linux-shmem-fault-around.json), and no abstraction folder remains.
    """
    doc = DOC.read_text()
    for path in sorted(DIVERGENCES.glob("*.json")):
        assert path.stem in linux_oracle.KNOWN_DIVERGENCES, path
        assert f"`{path.stem}`" in doc, path
    assert not ABSTRACTIONS.exists()
    assert (SCENARIOS / "linux-shmem-fault-around.json").exists()


def test_pss_rounding_allowance_is_exact() -> None:
    """Pss may differ only by the per-VMA rounding: never above the model, at most one kB per extra fractional VMA."""
    assert linux_oracle.pss_agrees(5, 5, 0)
    assert not linux_oracle.pss_agrees(5, 4, 1)
    assert linux_oracle.pss_agrees(5, 4, 2)
    assert not linux_oracle.pss_agrees(5, 3, 2)
    assert not linux_oracle.pss_agrees(4, 5, 3)


def test_oracle_refuses_what_it_cannot_run_faithfully() -> None:
    """Supervisor accesses, fetches, and addresses or ranges outside the window are refused, naming the op."""
    base = load(SCENARIOS / "linux-kernel-cow-fork.json")
    bad = [
        Load(0, 0x100000000000, "supervisor"),
        OP_TYPES["fetch"].from_json({"cpu": 0, "va": "0x100000000000"}, "x"),
        OP_TYPES["pin"].from_json({"pid": 1, "va": "0x7fff00000000"}, "x"),
        OP_TYPES["mmap"].from_json({"pid": 1, "va": "0x10000", "pages": 1, "prot": "rw-"}, "x"),
    ]
    for op in bad:
        with pytest.raises(OracleUnsupported, match=rf"ops\[{len(base.ops)}\] \({op.name}\)"):
            linux_oracle.check_supported(Scenario(base.config, (*base.ops, op)))


@needs_kernel
def test_cli_prints_both_sides_and_exits_0_on_agreement(capsys: pytest.CaptureFixture[str]) -> None:
    """``mmcheck oracle linux FILE`` prints the kernel's and the models' observations; 0 when they agree."""
    assert 0 == main(["oracle", "linux", str(SCENARIOS / "linux-kernel-cow-fork.json")])
    out = capsys.readouterr().out
    assert "linux -> " in out and "spec  -> " in out


@needs_kernel
def test_cli_exits_1_on_disagreement(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario the models get wrong makes the CLI exit 1 and print the disagreement: here both models without
    fault-around, which the kernel does (the child's read maps the cached neighbour too)."""
    monkeypatch.setattr(spec_files, "fault_around", lambda k, pid, vma, vpn: k)
    monkeypatch.setattr(Pressure, "fault_around", lambda self, proc, vma, vpn: None)
    assert 1 == main(["oracle", "linux", str(SCENARIOS / "linux-shmem-fault-around.json")])
    assert "differ in present pages" in capsys.readouterr().err


def test_oracle_refuses_a_fault_around_it_cannot_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config whose fault_around_bytes is not the kernel's is refused, naming the field; none is changed."""
    base = load(SCENARIOS / "linux-shmem-fault-around.json")
    other = Scenario(replace(base.config, fault_around_bytes=4096), base.ops)
    monkeypatch.setattr(linux_oracle, "kernel_fault_around_bytes", lambda: 65536)
    linux_oracle.check_supported(base)
    with pytest.raises(OracleUnsupported, match=r"config.fault_around_bytes: 4096, but the kernel's is 65536"):
        linux_oracle.check_supported(other)


def test_cli_exits_2_without_the_kernel(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Not root (or not Linux): exit 2 with the reason."""
    monkeypatch.setattr(linux_oracle, "unavailable", lambda: "the Linux oracle needs root")
    assert 2 == main(["oracle", "linux", str(SCENARIOS / "linux-kernel-cow-fork.json")])
    assert "needs root" in capsys.readouterr().err
