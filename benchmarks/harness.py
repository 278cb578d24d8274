"""How fast the harness checks: state-machine steps per second, model-checker distinct states per second.

Each refinement machine runs on the shared runner
(:func:`properties.machinery.run_machine`) for a fixed number of examples
under a fixed, derandomized profile, with every invariant on.  Steps are
counted in a subclass: Hypothesis checks a machine's invariants once when it
starts and once after every rule it runs, and tears it down once at the end,
so the rules executed are the invariant checks less the teardowns.  The time
includes Hypothesis's own work (drawing the data, choosing rules): it is the
rate a user of ``nox -s verify`` sees.

The explorer runs each system of :mod:`proofs.systems` (the buddy allocator
to exhaustion or a state budget, the SMP layer for a time budget) and reports
:attr:`proofs.explore.Stats.rate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine

from lang.verdict import Status
from proofs import systems
from proofs.explore import Stats, explore
from proofs.systems import VERIFY_BOUNDS, BuddySystem
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


def explorer_rates(max_states: int | None, smp_seconds: float) -> list[ExplorerRate]:
    """Distinct states per second of each explorer system.

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
