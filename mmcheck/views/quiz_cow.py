"""The copy-on-write quiz: a fork, then loads and stores in parent and child.

Process 1 maps a few private anonymous pages, touches some of them, and
forks; CPU 0 runs the parent and CPU 1 the child.  For each access the
question asks whether it faults and how the fault is handled: a fresh page
or the shared zero page for a missing entry (``do_anonymous_page``), a copy
or a reuse for a write to a read-only one (``do_wp_page``).  At the end: the
frames that hold user data with their reference and map counts, and each
process's RSS, PSS and USS (``smaps_rollup``).

The answers are the spec's (:mod:`spec.mm`), read off its states before and
after each op of a lockstep run, whose frame choices are the implementation's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from lang.kernel_ops import Fork, Load, Mmap, Spawn, StatOp, Store, Switch
from lang.scenario import Config, Op, Scenario
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.mm.kernel import Kernel, Leaf, leaf_of
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE

BASE = 0x10000000
CONFIG = Config(frames=64, cpus=2)
KINDS = ("no fault", "zero page", "new page", "copy", "reuse", "SIGSEGV")


@dataclass(frozen=True, slots=True)
class Counts:
    """A frame's ``struct page`` counts."""

    refcount: int
    mapcount: int


@dataclass(frozen=True, slots=True)
class AccessAnswer:
    """One access: which fault path (one of :data:`KINDS`), the frame before and after, the counts before, the
    result."""

    op: Load | Store
    pid: int
    kind: str
    old_pfn: int | None
    new_pfn: int | None
    old_counts: Counts | None
    result: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class CowAnswer:
    """The worked answer: each access, then the frames holding user data and each process's stat."""

    accesses: tuple[AccessAnswer, ...]
    frames: Mapping[int, Counts]
    mappers: Mapping[int, tuple[str, ...]]
    stats: Mapping[int, Mapping[str, object]]
    zero_pfn: int


def page_va(page: int) -> int:
    """The address of page ``page`` of the mapping."""
    return BASE + page * PAGE_SIZE


def generate(seed: int, questions: int = 5) -> Quiz:
    """A fork after a few touches, then ``questions`` accesses from parent and child."""
    rng = random.Random(f"cow:{seed}")
    pages = rng.randint(2, 3)
    setup: list[Op] = [Spawn(), Mmap(1, BASE, pages, "rw-"), Switch(0, 1)]
    for page in range(pages):
        touch = rng.choice(["store", "store", "load", "none"])
        if touch == "store":
            setup.append(Store(0, page_va(page), rng.randint(1, 9)))
        elif touch == "load":
            setup.append(Load(0, page_va(page)))
    setup += [Fork(1), Switch(1, 2)]
    asked: list[Op] = []
    for _ in range(questions):
        cpu, va = rng.randint(0, 1), page_va(rng.randrange(pages))
        asked.append(Store(cpu, va, rng.randint(10, 99)) if rng.random() < 0.6 else Load(cpu, va))
    ops = (*setup, *asked, StatOp(1), StatOp(2))
    return Quiz("cow", seed, Scenario(CONFIG, ops), len(setup))


def leaf(k: Kernel, pid: int, va: int) -> Leaf | None:
    """The entry of ``pid`` for ``va``, if any."""
    found = leaf_of(k.procs[pid].leaves, va >> PAGE_SHIFT)
    return None if found is None else found[1]


def classify(before: Kernel, after: Kernel, op: Load | Store, result: Mapping[str, object]) -> AccessAnswer:
    """Which path the access took, read off the entry before and after it."""
    pid = before.current[op.cpu]
    old, new = leaf(before, pid, op.va), leaf(after, pid, op.va)
    old_pfn = None if old is None else old.pfn
    new_pfn = None if new is None else new.pfn
    page = None if old is None else before.pages.get(old.pfn)
    counts = None if page is None else Counts(page.refcount, page.mapcount)
    if "signal" in result:
        kind = "SIGSEGV"
    elif old is None:
        kind = "zero page" if new_pfn == after.zero_pfn else "new page"
    elif old == new:
        kind = "no fault"
    else:
        kind = "reuse" if old_pfn == new_pfn else "copy"
    return AccessAnswer(op, pid, kind, old_pfn, new_pfn, counts, result)


def solve(quiz: Quiz) -> CowAnswer:
    """Run the quiz in lockstep and read each access's answer and the final counts off the spec."""
    lockstep = Lockstep(quiz.scenario.config)
    accesses = []
    stats: dict[int, Mapping[str, object]] = {}
    for index, op in enumerate(quiz.scenario.ops):
        before = lockstep.spec.kernel.kernel
        result = lockstep.apply(op)
        after = lockstep.spec.kernel.kernel
        assert after is not None
        if index >= quiz.setup and isinstance(op, Load | Store):
            assert before is not None
            accesses.append(classify(before, after, op, result))
        if isinstance(op, StatOp):
            stats[op.pid] = result
    k = lockstep.spec.kernel.kernel
    assert k is not None
    frames = {pfn: Counts(page.refcount, page.mapcount) for pfn, page in sorted(k.pages.items())}
    mappers: dict[int, list[str]] = {}
    for pid, space in sorted(k.procs.items()):
        for vpn, entry in sorted(space.leaves.items()):
            mappers.setdefault(entry.pfn, []).append(f"pid {pid} page {vpn - (BASE >> PAGE_SHIFT)}")
    return CowAnswer(tuple(accesses), frames, {pfn: tuple(m) for pfn, m in mappers.items()}, stats, k.zero_pfn)


def who(pid: int) -> str:
    """``parent (pid 1)`` or ``child (pid 2)``."""
    return f"{'parent' if pid == 1 else 'child'} (pid {pid})"


def op_text(op: Op) -> str:
    """An op of the scenario in words."""
    if isinstance(op, Store):
        return f"cpu {op.cpu} stores {op.value} at {op.va:#x} (page {(op.va - BASE) >> PAGE_SHIFT})"
    if isinstance(op, Load):
        return f"cpu {op.cpu} loads from {op.va:#x} (page {(op.va - BASE) >> PAGE_SHIFT})"
    if isinstance(op, Mmap):
        return f"pid {op.pid} maps {op.pages} private anonymous pages {op.prot} at {op.va:#x} (mmap)"
    if isinstance(op, Fork):
        return f"pid {op.pid} forks: the child is pid 2"
    if isinstance(op, Switch):
        return f"cpu {op.cpu} runs pid {op.pid}"
    return "pid 1 starts" if isinstance(op, Spawn) else op.name


def frame_name(pfn: int | None, zero: int) -> str:
    """``frame 0xa`` or ``the zero page``."""
    return "the zero page" if pfn == zero else f"frame {pfn:#x}" if pfn is not None else "nothing"


def access_lines(a: AccessAnswer, zero: int) -> list[str]:
    """The worked answer of one access."""
    write = isinstance(a.op, Store)
    counts = "" if a.old_counts is None else f" (refcount {a.old_counts.refcount}, mapcount {a.old_counts.mapcount})"
    old = frame_name(a.old_pfn, zero)
    reasons = {
        "no fault": f"the entry of the {who(a.pid)} maps {old} {'writable' if write else 'readable'}: no fault",
        "zero page": "no entry: a read fault in a private anonymous VMA maps the shared zero page read-only, "
        "no frame is allocated (do_anonymous_page)",
        "new page": f"no entry: a write fault allocates a zeroed frame, {frame_name(a.new_pfn, zero)}, "
        "mapped writable (do_anonymous_page)",
        "copy": f"write fault on the read-only entry to {old}{counts}: "
        + (
            "the zero page is never written, "
            if a.old_pfn == zero
            else "the page is shared (not exclusive, more than one reference), "
        )
        + f"so do_wp_page copies it to {frame_name(a.new_pfn, zero)} and maps the copy writable (wp_page_copy)",
        "reuse": f"write fault on the read-only entry to {old}{counts}: only this entry references it, so do_wp_page "
        "makes the entry writable in place, no copy (wp_can_reuse_anon_folio)",
        "SIGSEGV": "the VMA does not allow it: SIGSEGV",
    }
    if a.pid == 2 and a.kind in ("zero page", "new page"):
        reasons[a.kind] = (
            "the child has no entry here (fork copies only the parent's entries, and none of a VMA without "
            "anonymous pages: vma_needs_copy); " + reasons[a.kind].removeprefix("no entry: ")
        )
    value = a.result.get("value")
    outcome = f"reads {value}" if value is not None else "the store lands" if "ok" in a.result else str(a.result)
    return [reasons[a.kind], f"answer: {a.kind}; {outcome}"]


def stat_lines(answer: CowAnswer, pid: int) -> list[str]:
    """The smaps_rollup figures of ``pid`` with how they add up."""
    stat = answer.stats[pid]
    return [
        f"{who(pid)}: Rss {stat['rss_kb']} kB, Pss {stat['pss_kb']} kB, USS {stat['uss_kb']} kB",
    ]


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    answer = solve(quiz)
    zero = answer.zero_pfn
    lines = echo(quiz, answers, len(answer.accesses))
    lines.append("What happened so far:")
    lines += [f"  {op_text(op)}" for op in quiz.scenario.ops[: quiz.setup]]
    lines += [
        "",
        "CPU 0 runs the parent, CPU 1 the child.  For each access: does it fault?  If so, does it map the",
        "zero page, a new page, or copy or reuse a page (do_wp_page)?",
    ]
    for number, a in enumerate(answer.accesses, 1):
        lines.append(f"  {number}. {op_text(a.op)}")
        if answers:
            lines += [f"     {line}" for line in access_lines(a, zero)]
    number = len(answer.accesses) + 1
    lines.append(
        f"  {number}. After these: which frames hold user data (page tables aside), with what refcount and mapcount?"
    )
    if answers:
        lines.append(f"     answer: {len(answer.frames)} frame(s); the zero page ({zero:#x}) is not counted")
        for pfn, counts in answer.frames.items():
            mapped = ", ".join(answer.mappers.get(pfn, ())) or "no entry"
            lines.append(f"       frame {pfn:#x}: refcount {counts.refcount}, mapcount {counts.mapcount} ({mapped})")
    lines.append(f"  {number + 1}. Rss, Pss and USS of each process (smaps_rollup)?")
    if answers:
        lines += [
            "     Rss counts every mapped page but the zero page, 4 kB each; Pss splits a page mapped n times",
            "     into 4/n kB per mapper; USS counts the pages mapped only once (smaps_account)",
        ]
        for pid in (1, 2):
            lines += [f"     {line}" for line in stat_lines(answer, pid)]
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` each access's path, the frames and the stats."""
    answer = solve(quiz)
    questions: list[dict[str, object]] = []
    for a in answer.accesses:
        question: dict[str, object] = {"op": a.op.to_json()}
        if answers:
            question["answer"] = {"kind": a.kind, "pfn": a.new_pfn, "result": dict(a.result)}
        questions.append(question)
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "questions": questions,
    }
    if answers:
        out["frames"] = {hex(pfn): {"refcount": c.refcount, "mapcount": c.mapcount} for pfn, c in answer.frames.items()}
        out["stats"] = {str(pid): dict(stat) for pid, stat in answer.stats.items()}
    return out
