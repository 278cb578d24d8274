"""The TLB shootdown quiz: CPUs switching between processes, then one munmap or mprotect, in steps.

Three CPUs run process 1 and touch its pages, so their TLBs cache
translations tagged with the PCID of process 1's ASID; then some switch to
process 2 (leaving ``mm_cpumask``) or to a kernel thread (lazy, staying in
it).  Process 1 then unmaps or write-protects part of its mapping.  The
question asks which CPUs get an IPI, whether each flushes page by page
(INVLPG) or fully (above the flush ceiling of 33 pages), which stale
translations a CPU may still use before it flushes, and when the frames may
be freed.

The answers are the spec's (:mod:`spec.smp.shootdown`, :mod:`spec.paging.tlb`),
read off the states of a lockstep run; what the implementation's TLBs hold
is shown beside what the spec allows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from lang.kernel_ops import KernelThread, Load, Mmap, Mprotect, Munmap, Spawn, Step, Store, Switch
from lang.scenario import Config, Op, Scenario
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.mm.kernel import Kernel
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE
from spec.paging.tlb import TlbEntry
from spec.smp.shootdown import may_hold

BASE = 0x10000000
CPUS = 3
CEILING = 33
CONFIG = Config(frames=128, cpus=CPUS)


@dataclass(frozen=True, slots=True)
class CpuAnswer:
    """One CPU at the change: in the mask, lazy, the stale translations it may use, what its IPI made it do."""

    cpu: int
    in_mask: bool
    lazy: bool
    running: int
    may_use: tuple[int, ...]
    holds: tuple[int, ...]
    action: str
    invlpg: tuple[int, ...] = ()
    flushed: bool = False


@dataclass(frozen=True, slots=True)
class TlbAnswer:
    """The worked answer: the change's request, each CPU, the order of the steps and the frames freed at the end."""

    change: Munmap | Mprotect
    lo: int
    hi: int
    full: bool
    freed_tables: bool
    targets: tuple[int, ...]
    cpus: tuple[CpuAnswer, ...]
    freed: tuple[int, ...]
    pages: Mapping[int, int]


def page_va(page: int) -> int:
    """The address of page ``page`` of the mapping."""
    return BASE + page * PAGE_SIZE


def generate(seed: int, questions: int = 4) -> Quiz:
    """Three CPUs, ``questions`` accesses to process 1's pages, departures, and one change in steps."""
    rng = random.Random(f"tlb:{seed}")
    big = rng.random() < 0.35
    pages = rng.randint(36, 40) if big else rng.randint(2, 4)
    touchable = [0, 1, pages - 1] if big else list(range(pages))
    setup: list[Op] = [Spawn(), Spawn(), Mmap(1, BASE, pages, "rw-")]
    setup += [Switch(cpu, 1) for cpu in range(CPUS)]
    forced = [page_va(0), page_va(pages - 1)] if big else []
    for number in range(max(questions, len(forced))):
        cpu = rng.randrange(CPUS)
        va = forced[number] if number < len(forced) else page_va(rng.choice(touchable))
        setup.append(Store(cpu, va, rng.randint(1, 9)) if rng.random() < 0.6 else Load(cpu, va))
    for cpu in range(1, CPUS):
        leave = rng.choice(["stay", "kernel thread", "other"])
        if leave == "kernel thread":
            setup.append(KernelThread(cpu))
        elif leave == "other":
            setup.append(Switch(cpu, 2))
    count = pages if big or rng.random() < 0.5 else rng.randint(1, pages - 1)
    first = 0 if count == pages else rng.randint(0, pages - count)
    change: Munmap | Mprotect = (
        Munmap(1, page_va(first), count, True)
        if rng.random() < 0.6
        else Mprotect(1, page_va(first), count, "r--", True)
    )
    lockstep = Lockstep(CONFIG)
    for op in setup:
        lockstep.apply(op)
    result = lockstep.apply(change)
    ops: list[Op] = [*setup, change]
    if "pending" in result:
        number = result["pending"]
        while True:
            ops.append(Step(number))
            if "stage" not in lockstep.apply(Step(number)):
                break
    return Quiz("tlb", seed, Scenario(CONFIG, tuple(ops)), len(setup))


def old_entry(k: Kernel, cpu: int, pid: int, vpn: int) -> TlbEntry | None:
    """The translation of ``vpn`` in ``pid`` before the change, tagged with the PCID ``pid`` has on ``cpu``."""
    leaf = k.procs[pid].leaves.get(vpn)
    slots = [asid for asid, slot in enumerate(k.cpus[cpu].slots) if slot.ctx_id == pid]
    if leaf is None or not leaf.present or not slots:
        return None
    return TlbEntry(slots[0] + 1, vpn, leaf.pfn, leaf.writable, leaf.user, leaf.nx, leaf.huge)


def step_action(k: Kernel, cpu: int, was_lazy: bool) -> tuple[str, tuple[int, ...], bool]:
    """What handling its IPI made ``cpu`` do, from the step's events: in words, the pages INVLPG dropped, and
    whether it flushed its whole PCID."""
    invlpg = tuple(e.value for e in k.events if e.kind == "invlpg" and e.cpu == cpu)
    flushed = any(e.kind == "flush" and e.cpu == cpu for e in k.events)
    if invlpg:
        return "INVLPG " + ", ".join(f"{vpn << PAGE_SHIFT:#x}" for vpn in invlpg), invlpg, flushed
    if flushed:
        return "full flush of its PCID", invlpg, flushed
    if was_lazy:
        return "switches to init_mm and leaves the mask", invlpg, flushed
    return "nothing to flush", invlpg, flushed


def solve(quiz: Quiz) -> TlbAnswer:
    """Run the quiz in lockstep; read the request, the CPUs and the steps off the spec."""
    lockstep = Lockstep(quiz.scenario.config)
    ops = quiz.scenario.ops
    for op in ops[: quiz.setup]:
        lockstep.apply(op)
    change = ops[quiz.setup]
    assert isinstance(change, Munmap | Mprotect)
    before = lockstep.spec.kernel.kernel
    assert before is not None
    result = lockstep.apply(change)
    after = lockstep.spec.kernel.kernel
    assert after is not None
    f = after.flights[result["pending"]]
    space = before.procs[1]
    changed = [vpn for vpn in sorted(space.leaves) if f.lo <= vpn < f.hi]
    smp = lockstep.impl.kernel.smp
    assert smp is not None
    may: dict[int, tuple[int, ...]] = {}
    held: dict[int, tuple[int, ...]] = {}
    for cpu in range(len(before.cpus)):
        entries = [(vpn, old_entry(before, cpu, 1, vpn)) for vpn in changed]
        may[cpu] = tuple(vpn for vpn, e in entries if e is not None and may_hold(after, cpu, e))
        held[cpu] = tuple(sorted(vpn for (_, vpn) in smp.tlbs[cpu].entries if vpn in changed))
    actions: dict[int, tuple[str, tuple[int, ...], bool]] = {cpu: ("no IPI", (), False) for cpu in range(CPUS)}
    freed: tuple[int, ...] = ()
    for op in ops[quiz.setup + 1 :]:
        state = lockstep.spec.kernel.kernel
        assert state is not None
        stepped = lockstep.apply(op)
        now = lockstep.spec.kernel.kernel
        assert now is not None
        if "stage" in stepped:
            cpu = stepped["cpu"]
            actions[cpu] = step_action(now, cpu, state.cpus[cpu].lazy)
        else:
            freed = tuple(e.value for e in now.events if e.kind == "free")
    cpus = tuple(
        CpuAnswer(cpu, cpu in space.cpumask, state.lazy, before.current[cpu], may[cpu], held[cpu], *actions[cpu])
        for cpu, state in enumerate(before.cpus)
    )
    pages = {vpn: space.leaves[vpn].pfn for vpn in changed}
    return TlbAnswer(change, f.lo, f.hi, f.full, f.freed_tables, f.targets, cpus, freed, pages)


def op_text(op: Op) -> str:
    """An op of the scenario in words."""
    if isinstance(op, Store):
        return f"cpu {op.cpu} stores {op.value} at {op.va:#x}"
    if isinstance(op, Load):
        return f"cpu {op.cpu} loads from {op.va:#x}"
    if isinstance(op, Mmap):
        return (
            f"pid {op.pid} maps {op.pages} private pages {op.prot} at {op.va:#x}-{op.va + op.pages * PAGE_SIZE - 1:#x}"
        )
    if isinstance(op, Switch):
        return f"cpu {op.cpu} switches to pid {op.pid}"
    if isinstance(op, KernelThread):
        return f"cpu {op.cpu} switches to a kernel thread"
    if isinstance(op, Munmap):
        return f"pid 1 (on cpu 0) calls munmap({op.va:#x}, {op.pages} pages)"
    if isinstance(op, Mprotect):
        return f"pid 1 (on cpu 0) calls mprotect({op.va:#x}, {op.pages} pages, PROT_READ)"
    return "a process starts" if isinstance(op, Spawn) else op.name


def vas(vpns: tuple[int, ...] | list[int]) -> str:
    """Page addresses, or ``none``."""
    return ", ".join(f"{vpn << PAGE_SHIFT:#x}" for vpn in vpns) or "none"


def mask_reason(c: CpuAnswer) -> str:
    """Why ``c`` is in ``mm_cpumask`` of pid 1 or not."""
    if c.in_mask and c.lazy:
        return "runs a kernel thread on pid 1's mm: lazy, still in the mask (enter_lazy_tlb)"
    if c.in_mask:
        return "runs pid 1: in the mask"
    return f"switched to pid {c.running}: left the mask (switch_mm_irqs_off)"


def answer_lines(a: TlbAnswer) -> list[str]:
    """The worked answer, question by question."""
    munmap = isinstance(a.change, Munmap)
    pages = a.hi - a.lo
    lines = ["  1. Which CPUs get an IPI?"]
    lines += [f"     cpu {c.cpu} {mask_reason(c)}" for c in a.cpus]
    lazy_rule = (
        "page tables are freed (freed_tables), so lazy CPUs are interrupted too: their paging-structure caches "
        "may point into the freed tables"
        if a.freed_tables
        else "no page table is freed, so lazy CPUs are skipped (native_flush_tlb_multi): they flush on return"
    )
    lines += [
        f"     {lazy_rule}",
        "     (cpu 0, where the call runs, flushes itself the same way: flush_tlb_mm_range runs flush_tlb_func there)",
        f"     answer: cpu {', '.join(str(c) for c in a.targets) or 'none'}",
    ]
    lines.append("  2. Does each flush page by page (INVLPG) or fully?")
    span = f"{vas([a.lo])}..{vas([a.hi - 1])}" if pages else "none"
    lines.append(
        f"     the request covers the entries actually changed, {span}: {pages} page(s) (the mmu_gather's range)"
    )
    if not a.targets:
        lines.append("     no entry changed, so nothing is flushed and no CPU is interrupted")
    elif a.full:
        lines.append(f"     {pages} > {CEILING} (tlb_single_page_flush_ceiling): a full flush (flush_tlb_mm_range)")
    else:
        lines.append(f"     {pages} <= {CEILING} (tlb_single_page_flush_ceiling): one INVLPG per page (flush_tlb_func)")
    for c in a.cpus:
        if c.cpu in a.targets:
            lines.append(f"     answer: cpu {c.cpu}: {c.action}")
    lines.append("  3. Which old translations may each CPU still hold before it handles its IPI?")
    lines.append(
        "     a CPU may cache any translation of an address space it has in an ASID, touched or not, until it "
        "invalidates it (SDM Vol. 3A 4.10.2, 4.10.4)"
    )
    use = "loads and stores through them reach the old frame" if munmap else "stores through them still succeed"
    for c in a.cpus:
        note = f" ({use})" if c.may_use and c.in_mask and not c.lazy else ""
        if c.may_use and c.lazy and c.cpu not in a.targets:
            note = " (unused by the kernel thread; back on pid 1 its tlb_gen is behind and it flushes)"
        if c.may_use and not c.in_mask:
            note = (
                f" (under pid 1's PCID, unused while it runs pid {c.running}; switching back finds its tlb_gen "
                "behind and flushes: choose_new_asid)"
            )
        lines.append(
            f"     answer: cpu {c.cpu} may hold {vas(c.may_use)}{note}; the implementation's TLB holds {vas(c.holds)}"
        )
    lines.append("  4. When may the frames be freed?")
    tables = vas_pfns(tuple(p for p in a.freed if p not in a.pages.values()))
    tables = "" if tables == "none" else tables
    if munmap:
        data = ", ".join(f"{pfn:#x}" for pfn in a.pages.values()) or "none"
        lines += [
            f"     the pages' frames ({data}) stay held by the mmu_gather until every target has flushed: "
            "1) unhook 2) TLB invalidate 3) free (include/asm-generic/tlb.h)",
            f"     answer: after the last IPI is handled, at tlb_finish_mmu: frames {vas_pfns(a.freed)}"
            + (f" (the page tables: {tables})" if tables else ""),
        ]
    else:
        lines += [
            "     mprotect frees nothing: the pages stay mapped, read-only; a stale writable entry lets a CPU write "
            "until it flushes, which is why mprotect waits for the flush before it returns",
            f"     answer: no frame is freed ({vas_pfns(a.freed)})",
        ]
    return lines


def vas_pfns(pfns: tuple[int, ...]) -> str:
    """Frame numbers, or ``none``."""
    return ", ".join(f"{pfn:#x}" for pfn in pfns) or "none"


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    answer = solve(quiz)
    touches = sum(isinstance(op, Load | Store) for op in quiz.scenario.ops[: quiz.setup])
    lines = echo(quiz, answers, touches)
    lines += [
        f"{CPUS} CPUs with PCIDs; the flush ceiling is {CEILING} pages.  What happened so far:",
        *[f"  {op_text(op)}" for op in quiz.scenario.ops[: quiz.setup]],
        f"Then {op_text(answer.change)}.",
        "",
    ]
    if answers:
        lines += answer_lines(answer)
    else:
        lines += [
            "  1. Which CPUs get an IPI?",
            "  2. Does each flush page by page (INVLPG) or fully?",
            "  3. Which old translations may each CPU still use before it handles its IPI?",
            "  4. When may the frames be freed?",
            "",
            "Run again with -c to see the answers worked out.",
        ]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` the request, each CPU and the frames freed."""
    answer = solve(quiz)
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "change": answer.change.to_json(),
    }
    if answers:
        out["answer"] = {
            "ipi": list(answer.targets),
            "full_flush": answer.full,
            "freed_tables": answer.freed_tables,
            "cpus": [
                {"cpu": c.cpu, "action": c.action, "may_use": [hex(v << PAGE_SHIFT) for v in c.may_use]}
                for c in answer.cpus
            ],
            "freed": [hex(pfn) for pfn in answer.freed],
        }
    return out
