"""The OOM killer's invariants: of the state after every step, and of a kill against the state before it.

State (:func:`violations`, joined to :func:`spec.mm.invariants.violations`):

- ``adj_violations``: every ``oom_score_adj`` kept belongs to a live process and is a non-zero value in
  -1000..1000 (fs/proc/base.c ``__set_oom_adj``);
- ``sysctl_violations``: only the two OOM sysctls, in their ranges (mm/oom_kill.c ``vm_oom_kill_table``).

A kill (:func:`kill_violations`, checked by the OOM machine after every ``out_of_memory``):

- the victim was eligible: not init, not at -1000 (``oom_badness`` returns LONG_MIN for both);
- its points are its badness, and no eligible process scored more, nor the same later in the task list
  (``oom_evaluate_task`` lets a later task win a tie), unless it was the allocating task killed under
  ``vm.oom_kill_allocating_task``;
- the victim is gone, and every frame only it held (its page tables, its PGD, the pages no one else maps,
  caches or pins) is free in the buddy allocator after the kill (no leak);
- a panic for want of a victim happens only when no process is eligible; a panic changes nothing (but the
  last operation's events, which every operation replaces).
"""

from __future__ import annotations

from collections import Counter

from lang.records import replace
from spec.mm.kernel import Kernel, free_frames
from spec.oom.badness import (
    NO_KILLABLE,
    OOM_SCORE_ADJ_MAX,
    OOM_SCORE_ADJ_MIN,
    SYSCTLS,
    candidates,
    total_pages,
)
from spec.outcome import OomKill, OomPanic, Outcome


def adj_violations(k: Kernel) -> list[str]:
    """Every kept ``oom_score_adj`` is a live process's non-zero value in range."""
    return [
        f"pid {pid} has oom_score_adj {adj}" + ("" if pid in k.procs else " but is not a live process")
        for pid, adj in k.oom_score_adj.items()
        if pid not in k.procs or not adj or not OOM_SCORE_ADJ_MIN <= adj <= OOM_SCORE_ADJ_MAX
    ]


def sysctl_violations(k: Kernel) -> list[str]:
    """Only the OOM sysctls, non-zero and in range."""
    problems = []
    for name, value in k.oom_sysctls.items():
        lo, hi = SYSCTLS.get(name, (1, 0))
        if not lo < value <= hi:
            problems.append(f"sysctl {name} = {value}: allowed {sorted(SYSCTLS)} in their ranges, 0 not kept")
    return problems


INVARIANTS = (adj_violations, sysctl_violations)


def violations(k: Kernel) -> list[str]:
    """Every OOM state invariant ``k`` breaks, each named by its function."""
    return [f"{check.__name__}: {problem}" for check in INVARIANTS for problem in check(k)]


def private_frames(k: Kernel, pid: int) -> set[int]:
    """The frames only ``pid`` holds: its tables and PGD, and the pages whose every reference is its mappings."""
    sp = k.procs[pid]
    frames = {sp.root, *sp.tables.values()}
    maps = Counter(leaf.pfn for leaf in sp.leaves.values())
    cached = {pfn for cache in k.objects.values() for pfn in cache.values()} | set(k.swap_cache.values())
    pinned = {p.pfn for p in k.pins.values()}
    for pfn, count in maps.items():
        page = k.pages.get(pfn)
        if page is not None and not page.huge and page.refcount == count and pfn not in cached | pinned:
            frames.add(pfn)
    return frames


def kill_violations(before: Kernel, after: Kernel, outcome: Outcome, allocating: int) -> list[str]:
    """What a kill (or a panic) of ``out_of_memory`` for ``allocating`` got wrong against the state before it."""
    eligible = candidates(before, total_pages(before))
    if isinstance(outcome, OomPanic):
        if outcome.report == NO_KILLABLE and eligible:
            return [f"no killable process reported while {[pid for pid, _ in eligible]} are eligible"]
        unchanged = replace(after, events=before.events, lru_steps=before.lru_steps) == before
        return [] if unchanged else ["a panic changed the state"]
    if not isinstance(outcome, OomKill):
        return []
    victim, problems = outcome.pid, []
    scores = dict(eligible)
    if victim not in scores:
        return [f"victim {victim} was not eligible (init, -1000 or not a process); eligible: {eligible}"]
    if outcome.points != scores[victim]:
        problems.append(f"victim {victim} reported {outcome.points} points, its badness was {scores[victim]}")
    by_rule = not (outcome.message.endswith("(oom_kill_allocating_task)") and victim == allocating)
    if by_rule:
        better = [(pid, p) for pid, p in eligible if p > scores[victim] or (p == scores[victim] and pid > victim)]
        if better:
            problems.append(f"victim {victim} ({scores[victim]} points) chosen over {better}")
    if victim in after.procs:
        problems.append(f"victim {victim} is still a process")
    private = private_frames(before, victim)
    freed = free_frames(after) - free_frames(before)
    if freed < len(private):
        problems.append(f"the kill freed {freed} frames, the victim alone held {len(private)}: {sorted(private)}")
    return problems
