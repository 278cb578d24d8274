"""Generated exercises in the manner of OSTEP's VM homework simulators.

Every run echoes its arguments and seed; the same seed gives the same
problem.  Without ``-c`` it prints the question; with ``-c`` the worked answer,
step by step, from the spec (so the answers are right by construction; a test
checks them against the implementation too).

Each problem is an ordinary scenario: page-table words written to physical
memory, one CPU's control bits, and a list of accesses.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lang.errors import UnknownTopic
from lang.hardware_ops import Access, SetCpu, WritePhys
from lang.scenario import Config, Op, Scenario
from mmcheck.views import quiz_buddy, quiz_buddyinfo, quiz_cow, quiz_faults, quiz_oom, quiz_slab, quiz_tlb
from mmcheck.views.quizbase import Quiz
from mmcheck.views.walkview import describe_walk
from spec.paging import mmu
from spec.paging.address import PAGE_SIZE, level_shift
from spec.paging.permissions import Control, Kind, Mode
from spec.paging.pte import PS, RW, US, XD, flag_names
from spec.paging.pte import P as PRESENT
from spec.paging.walk import GeneralProtection, MachineCheck, Outcome, PageFault, Translation, walk

TOPICS = {
    "walk": "translate addresses through 4-level page tables (SDM Vol. 3A 4.5)",
    "permissions": "R/W, U/S, XD and CR0.WP, SMEP, SMAP: the access or the #PF error code (SDM Vol. 3A 4.6, 4.7)",
    "buddy": "alloc_pages / free_pages: the blocks split and merged, the free lists after (mm/page_alloc.c)",
    "cow": "fork, then loads and stores: faults, copies and reuses (do_wp_page), counts, RSS/PSS/USS",
    "tlb": "munmap / mprotect on several CPUs: IPIs, INVLPG or full flush, stale entries, when frames are freed",
    "slab": "kmem_cache_create's slot, order and objects (calculate_order); which slab each kmem_cache_alloc uses",
    "faults": "after read(), reclaim and fork: no fault, minor or major, and why (filemap_fault, do_swap_page)",
    "buddyinfo": "from /proc/buddyinfo: can an order-N allocation succeed, fragmentation or lack of memory, "
    "would compaction be tried (mm/vmstat.c, mm/compaction.c)",
    "who-dies": "processes, sizes and oom_score_adj: oom_score, then the OOM killer's victims (oom_badness)",
}
FRAMES = 64
DATA_BASE = 0x100000  # leaves point at frames above the tables, so answers are easy to read


def accesses(quiz: Quiz) -> list[Access]:
    """The questions of a walk or permissions quiz."""
    return [op for op in quiz.scenario.ops if isinstance(op, Access)]


TopicGenerator = Callable[[int, int], Quiz]
GENERATORS: dict[str, TopicGenerator] = {
    "buddy": quiz_buddy.generate,
    "cow": quiz_cow.generate,
    "tlb": quiz_tlb.generate,
    "slab": quiz_slab.generate,
    "faults": quiz_faults.generate,
    "who-dies": quiz_oom.generate,
}
RENDERERS = {"buddy": quiz_buddy.render, "cow": quiz_cow.render, "tlb": quiz_tlb.render}
RENDERERS["slab"] = quiz_slab.render
JSON = {"buddy": quiz_buddy.quiz_json, "cow": quiz_cow.quiz_json, "tlb": quiz_tlb.quiz_json}
JSON["slab"] = quiz_slab.quiz_json
RENDERERS["faults"], JSON["faults"] = quiz_faults.render, quiz_faults.quiz_json
GENERATORS["buddyinfo"] = quiz_buddyinfo.generate
RENDERERS["buddyinfo"], JSON["buddyinfo"] = quiz_buddyinfo.render, quiz_buddyinfo.quiz_json
RENDERERS["who-dies"], JSON["who-dies"] = quiz_oom.render, quiz_oom.quiz_json


def topic_list() -> list[str]:
    """One line per topic: its name and what it asks."""
    return [f"{name:12} {summary}" for name, summary in TOPICS.items()]


def generate(topic: str, seed: int, questions: int = 5) -> Quiz:
    """A reproducible problem for ``topic`` from ``seed``."""
    if topic not in TOPICS:
        raise UnknownTopic(f"unknown topic {topic!r}: choose one of {', '.join(TOPICS)} (mmcheck quiz --list)")
    if topic in GENERATORS:
        return GENERATORS[topic](seed, questions)
    rng = random.Random(f"{topic}:{seed}")
    ops: list[Op] = []
    targets: list[int] = []
    flags_pool = (
        [PRESENT | RW | US]
        if topic == "walk"
        else [
            PRESENT | RW | US,
            PRESENT | US,
            PRESENT | RW,
            PRESENT,
            PRESENT | RW | US | XD,
        ]
    )
    next_table = [2]

    def new_table() -> int:
        base = next_table[0] * PAGE_SIZE
        next_table[0] += 1
        return base

    top = new_table()
    for _ in range(3):
        table, va = top, 0
        for level in (4, 3, 2):
            index = rng.choice([0, 1, 2, 3, 256, 511] if level == 4 else [0, 1, 2, 5, 17, 511])
            va |= index << level_shift(level)
            entry_pa = table + index * 8
            existing = next((op for op in ops if isinstance(op, WritePhys) and op.pa == entry_pa), None)
            if level == 2 and rng.random() < 0.25 and existing is None:
                base = DATA_BASE * 2 + rng.randrange(8) * (1 << 21)
                ops.append(WritePhys(entry_pa, base | PS | rng.choice(flags_pool)))
                break
            if existing is not None:
                table = existing.value & ~0xFFF & ((1 << 52) - 1)
                continue
            child = new_table()
            ops.append(WritePhys(entry_pa, child | rng.choice(flags_pool)))
            table = child
        else:
            index = rng.randrange(512)
            va |= index << 12
            leaf = DATA_BASE + rng.randrange(256) * PAGE_SIZE
            ops.append(WritePhys(table + index * 8, leaf | rng.choice(flags_pool)))
        if va >> 47:
            va |= 0xFFFF << 48
        targets.append(va)
    wp, smep, smap, ac, nxe = (
        (rng.random() < 0.5 for _ in range(5))
        if topic == "permissions"
        else (
            True,
            False,
            False,
            False,
            True,
        )
    )
    ops.append(SetCpu(0, top, wp, smep, smap, ac, nxe, False))
    for _ in range(questions):
        va = rng.choice(targets) + rng.randrange(PAGE_SIZE)
        if rng.random() < 0.2:
            va ^= 1 << rng.choice([12, 21, 30])  # a neighbour that may not be mapped
        kind = rng.choice(["read", "write", "fetch"]) if topic == "permissions" else "read"
        mode = rng.choice(["user", "supervisor"]) if topic == "permissions" else "user"
        ops.append(Access(0, va, kind, mode))
    return Quiz(topic, seed, Scenario(Config(frames=FRAMES), tuple(ops)))


def short_answer(outcome: Outcome) -> str:
    """The answer in one phrase: an address or a fault."""
    if isinstance(outcome, Translation):
        return f"physical address {outcome.pa:#x}"
    if isinstance(outcome, PageFault):
        return f"#PF, error code {outcome.error_code:#x}"
    if isinstance(outcome, GeneralProtection):
        return "#GP (not canonical)"
    assert isinstance(outcome, MachineCheck)
    return "machine check (entry outside memory)"


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer, as lines of text."""
    if quiz.topic in RENDERERS:
        return RENDERERS[quiz.topic](quiz, answers)
    state = mmu.initial(quiz.scenario.config.frames, 1)
    ctl = Control()
    lines = [f"ARG topic {quiz.topic}", f"ARG seed {quiz.seed}", f"ARG answers {answers}", ""]
    lines.append("Physical memory (every non-zero word; all other words are zero):")
    for op in quiz.scenario.ops:
        if isinstance(op, WritePhys):
            state = mmu.write_phys(state, op.pa, op.value)
            lines.append(f"  [{op.pa:#07x}] = {op.value:#018x}   ({flag_names(op.value)})")
        elif isinstance(op, SetCpu):
            ctl = Control(op.cr3, op.wp, op.smep, op.smap, op.ac, op.nxe, op.la57)
    lines += [
        "",
        f"4-level paging, CR3 = {ctl.cr3:#x}, CR0.WP={int(ctl.wp)}, CR4.SMEP={int(ctl.smep)}, "
        f"CR4.SMAP={int(ctl.smap)}, RFLAGS.AC={int(ctl.ac)}, EFER.NXE={int(ctl.nxe)}, MAXPHYADDR=46",
        "",
        "For each access give the physical address, or the exception with its error code:",
    ]
    for number, op in enumerate(accesses(quiz), 1):
        lines.append(f"  {number}. {op.mode} {op.kind} of {op.va:#x}")
        if answers:
            outcome = walk(state.memory, ctl, op.va, Kind(op.kind), Mode(op.mode), state.maxphyaddr)
            lines.append(f"     answer: {short_answer(outcome)}")
            lines += [f"     {line}" for line in describe_walk(op.va, ctl, Kind(op.kind), Mode(op.mode), outcome)[2:]]
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data: memory words, control bits, questions, and with ``answers`` each result.

    Results have the form ``mmcheck replay --json`` gives (``{"pa": "0x..."}``
    or ``{"fault": {"vector": 14, "error_code": 7}}``); the other topics give their own form.
    """
    if quiz.topic in JSON:
        return JSON[quiz.topic](quiz, answers)
    state = mmu.initial(quiz.scenario.config.frames, 1)
    ctl = Control()
    memory: dict[str, str] = {}
    for op in quiz.scenario.ops:
        if isinstance(op, WritePhys):
            state = mmu.write_phys(state, op.pa, op.value)
            memory[hex(op.pa)] = hex(op.value)
        elif isinstance(op, SetCpu):
            ctl = Control(op.cr3, op.wp, op.smep, op.smap, op.ac, op.nxe, op.la57)
    questions: list[dict[str, object]] = []
    for op in accesses(quiz):
        question: dict[str, object] = {"va": hex(op.va), "kind": op.kind, "mode": op.mode}
        if answers:
            outcome = walk(state.memory, ctl, op.va, Kind(op.kind), Mode(op.mode), state.maxphyaddr)
            question["answer"] = answer_json(outcome)
        questions.append(question)
    controls = {name: getattr(ctl, name) for name in ("wp", "smep", "smap", "ac", "nxe")}
    return {"topic": quiz.topic, "seed": quiz.seed, "memory": memory, "cr3": hex(ctl.cr3)} | {
        "controls": controls,
        "questions": questions,
    }


def answer_json(outcome: Outcome) -> dict[str, object]:
    """An outcome as a replay result."""
    if isinstance(outcome, Translation):
        return {"pa": hex(outcome.pa)}
    if isinstance(outcome, PageFault):
        return {"fault": {"vector": 14, "error_code": outcome.error_code}}
    return {"fault": {"vector": 13 if isinstance(outcome, GeneralProtection) else 18}}
