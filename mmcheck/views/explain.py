"""Scenarios told as a story: each step, the rule that fired, and what changed.

``mmcheck explain FILE`` runs the scenario on the spec and the implementation
side by side and narrates every op in plain words: for a write to memory,
what the new entry means; for an access, the walk and its outcome; after each
op, the words that changed (the A/D bits the processor set, for instance).
At a divergence it says which check broke and shows both sides, so a
counterexample from a machine or the model checker reads as a short story.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lang.errors import MMCheckError
from lang.hardware_ops import Access, AllocPages, BuddyInfo, FreePages, ReadPhys, ReadVirt, SetCpu, WritePhys
from lang.kernel_ops import KernelOp, Load, Madvise, Store
from lang.pressure_ops import PressureOp
from lang.scenario import Op, Result, Scenario
from lang.slab_ops import SlabOp
from mmcheck.views.kernelstory import changes as kernel_changes
from mmcheck.views.kernelstory import rule as kernel_rule
from mmcheck.views.pressurestory import fault_kind_line
from mmcheck.views.pressurestory import story as pressure_story
from mmcheck.views.slabstory import slab_step
from mmcheck.views.walkview import describe_walk
from properties.abstraction import abstract_buddy, abstract_kernel
from properties.drivers import Divergence, DivergenceError, Lockstep
from properties.replay import result_matches
from properties.smp.abstraction import abstract_smp
from spec.alloc import buddy as spec_buddy
from spec.alloc.buddy import BuddyState
from spec.mm.invariants import violations as kernel_violations
from spec.paging.mmu import MmuState
from spec.paging.permissions import Kind, Mode
from spec.paging.pte import P as PRESENT
from spec.paging.pte import flag_names
from spec.paging.walk import Translation, walk
from spec.smp.shootdown import violations as shootdown_violations

Narrator = Callable[[Op, MmuState], list[str]]


def narrate_write_phys(op: Op, before: MmuState) -> list[str]:
    assert isinstance(op, WritePhys)
    old = before.memory.words.get(op.pa, 0)
    meaning = "a present entry" if op.value & PRESENT else "not present if used as an entry"
    return [
        f"store {op.value:#x} at physical {op.pa:#x} (was {old:#x}): as a paging entry, {meaning}, flags "
        f"[{flag_names(op.value)}], address field {op.value & 0x000F_FFFF_FFFF_F000:#x}"
    ]


def narrate_read_phys(op: Op, before: MmuState) -> list[str]:
    assert isinstance(op, ReadPhys)
    value = before.memory.words.get(op.pa, 0)
    return [f"load the word at physical {op.pa:#x}: {value:#x} [{flag_names(value)}]"]


def narrate_set_cpu(op: Op, before: MmuState) -> list[str]:
    assert isinstance(op, SetCpu)
    bits = ", ".join(f"{name.upper()}={int(getattr(op, name))}" for name in ("wp", "smep", "smap", "ac", "nxe", "la57"))
    return [f"cpu {op.cpu} loads CR3={op.cr3:#x} ({5 if op.la57 else 4}-level paging) with {bits}"]


def narrate_access(op: Op, before: MmuState) -> list[str]:
    assert isinstance(op, Access)
    ctl = before.cpus[op.cpu] if 0 <= op.cpu < len(before.cpus) else None
    if ctl is None:
        return [f"cpu {op.cpu} does not exist"]
    kind, mode = Kind(op.kind), Mode(op.mode)
    outcome = walk(before.memory, ctl, op.va, kind, mode, before.maxphyaddr)
    return [
        f"cpu {op.cpu}: " + line.strip() if i == 0 else line
        for i, line in enumerate(describe_walk(op.va, ctl, kind, mode, outcome))
    ]


def narrate_read_virt(op: Op, before: MmuState) -> list[str]:
    assert isinstance(op, ReadVirt)
    lines = narrate_access(Access(op.cpu, op.va, "read", op.mode), before)
    ctl = before.cpus[op.cpu] if 0 <= op.cpu < len(before.cpus) else None
    if ctl is not None:
        outcome = walk(before.memory, ctl, op.va, Kind.READ, Mode(op.mode), before.maxphyaddr)
        if isinstance(outcome, Translation) and outcome.pa < before.memory.size:
            lines.append(f"then load the word at physical {outcome.pa:#x}: {before.memory.words.get(outcome.pa, 0):#x}")
        elif isinstance(outcome, Translation):
            lines.append(f"then the word at physical {outcome.pa:#x} is outside memory: a machine check")
    return lines


NARRATORS: dict[type[Op], Narrator] = {
    WritePhys: narrate_write_phys,
    ReadPhys: narrate_read_phys,
    SetCpu: narrate_set_cpu,
    Access: narrate_access,
    ReadVirt: narrate_read_virt,
}


def memory_changes(before: MmuState, after: MmuState) -> list[str]:
    """Words that changed other than by the op's own store, e.g. A/D bits set by the walker."""
    lines = []
    for pa in sorted(set(before.memory.words) | set(after.memory.words)):
        old, new = before.memory.words.get(pa, 0), after.memory.words.get(pa, 0)
        if old != new:
            set_bits = flag_names(new & ~old)
            lines.append(f"    changed: [{pa:#x}] {old:#x} -> {new:#x}" + (f" (set {set_bits})" if new & ~old else ""))
    return lines


BUDDY_RULES = {
    "alloc_pages": "take a free block of the smallest order that fits, split off the rest (__rmqueue_smallest, expand)",
    "free_pages": "give the block back and merge it with its buddy while the buddy is free (__free_one_page)",
    "buddyinfo": "count the free blocks of each order (/proc/buddyinfo)",
}


def narrate_buddy(op: Op) -> str:
    """The buddy op and the rule of the allocator it runs."""
    fields = ", ".join(f"{key} {value}" for key, value in op.to_json().items() if key != "op")
    return f"{op.name}({fields}): {BUDDY_RULES[op.name]}"


def buddy_changes(before: BuddyState, after: BuddyState) -> list[str]:
    """Free blocks that left or joined the free lists."""
    gone = [f"-{b.order}:{b.pfn:#x}" for b in sorted(before.free - after.free)]
    came = [f"+{b.order}:{b.pfn:#x}" for b in sorted(after.free - before.free)]
    return [f"    changed: free blocks (order:pfn) {' '.join(gone + came)}"] if gone or came else []


BUDDY_INVARIANTS = (
    spec_buddy.aligned_violations,
    spec_buddy.disjoint_violations,
    spec_buddy.coalesced_violations,
    spec_buddy.conservation_violations,
)


def broken_invariants(lockstep: Lockstep) -> list[str]:
    """The invariants the implementation's state, abstracted, breaks, each named by its function."""
    try:
        impl_kernel, smp = lockstep.impl.kernel.kernel, lockstep.impl.kernel.smp
        if impl_kernel is not None:
            kernel = abstract_kernel(impl_kernel)
            if smp is None:
                return kernel_violations(kernel)
            kernel = abstract_smp(kernel, smp)
            return kernel_violations(kernel) + shootdown_violations(kernel)
        state = abstract_buddy(lockstep.impl.buddy)
    except Exception as exc:
        return [f"the implementation's state cannot be abstracted: {type(exc).__name__}: {exc}"]
    return [f"{check.__name__}: {problem}" for check in BUDDY_INVARIANTS for problem in check(state)]


def divergence_lines(lockstep: Lockstep, exc: DivergenceError, index: int) -> list[str]:
    """What broke at a divergence: the check, both sides, and the invariants of the implementation's state."""
    d = exc.divergence
    lines = [f"    DIVERGENCE: {d.reason}", f"      spec: {d.spec}", f"      impl: {d.impl}"]
    broken = broken_invariants(lockstep)
    if broken:
        lines.append("    invariant broken in the implementation's state:")
        lines += [f"      {problem}" for problem in broken]
    else:
        lines.append("    every state invariant holds on the implementation; the refinement check above is what broke")
    lines.append(f"the implementation does not refine the spec at op {index}")
    return lines


@dataclass
class StepStory:
    """One op of the story: its lines, the result (none when the op stopped the run) and how it ended.

    ``status`` is ``ok``, ``divergence`` (``divergence`` says where and why),
    ``rejected`` (bad input, ``error`` holds it) or ``unexpected`` (the result
    is not the one the scenario records, ``expected``).
    """

    index: int
    op: Op
    lines: list[str] = field(default_factory=list)
    rule: str = ""
    changes: list[str] = field(default_factory=list)
    result: Result | None = None
    status: str = "ok"
    divergence: Divergence | None = None
    error: MMCheckError | None = None
    expected: Result | None = None


def header(scenario: Scenario) -> list[str]:
    """The lines before the first op: the scenario's own description."""
    return [scenario.about, ""] if scenario.about else []


def footer(scenario: Scenario) -> str:
    """The last line of a run that ended well."""
    return f"all {len(scenario.ops)} ops ran; spec and implementation agree at every step"


def uses_pressure(scenario: Scenario) -> bool:
    """The scenario exercises memory pressure (swap, or an op of :mod:`lang.pressure_ops`, or MADV_COLD/PAGEOUT):
    its story then tells the LRU lists and the minor/major kind of every fault too."""
    return scenario.config.swap > 0 or any(
        isinstance(op, PressureOp) or (isinstance(op, Madvise) and op.advice != "dontneed") for op in scenario.ops
    )


def narrate(scenario: Scenario, lockstep: Lockstep | None = None) -> Iterator[StepStory]:
    """The story one op at a time, each yielded after its op ran on ``lockstep`` (a fresh one by default).

    The run stops after a step whose status is not ``ok``.
    """
    lockstep = Lockstep(scenario.config) if lockstep is None else lockstep
    pressure = uses_pressure(scenario)
    for index, op in enumerate(scenario.ops):
        step = StepStory(index, op)
        lines = step.lines
        before = lockstep.spec.state
        kernel_before = lockstep.spec.kernel.kernel
        buddy_before = lockstep.spec.buddy
        slab_before = lockstep.spec.slab.state
        if isinstance(op, KernelOp | SlabOp):
            story = []
        elif isinstance(op, AllocPages | FreePages | BuddyInfo):
            story = [narrate_buddy(op)]
        else:
            narrator = NARRATORS.get(type(op))
            story = narrator(op, before) if narrator else [f"{op.name}: {op.to_json()}"]
        if story:
            step.rule = story[0]
            lines.append(f"[{index}] {story[0]}")
            lines += [f"    {line.strip()}" for line in story[1:]]
        try:
            result = lockstep.apply(op)
        except DivergenceError as exc:
            if not story:
                lines.append(f"[{index}] {op.name} {op.to_json()}")
            lines += divergence_lines(lockstep, exc, index)
            step.status, step.divergence = "divergence", exc.divergence
            yield step
            return
        except MMCheckError as exc:
            if not story:
                lines.append(f"[{index}] {op.name} {op.to_json()}")
            lines += [f"    rejected as bad input: {exc}", "(the state is unchanged)"]
            step.status, step.error = "rejected", exc
            yield step
            return
        step.result = result
        kernel_after = lockstep.spec.kernel.kernel
        if isinstance(op, KernelOp) and kernel_after is not None:
            told = pressure_story(
                op, kernel_before or kernel_after, kernel_after, result, lockstep.impl.kernel.choices()
            )
            step.rule = told[0] if told else kernel_rule(op, kernel_before, kernel_after, result)
            lines.append(f"[{index}] {step.rule}")
            lines += [f"    {line}" for line in told[1:]]
            if pressure and isinstance(op, Load | Store) and kernel_before is not None:
                lines += [f"    {line}" for line in fault_kind_line(op, kernel_before, kernel_after)]
            if kernel_before is None:
                frames = ", ".join(f"{pfn:#x}" for pfn in kernel_after.boot)
                lines.append(f"    the kernel boots first: frames {frames} (zero page, kernel page, kernel tables)")
        slab_changed: list[str] = []
        if isinstance(op, SlabOp):
            step.rule, slab_changed = slab_step(lockstep, op, slab_before, result)
            lines.append(f"[{index}] {step.rule}")
        lines.append(f"    result: {result}")
        changed: list[str] = []
        if isinstance(op, SlabOp):
            changed = slab_changed
        elif isinstance(op, KernelOp) and kernel_after is not None:
            changed = [f"    changed: {change}" for change in kernel_changes(kernel_before, kernel_after, pressure)]
        elif isinstance(op, AllocPages | FreePages):
            refused = lockstep.spec.buddy_error
            if refused is not None:
                changed.append(f"    refused, {type(refused).__name__}: {refused} (nothing changed)")
            changed += buddy_changes(buddy_before, lockstep.spec.buddy)
        elif not isinstance(op, WritePhys):
            changed = memory_changes(before, lockstep.spec.state)
        lines += changed
        step.changes = [line.strip() for line in changed]
        if scenario.expected_results is not None and not result_matches(scenario.expected_results[index], result):
            step.expected = scenario.expected_results[index]
            lines.append(f"    UNEXPECTED: the scenario records {scenario.expected_results[index]}")
            step.status = "unexpected"
            yield step
            return
        yield step


def explain(scenario: Scenario) -> tuple[list[str], bool]:
    """The narration, and whether the scenario ran without divergence, bad input or unexpected result."""
    lines = header(scenario)
    for step in narrate(scenario):
        lines += step.lines
        if step.status != "ok":
            return lines, False
    lines.append(footer(scenario))
    return lines, True
