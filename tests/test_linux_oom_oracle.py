"""The live Linux kernel as an oracle for the OOM killer (:mod:`oracles.linux.oom`).

Generated cases (``MMCHECK_LINUX_SCENARIOS`` of them, 5 by default) run on the kernel in a cgroup v1 memory
group with and without a swap file; the model's ``oom_score`` of every process and its victim at every OOM,
computed from the kernel's own inputs, must equal the kernel's.  A case with a negative ``oom_score_adj``
needs CAP_SYS_RESOURCE: without it such cases are generated, counted and not run (the summary line says so,
and ``test_a_negative_adj_case_agrees`` skips with the reason).  The log parser and the comparison are tested
offline on a recorded log.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependencies import requires
from hypothesis import Phase, given, settings

from lang.errors import InvalidArgument
from mmcheck.cli import main
from oracles.linux import oom, oom_model
from oracles.linux.oom_cases import oom_cases
from oracles.linux.pressure_host import cgroup_kind, unavailable_pressure
from properties.recording import counterexample_folder

# The live kernel, its memory cgroups, swap files and page-cluster are shared: its tests run on one worker.
pytestmark = pytest.mark.xdist_group("live-kernel")

UNAVAILABLE = unavailable_pressure() or (None if cgroup_kind() == "v1" else "no cgroup v1 memory controller")
needs_oom = requires("root/cgroup v1 memory controller", UNAVAILABLE)
REFUSED = None if UNAVAILABLE else oom.negative_adj_refused()
GENERATED = int(os.environ.get("MMCHECK_LINUX_SCENARIOS", "5"))
RUNS: Counter[str] = Counter()

# The kernel log of a 16 MiB group without swap, recorded on Linux 6.18 (x86-64): three idle hogs of 768,
# 1,280 and 512 pages (adj 0, 0, 500) and an offender growing; two OOMs.
LOG = (Path(__file__).parent / "oracle-logs" / "oom-memcg-6.18.txt").read_text()
CASE = oom.OomCase(4096, False, ((768, 0), (1280, 0), (512, 500)), 0, 12288)


def recorded(events: list[oom.OomEvent]) -> oom.KernelOom:
    """The recorded run as :func:`oom.run_case` would have returned it (scores read before the growth)."""
    status = [{"VmRSS": 931 * 4, "VmSwap": 0, "VmPTE": 48}, {"VmRSS": 1443 * 4, "VmSwap": 0, "VmPTE": 52}]
    status += [{"VmRSS": 675 * 4, "VmSwap": 0, "VmPTE": 44}, {"VmRSS": 163 * 4, "VmSwap": 0, "VmPTE": 40}]
    pids = [8276, 8277, 8278, 8279]
    return oom.KernelOom(pids, [666, 666, 1000, 666], status, 6170946, 0, 60, events, [2, 3], 2, 127)


def test_the_log_parser_reads_each_oom_table_and_victim() -> None:
    events = oom.parse_log(LOG.splitlines())
    assert [e.victim for e in events] == [8278, 8279]
    assert [len(e.tasks) for e in events] == [4, 3]
    assert events[0].constraint == "CONSTRAINT_MEMCG" and events[0].memcg == "/oomx"
    assert events[0].tasks[2] == oom.TaskRow(8278, 675, 512, 163, 0, 45056, 0, 500)
    assert oom.parse_log(LOG.splitlines()[:6]) == []  # a table cut before its oom-kill line is dropped


def test_the_model_names_the_recorded_victims() -> None:
    """Domain 4,096 pages: adj 500 is worth 2,000 points, so 8278 (675 + 11 + 2000) goes before 8277 (1443 + 13)."""
    verdict = oom.check(CASE, recorded(oom.parse_log(LOG.splitlines())))
    assert verdict.problems == []
    assert verdict.victims == [(2, 2), (3, 3)]
    assert [want for _, _, want in verdict.scores] == [666, 666, 1000, 666]


def test_a_victim_the_model_would_not_choose_is_a_disagreement() -> None:
    events = oom.parse_log(LOG.splitlines())
    wrong = [oom.OomEvent(events[0].constraint, events[0].memcg, events[0].tasks, 8277), events[1]]
    verdict = oom.check(CASE, recorded(wrong))
    assert verdict.victims[0] == (1, 2)
    assert any("OOM 1: the kernel killed process 1, the model would kill 2" in p for p in verdict.problems)


def test_a_wrong_oom_score_and_a_lost_kill_are_disagreements() -> None:
    kernel = recorded(oom.parse_log(LOG.splitlines()))
    kernel.scores[2] = 999
    kernel.oom_kill = 3
    problems = oom.check(CASE, kernel).problems
    assert "process 2: /proc/PID/oom_score 999, the model 1000" in problems
    assert "memory.oom_control counts 3 kills, the log shows 2" in problems


def test_a_case_survives_its_json_and_bad_input_is_named() -> None:
    case = oom.OomCase(2048, True, ((10, -900), (0, 1000)), 500, 6144, kill_disable=True)
    assert oom.OomCase.from_json(json.loads(json.dumps(case.to_json()))) == case
    with pytest.raises(InvalidArgument, match=re.escape("oom_score_adj must be in -1000..1000, not 1001")):
        oom.OomCase(2048, True, ((10, 1001),), 0, 10)
    with pytest.raises(InvalidArgument, match="needs limit, swap, tasks"):
        oom.OomCase.from_json({"limit": 10})


def test_mmcheck_oracle_oom_names_a_bad_case_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "case.json"
    bad.write_text("[1, 2]")
    assert main(["oracle", "oom", str(bad)]) == 2
    assert "an OOM case is a JSON object, not list" in capsys.readouterr().err
    bad.write_text("{")
    assert main(["oracle", "oom", str(bad)]) == 2
    assert "not a JSON OOM case" in capsys.readouterr().err


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if RUNS["cases"] or RUNS["negative"]:
        line = (
            f"linux OOM oracle: {RUNS['cases']} cases on the live kernel ({RUNS['swap']} with swap,"
            f" {RUNS['disable']} with oom_kill_disable), {RUNS['ooms']} OOMs: the model names the kernel's victim"
            f" {RUNS['victims']}/{RUNS['ooms']} times and its oom_score {RUNS['scores']}/{RUNS['processes']} times;"
            f" {RUNS['negative']} generated cases with a negative oom_score_adj not run ({REFUSED or 'none refused'});"
            f" the model's own run of the {RUNS['own']} cases without swap chose the kernel's victims in order"
            f" {RUNS['own_agree']}/{RUNS['own']} times"
        )
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)


def run_and_check(case: oom.OomCase) -> oom.OomVerdict:
    """Run on the kernel; on a disagreement save the case (replay: ``mmcheck oracle oom FILE``)."""
    kernel = oom.run_case(case)
    verdict = oom.check(case, kernel)
    if oom_model.comparable(case) is None:  # the model's own run of the case, its memory cgroup faulting
        own = oom_model.compare(kernel.killed, kernel.stuck, oom_model.model_run(case))
        RUNS["own"] += 1
        RUNS["own_agree"] += not own
        verdict.problems.extend(f"the model's own run: {p}" for p in own)
    RUNS["cases"] += 1
    RUNS["swap"] += case.swap
    RUNS["disable"] += case.kill_disable
    RUNS["ooms"] += len(verdict.victims)
    RUNS["victims"] += sum(k == m for k, m in verdict.victims)
    RUNS["processes"] += len(verdict.scores)
    RUNS["scores"] += sum(got == want for _, got, want in verdict.scores)
    if not verdict.agree:
        folder = counterexample_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "linux-oom-oracle.json"
        path.write_text(json.dumps({**case.to_json(), "problem": verdict.problems}, indent=2) + "\n")
        problems = "\n".join(verdict.problems)
        pytest.fail(f"{case.describe()}\n{problems}\ncase saved: {path} (run: mmcheck oracle oom {path})")
    return verdict


@needs_oom
@pytest.mark.linux
@settings(max_examples=GENERATED, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(oom_cases())
def test_generated_oom_cases_agree_with_the_kernel(case: oom.OomCase) -> None:
    """The model's victim at every OOM and every process's oom_score equal the kernel's."""
    if REFUSED and min(case.adjs) < 0:
        RUNS["negative"] += 1
        return
    verdict = run_and_check(case)
    assert verdict.victims, "the offender grew past memory and swap, so the group must have had an OOM"


@needs_oom
@pytest.mark.linux
def test_a_negative_adj_case_agrees() -> None:
    """The seed's tiers: -900 (a database), 500 (a batch job), 1000 (a cache) and an offender at 0."""
    if REFUSED:
        pytest.skip(REFUSED)
    run_and_check(oom.OomCase(4096, False, ((1024, -900), (512, 500), (256, 1000)), 0, 12288))


@needs_oom
@pytest.mark.linux
def test_the_allocating_process_itself_can_be_the_victim() -> None:
    """An offender at 1000 is the first victim however small the others' scores."""
    verdict = run_and_check(oom.OomCase(2048, False, ((1500, 0),), 1000, 6144))
    assert verdict.victims[0] == (1, 1)
    assert verdict.kernel.killed == [1]


@needs_oom
@pytest.mark.linux
def test_oom_kill_disable_holds_the_group_under_oom() -> None:
    """With oom_kill_disable the group waits under_oom with every process alive; once cleared, it kills."""
    verdict = run_and_check(oom.OomCase(2048, False, ((900, 0), (600, 300)), 0, 6144, kill_disable=True))
    assert verdict.kernel.under_oom_seen
    assert verdict.victims and verdict.victims[0] == (1, 1)


@needs_oom
@pytest.mark.linux
def test_mmcheck_oracle_oom_runs_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oracle", "oom", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["problems"] == [] and out["victims"] and all(v["kernel"] == v["model"] for v in out["victims"])
