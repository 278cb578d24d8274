"""The test a fuzz worker runs once per machine, collected by ``python -m proofs.fuzz`` (:mod:`proofs.fuzz`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from lang.scenario import dump, load
from proofs import fuzz
from properties.mutants import by_name


def test_machine(machine_name: str, record_property: Callable[[str, object], None]) -> None:
    """This worker's share of the run for one machine; fails with the counterexample if the machine fails.

    The share is the worker's time left divided by the machines it has not run yet.  The examples and ops
    run travel to the controller's progress display with the test's report (``record_property``).
    """
    run = fuzz.RUN
    assert run is not None, "run through python -m proofs.fuzz"
    until = None
    if run.end is not None:
        now = time.monotonic()
        until = now + max(0.0, run.end - now) / (len(run.machines) - len(run.tallies))
    tally = fuzz.Tally(machine_name, run.worker)
    run.tallies.append(tally)
    mutant = by_name(run.mutant) if run.mutant else None
    seeds = fuzz.batch_seeds(run.seed, run.worker, machine_name)
    machine = fuzz.machines()[machine_name]
    with fuzz.private_counterexamples() as folder, mutant.applied() if mutant else contextlib.nullcontext():
        fuzz.fuzz_machine(machine, tally, until, fuzz.open_db(run.db, run.mutant), seeds)
        saved = folder / f"{machine_name}.json"
        if tally.failure is not None and saved.exists():
            scenario = load(saved)
            if mutant is not None:
                scenario = replace(scenario, extra={**scenario.extra, "mutant": mutant.name})
            tally.scenario = dump(scenario, saved).read_text()
            tally.saved_as = str(run.out / f"{machine_name}.{run.run_id}.{run.worker}.json")
    record_property("examples", tally.examples)
    record_property("ops", tally.ops)
    if tally.failure is not None:
        where = f"saved as {tally.saved_as}" if tally.saved_as else "no counterexample saved"
        pytest.fail(f"{machine_name} on {run.worker}: {tally.failure}\n{where}", pytrace=False)
