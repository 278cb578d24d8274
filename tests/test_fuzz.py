"""``python -m proofs.fuzz`` (``nox -s fuzz``): options checked, machines counted, planted bugs found and shared.

The end-to-end tests run the fuzz entry point in a child process for a few
seconds with a planted walker mutant (``accessed-never-set``, caught by the
mmu machine within its first examples), and check the run fails, reports
the failure, saves a scenario per worker under a name of its own, and that
the failure saved in the shared database replays in another process.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dependencies import import_or_skip, skip_without
from hypothesis.database import InMemoryExampleDatabase
from hypothesis.internal.reflection import function_digest
from hypothesis.stateful import RuleBasedStateMachine

from lang.scenario import load
from proofs import fuzz
from properties.mutants import by_name
from properties.replay import replay

ROOT = Path(__file__).resolve().parent.parent
MUTANT = "accessed-never-set"


def run_fuzz(tmp_path: Path, *args: str, report: str = "report.json") -> tuple[int, str, dict[str, Any]]:
    """Run the fuzz entry point in a child process with its counterexamples under ``tmp_path``; exit, output, report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["MMCHECK_COUNTEREXAMPLES"] = str(tmp_path / "counterexamples")
    command = [sys.executable, "-m", "proofs.fuzz", *args, "--report", str(tmp_path / report)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    path = tmp_path / report
    return done.returncode, output, json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--minutes", "0"], "--minutes"),
        (["--minutes", "-2"], "--minutes"),
        (["--minutes", "nan"], "--minutes"),
        (["--minutes", "soon"], "--minutes"),
        ([], "--minutes"),
        (["--replay", "--minutes", "1"], "--replay"),
        (["--minutes", "1", "--workers", "0"], "--workers"),
        (["--minutes", "1", "--workers", "two"], "--workers"),
        (["--minutes", "1", "--workers", "2", "--tx", "popen"], "--tx"),
        (["--minutes", "1", "--rsyncdir", "spec"], "--rsyncdir"),
        (["--minutes", "1", "--seed", "-1"], "--seed"),
        (["--minutes", "1", "--machine", "tlb_machine"], "--machine"),
        (["--minutes", "1", "--machine", "mmu_machine", "--machine", "mmu_machine"], "twice"),
        (["--minutes", "1", "--mutant", "no-such-bug"], "no-such-bug"),
        (["--minutes", "1", "--db", "ftp://host/db"], "scheme 'ftp'"),
        (["--minutes", "1", "--db", "redis://host:port/0"], "port"),
        (["--minutes", "1", "--db", "redis:///0"], "no host"),
        (["--minutes", "1", "--db", "redis://host:6379/first"], "database"),
        (["--minutes", "1", "--db", "pyproject.toml"], "is a file"),
    ],
)
def test_bad_options_exit_2_naming_what_is_wrong(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bad option is refused before any worker starts, with exit 2 and a message naming it."""
    monkeypatch.chdir(ROOT)
    assert 2 == fuzz.main(args)
    err = capsys.readouterr().err
    assert err.startswith("fuzz: ") and named in err, err


def test_no_pytest_argument_is_a_path_so_remote_gateways_take_them(tmp_path: Path) -> None:
    """xdist refuses, for ``ssh=`` gateways, any argument naming an existing path outside an rsync root.

    So the test module goes by import name and every option is one token,
    even when the database folder and the report already exist.
    """
    (tmp_path / "db").mkdir()
    (tmp_path / "r.json").write_text("{}")
    args = fuzz.parser().parse_args(["--minutes", "1", "--tx", "popen", "--db", str(tmp_path / "db")])
    args.report = str(tmp_path / "r.json")
    arguments = fuzz.command_args(args)
    assert f"--fuzz-db={tmp_path / 'db'}" in arguments and "proofs.fuzz_session" in arguments
    assert [] == [a for a in arguments if Path(a.split("::")[0]).exists()]


def test_an_unreachable_redis_server_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A Redis URL nobody answers on is refused up front, not discovered by every worker."""
    import_or_skip("redis", "the redis package (the fuzz extra) is not installed: pip install -e '.[fuzz]'")
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert 2 == fuzz.main(["--minutes", "1", "--db", url])
    assert "cannot reach the Redis server" in capsys.readouterr().err


def test_every_machine_verify_runs_is_fuzzed() -> None:
    """The fuzz registry holds each state machine class of the modules ``verify`` runs, by its name, in its order."""
    from proofs.verify import CHECK_MODULES

    in_verify = []
    for module_name in CHECK_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, RuleBasedStateMachine) and value.__module__ == module_name:
                in_verify.append(value)
    assert ["mmu_machine", "buddy_machine", "kernel_machine", "smp_machine"] == [m.name for m in in_verify][:4]
    assert in_verify == list(fuzz.machines().values())[: len(in_verify)]


@pytest.mark.parametrize("name", ["mmu_machine", "buddy_machine", "kernel_machine", "smp_machine"])
def test_counted_machine_keeps_the_database_key(name: str) -> None:
    """The counting subclass has the machine's own database key, so fuzzing's saved examples are the machine's."""
    machine = fuzz.machines()[name]
    assert function_digest(machine) == function_digest(fuzz.counted(machine, fuzz.Tally(name, "main")))
    assert function_digest(fuzz.machines()["mmu_machine"]) != function_digest(fuzz.machines()["buddy_machine"])


def test_a_batch_loop_counts_and_uses_its_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The buddy machine fuzzed for two seconds: examples and ops counted, and it ran until its time was nearly up."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    tally = fuzz.Tally("buddy_machine", "main")
    until = time.monotonic() + 2.0
    seeds = fuzz.batch_seeds(7, "main", "buddy_machine")
    fuzz.fuzz_machine(fuzz.machines()["buddy_machine"], tally, until, InMemoryExampleDatabase(), seeds)
    assert tally.failure is None
    assert tally.examples > 0 and tally.ops > tally.examples and tally.batches >= 1
    per_example = tally.seconds / tally.examples
    assert time.monotonic() >= until - per_example, "stopped while there was time for another example"


def test_a_machine_out_of_time_still_runs_one_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine whose share was eaten by the ones before it still runs its first batch, then stops."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    tally = fuzz.Tally("buddy_machine", "main")
    seeds = fuzz.batch_seeds(3, "main", "buddy_machine")
    fuzz.fuzz_machine(fuzz.machines()["buddy_machine"], tally, time.monotonic(), InMemoryExampleDatabase(), seeds)
    assert (1, None, 1) == (tally.batches, tally.failure, tally.examples), "one batch, cut after its first example"


def test_a_batch_stops_at_the_time_box_not_at_its_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A batch sized for thousands of examples ends at the first example that finishes past the box.

    On this clock the first two examples take a millisecond each, so the
    second batch is sized for about 3,500; then the clock jumps past the
    3.5-second box at the fifth example, and the batch stops right there.
    """
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    tally = fuzz.Tally("buddy_machine", "main")

    class ExampleClock:
        @staticmethod
        def monotonic() -> float:
            return 10.0 if tally.examples >= 5 else tally.examples / 1000

    monkeypatch.setattr(fuzz, "time", ExampleClock)
    seeds = fuzz.batch_seeds(5, "main", "buddy_machine")
    fuzz.fuzz_machine(fuzz.machines()["buddy_machine"], tally, 3.5, InMemoryExampleDatabase(), seeds)
    assert (2, None, 5) == (tally.batches, tally.failure, tally.examples)



def test_replaying_an_empty_database_runs_nothing_and_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Replay only runs what the database holds: nothing saved, nothing run, no failure."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    tally = fuzz.Tally("mmu_machine", "main")
    seeds = fuzz.batch_seeds(1, "main", "mmu_machine")
    fuzz.fuzz_machine(fuzz.machines()["mmu_machine"], tally, None, InMemoryExampleDatabase(), seeds)
    assert (0, None, 1) == (tally.examples, tally.failure, tally.batches)


def check_failures_saved(report: dict[str, Any], tmp_path: Path) -> None:
    """Every failure in ``report`` names its own scenario, which fails under the mutant and passes without it."""
    assert report["failures"], report
    saved = [Path(f["scenario"]) for f in report["failures"]]
    assert len(set(saved)) == len(saved), "two failures saved under one name"
    for path in saved:
        assert (tmp_path / "counterexamples" / "fuzz") == path.parent
        scenario = load(path)
        assert MUTANT == scenario.extra["mutant"]
        assert replay(scenario).divergence is None, "the real implementation passes the scenario"
        with by_name(MUTANT).applied():
            assert replay(scenario).divergence is not None, "the scenario fails under the mutant"


def test_a_planted_mutant_fails_the_run_is_saved_and_replays_from_the_database(tmp_path: Path) -> None:
    """Two workers find the planted bug: the run exits 1 and reports it; a new process replays it from the database."""
    db = str(tmp_path / "db")
    common = ["--machine", "mmu_machine", "--mutant", MUTANT, "--db", db]
    code, output, report = run_fuzz(tmp_path, "--minutes", "1", "--workers", "2", "--seed", "5", *common)
    assert 1 == code, output
    assert ["gw0", "gw1"] == report["workers"]
    assert report["machines"]["mmu_machine"]["examples"] > 0
    assert report["machines"]["mmu_machine"]["failures"] == len(report["failures"]) >= 1
    assert "FAIL mmu_machine on gw" in output and "fuzz: " in output
    check_failures_saved(report, tmp_path)
    assert list((tmp_path / "db" / f"mutant-{MUTANT}").rglob("*")), "nothing written to the shared database"

    code, output, replayed = run_fuzz(tmp_path, "--replay", "--workers", "1", *common, report="replay.json")
    assert 1 == code, output
    assert 1 == replayed["machines"]["mmu_machine"]["failures"]
    assert replayed["failures"][0]["scenario"] not in {f["scenario"] for f in report["failures"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` on loopback, without persistence; skips when the server or client is missing."""
    server = shutil.which("redis-server")
    if server is None:
        skip_without("redis-server", "not on PATH (apt-get install redis-server)")
    redis = import_or_skip("redis", "the redis package is not installed (pip install -e '.[fuzz]')")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server did not answer on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_on_a_terminal_the_controller_shows_progress(tmp_path: Path) -> None:
    """Run with its output on a pseudo-terminal: the display counts examples and machine runs and the time left."""
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(MMCHECK_COUNTEREXAMPLES=str(tmp_path / "counterexamples"), COLUMNS="160", TERM="xterm")
    command = [sys.executable, "-m", "proofs.fuzz", "--minutes", "0.05", "--workers", "1", "--seed", "3",
               "--machine", "buddy_machine", "--db", str(tmp_path / "db"),
               "--report", str(tmp_path / "r.json")]  # fmt: skip
    leader, follower = pty.openpty()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closes when the child exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert 0 == child.wait(timeout=300)
    shown = b"".join(chunks).decode(errors="replace")
    assert "fuzz" in shown and "examples/s" in shown and "left of 3s" in shown, shown
    assert "1 of 1 machine runs done" in shown, shown
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["machines"]["buddy_machine"]["examples"] > 0


def test_off_a_terminal_the_controller_prints_no_display(tmp_path: Path) -> None:
    """Piped output has the plain report and no escape codes or progress line."""
    code, output, report = run_fuzz(tmp_path, "--minutes", "0.02", "--workers", "1", "--machine", "buddy_machine")
    assert 0 == code and report["ok"], output
    assert "machine runs done" not in output and "\x1b[" not in output


def test_workers_share_a_redis_database(redis_url: str, tmp_path: Path) -> None:
    """Two workers on a Redis database: the failure's keys are written there and a new process replays it."""
    import redis

    common = ["--machine", "mmu_machine", "--mutant", MUTANT, "--db", redis_url]
    code, output, report = run_fuzz(tmp_path, "--minutes", "1", "--workers", "2", "--seed", "5", *common)
    assert 1 == code, output
    check_failures_saved(report, tmp_path)
    keys = redis.Redis.from_url(redis_url).keys(b"*")
    assert keys and all(k.startswith(fuzz.REDIS_PREFIX + f"mutant-{MUTANT}:".encode()) for k in keys), keys

    code, output, replayed = run_fuzz(tmp_path, "--replay", "--workers", "1", *common, report="replay.json")
    assert 1 == code, output
    assert 1 == replayed["machines"]["mmu_machine"]["failures"]


@pytest.mark.slow
def test_execnet_popen_gateways_run_the_workers(tmp_path: Path) -> None:
    """``--tx 2*popen`` (the way remote ``ssh=`` gateways are given) runs two workers that report back."""
    args = ["--minutes", "1", "--tx", "2*popen", "--seed", "5", "--machine", "mmu_machine", "--mutant", MUTANT]
    code, output, report = run_fuzz(tmp_path, *args, "--db", str(tmp_path / "db"))
    assert 1 == code, output
    assert ["gw0", "gw1"] == report["workers"]
    check_failures_saved(report, tmp_path)


@pytest.mark.slow
def test_a_clean_run_covers_every_machine_and_passes(tmp_path: Path) -> None:
    """Without a mutant every machine runs examples on both workers and the run exits 0."""
    code, output, report = run_fuzz(tmp_path, "--minutes", "0.2", "--workers", "2", "--db", str(tmp_path / "db"))
    assert 0 == code, output
    assert report["ok"] and not report["failures"]
    for name, counts in report["machines"].items():
        assert 2 == counts["workers"], name
        assert counts["examples"] > 0 and counts["ops"] > 0, (name, counts)
