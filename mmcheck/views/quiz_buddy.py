"""The buddy quiz: a fragmented zone, a few ``alloc_pages`` / ``free_pages``, and what each one does.

The zone starts as 16 frames, orders 0..3.  Hidden setup ops fragment it;
the question shows the result as ``/proc/buddyinfo`` and as blocks, then
asks, for each op, which block an allocation may take and splits
(``__rmqueue_smallest``, ``expand()``), which buddies a free merges
(``__free_one_page``), the free lists after, and at the end whether an
allocation of a given order can succeed.

The answers are the spec's (:mod:`spec.alloc.buddy`).  Where the spec allows
several blocks, the worked answer names them all and continues from the one
the implementation (:mod:`impl.alloc.buddy`) takes, as the lockstep runner does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lang.hardware_ops import AllocPages, FreePages
from lang.scenario import Config, Op, Scenario
from mmcheck.views.buddyview import block_text, buddyinfo_line
from mmcheck.views.quizbase import Quiz, echo, pfns_text
from properties.drivers import Lockstep
from spec.alloc.buddy import (
    Block,
    BuddyState,
    allowed_pfns,
    block_containing,
    buddy_of,
    free_counts,
    merged_buddies,
    parent_of,
    split_off,
)

FRAMES = 16
MAX_ORDER = 3
CONFIG = Config(frames=FRAMES, max_order=MAX_ORDER)


@dataclass(frozen=True, slots=True)
class BuddyStep:
    """What one op did, by the spec: for an allocation the allowed pfns, the one taken, the block split and its
    leftovers; for a free the buddies merged and the block that went on a free list."""

    op: AllocPages | FreePages
    before: BuddyState
    allowed: frozenset[int]
    pfn: int | None
    split: Block | None
    leftovers: tuple[Block, ...]
    merged: tuple[Block, ...]
    listed: Block | None
    free_after: frozenset[Block]
    lists_after: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class BuddyAnswer:
    """The worked answer: the zone as given, each op's step, and the last question (can order N succeed)."""

    start: BuddyState
    steps: tuple[BuddyStep, ...]
    probe_order: int
    probe_allowed: frozenset[int]
    start_lists: tuple[tuple[int, ...], ...]


def generate(seed: int, questions: int = 4) -> Quiz:
    """A fragmented zone and ``questions`` allocator ops on it."""
    rng = random.Random(f"buddy:{seed}")
    lockstep = Lockstep(CONFIG)
    setup: list[Op] = []
    held: list[Block] = []
    for _ in range(rng.randint(4, 6)):
        order = rng.choice([0, 0, 1, 1, 2])
        result = lockstep.apply(AllocPages(order))
        setup.append(AllocPages(order))
        if "pfn" in result:
            held.append(Block(result["pfn"], order))
    for block in rng.sample(held, k=min(len(held) - 1, rng.randint(1, 3))):
        held.remove(block)
        lockstep.apply(FreePages(block.pfn, block.order))
        setup.append(FreePages(block.pfn, block.order))
    asked: list[Op] = []
    for _ in range(questions):
        if held and rng.random() < 0.5:
            block = held.pop(rng.randrange(len(held)))
            asked.append(FreePages(block.pfn, block.order))
        else:
            asked.append(AllocPages(rng.choice([0, 1, 1, 2])))
    probe = rng.randint(1, MAX_ORDER)
    ops = (*setup, *asked)
    scenario = Scenario(CONFIG, tuple(ops), extra={"quiz": {"can_alloc_order": probe}})
    return Quiz("buddy", seed, scenario, len(setup))


def probe_order(quiz: Quiz) -> int:
    """The order of the last question's allocation."""
    order = quiz.scenario.extra["quiz"]["can_alloc_order"]
    assert isinstance(order, int)
    return order


def solve(quiz: Quiz) -> BuddyAnswer:
    """Run the quiz in lockstep; each op's step read off the spec states before and after it."""
    lockstep = Lockstep(quiz.scenario.config)
    for op in quiz.scenario.ops[: quiz.setup]:
        lockstep.apply(op)
    start = lockstep.spec.buddy
    start_lists = impl_lists(lockstep)
    steps = []
    for op in quiz.scenario.ops[quiz.setup :]:
        assert isinstance(op, AllocPages | FreePages)
        before = lockstep.spec.buddy
        result = lockstep.apply(op)
        after, lists = lockstep.spec.buddy, impl_lists(lockstep)
        if isinstance(op, AllocPages):
            pfn = result.get("pfn")
            source = next((b for b in before.free if b.pfn == pfn), None)
            leftovers = () if source is None else split_off(source, op.order)[1]
            allowed = allowed_pfns(before, op.order)
            steps.append(BuddyStep(op, before, allowed, pfn, source, leftovers, (), None, after.free, lists))
        else:
            merged = merged_buddies(before.free, Block(op.pfn, op.order), before.max_order)
            listed = Block(op.pfn, op.order)
            for _ in merged:
                listed = parent_of(listed)
            steps.append(BuddyStep(op, before, frozenset(), op.pfn, None, (), merged, listed, after.free, lists))
    end = lockstep.spec.buddy
    order = probe_order(quiz)
    return BuddyAnswer(start, tuple(steps), order, allowed_pfns(end, order), start_lists)


def impl_lists(lockstep: Lockstep) -> tuple[tuple[int, ...], ...]:
    """The implementation's free lists, head first (the spec's lists are sets; the lockstep checks they agree)."""
    return tuple(tuple(lockstep.impl.buddy.free_list(order)) for order in range(lockstep.impl.buddy.max_order + 1))


def zone_lines(counts: tuple[int, ...], lists: tuple[tuple[int, ...], ...]) -> list[str]:
    """The buddyinfo line and the free blocks of each order, in list order (the head first)."""
    lines = [f"    {buddyinfo_line(counts)}"]
    for order, pfns in enumerate(lists):
        if pfns:
            blocks = ", ".join(block_text(pfn, order) for pfn in pfns)
            lines.append(f"    order {order} ({4 << order:2} KiB): {blocks}")
    return lines


def spec_lists(free: frozenset[Block]) -> tuple[tuple[int, ...], ...]:
    """The spec's free set as one tuple per order, lowest pfn first."""
    return tuple(tuple(sorted(b.pfn for b in free if b.order == order)) for order in range(MAX_ORDER + 1))


def op_text(op: AllocPages | FreePages) -> str:
    """``alloc_pages(order=1)`` or ``free_pages(pfn=0x4, order=2)``."""
    if isinstance(op, AllocPages):
        return f"alloc_pages(order={op.order})"
    return f"free_pages(pfn={op.pfn:#x}, order={op.order})"


def alloc_lines(step: BuddyStep) -> list[str]:
    """The worked answer of one allocation."""
    assert isinstance(step.op, AllocPages)
    order = step.op.order
    if step.pfn is None or step.split is None:
        return [
            f"no free block of order {order} or above (every list from order {order} up is empty)",
            "answer: NULL, ENOMEM (__rmqueue_smallest finds nothing; __alloc_pages would reclaim or fail)",
        ]
    lowest = min(b.order for b in step.before.free if b.order >= order)
    lines = [
        f"may return any of {pfns_text(step.allowed)}: the first frame of every free block of order >= {order} "
        "(spec.alloc.buddy.allowed_pfns)",
        f"the implementation takes {step.pfn:#x}: the head of the order-{lowest} list, the smallest non-empty one "
        f"from order {order} up (__rmqueue_smallest)",
    ]
    if step.leftovers:
        halves = ", ".join(f"pfn {b.pfn:#x} order {b.order}" for b in step.leftovers)
        lines.append(
            f"split: block {step.split.pfn:#x} of order {step.split.order} is halved down to order {order}; "
            f"the upper halves go back on the free lists: {halves} (expand)"
        )
    else:
        lines.append(f"no split: the block is exactly order {order}")
    lines.append(f"answer: pfn {step.pfn:#x} (frames {step.pfn:#x}-{step.pfn + (1 << order) - 1:#x})")
    return lines


def stop_reason(block: Block, state: BuddyState) -> str:
    """Why the merge loop stops at ``block``."""
    if block.order >= state.max_order:
        return f"order {block.order} is max_order: no further merge"
    buddy = buddy_of(block)
    if buddy.end > state.frames:
        return f"its buddy {buddy.pfn:#x} would lie past the end of memory: no merge"
    holder, is_free = block_containing(state, buddy.pfn)
    which = f"its buddy {buddy.pfn:#x} (order {buddy.order})"
    if is_free:
        return f"{which} is only partly free: pfn {buddy.pfn:#x} starts a free block of order {holder.order}: stop"
    if holder == buddy:
        return f"{which} is allocated: stop"
    return (
        f"{which} is not free: frame {buddy.pfn:#x} is in allocated block {holder.pfn:#x} of order {holder.order}: stop"
    )


def free_lines(step: BuddyStep) -> list[str]:
    """The worked answer of one free: the merge loop of ``__free_one_page``, order by order."""
    assert isinstance(step.op, FreePages) and step.listed is not None
    lines = []
    before = step.before
    block = Block(step.op.pfn, step.op.order)
    free = before.free
    for buddy in step.merged:
        parent = parent_of(block)
        lines.append(
            f"order {block.order}: buddy of {block.pfn:#x} is {buddy.pfn:#x} ({block.pfn:#x} ^ {1 << block.order:#x}), "
            f"free: merge into {parent.pfn:#x} of order {parent.order}"
        )
        free, block = free - {buddy}, parent
    state = BuddyState(before.frames, before.max_order, free, before.allocated - {Block(step.op.pfn, step.op.order)})
    lines.append(f"order {block.order}: {stop_reason(block, state)} (__free_one_page)")
    lines.append(f"answer: block {step.listed.pfn:#x} of order {step.listed.order} goes on the free list")
    return lines


def probe_lines(answer: BuddyAnswer, end: frozenset[Block]) -> list[str]:
    """The worked answer of the last question."""
    order = answer.probe_order
    free = sum(b.size for b in end)
    if answer.probe_allowed:
        return [
            f"yes: free blocks of order >= {order} start at {pfns_text(answer.probe_allowed)}",
        ]
    largest = max((b.order for b in end), default=None)
    have = f"the largest free block is order {largest}" if largest is not None else "nothing is free"
    enough = (
        f"{free} frames are free, enough in number, but not contiguous and aligned: fragmentation"
        if free >= 1 << order
        else f"only {free} frames are free"
    )
    return [f"no: {have}; {enough} (alloc_pages returns NULL, ENOMEM)"]


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    answer = solve(quiz)
    start = answer.start
    asked = [op for op in quiz.scenario.ops[quiz.setup :] if isinstance(op, AllocPages | FreePages)]
    lines = echo(quiz, answers, len(asked))
    lines += [
        f"A zone of {start.frames} frames (pfn 0x0-{start.frames - 1:#x}), orders 0..{start.max_order}. "
        "Its free lists now, each list head first:",
        *zone_lines(free_counts(start), answer.start_lists),
        "  allocated: " + ", ".join(f"pfn {b.pfn:#x} order {b.order}" for b in sorted(start.allocated)),
        "",
        "Run these in order.  For an allocation: which pfns may it return, which block does it split?",
        "For a free: which buddies merge?  After each: the free lists.  (An allocation takes the head",
        "of the smallest non-empty list that fits; a block joins its list at the head.)",
    ]
    end = start.free
    for number, step in enumerate(answer.steps, 1):
        lines.append(f"  {number}. {op_text(step.op)}")
        if answers:
            work = alloc_lines(step) if isinstance(step.op, AllocPages) else free_lines(step)
            lines += [f"     {line}" for line in work]
            lines.append("     free lists after:")
            counts = tuple(len(pfns) for pfns in step.lists_after)
            lines += [f"   {line}" for line in zone_lines(counts, step.lists_after)]
        end = step.free_after
    lines.append(f"  {len(answer.steps) + 1}. After these, can alloc_pages(order={answer.probe_order}) succeed?")
    if answers:
        lines += [f"     {line}" for line in probe_lines(answer, end)]
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` each op's answer."""
    answer = solve(quiz)
    questions: list[dict[str, object]] = []
    for step in answer.steps:
        question: dict[str, object] = {"op": step.op.to_json()}
        if answers:
            question["answer"] = {
                "allowed": sorted(step.allowed),
                "pfn": step.pfn,
                "merged": [[b.pfn, b.order] for b in step.merged],
                "free_lists": [list(pfns) for pfns in spec_lists(step.free_after)],
            }
        questions.append(question)
    probe: dict[str, object] = {"order": answer.probe_order}
    if answers:
        probe["succeeds"] = bool(answer.probe_allowed)
    return {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "config": quiz.scenario.config.to_json(),
        "free_lists": [list(pfns) for pfns in answer.start_lists],
        "allocated": [[b.pfn, b.order] for b in sorted(answer.start.allocated)],
        "questions": questions,
        "can_alloc": probe,
    }
