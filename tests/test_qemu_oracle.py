"""QEMU's x86 page walker as an oracle: the shared example, then generated page tables, differentially.

The differential test draws batches of scenarios (``properties.paging.page_tables``)
and runs each batch in as few QEMU boots as possible (one per paging mode and
MAXPHYADDR).  ``MMCHECK_QEMU_BATCHES`` sets how many batches of
``MMCHECK_QEMU_BATCH`` scenarios run; ``nox -s qemu`` asks for at least 1,000
scenarios.  A disagreement is saved as a scenario file (see
``properties.recording``) and fails the test with the op, our result and QEMU's.
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
from hypothesis import Phase, given, settings

from lang.errors import OracleUnsupported
from lang.hardware_ops import SetCpu
from lang.scenario import Scenario, load
from mmcheck.cli import main
from oracles.qemu import oracle as qemu_oracle
from properties.drivers import ImplRunner
from properties.paging.page_tables import mmu_batches
from properties.recording import save_counterexample

MISSING = qemu_oracle.missing_tools()
needs_qemu = requires("qemu", MISSING)
pytestmark = pytest.mark.qemu

SCENARIOS = Path(__file__).parent / "scenarios"
DEVIATIONS = Path(qemu_oracle.GUEST_DIR) / "deviations"
BATCHES = int(os.environ.get("MMCHECK_QEMU_BATCHES", "4"))
BATCH = int(os.environ.get("MMCHECK_QEMU_BATCH", "8"))
STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """One line at the end: scenarios and ops checked, deviations accepted, time per scenario."""
    yield
    if STATS["scenarios"]:
        per = STATS["microseconds"] / STATS["scenarios"] / 1e6
        deviations = ", ".join(f"{k[4:]}={v}" for k, v in sorted(STATS.items()) if k.startswith("dev:")) or "none"
        line = (
            f"qemu oracle: {STATS['scenarios']} scenarios, {STATS['accesses']} accesses, {STATS['reads']} page-table"
            f" reads agree with QEMU in {STATS['boots']} boots; {per * 1000:.1f} ms per scenario;"
            f" documented deviations accepted: {deviations}"
        )
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)


@needs_qemu
def test_sdm_example_runs_on_qemu_as_expected() -> None:
    """The SDM walk example gives its recorded results on QEMU (success without the physical address)."""
    scenario = load(SCENARIOS / "sdm-mmu-walk.json")
    assert scenario.expected_results is not None
    run = qemu_oracle.run(scenario)
    expected = [{"pa": None} if "pa" in want else want for want in scenario.expected_results]
    assert expected == run.results
    assert qemu_oracle.compare(scenario, run).agree


# No shrinking: each scenario is checked on its own, so a failure already
# names the one scenario at fault, and every shrink step would cost a boot.
@needs_qemu
@settings(max_examples=BATCHES, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(mmu_batches(BATCH))
def test_spec_and_impl_agree_with_qemu(batch: list[Scenario]) -> None:
    """Every access result and every A/D write matches QEMU, apart from documented deviations."""
    started = time.monotonic()
    verdicts = qemu_oracle.check_scenarios(batch)
    STATS["microseconds"] += int((time.monotonic() - started) * 1e6)
    STATS["boots"] += len({(s.config.maxphyaddr, s.config.levels) for s in batch})
    for scenario, verdict in zip(batch, verdicts, strict=True):
        assert not isinstance(verdict, OracleUnsupported), f"the generator left the oracle's reach: {verdict}"
        if not verdict.agree:
            problem = "\n".join(d.describe() for d in verdict.disagreements)
            path = save_counterexample("qemu-oracle", scenario.config, list(scenario.ops), problem)
            pytest.fail(f"{problem}\nscenario saved: {path} (run: mmcheck oracle qemu {path})")
        STATS["scenarios"] += 1
        STATS["accesses"] += sum(op.name == "access" for op in scenario.ops)
        STATS["reads"] += sum(op.name == "read_phys" for op in scenario.ops)
        for name, count in verdict.deviations.items():
            STATS[f"dev:{name}"] += count


@needs_qemu
@pytest.mark.parametrize("path", sorted(DEVIATIONS.glob("*.json")), ids=lambda p: p.stem)
def test_documented_deviation_still_shows(path: Path) -> None:
    """Each documented QEMU deviation is reproduced, and accepted only under its own name."""
    scenario = load(path)
    run = qemu_oracle.run(scenario)
    assert scenario.extra["qemu_results"] == run.results
    verdict = qemu_oracle.compare(scenario, run)
    assert verdict.agree, verdict.disagreements
    assert path.stem in verdict.deviations
    assert set(verdict.deviations) <= set(qemu_oracle.DEVIATIONS)


def test_every_deviation_is_documented() -> None:
    """Every deviation the comparison may accept has a scenario and a section in docs/qemu-oracle.md."""
    doc = (Path(__file__).parent.parent / "docs" / "qemu-oracle.md").read_text()
    for name in qemu_oracle.DEVIATIONS:
        assert (DEVIATIONS / f"{name}.json").exists(), name
        assert f"`{name}`" in doc, name


@needs_qemu
def test_cli_runs_a_scenario_on_qemu(capsys: pytest.CaptureFixture[str]) -> None:
    """``mmcheck oracle qemu FILE --json`` prints QEMU's results and exits 0 when everything agrees."""
    assert 0 == main(["oracle", "qemu", str(SCENARIOS / "sdm-mmu-walk.json"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [] == out["disagreements"]
    assert {"pa": None} == out["results"][8]


def scenario_of(ops: list[dict[str, object]], frames: int = 1024) -> Scenario:
    return Scenario.from_json({"config": {"frames": frames}, "ops": ops})


SET_CPU = {"op": "set_cpu", "cpu": 0, "cr3": "0x1000", "wp": False, "smep": False, "smap": False, "ac": False}


@pytest.mark.parametrize(
    ("ops", "frames", "reason"),
    [
        ([], 1 << 15, "at most"),
        ([{"op": "write_phys", "pa": "0xa0000", "value": "0x0"}], 1024, "legacy hole"),
        ([{"op": "write_phys", "pa": "0x2000", "value": "0x1003"}], 1024, "top-level table"),
        ([{"op": "write_phys", "pa": "0x1000", "value": "0x800003"}], 1024, "not usable memory"),
    ],
)
def test_plan_refuses_what_it_cannot_run_faithfully(ops: list[dict[str, object]], frames: int, reason: str) -> None:
    """Scenarios outside the oracle's reach are refused with a reason, never run."""
    access = {"op": "access", "cpu": 0, "va": "0x1000", "kind": "read", "mode": "user"}
    scenario = scenario_of([*ops, {**SET_CPU, "nxe": False, "la57": False}, access], frames)
    with pytest.raises(OracleUnsupported, match=reason):
        qemu_oracle.plan(scenario)


def test_plan_refuses_slot_511_and_mixed_paging_modes() -> None:
    """The borrowed top-level slot and a switch between 4- and 5-level paging are refused."""
    high = {"op": "access", "cpu": 0, "va": "0xffffff8000000000", "kind": "read", "mode": "user"}
    low = {"op": "access", "cpu": 0, "va": "0x1000", "kind": "read", "mode": "user"}
    with pytest.raises(OracleUnsupported, match="slot 511"):
        qemu_oracle.plan(scenario_of([{**SET_CPU, "nxe": False, "la57": False}, high]))
    mixed = [{**SET_CPU, "nxe": False, "la57": False}, low, {**SET_CPU, "nxe": False, "la57": True}, low]
    with pytest.raises(OracleUnsupported, match="4- and 5-level"):
        qemu_oracle.plan(scenario_of(mixed))


def with_pcid(scenario: Scenario, pcid: bool) -> Scenario:
    return Scenario(replace(scenario.config, pcid=pcid), scenario.ops, scenario.expected_results)


def test_the_guest_runs_a_scenario_alike_with_and_without_pcids() -> None:
    """The guest's commands do not depend on ``config.pcid``: it runs every access with CR4.PCIDE=0."""
    scenario = load(SCENARIOS / "sdm-mmu-walk.json")
    assert qemu_oracle.plan(with_pcid(scenario, True)) == qemu_oracle.plan(with_pcid(scenario, False))


@needs_qemu
def test_a_pcid_false_scenario_replays_identically_on_qemu() -> None:
    """With ``pcid`` false QEMU gives the same results and A/D writes as with it true, the recorded results, and
    agrees with the spec and the implementation."""
    scenario = load(SCENARIOS / "sdm-mmu-walk.json")
    assert scenario.expected_results is not None
    first, second = qemu_oracle.run_many([with_pcid(scenario, True), with_pcid(scenario, False)])
    assert isinstance(first, qemu_oracle.QemuRun) and isinstance(second, qemu_oracle.QemuRun)
    assert (first.results, first.changes) == (second.results, second.changes)
    expected = [{"pa": None} if "pa" in want else want for want in scenario.expected_results]
    assert expected == second.results
    assert qemu_oracle.compare(with_pcid(scenario, False), second).agree


@needs_qemu
def test_a_cached_xd_entry_after_nxe_is_cleared_is_the_documented_deviation() -> None:
    """An entry the TLB cached under NXE=1 with XD=1, then NXE cleared: spec and implementation give the RSVD
    fault 0xf (the runner flushes on NXE 1 to 0), QEMU its documented 0xe, accepted as ``rsvd-without-p``."""
    scenario = load(SCENARIOS / "tlb-xd-entry-after-nxe-cleared.json")
    run = qemu_oracle.run(scenario)
    assert {"fault": {"vector": 14, "error_code": 0xE}} == run.results[-1]
    verdict = qemu_oracle.compare(scenario, run)
    assert verdict.agree, [d.describe() for d in verdict.disagreements]
    assert {"rsvd-without-p": 1} == dict(verdict.deviations)


@needs_qemu
def test_a_divergence_is_shown_as_spec_against_impl_beside_qemus_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the runner's flush on NXE 1 to 0 taken out, the implementation answers 0x7 from its TLB: the
    comparison names a spec/impl divergence with both answers, and QEMU's own answer (0xe) beside them."""
    scenario = load(SCENARIOS / "tlb-xd-entry-after-nxe-cleared.json")

    def set_cpu_keeping_entries(self: ImplRunner, op: SetCpu) -> dict[str, object]:
        self.mmu.set_cpu(op.cpu, cr3=op.cr3, wp=op.wp, smep=op.smep, smap=op.smap, ac=op.ac, nxe=op.nxe, la57=op.la57)
        return {"ok": True}

    monkeypatch.setattr(ImplRunner, "set_cpu", set_cpu_keeping_entries)
    run = qemu_oracle.run(scenario)
    [d] = qemu_oracle.compare(scenario, run).disagreements
    assert (len(scenario.ops) - 1, "spec and impl diverge") == (d.index, d.reason)
    assert {
        "spec": {"fault": {"vector": 14, "error_code": 0xF}},
        "impl": {"fault": {"vector": 14, "error_code": 7}},
    } == d.ours
    assert {"fault": {"vector": 14, "error_code": 0xE}} == d.qemu
