"""The "malloc" quiz: brk or mmap, where does the chunk land, and does RSS drop after this free?

A program makes a few calls to glibc's malloc (the ptmalloc model of :mod:`impl.ualloc.ptmalloc`), then the
questions: for each ``malloc``, is the chunk on the heap or in a mapping of its own, where does it land and
does the break move; for each ``free``, where does the chunk go and does the process give memory back (RSS
drops only when a mapping is unmapped or the break falls).

The worked answer is glibc 2.36's malloc/malloc.c: ``request2size`` (the request plus the 8-byte size word,
16-aligned, at least 0x20), a tcache bin of up to 7 chunks a size up to 0x410 (``tcache_get``,
``tcache_put``), ``sysmalloc`` mapping a chunk of at least ``mp_.mmap_threshold`` (128 KiB until a free of a
mapped chunk raises it, ``__libc_free``) and else growing the top with ``sbrk`` (the request plus
``M_TOP_PAD``, page-rounded), ``_int_free``'s fastbins up to 0x80 and its coalescing into the unsorted bin or
the top, and ``systrim`` when the top reaches ``M_TRIM_THRESHOLD``.  Each answer is read off the model in a
lockstep run, so the allocator's contract held at every step; the glibc oracle's test checks the same
answers against real glibc (tests/test_quiz_malloc.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from impl.ualloc.ptmalloc import CHUNK_HDR_SZ, TCACHE_MAX_BINS, Process, csize2tidx, request2size
from lang.scenario import Config, Op, Result, Scenario
from lang.ualloc_ops import Free, Malloc
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from properties.ualloc.abstraction import listed

SIZES = (4, 24, 40, 100, 200, 1000, 5000, 50_000, 100_000, 140_000, 200_000, 400_000)


@dataclass(frozen=True, slots=True)
class Step:
    """One asked call: what it answered and why, in words."""

    op: Op
    result: Result
    why: str


def generate(seed: int, questions: int = 6) -> Quiz:
    """Two to four mallocs to set the scene, then ``questions`` calls: mallocs and frees of live blocks."""
    rng = random.Random(f"malloc:{seed}")
    ops: list[Op] = []
    live: list[int] = []
    for _ in range(rng.randint(2, 4)):
        live.append(len(ops))
        ops.append(Malloc(rng.choice(SIZES)))
    setup = len(ops)
    for _ in range(questions):
        if live and rng.random() < 0.5:
            ops.append(Free(live.pop(rng.randrange(len(live)))))
        else:
            live.append(len(ops))
            ops.append(Malloc(rng.choice(SIZES)))
    return Quiz("malloc", seed, Scenario(Config(frames=64), tuple(ops)), setup)


def _kib(n: int) -> str:
    return f"{n:,} bytes"


def solve(quiz: Quiz) -> tuple[Step, ...]:
    """Run the quiz in lockstep; each asked call's answer explained from the model's state before and after."""
    lockstep = Lockstep(quiz.scenario.config)
    process = lockstep.ualloc.process
    steps: list[Step] = []
    for index, op in enumerate(quiz.scenario.ops):
        heap = process.heap
        brk, threshold = heap.brk, heap.mmap_threshold
        tcache = [len(b) for b in heap.tcache] if heap.tcache is not None else None
        chunk = process.returned[op.call] - CHUNK_HDR_SZ if isinstance(op, Free) else 0
        size = heap.chunksize(chunk) if chunk else 0
        mapped = bool(chunk) and heap.is_mmapped(chunk)
        result = lockstep.apply(op)
        if index < quiz.setup:
            continue
        heap = process.heap
        moved = heap.brk - brk
        if isinstance(op, Malloc):
            nb = request2size(op.size)
            ptr = result["ptr"]
            where = f"chunk of {nb:#x} bytes"
            if ptr["region"] == "mmapped":
                why = (
                    f"{where} >= the mmap threshold {threshold:#x}: a mapping of its own, "
                    f"{_kib(ptr['length'])} (sysmalloc_mmap); the break stays"
                )
            elif tcache is not None and csize2tidx(nb) < TCACHE_MAX_BINS and tcache[csize2tidx(nb)]:
                why = f"{where}: its tcache bin holds a freed one, reused at heap offset {ptr['offset']:#x}"
            elif moved > 0:
                first = " (and the tcache, 0x290, on the first call)" if brk == heap.heap_start else ""
                why = (
                    f"{where}, below the threshold {threshold:#x}: the top was too small{first}, so sbrk grew "
                    f"the break by {_kib(moved)} (the request plus M_TOP_PAD 128 KiB, page-rounded); "
                    f"heap offset {ptr['offset']:#x}"
                )
            else:
                why = (
                    f"{where}, below the threshold {threshold:#x}: from the free chunks or the top, heap offset "
                    f"{ptr['offset']:#x}; the break stays"
                )
        else:
            why = _free_reason(process, chunk, size, mapped, moved, heap.mmap_threshold, threshold)
        steps.append(Step(op, result, why))
    return tuple(steps)


def _free_reason(process: Process, chunk: int, size: int, mapped: bool, moved: int, now: int, before: int) -> str:
    """Why a free gave memory back or not."""
    if chunk == 0:
        return "free (NULL) does nothing"
    if mapped:
        raised = f"; the threshold rises to {now:#x}" if now != before else ""
        return (
            f"a mapped chunk: munmap at once, its {_kib(size)} leave the process: "
            f"RSS drops by every page of them it touched{raised}"
        )
    where = listed(process).get(chunk, "")
    if moved < 0:
        return (
            f"coalesced into the top, which reached M_TRIM_THRESHOLD: systrim lowers the break by "
            f"{_kib(-moved)}, RSS drops"
        )
    if where.startswith("tcache"):
        return f"chunk of {size:#x} bytes into {where} (7 a size): still the process's memory, RSS stays"
    if where.startswith("fastbin"):
        return f"chunk of {size:#x} bytes into {where} (its tcache bin is full): RSS stays"
    if where == "bin[1]":
        return f"chunk of {size:#x} bytes into the unsorted bin (a live neighbour keeps it off the top): RSS stays"
    if where:
        return f"chunk of {size:#x} bytes into {where}: RSS stays"
    return "coalesced into a free neighbour or the top, which stays below M_TRIM_THRESHOLD: RSS stays"


def question(op: Op, quiz: Quiz) -> str:
    if isinstance(op, Malloc):
        return f"malloc ({op.size}): heap or mmap, where does it land, does the break move?"
    assert isinstance(op, Free)
    asked = quiz.scenario.ops[op.call]
    assert isinstance(asked, Malloc)
    return f"free (the block of call {op.call}, malloc ({asked.size})): does RSS drop?"


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    asked = quiz.scenario.ops[quiz.setup :]
    lines = echo(quiz, answers, len(asked))
    lines.append("A fresh process (glibc 2.36's malloc, its defaults) makes these calls:")
    lines += [
        f"  call {i}: malloc ({op.size})"
        for i, op in enumerate(quiz.scenario.ops[: quiz.setup])
        if isinstance(op, Malloc)
    ]
    lines.append("")
    steps = solve(quiz) if answers else ()
    for number, op in enumerate(asked, start=1):
        lines.append(f"  {number}. call {quiz.setup + number - 1}: {question(op, quiz)}")
        if answers:
            lines.append(f"     {steps[number - 1].why}")
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` each call's result and reason."""
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "questions": [op.to_json() for op in quiz.scenario.ops[quiz.setup :]],
    }
    if answers:
        out["answers"] = [{"result": dict(step.result), "why": step.why} for step in solve(quiz)]
    return out
