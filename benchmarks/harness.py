"""How fast the harness checks: state-machine steps per second, model-checker distinct states per second.

Each refinement machine runs on the shared runner
(:func:`properties.machinery.run_machine`) for a fixed number of examples
under a fixed, derandomized profile, with every invariant on.  Steps are
counted in a subclass: Hypothesis checks a machine's invariants once when it
starts and once after every rule it runs, and tears it down once at the end,
so the rules executed are the invariant checks less the teardowns.  The time
includes Hypothesis's own work (drawing the data, choosing rules): it is the
rate a user of ``nox -s verify`` sees.

The spec explorer (:mod:`proofs.spec_explore`) runs the buddy allocator's and
the SMP layer's L1 spec (:mod:`proofs.spec_systems`) for a time budget each and
reports :attr:`proofs.explore.Stats.rate`, distinct states per second on one
core: the targeted rows.  The lockstep explorer (:mod:`proofs.explore`: spec,
implementation and L0 at every transition) is reported beside it, without a
target.  Then each configuration of :data:`EXHAUST` is run by the spec explorer
to exhaustion or its budget: states, transitions, depth, seconds, exhausted or not.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine

from lang.verdict import Status
from proofs import promela, smp_system, systems
from proofs.explore import Stats, explore
from proofs.spec_explore import explore_spec
from proofs.spec_parallel import explore_parallel
from proofs.spec_systems import SpecBuddySystem, SpecSmpSystem
from proofs.systems import VERIFY_BOUNDS, BuddyBounds, BuddySystem
from properties import machinery
from properties.alloc.buddy_machine import BuddyMachine
from properties.mm.kernel_machine import KernelMachine
from properties.paging.mmu_machine import MmuMachine
from properties.smp.smp_machine import SmpMachine

MACHINES: dict[str, type[RuleBasedStateMachine]] = {
    "mmu": MmuMachine,
    "buddy": BuddyMachine,
    "kernel": KernelMachine,
    "smp": SmpMachine,
}
STEPS_PER_EXAMPLE = 40


class BenchmarkCrash(RuntimeError):
    """A measured run failed (a divergence, a broken invariant, a crash): the benchmark cannot report a rate."""


@dataclass
class StepCount:
    """Invariant checks and teardowns of every instance of one counting machine class."""

    checks: int = 0
    teardowns: int = 0

    @property
    def steps(self) -> int:
        """Rules executed: one invariant check per rule, plus one per machine at its start."""
        return self.checks - self.teardowns


def counting(machine: type[RuleBasedStateMachine]) -> tuple[type[RuleBasedStateMachine], StepCount]:
    """A subclass of ``machine`` that counts its invariant checks and teardowns, and the count it fills."""
    count = StepCount()

    class Counting(machine):  # type: ignore[valid-type,misc]
        def check_invariants(self, *args: Any, **kwargs: Any) -> None:
            count.checks += 1
            super().check_invariants(*args, **kwargs)

        def teardown(self) -> None:
            count.teardowns += 1
            super().teardown()

    Counting.__name__ = Counting.__qualname__ = f"Counting{machine.__name__}"
    return Counting, count


def fixed_settings(examples: int) -> settings:
    """The fixed profile: ``examples`` derandomized examples of 40 steps, no database, no shrinking."""
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS_PER_EXAMPLE,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


@dataclass(frozen=True, slots=True)
class MachineRate:
    machine: str
    examples: int
    steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def machine_rate(name: str, examples: int) -> MachineRate:
    """Run the machine called ``name`` for ``examples`` examples; raise :class:`BenchmarkCrash` if it fails."""
    machine, count = counting(MACHINES[name])
    start = time.perf_counter()
    status, detail = machinery.run_machine(machine, fixed_settings(examples))
    seconds = time.perf_counter() - start
    if status is not Status.CONFIRMED:
        raise BenchmarkCrash(f"the {name} machine failed while measured:\n{detail}")
    return MachineRate(name, examples, count.steps, seconds)


@dataclass(frozen=True, slots=True)
class ExplorerRate:
    system: str
    stats: Stats
    bounds: str = ""
    cpu: float = 0.0  # the CPU seconds of the run (user and system): on a shared machine, fewer than its wall seconds

    @property
    def cpu_rate(self) -> float:
        """Distinct states per CPU second."""
        return self.stats.distinct / self.cpu if self.cpu else 0.0


# The spec explorer's rate bounds: the buddy allocator of 16 frames (orders 0-2 allocated, max_order 3), every block
# the spec allows; the SMP layer of proofs.smp_system.RATE_BOUNDS (2 CPUs, 2 processes, 2 pages, every change in
# flight).  Neither is exhausted within a budget of seconds, so the rate is that of a run well past its start.
SPEC_BUDDY_BOUNDS = BuddyBounds(frames=16, max_order=3, max_alloc_order=2)


def spec_explorer_rates(seconds: float) -> list[ExplorerRate]:
    """Distinct states per second of the spec explorer, buddy and SMP, each run for about ``seconds``."""
    runs: list[tuple[str, Any, str]] = [
        ("buddy", SpecBuddySystem(SPEC_BUDDY_BOUNDS), describe_buddy(SPEC_BUDDY_BOUNDS)),
        ("smp", SpecSmpSystem(smp_system.RATE_BOUNDS), smp_system.RATE_BOUNDS.describe()),
    ]
    rates = []
    for name, system, bounds in runs:
        cpu = time.process_time()
        stats = _explore_spec(system, seconds)
        rates.append(ExplorerRate(name, stats, bounds, time.process_time() - cpu))
    return rates


def describe_buddy(bounds: BuddyBounds) -> str:
    return f"{bounds.frames} frames, max_order {bounds.max_order}, allocations of order 0-{bounds.max_alloc_order}"


def explorer_rates(max_states: int | None, smp_seconds: float) -> list[ExplorerRate]:
    """Distinct states per second of each lockstep explorer system.

    Buddy: breadth-first over the bounds ``verify`` exhausts (at most
    ``max_states``); SMP: :func:`proofs.systems.smp_rate` for ``smp_seconds``.
    """
    runs: list[tuple[str, Callable[[], Stats]]] = [
        ("buddy", lambda: _explore(BuddySystem(VERIFY_BOUNDS), max_states)),
        ("smp", lambda: systems.smp_rate(smp_seconds)),
    ]
    return [ExplorerRate(name, run()) for name, run in runs]


def _explore(system: BuddySystem, max_states: int | None) -> Stats:
    result = explore(system, max_depth=40, max_states=max_states)
    if result.path is not None:
        raise BenchmarkCrash(f"the explorer found a violation while measured: {result.reason}")
    return result.stats


def _explore_spec(system: Any, seconds: float, max_depth: int = 1000) -> Stats:
    result = explore_spec(system, max_depth=max_depth, time_limit=seconds, sample=0)
    if result.path is not None:
        raise BenchmarkCrash(f"the spec explorer found a violation while measured: {result.reason}")
    return result.stats


# The configurations the spec explorer is run to exhaustion on (or its budget): name, system, description.  The last
# is the 2 CPUs x 2 processes x 2 pages with fork, munmap, mprotect and madvise in flight.
EXHAUST: tuple[tuple[str, Callable[[], Any], str], ...] = (
    ("buddy, verify's bound", lambda: SpecBuddySystem(VERIFY_BOUNDS), describe_buddy(VERIFY_BOUNDS)),
    ("buddy, 16 frames", lambda: SpecBuddySystem(SPEC_BUDDY_BOUNDS), describe_buddy(SPEC_BUDDY_BOUNDS)),
    (
        "smp, verify's bound",
        lambda: SpecSmpSystem(smp_system.VERIFY_BOUNDS),
        smp_system.VERIFY_BOUNDS.describe(),
    ),
    (
        "smp, 2 CPUs x 2 procs x 1 page",
        lambda: SpecSmpSystem(smp_system.SMALL_BOUNDS),
        smp_system.SMALL_BOUNDS.describe(),
    ),
    (
        "smp, 2 CPUs x 2 procs x 2 pages",
        lambda: SpecSmpSystem(smp_system.RATE_BOUNDS),
        smp_system.RATE_BOUNDS.describe(),
    ),
)


def exhausted(budget: float, only: int | None = None) -> list[ExplorerRate]:
    """Each configuration of :data:`EXHAUST` (the first ``only`` of them) run by the spec explorer for at most
    ``budget`` seconds: exhausted, or how far it got."""
    return [ExplorerRate(name, _explore_spec(make(), budget), bounds) for name, make, bounds in EXHAUST[:only]]


# The parallel search's configuration: the buddy allocator of 14 frames, exhausted (87,880 states, about 10 CPU
# seconds), the quick run's of 8.
PARALLEL_BOUNDS = {"full": BuddyBounds(frames=14, max_order=3, max_alloc_order=2), "quick": BuddyBounds(8, 2, 2)}


@dataclass(frozen=True, slots=True)
class Speedup:
    """One configuration exhausted by the sequential search and by the parallel one on ``workers`` processes."""

    workers: int
    sequential: Stats
    parallel: Stats
    sequential_cpu: float
    parallel_cpu: float  # the workers' and the coordinator's
    bounds: str

    @property
    def ratio(self) -> float:
        """Wall-clock speedup."""
        return self.sequential.seconds / self.parallel.seconds if self.parallel.seconds else 0.0

    @property
    def overhead(self) -> float:
        """The parallel run's CPU seconds over the sequential run's: what partitioning costs, load aside."""
        return self.parallel_cpu / self.sequential_cpu if self.sequential_cpu else 0.0


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def parallel_speedup(bounds: BuddyBounds, workers: int = 2) -> Speedup:
    """Exhaust the buddy spec over ``bounds`` with one process, then with ``workers`` (:mod:`proofs.spec_parallel`);
    different states, transitions or depth are a crash."""
    cpu = _cpu(resource.RUSAGE_SELF)
    sequential = explore_spec(SpecBuddySystem(bounds), 1000, sample=0)
    sequential_cpu = _cpu(resource.RUSAGE_SELF) - cpu
    mine, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    parallel = explore_parallel(SpecBuddySystem(bounds), 1000, workers, sample=0)
    parallel_cpu = _cpu(resource.RUSAGE_SELF) - mine + _cpu(resource.RUSAGE_CHILDREN) - children
    one, other = sequential.stats, parallel.stats
    figures = (one.distinct, one.transitions, one.depth)
    if not one.exhausted or figures != (other.distinct, other.transitions, other.depth):
        raise BenchmarkCrash(f"the parallel search reached {other.summary()}, the sequential one {one.summary()}")
    return Speedup(workers, one, other, sequential_cpu, parallel_cpu, describe_buddy(bounds))


def shared_model(processes: int) -> tuple[Stats, promela.SpinRun | None, str]:
    """The lost update of ``processes`` processes (:func:`proofs.promela.lost_update`) counted by the spec explorer
    and, when it is installed, by SPIN without partial-order reduction; the name of the model.  Unequal counts are
    a crash: the explorer and SPIN disagree on what is reachable."""
    model = promela.lost_update(processes)
    stats = _explore_spec(promela.ModelSystem(model, invariant=False), 10_000)
    if not stats.exhausted:
        raise BenchmarkCrash(f"{model.name} was not exhausted")
    spin = None if promela.spin_missing() else promela.spin_count(model)
    if spin is not None and spin.states != stats.distinct:
        raise BenchmarkCrash(f"{model.name}: the explorer reached {stats.distinct} states, SPIN stored {spin.states}")
    return stats, spin, model.name


MUSIL_PYTHON = "MMCHECK_MUSIL_PYTHON"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class MusilRun:
    states: int
    seconds: float
    version: str

    @property
    def rate(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0


def musil_python() -> str | None:
    """musil's interpreter: ``$MMCHECK_MUSIL_PYTHON``, else that of ``nox -s musil`` when it has run, else None."""
    named = os.environ.get(MUSIL_PYTHON)
    if named:
        return named
    made = ROOT / ".nox" / "musil" / "bin" / "python"
    return str(made) if made.exists() else None


def musil_rate(processes: int) -> MusilRun | None:
    """The lost update of ``processes`` processes checked by musil (:mod:`benchmarks.musil_rate`), or None when no
    interpreter with musil is at hand.  A failed run is a crash."""
    python = musil_python()
    if python is None:
        return None
    done = subprocess.run(
        [python, str(ROOT / "benchmarks" / "musil_rate.py"), str(processes)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkCrash(f"musil's run failed ({python}):\n{done.stderr}")
    figures = json.loads(done.stdout.splitlines()[-1])
    if not figures["ok"] or figures["truncated"]:
        raise BenchmarkCrash(f"musil did not exhaust the model: {figures}")
    return MusilRun(int(figures["states"]), float(figures["seconds"]), str(figures["musil"]))
