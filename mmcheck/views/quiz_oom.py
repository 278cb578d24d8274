"""The "who dies" quiz: given processes, their sizes and ``oom_score_adj``, which does the OOM killer kill?

A machine of 1,000 to 3,000 frames, with or without swap, runs three or four processes besides init, each
with a few anonymous pages stored (some paged out to swap) and an ``oom_score_adj`` from the tiers
production services use (-1000 never to be killed, -900 a database, 0, 500 a batch job, 1000 a cache).  The
questions: ``/proc/PID/oom_score`` of each, then who dies at each of several ``out_of_memory`` calls in a
row (each kill frees its victim's memory), and what happens when nothing is left to kill.

The worked answer is mm/oom_kill.c ``oom_badness()`` for each process: ``get_mm_rss`` (resident pages) +
``MM_SWAPENTS`` + ``mm_pgtables_bytes / PAGE_SIZE`` + ``oom_score_adj * (totalpages / 1000)``, the
division first in integers, ``totalpages`` the machine's RAM + swap; init and -1000 are never chosen;
``select_bad_process`` keeps the highest, a later task on a tie.  ``oom_score`` is fs/proc/base.c
``proc_oom_score``: ``(1000 + badness * 1000 / totalpages) * 2 / 3``.  Everything is read off the spec's
states of a lockstep run, so the implementation agreed at every step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from lang.kernel_ops import Madvise, Mmap, Spawn, Store, Switch
from lang.oom_ops import OomScoreAdj, OomScoreOp, OutOfMemory
from lang.scenario import Config, Op, Scenario
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.mm.kernel import Kernel
from spec.oom.badness import INIT_PID, OOM_SCORE_ADJ_MIN, page_tables, rss_and_swap, total_pages
from spec.paging.address import PAGE_SIZE

ANON = 0x10000000
TIERS = (-1000, -900, 0, 0, 500, 1000)
ROLES = {-1000: "must never die", -900: "a database", 0: "a service", 500: "a batch job", 1000: "a cache"}


@dataclass(frozen=True, slots=True)
class Points:
    """One process's ``oom_badness`` inputs and result (None: never chosen)."""

    pid: int
    rss: int
    swap: int
    tables: int
    adj: int
    points: int | None


@dataclass(frozen=True, slots=True)
class Round:
    """One ``out_of_memory`` call: every process's points before it, and what the kernel did."""

    table: tuple[Points, ...]
    totalpages: int
    result: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class WhoDiesAnswer:
    scores: tuple[tuple[int, Mapping[str, object]], ...]
    rounds: tuple[Round, ...]


def generate(seed: int, questions: int = 3) -> Quiz:
    """Three or four processes of a few pages and chosen tiers, then ``questions`` OOMs in a row."""
    rng = random.Random(f"who-dies:{seed}")
    frames = rng.choice((1000, 2000, 3000))
    swap = rng.choice((0, 0, 999, 1999))
    ops: list[Op] = [Spawn()]
    for pid in range(2, 2 + rng.randint(3, 4)):
        pages = rng.randint(1, 8)
        ops += [Spawn(), Mmap(pid, ANON, 8, "rw-"), Switch(0, pid)]
        ops += [Store(0, ANON + page * PAGE_SIZE, pid) for page in range(pages)]
        if swap and rng.random() < 0.4:
            ops.append(Madvise(pid, ANON, rng.randint(1, pages), "pageout"))
        adj = rng.choice(TIERS)
        if adj:
            ops.append(OomScoreAdj(pid, adj))
    pids = range(2, sum(isinstance(op, Spawn) for op in ops) + 1)
    setup = len(ops)
    ops += [OomScoreOp(pid) for pid in pids]
    ops += [OutOfMemory(INIT_PID)] * questions
    return Quiz("who-dies", seed, Scenario(Config(frames=frames, cpus=1, max_order=4, swap=swap), tuple(ops)), setup)


def table(k: Kernel) -> tuple[Points, ...]:
    """Every process's badness inputs and points in the state ``k``, with the machine's totals."""
    totalpages = total_pages(k)
    rows = []
    for pid in sorted(k.procs):
        anon, file, shmem, swap = rss_and_swap(k, pid)
        adj = k.oom_score_adj.get(pid, 0)
        tables = page_tables(k, pid)
        eligible = pid != INIT_PID and adj != OOM_SCORE_ADJ_MIN
        points = anon + file + shmem + swap + tables + adj * (totalpages // 1000) if eligible else None
        rows.append(Points(pid, anon + file + shmem, swap, tables, adj, points))
    return tuple(rows)


def solve(quiz: Quiz) -> WhoDiesAnswer:
    """Run the quiz in lockstep; each OOM's table is read off the spec's state before it."""
    lockstep = Lockstep(quiz.scenario.config)
    scores: list[tuple[int, Mapping[str, object]]] = []
    rounds: list[Round] = []
    for op in quiz.scenario.ops:
        before = lockstep.spec.kernel.kernel
        result = lockstep.apply(op)
        if isinstance(op, OomScoreOp):
            scores.append((op.pid, result))
        if isinstance(op, OutOfMemory):
            assert before is not None
            rounds.append(Round(table(before), total_pages(before), result))
            if "panic" in result:
                break
    return WhoDiesAnswer(tuple(scores), tuple(rounds))


def points_text(row: Points, totalpages: int) -> str:
    """The arithmetic of one process's badness."""
    if row.pid == INIT_PID:
        return f"pid {row.pid} (init): never chosen"
    if row.points is None:
        return f"pid {row.pid}: oom_score_adj -1000, never chosen (oom_badness returns LONG_MIN)"
    unit = totalpages // 1000
    return (
        f"pid {row.pid}: {row.rss} resident + {row.swap} swap + {row.tables} page tables "
        f"+ {row.adj} x ({totalpages} / 1000 = {unit}) = {row.points}"
    )


def setup_lines(quiz: Quiz) -> list[str]:
    config = quiz.scenario.config
    lines = [f"A machine of {config.frames} frames and {config.swap} swap slots; pid 1 is init."]
    adj: dict[int, int] = {}
    stored: dict[int, int] = {}
    out: dict[int, int] = {}
    running = INIT_PID
    for op in quiz.scenario.ops[: quiz.setup]:
        if isinstance(op, OomScoreAdj):
            adj[op.pid] = op.adj
        elif isinstance(op, Switch):
            running = op.pid
        elif isinstance(op, Store):
            stored[running] = stored.get(running, 0) + 1
        elif isinstance(op, Madvise):
            out[op.pid] = op.pages
    for pid, pages in stored.items():
        a = adj.get(pid, 0)
        swapped = f", {out[pid]} of them paged out to swap" if pid in out else ""
        noun = "page" if pages == 1 else "pages"
        lines.append(f"  pid {pid}: {pages} anonymous {noun} stored{swapped}; oom_score_adj {a} ({ROLES[a]})")
    return lines


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    answer = solve(quiz)
    rounds = sum(isinstance(op, OutOfMemory) for op in quiz.scenario.ops)
    lines = echo(quiz, answers, rounds + 1)
    lines += setup_lines(quiz)
    lines += ["", "  1. What does /proc/PID/oom_score show for each process?"]
    if answers:
        total = answer.rounds[0].totalpages if answer.rounds else 0
        lines.append(f"     (1000 + badness x 1000 / totalpages) x 2 / 3, totalpages = RAM + swap = {total}")
        lines += [f"     pid {pid}: {score['oom_score']}" for pid, score in answer.scores]
    for number in range(2, rounds + 2):
        lines.append(f"  {number}. Memory runs out again (out_of_memory): who dies?")
        if not answers:
            continue
        if number - 2 >= len(answer.rounds):
            lines.append("     nothing: the machine already panicked")
            continue
        r = answer.rounds[number - 2]
        lines += [f"     {points_text(row, r.totalpages)}" for row in r.table]
        kill = r.result.get("oom_kill")
        if isinstance(kill, Mapping):
            lines.append(f"     answer: pid {kill['pid']} ({kill['points']} points: the highest, a tie to the later)")
        else:
            lines.append(f"     answer: nobody can be killed: {r.result.get('report')} then {r.result.get('panic')}")
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` each score and each OOM's result."""
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "questions": [op.to_json() for op in quiz.scenario.ops[quiz.setup :]],
    }
    if answers:
        answer = solve(quiz)
        out["oom_score"] = {str(pid): dict(score) for pid, score in answer.scores}
        out["rounds"] = [
            {"points": {str(row.pid): row.points for row in r.table}, "result": dict(r.result)}
            for r in answer.rounds
        ]
    return out
