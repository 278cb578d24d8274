"""The buddyinfo quiz: a zone's ``/proc/buddyinfo`` line, and for a few orders whether ``alloc_pages`` can succeed
and, when it cannot, why and whether compaction would be tried.

The zone is 128 frames, orders 0..5, fragmented by hidden allocations (most of it, a few frames at a time) and
frees (about half of them, in a random order).  The question shows only the
buddyinfo counts (mm/vmstat.c ``frag_show_print``).  The worked answer reasons from them as the kernel does:

- an allocation of order N succeeds iff some free block has order N or more (``__rmqueue_smallest``);
- if none has, the fragmentation index (``__fragmentation_index``, :mod:`spec.alloc.fragmentation`) says whether
  the failure is one of fragmentation (towards 1000) or of too little free memory (towards 0);
- compaction is tried (``compaction_suitable``, mm/compaction.c) when the free pages exceed
  ``compact_gap(N) = 2 << N`` (the watermark test; the model's zone keeps no watermark reserve) and, above
  ``PAGE_ALLOC_COSTLY_ORDER`` (3), the index is not in ``0 .. vm.extfrag_threshold`` (500).

``tests/test_quiz.py`` checks every "can it succeed" answer against the allocator: the implementation, in
lockstep with the spec, is asked for the block.
"""

from __future__ import annotations

import random

from lang.hardware_ops import AllocPages, FreePages
from lang.scenario import Config, Op, Scenario
from mmcheck.views.buddyview import buddyinfo_line
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.alloc import fragmentation as frag
from spec.alloc.buddy import free_counts

FRAMES = 128
MAX_ORDER = 5
CONFIG = Config(frames=FRAMES, max_order=MAX_ORDER)


def generate(seed: int, questions: int = 4) -> Quiz:
    """A fragmented zone (hidden allocations and frees) and ``questions`` orders to ask about."""
    rng = random.Random(f"buddyinfo:{seed}")
    lockstep = Lockstep(CONFIG)
    setup: list[Op] = []
    held: list[tuple[int, int]] = []
    target = rng.randint(FRAMES * 3 // 4, FRAMES - 8)
    while sum(1 << order for _, order in held) < target:
        order = rng.choice([0, 0, 0, 1])
        result = lockstep.apply(AllocPages(order))
        if "pfn" not in result:
            break
        setup.append(AllocPages(order))
        held.append((result["pfn"], order))
    rng.shuffle(held)
    for pfn, order in held[: rng.randint(len(held) // 3, len(held) * 2 // 3)]:
        lockstep.apply(FreePages(pfn, order))
        setup.append(FreePages(pfn, order))
    asked = sorted(rng.sample(range(1, MAX_ORDER + 1), min(questions, MAX_ORDER)))
    return Quiz("buddyinfo", seed, Scenario(CONFIG, (*setup, *(AllocPages(o) for o in asked))), setup=len(setup))


def counts_of(quiz: Quiz) -> tuple[int, ...]:
    """The zone's free counts per order after the hidden setup."""
    lockstep = Lockstep(quiz.scenario.config)
    for op in quiz.scenario.ops[: quiz.setup]:
        lockstep.apply(op)
    return free_counts(lockstep.spec.buddy)


def asked_orders(quiz: Quiz) -> list[int]:
    return [op.order for op in quiz.scenario.ops[quiz.setup :] if isinstance(op, AllocPages)]


def answer(counts: tuple[int, ...], order: int) -> dict[str, object]:
    """Whether ``order`` succeeds, and if not the indices and whether compaction would be tried."""
    succeeds = any(counts[order:])
    out: dict[str, object] = {"succeeds": succeeds, "fragmentation_index": frag.fragmentation_index(counts, order)}
    out["unusable_index"] = frag.unusable_index(counts, order)
    if not succeeds:
        out["compaction"] = frag.gap_allows_compaction(counts, order) and frag.fragindex_allows_compaction(
            counts, order
        )
    return out


def worked(counts: tuple[int, ...], order: int) -> list[str]:
    """The reasoning for one order, line by line."""
    info = frag.contig_info(counts, order)
    got = answer(counts, order)
    if got["succeeds"]:
        smallest = next(o for o in range(order, len(counts)) if counts[o])
        return [
            f"answer: yes: {counts[smallest]} free block(s) of order {smallest}; __rmqueue_smallest takes one"
            + (f" and expand() splits it down to order {order}" if smallest > order else ""),
            "(fragmentation index -1.000: the index only means something when the request would fail)",
        ]
    index = int(str(got["fragmentation_index"]))
    lines = [
        f"answer: no: no free block of order {order} or more, though {info.free_pages} pages are free in "
        f"{info.free_blocks_total} blocks",
        f"fragmentation index 1000 - (1000 + {info.free_pages}*1000/{1 << order}) / {info.free_blocks_total} = "
        f"{index} ({frag.index_text(index).strip()}): "
        + ("towards 1, a failure of fragmentation" if index > 500 else "towards 0, a failure of too little memory"),
        f"unusable index {frag.index_text(int(str(got['unusable_index'])), 0)}: the share of free memory in blocks "
        f"below order {order}",
    ]
    gap = frag.compact_gap(order)
    if not frag.gap_allows_compaction(counts, order):
        lines.append(f"compaction: not tried: {info.free_pages} free pages do not exceed compact_gap = {gap}")
    elif order <= frag.PAGE_ALLOC_COSTLY_ORDER:
        lines.append(
            f"compaction: tried: {info.free_pages} > compact_gap {gap}, and at order {order} <= 3 the index is not "
            "consulted; it would move allocated movable pages to free frames until an aligned block is free"
        )
    elif frag.fragindex_allows_compaction(counts, order):
        lines.append(
            f"compaction: tried: {info.free_pages} > compact_gap {gap} and the index {index} is above "
            "extfrag_threshold 500; it would move allocated movable pages to free frames until an aligned block "
            "is free"
        )
    else:
        lines.append(
            f"compaction: not tried: the index {index} is within 0..extfrag_threshold 500 (too little memory: "
            "reclaim, not compaction)"
        )
    return lines


def render(quiz: Quiz, answers: bool) -> list[str]:
    counts = counts_of(quiz)
    lines = echo(quiz, answers, len(asked_orders(quiz)))
    lines += [
        f"A zone of {FRAMES} frames (orders 0..{MAX_ORDER}) after some allocations and frees; /proc/buddyinfo reads:",
        f"  {buddyinfo_line(counts)}",
        "",
        "For each order: can alloc_pages(order) succeed now?  If not, is that fragmentation or too little free",
        "memory (the fragmentation index), and would compaction be tried (compaction_suitable)?",
    ]
    for number, order in enumerate(asked_orders(quiz), 1):
        lines.append(f"  {number}. order {order} ({4 << order} KiB)")
        if answers:
            lines += [f"     {line}" for line in worked(counts, order)]
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    counts = counts_of(quiz)
    questions: list[dict[str, object]] = []
    for order in asked_orders(quiz):
        question: dict[str, object] = {"order": order}
        if answers:
            question["answer"] = answer(counts, order)
        questions.append(question)
    return {"topic": quiz.topic, "seed": quiz.seed, "buddyinfo": list(counts), "questions": questions}
