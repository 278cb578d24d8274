"""Small shared models: one description, explored by the spec explorer and exported to Promela for SPIN.

A :class:`Model` is a guarded-command program: global variables with their
start values, processes each with a program counter, and for each process its
actions, each a guard and assignments (in one expression syntax that is both
Promela and, with ``&&``, ``||`` and ``!`` spelled out, Python), and an
invariant.  Every action is one atomic step.  The same description becomes

- a system for :func:`proofs.spec_explore.explore_spec` (:class:`ModelSystem`):
  a state is a tuple of ints (the variables, then the program counters), the
  successor function is Python generated from the actions, the invariant is
  checked at every distinct state;
- a Promela program (:func:`promela`): the variables and program counters as
  ``byte`` globals, each process a ``do`` loop of one ``d_step`` per action
  (a guard, then the assignments: one indivisible transition, no intermediate
  state), ``end:`` at the loop head so a finished process is a valid end state,
  and ``assert(invariant)`` at the end of each step and once at the start.

SPIN with ``-DNOREDUCE`` (no partial-order reduction) and exhaustive storage
counts every reachable state once, as the explorer does, so the two counts must
be equal (:func:`spin_count`): a differential test of the explorer itself (its
breadth-first search, visited set and hash compaction) against an independent
checker.  With the assertions on, both must find a violation in the same
models.  SPIN's semantics: Holzmann, *The SPIN Model Checker* (2003), chapter 3
(``d_step``, end states), and the ``pan`` options of
https://spinroot.com/spin/Man/Pan.html (``-A`` ignores assertion violations,
``-m`` the depth bound).

The models: :func:`lost_update` (``n`` processes each incrementing a shared
counter by a load and a store: the counter ends below ``n``) and
:func:`shootdown` (one CPU unmapping a page while another may hold it in its
TLB, after ``zap_pte_range``, ``flush_tlb_mm_range`` and the mmu_gather's free
in mm/mmu_gather.c and arch/x86/mm/tlb.c: the frame may be freed only after
every TLB that could hold it has been flushed; the ``free-before-flush``
variant frees it first).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from lang.errors import ConfigError

State = tuple[int, ...]


@dataclass(frozen=True)
class Action:
    """One atomic step of a process: from program counter ``at``, when ``guard`` holds, the ``assign`` pairs
    (variable, expression, all read in the state before the step), then the program counter ``to``."""

    name: str
    at: int
    to: int
    guard: str = "true"
    assign: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Model:
    """Globals (name, start value), processes (name, actions), the invariant; values are bytes (0..255)."""

    name: str
    variables: tuple[tuple[str, int], ...]
    processes: tuple[tuple[str, tuple[Action, ...]], ...]
    invariant: str

    @property
    def names(self) -> tuple[str, ...]:
        """Every state component: the variables, then each process's program counter ``pc_<process>``."""
        return (*(n for n, _ in self.variables), *(f"pc_{p}" for p, _ in self.processes))


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def python_expression(text: str) -> str:
    """A model expression in Python: ``&&`` ``||`` ``!`` ``true`` ``false`` spelled as Python spells them."""
    out = text.replace("&&", " and ").replace("||", " or ")
    out = re.sub(r"!(?!=)", " not ", out)
    return re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", out))


def check_model(model: Model) -> None:
    """Raise :class:`~lang.errors.ConfigError` for an expression naming no variable of the model."""
    known = {*model.names, "true", "false"}
    texts = [model.invariant] + [
        t for _, actions in model.processes for a in actions for t in (a.guard, *dict(a.assign).values())
    ]
    for text in texts:
        for word in _WORD.findall(text):
            if word not in known:
                raise ConfigError(f"model {model.name}: {word!r} in {text!r} is not a variable; known: {sorted(known)}")
    for _, actions in model.processes:
        for a in actions:
            assigned: set[str] = set()
            for target, value in a.assign:
                if target not in model.names or target.startswith("pc_") or target in assigned:
                    raise ConfigError(f"model {model.name}: {a.name} assigns {target!r}: not a variable, or twice")
                # Promela assigns in turn, the generated Python all at once from the state before: the same only
                # when no assignment reads a variable an earlier one of the step wrote.
                if assigned & set(_WORD.findall(value)):
                    raise ConfigError(f"model {model.name}: {a.name} reads a variable it assigned earlier in the step")
                assigned.add(target)


def generated(model: Model) -> tuple[Callable[[State], Iterator[tuple[str, State]]], Callable[[State], bool]]:
    """The successor function and the invariant of ``model``, as Python built from its text."""
    check_model(model)
    names = model.names
    unpack = f"    ({', '.join(names)},) = state\n"
    lines = ["def successors(state):\n", unpack]
    for process, actions in model.processes:
        for a in actions:
            values = dict(a.assign)
            after = [values.get(n, n) for n in names]
            after[names.index(f"pc_{process}")] = str(a.to)
            wrapped = [
                f"({python_expression(v)}) & 255" if n in values else v for n, v in zip(names, after, strict=True)
            ]
            guard = python_expression(a.guard)
            lines.append(f"    if pc_{process} == {a.at} and ({guard}):\n")
            lines.append(f"        yield {a.name!r}, ({', '.join(wrapped)},)\n")
    lines.append("    return\n")
    lines += ["def invariant(state):\n", unpack, f"    return bool({python_expression(model.invariant)})\n"]
    scope: dict[str, object] = {}
    exec("".join(lines), scope)  # built from the model's own expressions, checked by check_model
    return scope["successors"], scope["invariant"]  # type: ignore[return-value]


def actions(model: Model) -> list[tuple[str, Callable[[State], bool], Callable[[State], State]]]:
    """Each action of ``model`` as (name, enabled, apply) on the tuple state, the same generated Python as
    :func:`generated` one action at a time: the form a checker of guarded actions (musil) takes."""
    check_model(model)
    names = model.names
    unpack = f"    ({', '.join(names)},) = state\n"
    out = []
    for process, process_actions in model.processes:
        for a in process_actions:
            values = dict(a.assign)
            after = [values.get(n, n) for n in names]
            after[names.index(f"pc_{process}")] = str(a.to)
            wrapped = [
                f"({python_expression(v)}) & 255" if n in values else v for n, v in zip(names, after, strict=True)
            ]
            guard = python_expression(a.guard)
            source = (
                f"def enabled(state):\n{unpack}    return pc_{process} == {a.at} and bool({guard})\n"
                f"def apply(state):\n{unpack}    return ({', '.join(wrapped)},)\n"
            )
            scope: dict[str, object] = {}
            exec(source, scope)  # built from the model's own expressions, checked by check_model
            out.append((a.name, scope["enabled"], scope["apply"]))
    return out  # type: ignore[return-value]


def invariant_of(model: Model) -> Callable[[State], bool]:
    """The invariant of ``model`` on the tuple state."""
    return generated(model)[1]


class ModelSystem:
    """A :class:`Model` as a system for :func:`proofs.spec_explore.explore_spec`; ``invariant=False`` checks nothing
    (to count every reachable state)."""

    def __init__(self, model: Model, invariant: bool = True) -> None:
        self.model = model
        self.successors_of, self.holds = generated(model)
        self.checking = invariant

    def initial(self) -> State:
        return (*(v for _, v in self.model.variables), *(0 for _ in self.model.processes))

    def successors(self, state: State) -> Iterator[tuple[str, State]]:
        return self.successors_of(state)

    def key(self, state: State) -> Hashable:
        return state

    def check(self, state: State) -> list[str]:
        if self.checking and not self.holds(state):
            return [f"{self.model.invariant} is false in {dict(zip(self.model.names, state, strict=True))}"]
        return []


def promela(model: Model) -> str:
    """The Promela program of ``model`` (see the module docstring)."""
    check_model(model)
    out = [f"/* {model.name}: generated by proofs/promela.py */\n"]
    out += [f"byte {n} = {v};\n" for n, v in model.variables]
    out += [f"byte pc_{p} = 0;\n" for p, _ in model.processes]
    for process, actions in model.processes:
        out.append(f"active proctype {process}() {{\nend: do\n")
        for a in actions:
            assigns = "".join(f"; {t} = {v}" for t, v in a.assign)
            out.append(
                f"  :: d_step {{ pc_{process} == {a.at} && ({a.guard}){assigns}; pc_{process} = {a.to}; "
                f"assert({model.invariant}) }}  /* {a.name} */\n"
            )
        out.append("od\n}\n")
    return "".join(out)


@dataclass(frozen=True)
class SpinRun:
    """What ``pan`` reported: states stored, transitions, errors; and the seconds its run took (wall time, without
    building it)."""

    states: int
    transitions: int
    errors: int
    output: str
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """States stored per second."""
        return self.states / self.seconds if self.seconds else 0.0


def spin_missing() -> str | None:
    """Why SPIN cannot run here (no ``spin``, no C compiler), or None."""
    for tool in ("spin", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install spin gcc)"
    return None


def spin_count(model: Model, assertions: bool = False, reduce: bool = False, timeout: float = 120.0) -> SpinRun:
    """Run SPIN on ``model`` with exhaustive storage and ``-DNOREDUCE`` (``reduce``: SPIN's partial-order reduction
    on); ``assertions=False`` passes ``-A`` so that the search counts every reachable state."""
    counting, checking = spin_runs(model, reduce, timeout)
    return checking if assertions else counting


def spin_runs(model: Model, reduce: bool = False, timeout: float = 120.0) -> tuple[SpinRun, SpinRun]:
    """One ``pan`` built for ``model`` (see :func:`spin_count`), run twice: with ``-A`` (every reachable state
    counted) and with the assertions on."""
    with tempfile.TemporaryDirectory(prefix="mmcheck-spin-") as folder:
        where = Path(folder)
        (where / "model.pml").write_text(promela(model))
        for command in (
            ["spin", "-a", "model.pml"],
            ["gcc", "-O1", *(() if reduce else ("-DNOREDUCE",)), "-DSAFETY", "-o", "pan", "pan.c"],
        ):
            done = subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        runs = []
        for extra in (["-A"], []):
            start = time.perf_counter()
            done = subprocess.run(
                ["./pan", "-m100000", *extra], cwd=where, capture_output=True, text=True, timeout=timeout, check=False
            )
            runs.append(replace(parse_pan(done.stdout), seconds=time.perf_counter() - start))
    return runs[0], runs[1]


def parse_pan(text: str) -> SpinRun:
    """States stored, transitions and errors from ``pan``'s report."""
    stored = re.search(r"([0-9.e+]+) states, stored", text)
    moves = re.search(r"([0-9.e+]+) transitions", text)
    errors = re.search(r"errors: (\d+)", text)
    if stored is None or moves is None or errors is None:
        raise RuntimeError(f"pan's output has no state count:\n{text}")
    return SpinRun(int(float(stored.group(1))), int(float(moves.group(1))), int(errors.group(1)), text)


# --- the models -----------------------------------------------------------------------------------


def lost_update(processes: int = 2) -> Model:
    """``processes`` processes each load the shared counter, add one to their copy and store it: a lost update
    leaves the counter below ``processes`` once every one has finished."""
    if not 1 <= processes <= 8:
        raise ConfigError(f"lost_update takes 1 to 8 processes, got {processes}")
    procs = []
    for i in range(processes):
        r = f"r{i}"
        procs.append(
            (
                f"P{i}",
                (
                    Action(f"P{i} load", 0, 1, assign=((r, "counter"),)),
                    Action(f"P{i} add", 1, 2, assign=((r, f"{r} + 1"),)),
                    Action(f"P{i} store", 2, 3, assign=(("counter", r),)),
                ),
            )
        )
    done = " && ".join(f"pc_P{i} == 3" for i in range(processes))
    return Model(
        f"lost update, {processes} processes",
        (("counter", 0), *((f"r{i}", 0) for i in range(processes))),
        tuple(procs),
        f"!({done}) || counter == {processes}",
    )


SHOOTDOWN_VARIANTS = ("flush-before-free", "free-before-flush")


def shootdown(variant: str = "flush-before-free") -> Model:
    """CPU 0 unmaps a page that CPU 1 may hold in its TLB; the invariant: no TLB holds a translation of a freed
    frame (:func:`spec.smp.shootdown.violations`' "no usable TLB entry of a free frame").

    CPU 0: clear the PTE (``zap_pte_range``), send the flush IPI and wait for it (``flush_tlb_mm_range``,
    ``native_flush_tlb_multi``), then free the frame (``tlb_finish_mmu`` -> ``tlb_batch_pages_flush``);
    ``free-before-flush`` frees it before the IPI.  CPU 1, at any time: fill its TLB from a present PTE, evict
    the entry, or take the IPI (flush its TLB and acknowledge).
    """
    if variant not in SHOOTDOWN_VARIANTS:
        raise ConfigError(f"shootdown variant {variant!r} is not one of {list(SHOOTDOWN_VARIANTS)}")
    zap = Action("CPU0 zap PTE", 0, 1, assign=(("pte", "0"),))
    if variant == "flush-before-free":
        cpu0 = (
            zap,
            Action("CPU0 send IPI", 1, 2, assign=(("ipi", "1"),)),
            Action("CPU0 IPI acknowledged", 2, 3, guard="ipi == 0"),
            Action("CPU0 free frame", 3, 4, assign=(("freed", "1"),)),
        )
    else:
        cpu0 = (
            zap,
            Action("CPU0 free frame", 1, 2, assign=(("freed", "1"),)),
            Action("CPU0 send IPI", 2, 3, assign=(("ipi", "1"),)),
            Action("CPU0 IPI acknowledged", 3, 4, guard="ipi == 0"),
        )
    cpu1 = (
        Action("CPU1 TLB fill", 0, 0, guard="pte == 1 && tlb1 == 0", assign=(("tlb1", "1"),)),
        Action("CPU1 TLB evict", 0, 0, guard="tlb1 == 1", assign=(("tlb1", "0"),)),
        Action("CPU1 takes the IPI", 0, 0, guard="ipi == 1", assign=(("tlb1", "0"), ("ipi", "0"))),
    )
    return Model(
        f"shootdown of one page on 2 CPUs, {variant}",
        (("pte", 1), ("tlb1", 0), ("ipi", 0), ("freed", 0)),
        (("CPU0", cpu0), ("CPU1", cpu1)),
        "!(freed == 1 && tlb1 == 1)",
    )


def models() -> list[tuple[Model, bool]]:
    """Every shared model with whether its invariant holds (the lost update's does not, with two or more)."""
    return [
        (lost_update(1), True),
        (lost_update(2), False),
        (lost_update(3), False),
        (shootdown("flush-before-free"), True),
        (shootdown("free-before-flush"), False),
    ]
