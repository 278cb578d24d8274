"""Hunting mutants: each catalogued defect applied around the checks ``verify`` runs for its layer.

For one mutant, every detector of its layer (:data:`DETECTORS`) runs with
the mutant applied, in the ``ci`` profile: the layer's refinement machine,
the model checker at ``verify``'s bound where the layer has one (for the TLB layer, the
hunting bounds of :mod:`proofs.smp_system`), and the Z3
lemmas that run the implementation's code.  A detector that refutes the
mutant and leaves a counterexample scenario has it checked: it must fail
under the mutant and pass on the real implementation.  The scenario is then
saved as ``<counterexamples>/mutants/<mutant>.<detector>.json`` with a
top-level ``"mutant"`` key naming the defect, so ``mmcheck replay`` re-applies
it and the failure replays.

:func:`hunt_each` runs every mutant in a forked process of its own, so a
patch can never leak from one mutant's run into another's.  The time to catch
a mutant is that of the fastest detector that caught it (``verify`` runs its
checks in parallel); its counterexample length is the shortest saved one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lang.scenario import dump, load
from lang.verdict import CHECKS, Status
from properties.machinery import counterexample_path, run_machine
from properties.minimise import failure_kind
from properties.mutants import by_name
from properties.mutants.catalogue import Mutant
from properties.profiles import ci_settings
from properties.recording import counterexample_folder

if TYPE_CHECKING:
    from proofs.smp_system import SmpBounds

MUTANT_KEY = "mutant"
RunResult = tuple[Status, Path | None, str]


@dataclass(frozen=True, slots=True)
class Detector:
    """One check of a layer: ``kind`` is machine, model checker or proof; ``name`` goes into saved file names."""

    kind: str
    name: str
    run: Callable[[Mutant], RunResult]


@dataclass(frozen=True, slots=True)
class Detection:
    """What one detector made of one mutant."""

    kind: str
    detector: str
    status: Status
    seconds: float
    steps: int | None = None
    scenario: str | None = None
    replays: bool = False
    detail: str = ""

    @property
    def caught(self) -> bool:
        return self.status is Status.REFUTED


@dataclass(frozen=True, slots=True)
class Catch:
    """Every detector's verdict on one mutant."""

    mutant: str
    layer: str
    label: str
    detections: tuple[Detection, ...]

    @property
    def killed(self) -> bool:
        """Some detector refuted it (an unknown verdict is not a kill)."""
        return any(d.caught for d in self.detections)

    @property
    def caught_by(self) -> str:
        return ", ".join(dict.fromkeys(d.kind for d in self.detections if d.caught)) or "-"

    @property
    def seconds(self) -> float | None:
        """Time to catch: the fastest detector that refuted it."""
        times = [d.seconds for d in self.detections if d.caught]
        return min(times) if times else None

    @property
    def shortest(self) -> Detection | None:
        """The catching detection with the shortest saved counterexample."""
        saved = [d for d in self.detections if d.caught and d.steps is not None]
        return min(saved, key=lambda d: d.steps or 0) if saved else None

    @property
    def steps(self) -> int | None:
        shortest = self.shortest
        return None if shortest is None else shortest.steps

    @property
    def problems(self) -> list[str]:
        """Catches that do not hold up: a scenario-producing detector without a scenario that replays."""
        return [
            f"{self.mutant}: {d.detector} refuted it but its counterexample "
            + ("was not saved" if d.scenario is None else f"does not fail only under the mutant: {d.scenario}")
            for d in self.detections
            if d.caught and d.kind != "proof" and not d.replays
        ]


def saved_if_refuted(status: Status, path: Path) -> Path | None:
    return path if status is Status.REFUTED and path.exists() else None


def machine_detector(name: str, machine: str, shrink: bool = False) -> Detector:
    """A layer's refinement machine (``module:Class``) in the ``ci`` profile, as ``verify`` runs it.

    The machine is imported when the detector runs, inside the forked process
    of its mutant; ``shrink`` keeps Hypothesis's shrink phase (the buddy
    machine's programs are short), otherwise the saved scenario is minimised
    by replay.
    """

    def run(mutant: Mutant) -> RunResult:
        import importlib

        module, _, cls = machine.partition(":")
        machine_class = getattr(importlib.import_module(module), cls)
        status, detail = run_machine(machine_class, ci_settings(shrink))
        return status, saved_if_refuted(status, counterexample_path(machine_class)), detail

    return Detector("machine", name, run)


def buddy_explorer(mutant: Mutant) -> RunResult:
    """The model checker at ``verify``'s bound: every reachable state of 10 frames, breadth-first."""
    from proofs.explore import run_exploration
    from proofs.systems import VERIFY_BOUNDS, BuddySystem

    result, saved = run_exploration(BuddySystem(VERIFY_BOUNDS), depth=40, max_states=None, name=mutant.name)
    if saved is not None:
        return Status.REFUTED, saved, result.reason or ""
    if not result.stats.exhausted:
        return Status.UNKNOWN, None, f"bound reached before exhausting: {result.stats.summary()}"
    return Status.CONFIRMED, None, result.stats.summary()


def smp_explorer(mutant: Mutant) -> RunResult:
    """The model checker on the SMP layer: the hunting bounds of :mod:`proofs.smp_system`, breadth-first."""
    from proofs.smp_system import HUNT_BOUNDS

    return explorer_hunt(mutant, HUNT_BOUNDS)


def cow_explorer(mutant: Mutant) -> RunResult:
    """The model checker on the kernel layer alone (one CPU, fork, COW, zero page, shared mappings, pins)."""
    from proofs.smp_system import COW_HUNT_BOUNDS

    return explorer_hunt(mutant, COW_HUNT_BOUNDS)


def explorer_hunt(mutant: Mutant, bounds_list: tuple[tuple[SmpBounds, int], ...]) -> RunResult:
    from proofs.smp_system import hunt

    result, saved = hunt(mutant.name, bounds_list)
    if result is not None and saved is not None:
        return Status.REFUTED, saved, result.reason
    bounds = "; ".join(f"{b.describe()} to depth {d}" for b, d in bounds_list)
    return Status.UNKNOWN, None, f"no violation within {bounds} (depth-limited: not a proof)"


def z3_lemmas(module: str) -> Callable[[Mutant], RunResult]:
    """The ``z3`` checks ``module`` registers, run in order until one is refuted."""

    def run(mutant: Mutant) -> RunResult:
        import importlib

        importlib.import_module(module)
        unknown: list[str] = []
        for chk in [c for c in CHECKS if c.group == "z3" and c.run.__module__ == module]:
            verdict = chk.run()
            if verdict.status is Status.REFUTED:
                return Status.REFUTED, None, f"{chk.name}: {verdict.detail}"
            if verdict.status is Status.UNKNOWN:
                unknown.append(chk.name)
        if unknown:
            return Status.UNKNOWN, None, f"unknown: {', '.join(unknown)}"
        return Status.CONFIRMED, None, ""

    return run


MMU_MACHINE = machine_detector("mmu-machine", "properties.paging.mmu_machine:MmuMachine")
BUDDY_MACHINE = machine_detector("buddy-machine", "properties.alloc.buddy_machine:BuddyMachine", shrink=True)
KERNEL_MACHINE = machine_detector("kernel-machine", "properties.mm.kernel_machine:KernelMachine")
SMP_MACHINE = machine_detector("smp-machine", "properties.smp.smp_machine:SmpMachine")
HUGE_MACHINE = machine_detector("huge-machine", "properties.mm.huge_machine:HugeMachine")
SLAB_MACHINE = machine_detector("slab-machine", "properties.slab.slab_machine:SlabMachine", shrink=True)
SLAB_DEBUG_MACHINE = machine_detector(
    "slab-debug-machine", "properties.slab.slab_debug_machine:SlabDebugMachine", shrink=True
)
NOPCID_MACHINE = machine_detector("nopcid-machine", "properties.smp.nopcid_machine:NoPcidMachine")
CEILING_ONE_MACHINE = machine_detector("ceiling-one-machine", "properties.smp.ceiling_machine:CeilingOneMachine")
CEILING_ZERO_MACHINE = machine_detector("ceiling-zero-machine", "properties.smp.ceiling_machine:CeilingZeroMachine")
FAULT_AROUND_MACHINE = machine_detector(
    "fault-around-machine", "properties.pressure.fault_around_machine:FaultAroundOffMachine"
)
PRESSURE_MACHINE = machine_detector("pressure-machine", "properties.pressure.pressure_machine:PressureMachine")
OOM_MACHINE = machine_detector("oom-machine", "properties.oom.oom_machine:OomMachine")
MEMCG_MACHINE = machine_detector("memcg-machine", "properties.oom.memcg_machine:MemcgMachine")
WORKINGSET_MACHINE = machine_detector("workingset-machine", "properties.pressure.workingset_machine:WorkingsetMachine")
SLAB_PRESSURE_MACHINE = machine_detector(
    "slab-pressure-machine", "properties.pressure.slab_pressure_machine:SlabPressureMachine"
)
THP_MACHINE = machine_detector("thp-machine", "properties.mm.thp_machine:ThpMachine")
BUDDY_EXPLORER = Detector("model checker", "explore", buddy_explorer)
SMP_EXPLORER = Detector("model checker", "explore-smp", smp_explorer)
COW_EXPLORER = Detector("model checker", "explore-cow", cow_explorer)
DETECTORS: dict[str, tuple[Detector, ...]] = {
    "walk": (MMU_MACHINE, Detector("proof", "z3", z3_lemmas("proofs.lemmas"))),
    "buddy": (BUDDY_MACHINE, BUDDY_EXPLORER, Detector("proof", "z3", z3_lemmas("proofs.buddy_lemmas"))),
    "cow": (KERNEL_MACHINE, COW_EXPLORER),
    "aspace": (KERNEL_MACHINE,),
    "tlb": (SMP_MACHINE, SMP_EXPLORER),
    "huge": (HUGE_MACHINE,),
    "thp": (THP_MACHINE,),
    "slab": (SLAB_MACHINE,),
    "slab_debug": (SLAB_DEBUG_MACHINE,),
    "pcid": (NOPCID_MACHINE,),
    "pressure": (PRESSURE_MACHINE,),
    "ceiling": (CEILING_ONE_MACHINE,),
    "flushall": (CEILING_ZERO_MACHINE,),
    "smaps": (FAULT_AROUND_MACHINE,),
    "oom": (OOM_MACHINE,),
    "memcg": (MEMCG_MACHINE,),
    "workingset": (WORKINGSET_MACHINE,),
    "slab_meminfo": (SLAB_PRESSURE_MACHINE,),
}


@contextlib.contextmanager
def counterexamples_in(folder: str) -> Iterator[None]:
    """Checks save their counterexamples in ``folder`` inside the block."""
    key = "MMCHECK_COUNTEREXAMPLES"
    before = os.environ.get(key)
    os.environ[key] = folder
    try:
        yield
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def detect(mutant: Mutant, detector: Detector, folder: Path) -> Detection:
    """Run ``detector`` with ``mutant`` applied; check and save its counterexample."""
    with tempfile.TemporaryDirectory(prefix="mmcheck-mutant-") as scratch, counterexamples_in(scratch):
        start = time.perf_counter()
        with mutant.applied():
            status, found, detail = detector.run(mutant)
            seconds = time.perf_counter() - start
            scenario = load(found) if found is not None else None
            fails_under = scenario is not None and failure_kind(scenario) is not None
        passes_without = scenario is not None and failure_kind(scenario) is None
    if scenario is None:
        return Detection(detector.kind, detector.name, status, seconds, detail=first_line(detail))
    tagged = replace(scenario, extra={**scenario.extra, MUTANT_KEY: mutant.name})
    saved = dump(tagged, folder / f"{mutant.name}.{detector.name}.json")
    return Detection(
        detector.kind,
        detector.name,
        status,
        seconds,
        len(scenario.ops),
        str(saved),
        fails_under and passes_without,
        first_line(detail),
    )


def hunt(mutant: Mutant, folder: Path | None = None) -> Catch:
    """Every detector of ``mutant``'s layer against it, in this process (the patch is removed after each)."""
    target = folder or counterexample_folder() / "mutants"
    detections = tuple(detect(mutant, d, target) for d in DETECTORS.get(mutant.layer, ()))
    return Catch(mutant.name, mutant.layer, mutant.label, detections)


def _hunt_named(job: tuple[str, str]) -> Catch:
    name, folder = job
    return hunt(by_name(name), Path(folder))


def hunt_each(mutants: Sequence[Mutant], folder: Path | None = None, jobs: int = 1) -> Iterator[Catch]:
    """Hunt each mutant in a fresh forked process (``jobs`` at a time), yielding catches as they finish."""
    target = str(folder or counterexample_folder() / "mutants")
    context = multiprocessing.get_context("fork")
    with context.Pool(processes=max(1, jobs), maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(_hunt_named, [(m.name, target) for m in mutants])


def table(catches: Iterable[Catch]) -> list[str]:
    """One row per mutant: name, layer, what it mirrors, what caught it, counterexample steps, seconds."""
    rows = [f"{'mutant':24} {'layer':6} {'mirrors':22} {'caught by':29} {'steps':>5} {'seconds':>7}"]
    for c in catches:
        steps = "-" if c.steps is None else str(c.steps)
        seconds = "-" if c.seconds is None else f"{c.seconds:.1f}"
        caught_by = c.caught_by if c.killed else "SURVIVED"
        rows.append(f"{c.mutant:24} {c.layer:6} {c.label[:22]:22} {caught_by:29} {steps:>5} {seconds:>7}")
    return rows


def alone_catch(catch: Catch, kind: str) -> Catch:
    """``catch`` as if only the detectors of ``kind`` had run."""
    return replace(catch, detections=tuple(d for d in catch.detections if d.kind == kind))


def medians(catches: Sequence[Catch]) -> tuple[float | None, float | None]:
    """Median time to catch and median counterexample length over the killed mutants."""
    times = [c.seconds for c in catches if c.seconds is not None]
    steps = [c.steps for c in catches if c.steps is not None]
    return (statistics.median(times) if times else None, statistics.median(steps) if steps else None)


def summary(catches: Sequence[Catch]) -> list[str]:
    """The closing lines: medians, problems, survivors, and ``mutants: K killed of N``."""
    time_median, steps_median = medians(catches)
    lines = []
    if time_median is not None and steps_median is not None:
        lines.append(f"median time to catch {time_median:.1f}s, median counterexample {steps_median:g} ops")
    for kind in dict.fromkeys(d.kind for c in catches for d in c.detections):
        alone = [alone_catch(c, kind) for c in catches]
        caught = sum(a.killed for a in alone)
        kind_time, kind_steps = medians(alone)
        if kind_time is not None:
            shown = f", median {kind_steps:g} ops" if kind_steps is not None else ""
            lines.append(f"  {kind} alone: {caught} of {len(alone)}, median {kind_time:.1f}s{shown}")
    lines += [f"problem: {p}" for c in catches for p in c.problems]
    lines += [f"survived: {c.mutant} ({c.layer})" for c in catches if not c.killed]
    lines.append(f"mutants: {sum(c.killed for c in catches)} killed of {len(catches)}")
    return lines
