"""The live Linux kernel as an oracle for memory pressure, and MemAvailable against ``si_mem_available``.

Pressure scenarios (files under ``tests/scenarios/linux-pressure/`` and
generated ones, ``MMCHECK_LINUX_SCENARIOS`` of them, 5 by default) run on the
kernel, inside a memory cgroup with a swap file (``oracles.linux.pressure_host``),
and on spec and impl.  Contents are exact on every step of every scenario;
every other quantity agrees, or differs only as a documented abstraction
(``oracles.linux.pressure.ABSTRACTIONS``, docs/linux-oracle.md).  Without
root, a memory cgroup or the swap tools every live test skips, saying which
(in CI a skip for a missing dependency fails: tests/dependencies.py).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependencies import requires
from hypothesis import Phase, given, settings

from lang.errors import OracleError, OracleUnsupported
from lang.scenario import OP_TYPES, Scenario, load
from mmcheck.cli import main
from oracles.linux import meminfo, pressure
from oracles.linux.pressure_host import PAGE_CLUSTER, PressureHost, saved_sysctls, unavailable_pressure
from oracles.linux.pressure_scenarios import over_limit, pressure_scenarios
from properties.recording import save_counterexample

# The live kernel, its memory cgroups, swap files and page-cluster are shared: its tests run on one worker.
pytestmark = pytest.mark.xdist_group("live-kernel")

UNAVAILABLE = unavailable_pressure()
needs_pressure = requires("root/memory cgroup/swap", UNAVAILABLE)
needs_proc = requires("/proc/zoneinfo", None if Path("/proc/zoneinfo").exists() else "no /proc/zoneinfo: not Linux")

SCENARIOS = Path(__file__).parent / "scenarios"
PRESSURE = SCENARIOS / "linux-pressure"
ABSTRACTIONS = SCENARIOS / "linux-pressure-abstractions"
DOC = Path(__file__).parent.parent / "docs" / "linux-oracle.md"
GENERATED = int(os.environ.get("MMCHECK_LINUX_SCENARIOS", "5"))
AGREED: Counter[str] = Counter()
COMPARED: Counter[str] = Counter()
RUNS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """One line at the end: scenarios and steps run, and agreement per compared quantity (spec's)."""
    yield
    if RUNS["scenarios"]:
        counts = ", ".join(f"{q} {AGREED[q]}/{COMPARED[q]}" for q in pressure.QUANTITIES if COMPARED[q])
        known = ", ".join(f"{k[6:]}={v}" for k, v in sorted(RUNS.items()) if k.startswith("known:")) or "none"
        line = (
            f"linux pressure oracle: {RUNS['scenarios']} scenarios ({RUNS['steps']} steps) on the live kernel and on"
            f" spec and impl; spec agrees on {counts}; steps differing only as a documented abstraction: {known}"
        )
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)


def check(scenario: Scenario) -> pressure.PressureVerdict:
    """Run on the kernel; fail (saving the scenario) on any disagreement that is not a documented abstraction."""
    verdict = pressure.run(scenario)
    RUNS["scenarios"] += 1
    RUNS["steps"] += len(verdict.steps)
    AGREED.update(verdict.agreed["spec"])
    COMPARED.update(verdict.compared["spec"])
    for name, count in verdict.abstractions["spec"].items():
        RUNS[f"known:{name}"] += count
    inexact = [m for m in pressure.MODELS if verdict.agreed[m]["contents"] != verdict.compared[m]["contents"]]
    if verdict.disagreements or inexact:
        problem = "\n".join(verdict.describe(*d) for d in verdict.disagreements)
        problem += "".join(f"\n{m}: contents differ, and contents must be exact" for m in inexact)
        path = save_counterexample("linux-pressure-oracle", scenario.config, list(scenario.ops), problem)
        pytest.fail(f"{problem}\nscenario saved: {path} (run: mmcheck oracle pressure {path})")
    return verdict


def pressure_files() -> list[object]:
    """``linux-pressure/`` and the top-level ``pressure-*`` regression scenarios the pressure oracle can run."""
    params: list[object] = []
    for path in [*sorted(PRESSURE.glob("*.json")), *sorted(SCENARIOS.glob("pressure-*.json"))]:
        try:
            pressure.check_pressure_supported(load(path))
        except OracleUnsupported:
            continue
        params.append(pytest.param(path, id=f"{path.parent.name}/{path.stem}"))
    return params


@needs_pressure
@pytest.mark.parametrize("path", pressure_files())
def test_pressure_scenario_file_agrees_with_the_kernel(path: Path) -> None:
    """Every pressure scenario file: contents exact, everything else agrees or is a documented abstraction; the
    kernel gives the results a file records."""
    scenario = load(path)
    verdict = check(scenario)
    if scenario.expected_results is not None:
        got = [step.results["linux"] for step in verdict.steps]
        assert got == list(scenario.expected_results)


@needs_pressure
@pytest.mark.linux
@settings(max_examples=GENERATED, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(pressure_scenarios())
def test_generated_pressure_scenarios_agree_with_the_kernel(scenario: Scenario) -> None:
    """Generated pressure scenarios agree with the kernel as the scenario files do.

    No shrinking: each live run takes a fraction of a second and sets up a swap file; the first failing
    scenario is saved with its disagreement, and ``mmcheck oracle pressure`` replays it.
    """
    check(scenario)


@needs_pressure
@pytest.mark.slow
def test_contents_stay_exact_under_the_cgroup_limit() -> None:
    """512 pages stored under a 1 MiB limit: the kernel reclaims on its own (VmSwap > 0), and so does the model
    (320 frames); every load returns what was stored and each side holds every page in memory or in swap."""
    scenario = over_limit()
    verdict = pressure.run(scenario, limit=1 << 20)
    assert not verdict.disagreements, "\n".join(verdict.describe(*d) for d in verdict.disagreements)
    after_stores = verdict.steps[3 + 512].results
    assert after_stores["linux"]["VmSwap"] > 0, "the limit did not make the kernel reclaim"
    assert after_stores["spec"]["VmSwap"] > 0, "the model did not reclaim"
    for model in pressure.MODELS:
        assert verdict.agreed[model]["contents"] == verdict.compared[model]["contents"] == 512
        assert verdict.agreed[model]["VmRSS+VmSwap"] == verdict.compared[model]["VmRSS+VmSwap"]


@needs_pressure
def test_a_second_host_waits_for_the_first() -> None:
    """Swap, page-cluster and charges are machine-wide: a second host (another test process, here a thread)
    is not set up while the first holds the machine, and is once the first has undone its setup."""
    entered = threading.Event()

    def second() -> None:
        with PressureHost(swap=False):
            entered.set()

    with PressureHost(swap=False) as first:
        waiter = threading.Thread(target=second)
        waiter.start()
        assert not entered.wait(0.5), "a second host was set up while the first held the machine"
        assert first.exists()
    assert entered.wait(30), "the second host never got the machine after the first closed"
    waiter.join(30)


@needs_pressure
def test_the_next_host_undoes_a_killed_run() -> None:
    """A run killed inside its host leaves its swap file on, its cgroup and page-cluster 0; the next host, once it
    holds the lock, turns that swap off, removes the cgroup and folder, and restores the value the dead run found."""
    before = PAGE_CLUSTER.read_text().strip()
    dead = PressureHost()
    dead.setup()
    affinity = dead.affinity
    assert dead.lock is not None
    os.close(dead.lock)  # the process dies: the kernel drops its flock, nothing else is undone
    assert PAGE_CLUSTER.read_text().strip() == "0"
    assert str(dead.swapfile) in Path("/proc/swaps").read_text()
    with PressureHost(swap=False):
        assert str(dead.swapfile) not in Path("/proc/swaps").read_text()
        assert not dead.cgroup.exists()
        assert not dead.folder.exists()
    assert PAGE_CLUSTER.read_text().strip() == before
    assert affinity is not None
    os.sched_setaffinity(0, affinity)


@needs_pressure
def test_the_next_host_restores_a_killed_runs_other_sysctls() -> None:
    """A caller's sysctl (the OOM oracle's vm.oom_dump_tasks) is kept in the lock file with page-cluster: a run
    killed with it changed leaves it changed, and the next host restores the value the dead run found."""
    dump_tasks = Path("/proc/sys/vm/oom_dump_tasks")
    before, flipped = dump_tasks.read_text().strip(), "0" if dump_tasks.read_text().strip() == "1" else "1"
    dead = PressureHost(swap=False, sysctls={dump_tasks: flipped})
    dead.setup()
    affinity = dead.affinity
    assert dead.lock is not None
    os.close(dead.lock)  # the process dies: the kernel drops its flock, nothing else is undone
    assert dump_tasks.read_text().strip() == flipped
    with PressureHost(swap=False):
        assert dump_tasks.read_text().strip() == before
        assert not dead.cgroup.exists() and not dead.folder.exists()
    assert dump_tasks.read_text().strip() == before
    assert affinity is not None
    os.sched_setaffinity(0, affinity)


@needs_pressure
def test_a_host_refuses_a_sysctl_that_is_not_one() -> None:
    with pytest.raises(OracleError, match="is not a sysctl of this kernel"):
        PressureHost(swap=False, sysctls={Path("/etc/hostname"): "x"})
    with pytest.raises(OracleError, match="is not a sysctl of this kernel"):
        PressureHost(swap=False, sysctls={Path("/proc/sys/vm/no-such-sysctl"): "1"})


def test_the_lock_files_saved_sysctls_are_read_in_both_forms() -> None:
    """The lock file holds a JSON object of sysctl path to value; a bare value (as written before other sysctls
    were kept) is page-cluster's; empty is no live run; anything else is an error naming the lock file."""
    assert saved_sysctls("") == {}
    assert saved_sysctls("3\n") == {PAGE_CLUSTER: "3"}
    both = '{"/proc/sys/vm/page-cluster": "3", "/proc/sys/vm/oom_dump_tasks": "0"}'
    assert saved_sysctls(both) == {PAGE_CLUSTER: "3", Path("/proc/sys/vm/oom_dump_tasks"): "0"}
    with pytest.raises(OracleError, match="neither a sysctl value nor a JSON object"):
        saved_sysctls("{not json")
    with pytest.raises(OracleError, match="not a JSON object of sysctl paths to values"):
        saved_sysctls('{"/proc/sys/vm/page-cluster": 3}')
    with pytest.raises(OracleError, match="which is not a sysctl"):
        saved_sysctls('{"/etc/passwd": "x"}')


@needs_pressure
def test_swap_cache_after_pageout_still_shows() -> None:
    """The documented abstraction is real here: the swap-in after MADV_PAGEOUT is minor on the kernel only."""
    verdict = pressure.run(load(PRESSURE / "pageout-swapin.json"))
    assert verdict.abstractions["spec"]["swap-cache-after-pageout"] > 0
    assert verdict.abstractions["impl"]["swap-cache-after-pageout"] > 0


@needs_pressure
@pytest.mark.parametrize("path", sorted(ABSTRACTIONS.glob("*.json")), ids=lambda p: p.stem)
def test_pressure_abstraction_scenario_still_shows(path: Path) -> None:
    """Each abstraction scenario differs from the kernel first at the recorded op, in the recorded quantities
    (and at most those the file says timing may add)."""
    scenario = load(path)
    verdict = pressure.run(scenario)
    first = scenario.extra["first_disagreement"]
    assert {"spec", "impl"} == {model for _, model, _ in verdict.disagreements}
    allowed = set(first["differs_in"]) | set(first.get("may_also_differ_in", ()))
    for index, _, what in verdict.disagreements:
        assert index == first["op"]
        assert set(first["differs_in"]) <= set(what) <= allowed, what
    assert all(verdict.agreed[m]["contents"] == verdict.compared[m]["contents"] for m in pressure.MODELS)


def test_every_pressure_abstraction_is_documented() -> None:
    """Each abstraction the pressure oracle recognises, and each abstraction scenario, has a section in
    docs/linux-oracle.md."""
    doc = DOC.read_text()
    for name in [*pressure.ABSTRACTIONS, *(p.stem for p in ABSTRACTIONS.glob("*.json"))]:
        assert f"`{name}`" in doc, name


ZONEINFO = """Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 1952
  pages free     3840
        boost    0
        min      28
        low      35
        high     42
        promo    49
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 3018, 9034, 9034, 9034)
  pagesets
    cpu: 0
              count:    0
              high:     0
Node 0, zone    DMA32
  pages free     772848
        boost    100
        min      5636
        low      7145
        high     8554
        managed  772848
        protection: (0, 0, 6016, 6016, 6016)
Node 0, zone  Movable
  pages free     0
        boost    0
        min      32
        low      32
        high     32
        managed  0
        protection: (0, 0, 0, 0, 0)
"""


def test_zoneinfo_parse_and_totalreserve_follow_calculate_totalreserve_pages() -> None:
    """Reserve per zone: the largest lowmem_reserve plus the unboosted high watermark, at most the managed pages."""
    zones = meminfo.read_zoneinfo(ZONEINFO)
    assert [(z.low, z.high, z.boost, z.managed) for z in zones] == [
        (35, 42, 0, 3840),
        (7145, 8554, 100, 772848),
        (32, 32, 0, 0),
    ]
    # DMA: 9034 + 42 capped at 3840; DMA32: 6016 + 8454; Movable: capped at 0 managed pages.
    assert meminfo.total_reserve(zones) == 3840 + 6016 + 8454
    assert sum(z.low for z in zones) == 35 + 7145 + 32


def test_sample_tolerance_is_how_far_the_inputs_moved() -> None:
    """A quiet sample is compared exactly; a moving one allows exactly the movement between the bracketing reads."""
    zones = meminfo.read_zoneinfo(ZONEINFO)
    base = {"MemFree": 4000, "Active(file)": 800, "Inactive(file)": 400, "KReclaimable": 400, "MemAvailable": 0}
    low, reserve = 35 + 7145 + 32, 3840 + 6016 + 8454
    want = 1000 - reserve + 300 - min(150, low) + 100 - min(50, low)
    quiet = meminfo.sample({**base, "MemAvailable": max(want, 0) * 4}, zones, {**base, "MemAvailable": 0 * 4})
    assert quiet.models["spec"] == quiet.models["impl"] == max(want, 0)
    moving = meminfo.sample({**base, "MemAvailable": 4}, zones, {**base, "MemFree": 4008, "MemAvailable": 4})
    assert moving.tolerance == 2
    assert not meminfo.sample({**base, "MemAvailable": 400}, zones, {**base, "MemAvailable": 400}).agrees("spec")


@needs_proc
def test_live_mem_available_is_si_mem_available_of_the_live_counters() -> None:
    """The kernel's MemAvailable, recomputed by spec and impl from /proc/meminfo and /proc/zoneinfo, agrees."""
    sample = meminfo.live_sample()
    assert sample.agrees("spec") and sample.agrees("impl"), sample.describe()


def test_pressure_oracle_refuses_reclaim_and_machine_wide_reads() -> None:
    """``reclaim`` (the kernel's choice), ``meminfo`` and ``vmstat`` (machine-wide) are refused, naming the op."""
    base = load(PRESSURE / "pageout-swapin.json")
    for name, raw in (("reclaim", {"pages": 1}), ("meminfo", {}), ("vmstat", {})):
        op = OP_TYPES[name].from_json(raw, "x")
        with pytest.raises(OracleUnsupported, match=rf"ops\[{len(base.ops)}\] \({name}\)"):
            pressure.check_pressure_supported(Scenario(base.config, (*base.ops, op)))


@needs_pressure
def test_cli_reports_agreement_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """``mmcheck oracle pressure FILE`` prints both sides, the counts per quantity and the MemAvailable check."""
    assert 0 == main(["oracle", "pressure", str(PRESSURE / "file-mappings.json")])
    out = capsys.readouterr().out
    assert "spec agrees with linux on contents" in out and "MemAvailable:" in out


def test_cli_exits_2_without_cgroups(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No memory cgroup (or not root): exit 2 with the reason."""
    import oracles.linux.pressure_host as host

    monkeypatch.setattr(host, "unavailable_pressure", lambda: "no memory cgroup")
    assert 2 == main(["oracle", "pressure"])
    assert "no memory cgroup" in capsys.readouterr().err


def test_cgroup_v2_is_the_fallback_when_v1_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v1 when /sys/fs/cgroup/memory has limit_in_bytes; else v2 when the memory controller is listed; else none."""
    import oracles.linux.pressure_host as host

    v1, v2 = tmp_path / "memory", tmp_path / "unified"
    v1.mkdir()
    v2.mkdir()
    monkeypatch.setattr(host, "V1", v1)
    monkeypatch.setattr(host, "V2", v2)
    assert host.cgroup_kind() is None
    (v2 / "cgroup.controllers").write_text("cpuset cpu io pids\n")
    assert host.cgroup_kind() is None
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert host.cgroup_kind() == "v2"
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert host.cgroup_kind() == "v1"
