"""The faults quiz: is an access a minor or a major fault, and why?

Process 1 maps a few private anonymous pages and a file (shared or
private), touches some of them, reads some file pages through ``read()``,
lets reclaim push pages out (to swap, or out of the page cache), and may
fork; CPU 0 runs the parent and CPU 1 the child.  For each access the
question asks: no fault, a minor fault or a major one, and why.  A fault is
*major* when it had to read the page (``VM_FAULT_MAJOR``, counted in
``majflt`` and ``pgmajfault``): ``filemap_fault`` (mm/filemap.c) on a page
not in the page cache, ``do_swap_page`` (mm/memory.c) on a swap entry whose
slot has no swap-cache page.  Every other fault is *minor*: the shared zero
page or a fresh page (``do_anonymous_page``), a page-cache hit, a swap-cache
hit (``swap_cache_get_folio``: another mapping of the slot read it in), a
write to a read-only entry (``do_wp_page``: a COW copy, a reuse, or
``wp_page_shared`` dirtying a shared file page).  At the end: each
process's ``minflt``/``majflt`` and ``/proc/vmstat``'s ``pgfault``/``pgmajfault``.

The answers are the spec's, read off its states before and after each op of
a lockstep run (so the implementation agreed at every step); the minor/major
word of each answer is checked against the spec's own fault counters.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from lang.kernel_ops import Fork, Load, Mmap, Spawn, Store, Switch
from lang.pressure_ops import FileCreate, FileRead, MmapFile, Reclaim, StatusOp, VmstatOp
from lang.scenario import Config, Op, Scenario
from mmcheck.views.pressurestory import swap_entry_text
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.mm.kernel import Kernel, Leaf, leaf_of
from spec.mm.vma import find
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE
from spec.pressure.files import file_by_obj

ANON, FILE = 0x10000000, 0x20000000
FILE_NAME = "data"
CONFIG = Config(frames=48, cpus=2, max_order=3, swap=6)
KINDS = (
    "no fault",
    "minor: zero page",
    "minor: new page",
    "minor: page-cache hit",
    "major: page-cache miss",
    "major: swap-in",
    "minor: swap cache",
    "minor: copy on write",
    "minor: reuse",
    "minor: dirty tracking",
    "SIGSEGV",
    "SIGBUS",
)


@dataclass(frozen=True, slots=True)
class FaultAnswer:
    """One access: its kind (one of :data:`KINDS`), the reason in words, and the result."""

    op: Load | Store
    pid: int
    kind: str
    why: str
    result: Mapping[str, object]

    @property
    def major(self) -> bool:
        return self.kind.startswith("major")


@dataclass(frozen=True, slots=True)
class FaultsAnswer:
    """The worked answer: each access, then each process's status and the vmstat counters."""

    accesses: tuple[FaultAnswer, ...]
    status: Mapping[int, Mapping[str, object]]
    vmstat: Mapping[str, object]
    situation: tuple[str, ...]


def generate(seed: int, questions: int = 5) -> Quiz:
    """Anonymous pages and a file touched, reclaimed and maybe forked; then ``questions`` accesses."""
    rng = random.Random(f"faults:{seed}")
    anon, file_pages = rng.randint(2, 3), rng.randint(2, 4)
    shared = rng.random() < 0.6
    words = tuple((index * PAGE_SIZE + 8, rng.randint(1, 9)) for index in range(file_pages) if rng.random() < 0.7)
    setup: list[Op] = [
        Spawn(),
        Switch(0, 1),
        FileCreate(FILE_NAME, file_pages, words),
        Mmap(1, ANON, anon, "rw-"),
        MmapFile(1, FILE, file_pages, "rw-", FILE_NAME, shared),
    ]
    for page in range(anon):
        touch = rng.choice(["store", "store", "load", "none"])
        if touch == "store":
            setup.append(Store(0, ANON + page * PAGE_SIZE + 8, rng.randint(1, 9)))
        elif touch == "load":
            setup.append(Load(0, ANON + page * PAGE_SIZE))
    for page in range(file_pages):
        touch = rng.choice(["read()", "load", "none", "none"])
        if touch == "read()":
            setup.append(FileRead(FILE_NAME, page * PAGE_SIZE + 8))
        elif touch == "load":
            setup.append(Load(0, FILE + page * PAGE_SIZE))
    if rng.random() < 0.8:
        setup.append(Reclaim(rng.randint(1, 3)))
    forked = rng.random() < 0.5
    if forked:
        setup += [Fork(1), Switch(1, 2)]
    targets = [ANON + p * PAGE_SIZE for p in range(anon)] + [FILE + p * PAGE_SIZE for p in range(file_pages)]
    asked: list[Op] = []
    for _ in range(questions):
        cpu = rng.randint(0, 1) if forked else 0
        va = rng.choice(targets) + 8
        asked.append(Store(cpu, va, rng.randint(10, 99)) if rng.random() < 0.4 else Load(cpu, va))
    tail: list[Op] = [StatusOp(1), *([StatusOp(2)] if forked else []), VmstatOp()]
    return Quiz("faults", seed, Scenario(CONFIG, (*setup, *asked, *tail)), len(setup))


def the_leaf(k: Kernel, pid: int, vpn: int) -> Leaf | None:
    found = leaf_of(k.procs[pid].leaves, vpn)
    return None if found is None else found[1]


def classify(before: Kernel, after: Kernel, op: Load | Store, result: Mapping[str, object]) -> FaultAnswer:
    """The access's kind and reason, read off the spec's states before and after it."""
    pid = before.current[op.cpu]
    sp = before.procs[pid]
    vpn = op.va >> PAGE_SHIFT
    write = isinstance(op, Store)
    minor = after.procs[pid].minflt - sp.minflt
    major = after.procs[pid].majflt - sp.majflt
    vma = find(sp.vmas, vpn)
    found = None if vma is None or not vma.obj else file_by_obj(before, vma.obj)
    old, new = the_leaf(before, pid, vpn), the_leaf(after, pid, vpn)
    frame = "" if new is None else f"frame {new.pfn:#x}"
    if "signal" in result:
        bus = result.get("signal") == "SIGBUS"
        kind, why = ("SIGBUS", "past the end of the file") if bus else ("SIGSEGV", "the VMA does not allow it")
    elif minor + major == 0:
        kind = "no fault"
        why = f"the entry maps {frame} {'writable' if new is not None and new.writable else 'readable'}: no fault"
    elif vpn in sp.swapped:
        slot = sp.swapped[vpn]
        if slot in before.swap_cache:
            kind = "minor: swap cache"
            why = (
                f"the PTE holds {swap_entry_text(slot)}, but slot {slot} is in the swap cache as frame "
                f"{before.swap_cache[slot]:#x} (another mapping of the slot read it in): do_swap_page maps it, "
                "no I/O"
            )
        else:
            kind = "major: swap-in"
            why = (
                f"the PTE holds {swap_entry_text(slot)} and the slot has no swap-cache page: do_swap_page reads it "
                f"from the swap device into {frame} (swap_read_folio), VM_FAULT_MAJOR"
            )
    elif old is None and found is not None:
        assert vma is not None
        name, f = found
        index = vma.index_of(vpn)
        cached = before.objects[f.obj].get(index)
        copy = (
            " and a private write copies it into a new anonymous page (do_cow_fault)"
            if write and not vma.shared
            else ""
        )
        if cached is None:
            kind = "major: page-cache miss"
            why = (
                f"no entry; file {name} page {index} is not in the page cache: filemap_fault reads it from disk "
                f"(VM_FAULT_MAJOR){copy}"
            )
        else:
            kind = "minor: page-cache hit"
            why = (
                f"no entry; file {name} page {index} is already in the page cache in frame {cached:#x} (brought in "
                f"by read() or an earlier fault): filemap_fault maps it, no I/O{copy}"
            )
    elif old is None:
        zero = new is not None and new.pfn == after.zero_pfn
        kind = "minor: zero page" if zero else "minor: new page"
        why = (
            "no entry; a read of a private anonymous page maps the shared zero page read-only (do_anonymous_page)"
            if zero
            else f"no entry; a write allocates a zeroed {frame}, mapped writable (do_anonymous_page)"
        )
        if pid == 2:
            why += "; the child got no entry here from fork"
    elif found is not None and vma is not None and vma.shared:
        kind = "minor: dirty tracking"
        why = (
            "a write to the read-only entry of a shared file page (clean, write-protected for dirty tracking): "
            "wp_page_shared makes it writable and the page dirty"
        )
    elif new is not None and new.pfn == old.pfn:
        kind = "minor: reuse"
        why = f"a write to the read-only entry to frame {old.pfn:#x}: only this entry refers to it, reused (do_wp_page)"
    else:
        source = "the zero page" if old.pfn == before.zero_pfn else f"shared frame {old.pfn:#x}"
        kind = "minor: copy on write"
        why = f"a write to the read-only entry to {source}: do_wp_page copies it to {frame} (wp_page_copy)"
    if kind.startswith(("minor", "major")) and kind.startswith("major") != bool(major):
        raise AssertionError(f"{kind} but the spec counted minflt +{minor}, majflt +{major}")
    return FaultAnswer(op, pid, kind, why, result)


def solve(quiz: Quiz) -> FaultsAnswer:
    """Run the quiz in lockstep and read each access's answer and the final counters off the spec."""
    lockstep = Lockstep(quiz.scenario.config)
    accesses = []
    status: dict[int, Mapping[str, object]] = {}
    vmstat: Mapping[str, object] = {}
    situation: tuple[str, ...] = ()
    for index, op in enumerate(quiz.scenario.ops):
        if index == quiz.setup:
            assert lockstep.spec.kernel.kernel is not None
            situation = tuple(situation_lines(lockstep.spec.kernel.kernel))
        before = lockstep.spec.kernel.kernel
        result = lockstep.apply(op)
        after = lockstep.spec.kernel.kernel
        assert after is not None
        if index >= quiz.setup and isinstance(op, Load | Store):
            assert before is not None
            accesses.append(classify(before, after, op, result))
        if isinstance(op, StatusOp):
            status[op.pid] = result
        if isinstance(op, VmstatOp):
            vmstat = result
    return FaultsAnswer(tuple(accesses), status, vmstat, situation)


def situation_lines(k: Kernel) -> list[str]:
    """What the setup left, page by page, read off the spec: mapped, swapped out, in the page cache or not."""
    lines = []
    for pid, sp in sorted(k.procs.items()):
        for vma in sp.vmas:
            found = file_by_obj(k, vma.obj) if vma.obj else None
            for vpn in range(vma.start, vma.end):
                va = vpn << PAGE_SHIFT
                leaf = the_leaf(k, pid, vpn)
                if vpn in sp.swapped:
                    state = f"swapped out to slot {sp.swapped[vpn]}" + (
                        " (its page still in the swap cache)" if sp.swapped[vpn] in k.swap_cache else ""
                    )
                elif leaf is None:
                    state = "no entry"
                elif leaf.pfn == k.zero_pfn:
                    state = "maps the zero page read-only"
                else:
                    state = f"maps frame {leaf.pfn:#x} {'writable' if leaf.writable else 'read-only'}"
                if found is not None:
                    index = vma.index_of(vpn)
                    cached = index in k.objects[found[1].obj]
                    state += f"; file page {index} {'is' if cached else 'is not'} in the page cache"
                lines.append(f"pid {pid} {where(va)} ({va:#x}): {state}")
    return lines


def where(va: int) -> str:
    """``anon page 1`` or ``file page 0``."""
    return f"anon page {(va - ANON) >> PAGE_SHIFT}" if va < FILE else f"file page {(va - FILE) >> PAGE_SHIFT}"


def op_text(op: Op) -> str:
    """An op of the scenario in words."""
    if isinstance(op, Store):
        return f"cpu {op.cpu} stores {op.value} at {op.va:#x} ({where(op.va)})"
    if isinstance(op, Load):
        return f"cpu {op.cpu} loads from {op.va:#x} ({where(op.va)})"
    if isinstance(op, FileCreate):
        return f"file {op.file} is created with {op.pages} pages on disk (none cached)"
    if isinstance(op, Mmap):
        return f"pid {op.pid} maps {op.pages} private anonymous pages {op.prot} at {op.va:#x}"
    if isinstance(op, MmapFile):
        kind = "MAP_SHARED" if op.shared else "MAP_PRIVATE"
        return f"pid {op.pid} maps the {op.pages} pages of file {op.file} {op.prot} {kind} at {op.va:#x}"
    if isinstance(op, FileRead):
        return f"read() of file {op.file} at offset {op.offset:#x} (file page {op.offset // PAGE_SIZE})"
    if isinstance(op, Reclaim):
        return f"memory pressure: reclaim of {op.target} page(s) (second chance for referenced pages first)"
    if isinstance(op, Fork):
        return f"pid {op.pid} forks: the child is pid 2 (swap entries are copied, present pages shared read-only)"
    if isinstance(op, Switch):
        return f"cpu {op.cpu} runs pid {op.pid}"
    return "pid 1 starts" if isinstance(op, Spawn) else op.name


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    answer = solve(quiz)
    lines = echo(quiz, answers, len(answer.accesses))
    lines.append("What happened so far:")
    lines += [f"  {op_text(op)}" for op in quiz.scenario.ops[: quiz.setup]]
    lines += ["", "After it (reclaim's choices included):"] + [f"  {line}" for line in answer.situation]
    lines += [
        "",
        "For each access: no fault, a minor fault or a major one (the page had to be read from disk or swap)?",
        "And why: zero page, new page, page-cache hit or miss, swap-in or swap cache, copy on write ...",
    ]
    for number, a in enumerate(answer.accesses, 1):
        lines.append(f"  {number}. {op_text(a.op)}")
        if answers:
            value = a.result.get("value")
            outcome = f"reads {value}" if value is not None else "the store lands" if "ok" in a.result else ""
            lines += [f"     {a.why}", f"     answer: {a.kind}" + (f"; {outcome}" if outcome else "")]
    number = len(answer.accesses) + 1
    lines.append(f"  {number}. At the end: minflt and majflt of each process, pgfault and pgmajfault of vmstat?")
    if answers:
        lines.append(
            "     every fault fixed counts once, a major one in majflt, the others in minflt (mm_account_fault)"
        )
        for pid, stat in sorted(answer.status.items()):
            lines.append(f"     pid {pid}: minflt {stat['minflt']}, majflt {stat['majflt']}")
        lines.append(f"     vmstat: pgfault {answer.vmstat['pgfault']}, pgmajfault {answer.vmstat['pgmajfault']}")
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` each access's kind and result and the counters."""
    answer = solve(quiz)
    questions: list[dict[str, object]] = []
    for a in answer.accesses:
        question: dict[str, object] = {"op": a.op.to_json()}
        if answers:
            question["answer"] = {"kind": a.kind, "major": a.major, "result": dict(a.result)}
        questions.append(question)
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "questions": questions,
    }
    if answers:
        out["status"] = {str(pid): dict(stat) for pid, stat in answer.status.items()}
        out["vmstat"] = dict(answer.vmstat)
    return out
