"""malloc+free pairs per second: the ptmalloc model against glibc itself, and the model against the contract.

The workload keeps 64 blocks live and then makes ``pairs`` pairs, each a free of a random live block and a
malloc of a size drawn from glibc's busy range (tcache and fastbin sizes mostly, some small-bin and
large-bin sizes, one in fifty above the mmap threshold).  Timed:

* the model: :meth:`impl.ualloc.ptmalloc.Process.apply` over the whole sequence (answers as the oracle
  reports them, ``mallinfo2`` included);
* glibc 2.36 itself: the same calls in a fresh process (``oracles/glibc/bench.c``, compiled on first use),
  the best of its runs, the physical limit of this workload on this machine;
* the contract (the spec side): :func:`spec.ualloc.contract.answer_problem`, :func:`~spec.ualloc.contract.step`
  and :func:`~spec.ualloc.contract.contract_problems` over the model's answers, as the lockstep runner
  checks them.
"""

from __future__ import annotations

import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from impl.ualloc.ptmalloc import Process
from lang.ualloc_ops import Free, Malloc, UallocOp
from oracles.glibc import oracle
from oracles.linux.host import compiled
from properties.ualloc.abstraction import answer_of
from spec.ualloc import contract

LIVE = 64
BENCH_SOURCE = Path(oracle.__file__).resolve().parent / "bench.c"


def workload(pairs: int, seed: int = 1) -> tuple[UallocOp, ...]:
    """``LIVE`` mallocs, then ``pairs`` free+malloc pairs."""
    rng = random.Random(seed)

    def size() -> int:
        roll = rng.random()
        if roll < 0.02:
            return rng.randint(130_000, 200_000)
        if roll < 0.12:
            return rng.randint(1_025, 8_000)
        return rng.randint(1, 1_024)

    ops: list[UallocOp] = [Malloc(size()) for _ in range(LIVE)]
    live = list(range(LIVE))
    for _ in range(pairs):
        ops.append(Free(live.pop(rng.randrange(len(live)))))
        live.append(len(ops))
        ops.append(Malloc(size()))
    return tuple(ops)


@dataclass(frozen=True, slots=True)
class MallocRun:
    """Pairs per second of the model, glibc and the contract's checks over one workload."""

    pairs: int
    model: float
    glibc: float | None
    contract: float
    glibc_note: str


def model_rate(ops: tuple[UallocOp, ...], pairs: int, repeats: int) -> tuple[float, list[object]]:
    """The model's best pairs/s over ``repeats`` runs, and its answers (for the contract's run)."""
    best = float("inf")
    answers: list[object] = []
    for _ in range(repeats):
        process = Process()
        for op in ops[:LIVE]:
            process.apply(op)
        start = time.perf_counter()
        answers = [answer_of(process, process.apply(op)) for op in ops[LIVE:]]
        best = min(best, time.perf_counter() - start)
    return pairs / best, answers


def contract_rate(ops: tuple[UallocOp, ...], pairs: int) -> float:
    """The contract's checks of the model's answers, pairs per second."""
    process = Process()
    state = contract.initial(process.heap.heap_start)
    answers = [answer_of(process, process.apply(op)) for op in ops]
    for index, (op, seen) in enumerate(zip(ops[:LIVE], answers, strict=False)):
        state = contract.step(state, index, op, seen)
    start = time.perf_counter()
    for index in range(LIVE, len(ops)):
        op, seen = ops[index], answers[index]
        if contract.answer_problem(state, op, seen):
            raise AssertionError(f"the contract refuses the model's answer to op {index}")
        state = contract.step(state, index, op, seen)
        if contract.contract_problems(state):
            raise AssertionError(f"the contract is broken after op {index}")
    return pairs / (time.perf_counter() - start)


def glibc_rate(ops: tuple[UallocOp, ...], pairs: int) -> tuple[float | None, str]:
    """glibc's pairs/s (the best of its runs), or None and why it could not run."""
    reason = oracle.unavailable()
    if reason:
        return None, reason
    program = compiled(BENCH_SOURCE, ["-O2", "-Wall", "-Werror"], "glibc-bench", "the glibc benchmark")
    done = subprocess.run([str(program)], input=oracle.encode(ops), capture_output=True, text=True, check=True)
    _, nanoseconds = (int(x) for x in done.stdout.split())
    # the timed run makes all the calls, the LIVE first mallocs included: count its pairs the same way
    per_call = nanoseconds / len(ops)
    return 1e9 / (2 * per_call), "glibc 2.36 in a process of its own, best of 6 runs"


def measure(pairs: int, repeats: int) -> MallocRun:
    ops = workload(pairs)
    model, _ = model_rate(ops, pairs, repeats)
    glibc, note = glibc_rate(ops, pairs)
    return MallocRun(pairs, model, glibc, contract_rate(ops, pairs), note)
