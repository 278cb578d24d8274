"""The slab quiz: a cache's geometry from its parameters, then where objects come from and go.

Part one gives ``kmem_cache_create``'s object size, alignment and
constructor and the number of CPUs, and asks what ``calculate_sizes`` and
``calculate_order`` (mm/slub.c, Linux 6.12) make of them: the slot each
object takes with its free pointer, how many objects a slab holds, the
order, and the bytes left over.  Part two runs a cache with small slabs
through a few ``kmem_cache_alloc`` and ``kmem_cache_free`` calls on two CPUs
and asks, for each, which slab the object came from (the CPU's freelist, the
partial list, a new slab from the buddy) or where a freed one went; then
which slab is on which list.

The answers are the spec's (:mod:`spec.slab.geometry`, :mod:`spec.slab.cache`),
read off its states before and after each op of a lockstep run whose free
choices are the implementation's; a test checks the geometry against the
implementation's own arithmetic too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lang import ops
from lang.scenario import Config, Op, Result, Scenario
from mmcheck.views import slabstory
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.slab import geometry
from spec.slab.geometry import Geometry

CACHE = "item"
CONFIG = Config(frames=32, cpus=2, slub_min_objects=2)
LIST_SIZES = (1000, 1024, 1360, 2000)  # 2..4 objects an order-0 slab with slub_min_objects=2
GEOMETRY_SIZES = (24, 40, 56, 100, 200, 300, 700, 1000, 1100, 1500, 2100, 3000)
ALIGNS = (0, 0, 8, 16, 32, 64)
EXTRA = 3  # part two asks this many ops more than part one's questions, so slabs fill and empty


@dataclass(frozen=True, slots=True)
class Shape:
    """Part one's question: ``kmem_cache_create(size, align, ctor)`` on ``cpus`` CPUs."""

    size: int
    align: int
    ctor: bool
    cpus: int


@dataclass(frozen=True, slots=True)
class StepAnswer:
    """One op of part two with its result and the sentence that explains it."""

    op: Op
    result: Result
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class SlabAnswer:
    """Part one's geometry; part two's steps and, at the end, each slab's list."""

    shape: Shape
    geometry: Geometry
    steps: tuple[StepAnswer, ...]
    lists: tuple[str, ...]


def shape_of(seed: int) -> Shape:
    """Part one's parameters for ``seed``."""
    rng = random.Random(f"slab:{seed}:geometry")
    return Shape(rng.choice(GEOMETRY_SIZES), rng.choice(ALIGNS), rng.random() < 0.3, rng.choice((1, 2, 4, 8, 16)))


def generate(seed: int, questions: int = 5) -> Quiz:
    """A cache of 2..4 objects a slab, a first allocation, then ``questions + EXTRA`` allocations on two CPUs and
    frees of live objects.  The frees name objects the implementation handed out (a lockstep run), as the answers do."""
    rng = random.Random(f"slab:{seed}")
    lockstep = Lockstep(CONFIG)
    live: list[int] = []

    def run(op: Op) -> Op:
        result = lockstep.apply(op)
        if "addr" in result:
            live.append(int(str(result["addr"]), 16))
        return op

    setup = [run(ops.KmemCacheCreate(CACHE, rng.choice(LIST_SIZES))), run(ops.KmemCacheAlloc(CACHE, 0))]
    asked = []
    for _ in range(questions + EXTRA):
        if rng.random() < min(0.6, 0.12 * len(live)):
            asked.append(run(ops.KmemCacheFree(CACHE, live.pop(rng.randrange(len(live))))))
        else:
            asked.append(run(ops.KmemCacheAlloc(CACHE, rng.randint(0, 1))))
    return Quiz("slab", seed, Scenario(CONFIG, (*setup, *asked)), len(setup))


def solve(quiz: Quiz) -> SlabAnswer:
    """Part one from the spec's geometry; part two from a lockstep run, read off the spec's states."""
    shape = shape_of(quiz.seed)
    shaped = geometry.calculate_sizes(shape.size, shape.align, shape.ctor, shape.cpus)
    assert shaped is not None, "every quiz size fits an order-3 slab"
    lockstep = Lockstep(quiz.scenario.config)
    steps = []
    for index, op in enumerate(quiz.scenario.ops):
        before = lockstep.spec.slab.state
        result = lockstep.apply(op)
        after = lockstep.spec.slab.state
        assert after is not None
        if index < quiz.setup:
            continue
        assert before is not None
        if isinstance(op, ops.KmemCacheAlloc):
            story = slabstory.alloc_story(before, after, op.cache, op.cpu, result)
            steps.append(
                StepAnswer(op, result, story.source, slabstory.alloc_text(story, slabstory.cache_of(before, op.cache)))
            )
        elif isinstance(op, ops.KmemCacheFree):
            free = slabstory.free_story(before, after, op.addr)
            steps.append(StepAnswer(op, result, free.where, slabstory.free_text(free)))
    final = lockstep.spec.slab.state
    assert final is not None
    return SlabAnswer(shape, shaped, tuple(steps), tuple(slabstory.list_lines(final, CACHE)))


def slot_lines(shape: Shape, g: Geometry) -> list[str]:
    """How ``calculate_sizes`` lays out one object: word rounding, the constructor's extra word, alignment."""
    word = geometry.align_up(shape.size, geometry.WORD)
    lines = [f"the object rounded up to a word: ALIGN({shape.size}, 8) = {word}"]
    if shape.ctor:
        lines.append(
            f"a constructor: a freed object keeps its constructed state, so the free pointer goes after it, "
            f"at offset {g.offset}, one more word: {word + geometry.WORD}"
        )
    else:
        lines.append(
            f"no constructor: the free pointer lives inside the free object, near its middle: "
            f"ALIGN_DOWN({shape.size} / 2, 8) = {g.offset}"
        )
    lines.append(f"alignment max({shape.align}, 8) = {g.align} (calculate_alignment): the slot is {g.size} bytes")
    return lines


def order_lines(shape: Shape, g: Geometry) -> list[str]:
    """How ``calculate_order`` picks the order: ``min_objects`` from the CPU count, then the waste test."""
    size = g.size
    wanted = geometry.min_objects_for(shape.cpus)
    top = geometry.order_objects(geometry.SLUB_MAX_ORDER, size)
    min_objects = min(wanted, top)
    min_order = geometry.get_order(min_objects * size)
    capped = f", capped at the {top} an order-3 slab holds" if wanted > top else ""
    lines = [
        f"min_objects = 4 * (fls({shape.cpus}) + 1) = {wanted}{capped}: the slab should hold {min_objects}",
        f"they need {min_objects} * {size} = {min_objects * size} bytes: get_order gives order {min_order}",
    ]
    fraction = 16
    while fraction > 1:
        for order in range(min_order, geometry.SLUB_MAX_ORDER + 1):
            slab = geometry.PAGE_SIZE << order
            left, limit = slab % size, slab // fraction
            verdict = "fits" if left <= limit else "too much"
            lines.append(
                f"order {order} with waste at most 1/{fraction}: {slab} % {size} = {left} vs {limit}: {verdict}"
            )
            if left <= limit:
                return lines
        fraction //= 2
        lines.append(f"no order up to 3 wastes little enough: allow 1/{fraction}")
    return [*lines, f"nothing up to order 3 fits: get_order({size}) = {g.order}"]


def step_question(op: Op) -> str:
    """A part-two op in words."""
    if isinstance(op, ops.KmemCacheAlloc):
        return f"cpu {op.cpu}: kmem_cache_alloc({CACHE})"
    assert isinstance(op, ops.KmemCacheFree)
    return f"kmem_cache_free({CACHE}, {op.addr:#x})"


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    answer = solve(quiz)
    shape, g = answer.shape, answer.geometry
    ctor = "a constructor" if shape.ctor else "no constructor"
    lines = echo(quiz, answers, len(answer.steps) - EXTRA)
    lines += [
        f"Part 1. kmem_cache_create(size={shape.size}, align={shape.align}, {ctor}) on {shape.cpus} CPU(s):",
        "x86-64, 4 KiB pages, no slab_debug, slub_max_order 3 (mm/slub.c calculate_sizes, calculate_order).",
        "  1. How many bytes does each object take in the slab (s->size), and where is its free pointer?",
    ]
    if answers:
        lines.append(f"     answer: {g.size}-byte slots, free pointer at offset {g.offset}")
        lines += [f"     {line}" for line in slot_lines(shape, g)]
    lines.append("  2. Which order does calculate_order pick, how many objects does a slab hold, and how much is left?")
    if answers:
        left = (geometry.PAGE_SIZE << g.order) - g.objects * g.size
        lines.append(f"     answer: order {g.order}, {g.objects} objects, {left} bytes left over")
        lines += [f"     {line}" for line in order_lines(shape, g)]
    create = quiz.scenario.ops[0]
    assert isinstance(create, ops.KmemCacheCreate)
    made = geometry.calculate_sizes(create.size, 0, False, CONFIG.cpus, CONFIG.slub_min_objects)
    assert made is not None
    first = quiz.scenario.ops[1]
    lines += [
        "",
        f"Part 2. A cache {CACHE!r} of {create.size}-byte objects, {made.objects} to an order-{made.order} slab "
        f"(slub_min_objects={CONFIG.slub_min_objects}), min_partial {made.min_partial}, 2 CPUs, one node, no per-CPU",
        f"partial lists.  So far cpu {getattr(first, 'cpu', 0)} allocated one object, from the cache's first slab.",
        "For each op: where does the object come from (the CPU's slab freelist, a slab off the partial list, a new",
        "slab from the buddy), or where does the freed object go, and does its slab change list?",
    ]
    number = 3
    for step in answer.steps:
        lines.append(f"  {number}. {step_question(step.op)}")
        if answers:
            got = f" -> {step.result['addr']}" if "addr" in step.result else ""
            lines += [f"     answer: {step.kind}{got}", f"     {step.text}"]
        number += 1
    lines.append(f"  {number}. After these: which slab is a CPU's, which on the partial list, which full?")
    if answers:
        lines.append("     answer:")
        lines += [f"       {line}" for line in answer.lists]
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` the geometry, each step's kind and result, and the lists."""
    answer = solve(quiz)
    shape = answer.shape
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "create": {"size": shape.size, "align": shape.align, "ctor": shape.ctor, "cpus": shape.cpus},
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "questions": [
            {"op": s.op.to_json(), **({"answer": {"kind": s.kind, "result": dict(s.result)}} if answers else {})}
            for s in answer.steps
        ],
    }
    if answers:
        g = answer.geometry
        out["geometry"] = {"size": g.size, "offset": g.offset, "order": g.order, "objects": g.objects}
        out["lists"] = list(answer.lists)
    return out
