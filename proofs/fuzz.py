"""Fuzzing: every refinement machine on every core for a time box, all workers sharing one example database.

``nox -s fuzz -- --minutes N`` runs ``python -m proofs.fuzz``, which
starts pytest with pytest-xdist in ``--dist each`` mode: every worker (``-n K``
local processes, default one per core, or the execnet gateways given with
``--tx``) runs the test of :mod:`proofs.fuzz_session` once per machine.  A worker gives each machine
an equal share of the time it has left and runs it in batches under the
``fuzz`` Hypothesis profile (``thorough`` without shrinking), each batch with
a seed of its own drawn from ``--seed``, the worker and the machine.  A batch
is sized from the time an example has taken so far so that it ends near the
machine's deadline, an example that ends past the deadline stops its batch
(:class:`TimeBoxOver`), and no batch starts when less time is left than one
example takes: the worker stops on its own, at most one example late, then
reports.

All workers share one Hypothesis example database (``--db``): a directory
(default ``.hypothesis/fuzz``; put it on shared storage for several hosts)
or a Redis server (``redis://host:port/db``, through
:class:`hypothesis.extra.redis.RedisExampleDatabase`).  Every batch starts by
replaying the failures saved there, so a failure any worker finds replays in
every other worker's next batch and in every later run; ``--replay`` runs
only those saved examples.  Runs with a planted mutant (``--mutant``, from
:mod:`properties.mutants`) use a namespace of their own in the database, so
their failures never mix with the real implementation's.

A machine that fails is not run again by that worker.  Its counterexample,
written by the machine's recorder into a folder private to the worker and
minimised by replay (:func:`properties.machinery.save_minimised`), travels back to the
controller with the worker's counts (pytest-xdist's ``workeroutput``, so this
works for remote workers too) and is saved as
``<counterexamples>/fuzz/<machine>.<run>.<worker>.json``: a name no other
worker or run uses.  The controller prints one report (examples and ops per
machine, summed over the workers, and every failure with its scenario),
writes it as JSON (``--report``), and the run exits non-zero on any failure.
On a terminal the controller shows a progress display while the workers run
(:mod:`proofs.progress`: examples so far, their rate, the machine runs done,
the time left in the box); the examples of a machine run arrive with its test
report, so this too works for remote workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import sys
import tempfile
import time
import unittest
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import Phase, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from lang.errors import InvalidArgument, MMCheckError
from proofs.progress import Meter, is_terminal
from properties import machinery
from properties import profiles as _profiles  # noqa: F401  (registers the fuzz profile)
from properties.recording import counterexample_folder

SESSION = "proofs.fuzz_session"
DEFAULT_DB = ".hypothesis/fuzz"
DEFAULT_REPORT = "results/fuzz.json"
FIRST_BATCH = 2
BATCH_SECONDS = 5.0
MAX_BATCH = 5000
OUTPUT_KEY = "mmcheck_fuzz"
REDIS_PREFIX = b"hypothesis-example:"


class FuzzArgumentError(InvalidArgument):
    """A fuzz option is outside what is allowed."""


def machines() -> dict[str, type[RuleBasedStateMachine]]:
    """Every refinement machine of the harness (the classes of ``properties/*_machine.py``) by its ``name``.

    The machines ``verify`` runs come first, in its order.
    """
    import importlib

    from proofs.verify import CHECK_MODULES

    properties = Path(__file__).resolve().parents[1] / "properties"
    files = sorted(f"properties.{path.parent.name}.{path.stem}" for path in properties.glob("*/*_machine.py"))
    modules = [m for m in CHECK_MODULES if m in files] + [m for m in files if m not in CHECK_MODULES]
    found: dict[str, type[RuleBasedStateMachine]] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, RuleBasedStateMachine) and value.__module__ == module_name:
                found[str(getattr(value, "name"))] = value  # noqa: B009 - every project machine has a name
    return found


@dataclass(slots=True)
class Tally:
    """What one worker did with one machine; ``scenario`` is the saved counterexample's JSON text."""

    machine: str
    worker: str
    examples: int = 0
    ops: int = 0
    batches: int = 0
    seconds: float = 0.0
    failure: str | None = None
    scenario: str | None = None
    saved_as: str | None = None


class TimeBoxOver(unittest.SkipTest):
    """Raised after an example that ended past the worker's time box: the batch stops there.

    Hypothesis re-raises a skip exception at once and keeps nothing of it
    (``skip_exceptions_to_reraise`` in hypothesis/core.py), so a batch cut
    short is neither a failure nor flaky: the examples before it ran whole.
    """


def counted(
    machine: type[RuleBasedStateMachine], tally: Tally, until: float | None = None
) -> type[RuleBasedStateMachine]:
    """``machine``, adding each example it finishes (and the ops its recorder ran in lockstep) to ``tally``.

    With ``until`` (``time.monotonic``), an example that finishes past it
    ends the batch (:class:`TimeBoxOver`): a worker overruns its time box by
    at most one example, not by a batch.  The subclass keeps the machine's
    module and qualified name, so Hypothesis reads the machine's own source
    for its database key: what fuzzing saves is the machine's, and replays
    with the plain machine as well.
    """

    def teardown(self: RuleBasedStateMachine) -> None:
        try:
            machine.teardown(self)
        finally:
            recorder = getattr(self, "recorder", None)
            tally.examples += 1
            tally.ops += len(recorder.ops) if recorder is not None else 0
        if until is not None and time.monotonic() >= until:
            raise TimeBoxOver(f"time box over after {tally.examples} examples")

    namespace: dict[str, Any] = {
        "__module__": machine.__module__,
        "__qualname__": machine.__qualname__,
        "__doc__": machine.__doc__,
        "teardown": teardown,
    }
    if "__firstlineno__" in vars(machine):  # Python 3.13+ finds a class's source by it
        namespace["__firstlineno__"] = vars(machine)["__firstlineno__"]
    return type(machine.__name__, (machine,), namespace)


def check_db(text: str) -> str:
    """``text`` if it names a usable database: a directory (made if missing) or ``redis://host[:port][/db]``."""
    if "://" not in text:
        if Path(text).exists() and not Path(text).is_dir():
            raise FuzzArgumentError(
                f"--db {text!r} is a file: give a directory (made if missing) or redis://host:port/db"
            )
        return text
    url = urlparse(text)
    if url.scheme != "redis":
        raise FuzzArgumentError(
            f"--db {text!r}: scheme {url.scheme!r} is not redis: give a directory or redis://host:port/db"
        )
    try:
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise FuzzArgumentError(f"--db {text!r}: the port must be a number from 0 to 65535") from None
    if not url.hostname:
        raise FuzzArgumentError(f"--db {text!r} names no host: give redis://host:port/db")
    if url.path not in ("", "/") and not url.path[1:].isdigit():
        raise FuzzArgumentError(
            f"--db {text!r}: the database after the port must be a number, like redis://host:6379/0"
        )
    return text


def redis_client(url: str) -> Any:
    """A Redis client for ``url``; a clear error without the ``redis`` package."""
    try:
        import redis
    except ImportError:
        raise FuzzArgumentError(f"--db {url}: needs the redis package: pip install -e '.[fuzz]'") from None
    return redis.Redis.from_url(url, socket_connect_timeout=5)


def reach(url: str) -> None:
    """Raise unless the Redis server at ``url`` answers."""
    import redis

    try:
        redis_client(url).ping()
    except redis.RedisError as exc:
        raise FuzzArgumentError(f"--db {url}: cannot reach the Redis server: {exc}") from None


def open_db(text: str, mutant: str | None) -> ExampleDatabase:
    """The shared database ``text`` names; runs with a mutant get a namespace of their own in it."""
    if "://" not in text:
        return DirectoryBasedExampleDatabase(Path(text) / f"mutant-{mutant}" if mutant else Path(text))
    from hypothesis.extra.redis import RedisExampleDatabase

    prefix = REDIS_PREFIX + (f"mutant-{mutant}:".encode() if mutant else b"")
    return RedisExampleDatabase(redis_client(text), key_prefix=prefix)


def batch_seeds(run_seed: int, worker: str, machine: str) -> Iterator[int]:
    """The seeds of one worker's batches of one machine: fixed by the run's seed, the worker and the machine."""
    stream = random.Random(f"{run_seed}/{worker}/{machine}")
    while True:
        yield stream.getrandbits(64)


def run_batch(machine: type[RuleBasedStateMachine], run_settings: settings) -> str | None:
    """One batch of ``machine``: None if it passed (or had nothing to replay), else the failure with its saved file.

    As :func:`properties.machinery.run_machine`: a counterexample the
    machine's recorder saved is minimised in place and named in the text.
    """
    target = machinery.counterexample_path(machine)
    try:
        run_state_machine_as_test(machine, settings=run_settings)
    except TimeBoxOver:
        return None  # the time box ran out after a whole example
    except unittest.SkipTest:
        return None  # replaying, and the database holds nothing for this machine
    except Exception as exc:
        saved = machinery.save_minimised(target) if target.exists() else "no counterexample saved"
        return f"{machinery.failure_text(exc)}\n{saved}"
    return None


def fuzz_machine(
    machine: type[RuleBasedStateMachine], tally: Tally, until: float | None, db: ExampleDatabase, seeds: Iterator[int]
) -> Tally:
    """Run ``machine`` in batches until ``until`` (``time.monotonic``) or its first failure; at least one batch.

    With ``until`` None, run one batch that only replays the examples saved
    in ``db`` (Hypothesis's reuse phase).  Counterexamples go to
    :func:`~properties.recording.counterexample_folder`, which must be
    private to this process (:func:`private_counterexamples`).
    """
    cls = counted(machine, tally, until)
    base = settings(settings.get_profile("fuzz"), database=db)
    batch = FIRST_BATCH
    while tally.failure is None:
        if until is None:
            run_settings = settings(base, phases=[Phase.reuse])
        else:
            left = until - time.monotonic()
            per_example = tally.seconds / tally.examples if tally.examples else 0.0
            if tally.batches and (left <= 0 or left < per_example):
                break  # the first batch runs even late: every machine runs, however long the others took
            if tally.examples:
                batch = max(1, min(MAX_BATCH, int(min(left, BATCH_SECONDS) / per_example)))
            run_settings = settings(base, max_examples=batch)
        seed(next(seeds))(cls)
        start = time.monotonic()
        tally.failure = run_batch(cls, run_settings)
        tally.seconds += time.monotonic() - start
        tally.batches += 1
        if until is None:
            break
    return tally


@contextlib.contextmanager
def private_counterexamples() -> Iterator[Path]:
    """``$MMCHECK_COUNTEREXAMPLES`` pointed at a fresh folder for the block, so workers never write one file."""
    old = os.environ.get("MMCHECK_COUNTEREXAMPLES")
    with tempfile.TemporaryDirectory(prefix="mmcheck-fuzz-") as folder:
        os.environ["MMCHECK_COUNTEREXAMPLES"] = folder
        try:
            yield Path(folder)
        finally:
            if old is None:
                del os.environ["MMCHECK_COUNTEREXAMPLES"]
            else:
                os.environ["MMCHECK_COUNTEREXAMPLES"] = old


# ---- the pytest plugin (loaded with ``-p proofs.fuzz`` on the controller and every worker) ----


@dataclass(slots=True)
class Run:
    """This process's part of a fuzz run."""

    seconds: float | None
    db: str
    seed: int
    run_id: str
    machines: tuple[str, ...]
    mutant: str | None
    out: Path
    report: Path
    worker: str
    end: float | None
    tallies: list[Tally] = field(default_factory=list)
    meter: Meter | None = None
    expected: int = 0
    finished: int = 0
    examples: int = 0
    reported: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


RUN: Run | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mmcheck fuzz", "set by python -m proofs.fuzz")
    group.addoption("--fuzz-seconds", type=float, help="the time box of each worker (absent: replay only)")
    group.addoption("--fuzz-db", default=DEFAULT_DB, help="directory or redis://host:port/db")
    group.addoption("--fuzz-seed", type=int, help="the run's seed")
    group.addoption("--fuzz-run", help="the run's id, part of saved file names")
    group.addoption("--fuzz-machine", action="append", help="machine to run (repeatable; default all)")
    group.addoption("--fuzz-mutant", help="catalogued mutant to apply")
    group.addoption("--fuzz-out", help="folder the controller saves counterexamples in")
    group.addoption("--fuzz-report", default=DEFAULT_REPORT, help="JSON report written by the controller")


def pytest_configure(config: pytest.Config) -> None:
    global RUN
    if config.getoption("--fuzz-run") is None:
        return
    worker_input = getattr(config, "workerinput", None)
    seconds = config.getoption("--fuzz-seconds")
    RUN = Run(
        seconds=seconds,
        db=config.getoption("--fuzz-db"),
        seed=config.getoption("--fuzz-seed") or 0,
        run_id=config.getoption("--fuzz-run"),
        machines=tuple(config.getoption("--fuzz-machine") or machines()),
        mutant=config.getoption("--fuzz-mutant"),
        out=Path(config.getoption("--fuzz-out") or counterexample_folder() / "fuzz"),
        report=Path(config.getoption("--fuzz-report")),
        worker=worker_input["workerid"] if worker_input else "main",
        end=None if seconds is None else time.monotonic() + seconds,
    )
    if worker_input is None and is_terminal():
        workers = len(config.getoption("tx") or ()) or int(config.getoption("numprocesses") or 1)
        RUN.expected = workers * len(RUN.machines)
        RUN.meter = Meter("fuzz", "examples", budget=seconds).__enter__()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On the controller's terminal: each machine a worker finishes adds its examples to the display."""
    if RUN is None or RUN.meter is None or report.when != "call":
        return
    examples = dict(report.user_properties).get("examples", 0)
    RUN.examples += examples if isinstance(examples, int) else 0
    RUN.finished += 1
    RUN.meter.update(RUN.examples, note=f"{RUN.finished} of {RUN.expected} machine runs done")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "machine_name" in metafunc.fixturenames:
        metafunc.parametrize("machine_name", RUN.machines if RUN is not None else ())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Collect a worker's tallies (pytest-xdist calls this on the controller as each worker ends)."""
    if RUN is None:
        return
    worker = str(node.gateway.id)
    raw = getattr(node, "workeroutput", {}).get(OUTPUT_KEY)
    if raw is None:
        RUN.silent.append(worker)
        return
    RUN.reported.append(worker)
    RUN.tallies.extend(Tally(**entry) for entry in json.loads(raw))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if RUN is None:
        return
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output[OUTPUT_KEY] = json.dumps([asdict(t) for t in RUN.tallies])
        return
    if RUN.meter is not None:
        RUN.meter.__exit__(None, None, None)
        RUN.meter = None
    if not RUN.reported and RUN.tallies:
        RUN.reported.append(RUN.worker)
    for tally in RUN.tallies:
        if tally.scenario is not None and tally.saved_as is not None:
            Path(tally.saved_as).parent.mkdir(parents=True, exist_ok=True)
            Path(tally.saved_as).write_text(tally.scenario)
    report = summarise(RUN)
    RUN.report.parent.mkdir(parents=True, exist_ok=True)
    RUN.report.write_text(json.dumps(report, indent=1) + "\n")
    RUN.lines = report_lines(report)
    if not report["ok"] and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RUN is not None and RUN.lines:
        terminalreporter.write_line("")
        for line in RUN.lines:
            terminalreporter.write_line(line)


def summarise(run: Run) -> dict[str, Any]:
    """The run's report: totals per machine over the workers, every failure, and whether the run passed."""
    per_machine: dict[str, dict[str, Any]] = {}
    for name in run.machines:
        mine = [t for t in run.tallies if t.machine == name]
        per_machine[name] = {
            "examples": sum(t.examples for t in mine),
            "ops": sum(t.ops for t in mine),
            "batches": sum(t.batches for t in mine),
            "seconds": round(sum(t.seconds for t in mine), 2),
            "failures": sum(t.failure is not None for t in mine),
            "workers": len(mine),
        }
    failures = [
        {"machine": t.machine, "worker": t.worker, "failure": t.failure, "scenario": t.saved_as}
        for t in run.tallies
        if t.failure is not None
    ]
    idle = [name for name, m in per_machine.items() if m["examples"] == 0] if run.seconds is not None else []
    return {
        "run": run.run_id,
        "seed": run.seed,
        "seconds_per_worker": run.seconds,
        "replay": run.seconds is None,
        "database": run.db,
        "mutant": run.mutant,
        "workers": sorted(run.reported),
        "silent_workers": sorted(run.silent),
        "machines": per_machine,
        "failures": failures,
        "idle_machines": idle,
        "ok": not failures and not run.silent and not idle,
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as text: a table per machine, each failure with its scenario, one summary line."""
    box = "replaying saved examples" if report["replay"] else f"{report['seconds_per_worker']:g} s each"
    mutant = f", mutant {report['mutant']}" if report["mutant"] else ""
    lines = [
        f"fuzz report: run {report['run']}, {len(report['workers'])} worker(s) ({', '.join(report['workers'])}), "
        f"{box}, seed {report['seed']}, database {report['database']}{mutant}",
        f"  {'machine':16} {'examples':>9} {'ops':>10} {'batches':>8} {'seconds':>8} {'failures':>9}",
    ]
    for name, m in report["machines"].items():
        lines.append(
            f"  {name:16} {m['examples']:>9} {m['ops']:>10} {m['batches']:>8} {m['seconds']:>8.1f} {m['failures']:>9}"
        )
    totals = {key: sum(m[key] for m in report["machines"].values()) for key in ("examples", "ops", "failures")}
    for failure in report["failures"]:
        first = (failure["failure"] or "").splitlines()[0] if failure["failure"] else ""
        lines.append(f"  FAIL {failure['machine']} on {failure['worker']}: {first}")
        scenario = failure["scenario"]
        lines.append(f"       {f'mmcheck replay {scenario}' if scenario else 'no counterexample saved'}")
    for worker in report["silent_workers"]:
        lines.append(f"  FAIL worker {worker} ended without reporting (crashed or lost)")
    for name in report["idle_machines"]:
        lines.append(f"  FAIL {name} ran no example")
    lines.append(f"fuzz: {totals['examples']} examples, {totals['ops']} ops, {totals['failures']} failures")
    return lines


# ---- the command line ----


def positive_minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or minutes <= 0:
        raise FuzzArgumentError(f"--minutes must be a positive number of minutes (like 1 or 0.5), got {text!r}")
    return minutes


def positive_workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise FuzzArgumentError(f"--workers must be a whole number of at least 1, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m proofs.fuzz",
        description="Run every refinement machine on every worker for a time box, sharing one example database.",
    )
    p.add_argument("--minutes", help="how long each worker fuzzes (a positive number; 0.5 is 30 s)")
    p.add_argument("--workers", help="local worker processes (default: one per core)")
    p.add_argument("--tx", action="append", help="pytest-xdist gateway instead of local workers (repeatable)")
    p.add_argument("--rsyncdir", action="append", help="folder to send to --tx gateways (repeatable)")
    p.add_argument("--db", default=DEFAULT_DB, help=f"directory or redis://host:port/db (default {DEFAULT_DB})")
    p.add_argument("--seed", help="seed of the run (default: random, and printed)")
    p.add_argument("--machine", action="append", help="only this machine (repeatable; default all)")
    p.add_argument("--mutant", help="apply this catalogued mutant (see mmcheck mutants --list)")
    p.add_argument("--replay", action="store_true", help="only replay the examples saved in the database")
    p.add_argument("--report", default=DEFAULT_REPORT, help=f"JSON report (default {DEFAULT_REPORT})")
    return p


def command_args(args: argparse.Namespace) -> list[str]:
    """Check the options (raising :class:`FuzzArgumentError`) and turn them into pytest's arguments."""
    from properties.mutants import by_name

    if args.replay == (args.minutes is not None):
        raise FuzzArgumentError("give either --minutes N (fuzz for N minutes) or --replay (replay saved examples)")
    if args.tx and args.workers is not None:
        raise FuzzArgumentError("give --workers (local processes) or --tx (gateways), not both")
    if args.rsyncdir and not args.tx:
        raise FuzzArgumentError("--rsyncdir sends folders to --tx gateways: give --tx as well")
    known = machines()
    for name in args.machine or ():
        if name not in known:
            raise FuzzArgumentError(f"--machine {name!r} is not a machine: allowed {', '.join(known)}")
        if args.machine.count(name) > 1:
            raise FuzzArgumentError(f"--machine {name!r} is given twice: name each machine once")
    if args.mutant is not None:
        by_name(args.mutant)
    if args.seed is not None and not args.seed.isdigit():
        raise FuzzArgumentError(f"--seed must be a whole number, got {args.seed!r}")
    db = check_db(args.db)
    db = db if "://" in db else str(Path(db).resolve())
    if "://" in db:
        reach(db)
    run_seed = int(args.seed) if args.seed is not None else secrets.randbits(32)
    run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{run_seed}"
    out = counterexample_folder().resolve() / "fuzz"
    workers = positive_workers(args.workers) if args.workers is not None else os.cpu_count() or 1
    where = [f"--tx={spec}" for spec in args.tx] if args.tx else [f"--numprocesses={workers}"]
    # One token per option, the test module by import name: xdist rewrites every argument that is an
    # existing path relative to an rsync root for remote gateways, and refuses one outside them.
    result = [
        "--pyargs", SESSION, "-p", "proofs.fuzz", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark",
        "--pythonwarnings=ignore::pytest.PytestAssertRewriteWarning", "--dist=each", *where,
        *(f"--rsyncdir={folder}" for folder in args.rsyncdir or ()),
        f"--fuzz-db={db}", f"--fuzz-seed={run_seed}", f"--fuzz-run={run_id}",
        f"--fuzz-out={out}", f"--fuzz-report={Path(args.report).resolve()}",
    ]  # fmt: skip
    if args.minutes is not None:
        result.append(f"--fuzz-seconds={positive_minutes(args.minutes) * 60}")
    result += [f"--fuzz-machine={name}" for name in args.machine or ()]
    if args.mutant is not None:
        result.append(f"--fuzz-mutant={args.mutant}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        arguments = command_args(args)
    except MMCheckError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 2
    shown = {key: value for key, value in vars(args).items() if value not in (None, False, [])}
    shown["seed"] = next(a for a in arguments if a.startswith("--fuzz-seed=")).partition("=")[2]
    shown["workers"] = args.workers or ("" if args.tx else str(os.cpu_count() or 1))
    shown = {key: ",".join(value) if isinstance(value, list) else value for key, value in shown.items()}
    print("ARG " + " ".join(f"{key} {value}" for key, value in shown.items() if value), flush=True)
    print("pytest " + " ".join(arguments), flush=True)
    return int(pytest.main(arguments))


if __name__ == "__main__":
    sys.exit(main())
