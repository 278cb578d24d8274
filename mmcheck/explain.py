"""Scenarios told as a story: each step, the rule that fired, and what changed.

``mmcheck explain FILE`` runs the scenario on the spec and the implementation
side by side and narrates every op in plain words: for a write to memory,
what the new entry means; for an access, the walk and its outcome; after each
op, the words that changed (the A/D bits the processor set, for instance).
At a divergence it says which check broke and shows both sides, so a
counterexample from a machine or the model checker reads as a short story.
"""

from __future__ import annotations

from collections.abc import Callable

from mmcheck.errors import MMCheckError
from mmcheck.scenario import Access, Op, ReadPhys, Scenario, SetCpu, WritePhys
from mmcheck.walkview import describe_walk
from properties.drivers import DivergenceError, Lockstep
from spec.mmu import MmuState
from spec.permissions import Kind, Mode
from spec.pte import P as PRESENT
from spec.pte import flag_names
from spec.walk import walk

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


NARRATORS: dict[type[Op], Narrator] = {
    WritePhys: narrate_write_phys,
    ReadPhys: narrate_read_phys,
    SetCpu: narrate_set_cpu,
    Access: narrate_access,
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


def explain(scenario: Scenario) -> tuple[list[str], bool]:
    """The narration, and whether the scenario ran without divergence or bad input."""
    lines: list[str] = []
    if scenario.about:
        lines += [scenario.about, ""]
    lockstep = Lockstep(scenario.config)
    for index, op in enumerate(scenario.ops):
        before = lockstep.spec.state
        narrator = NARRATORS.get(type(op))
        story = narrator(op, before) if narrator else [f"{op.name}: {op.to_json()}"]
        lines.append(f"[{index}] {story[0]}")
        lines += [f"    {line.strip()}" for line in story[1:]]
        try:
            result = lockstep.apply(op)
        except DivergenceError as exc:
            d = exc.divergence
            lines += [f"    DIVERGENCE: {d.reason}", f"      spec: {d.spec}", f"      impl: {d.impl}"]
            lines.append(f"the implementation does not refine the spec at op {index}")
            return lines, False
        except MMCheckError as exc:
            lines += [f"    rejected as bad input: {exc}", "(the state is unchanged)"]
            return lines, False
        lines.append(f"    result: {result}")
        if not isinstance(op, WritePhys):
            lines += memory_changes(before, lockstep.spec.state)
        if scenario.expected_results is not None and scenario.expected_results[index] != result:
            lines.append(f"    UNEXPECTED: the scenario records {scenario.expected_results[index]}")
            return lines, False
    lines.append(f"all {len(scenario.ops)} ops ran; spec and implementation agree at every step")
    return lines, True
