"""The memory cgroups' invariants: of the state after every step, and of a group OOM against the state before it.

State (:func:`violations`, joined to :func:`spec.mm.invariants.violations`):

- ``charge_violations``: with memory cgroups on, the charged frames are exactly the frames a charge covers
  (every user page but hugetlb, every process's page tables and PML4), each with its kind, each charged to a
  group that exists: charges equal the pages the groups' processes and files hold, no leak, none twice;
  with them off, nothing is kept;
- ``group_violations``: every group's parent exists, no group is past its limits (a charge past a limit never
  stays: mm/memcontrol.c ``try_charge_memcg``; on cgroup v2 the usage may stay above a ``memory.max``
  written below it when reclaim and the OOM killer cannot bring the usage down, ``memory_max_write``), the memory
  limit is not above the memsw limit (``mem_cgroup_resize_max``), watermarks are not below the usage;
- ``task_violations``: every process kept in a group is live and the group exists and is not the root.

A group OOM (:func:`oom_violations`, checked by the memcg machine after every operation that killed):

- every victim was a process of the group at its limit or of a descendant (a cgroup OOM never kills outside
  the group), eligible (not init, not at -1000), and had the highest badness there with
  ``mem_cgroup_get_max`` as the domain's total (a later task winning a tie);
- every victim is gone, and every frame only it held is free after the kill (no leak).
"""

from __future__ import annotations

from types import MappingProxyType

from lang.records import replace
from spec.memcg.memcg import candidates, chargeable, memsw_usage, usage
from spec.memcg.state import NO_MEMCG, ROOT, under
from spec.mm.kernel import Kernel, free_frames
from spec.oom.invariants import private_frames
from spec.outcome import ENOMEM, MemcgOom, MemcgRetry, Outcome


def charge_violations(k: Kernel) -> list[str]:
    """Charged frames = frames a charge covers, kinds equal, groups existing."""
    m = k.memcg
    if not m.enabled:
        return [] if m == NO_MEMCG else ["memory cgroups are off but their state is kept"]
    held = chargeable(k)
    problems = []
    leaked = sorted(set(m.charges) - set(held))
    if leaked:
        problems.append(f"frames {leaked} are charged but no longer held (uncharge missed: a memcg leak)")
    missing = sorted(set(held) - set(m.charges))
    if missing:
        problems.append(f"frames {missing} are held but charged to no group")
    for pfn, (group, kind) in m.charges.items():
        if pfn in held and held[pfn] != kind:
            problems.append(f"frame {pfn} is charged as {kind} but holds {held[pfn]}")
        if group not in m.groups:
            problems.append(f"frame {pfn} is charged to {group!r}, which is not a group")
    return problems


def group_violations(k: Kernel) -> list[str]:
    """Parents exist, usage within the limits, limits ordered, watermarks at least the usage."""
    m = k.memcg
    problems = []
    for path, g in m.groups.items():
        if (g.parent is None) != (path == ROOT) or (g.parent is not None and g.parent not in m.groups):
            problems.append(f"group {path!r} has parent {g.parent!r}")
            continue
        used, both = usage(m, path), memsw_usage(m, path)
        if (used > g.limit and not m.v2) or both > g.memsw_limit:
            problems.append(f"group {path!r} holds {used} pages (memsw {both}), limits {g.limit} / {g.memsw_limit}")
        if g.limit > g.memsw_limit:
            problems.append(f"group {path!r} has a memory limit {g.limit} above its memsw limit {g.memsw_limit}")
        if g.max_usage < used or g.memsw_max_usage < both:
            problems.append(f"group {path!r} watermark {g.max_usage} below its usage {used}")
    return problems


def task_violations(k: Kernel) -> list[str]:
    """Group members are live processes of existing, non-root groups."""
    return [
        f"pid {pid} is kept in group {group!r}"
        for pid, group in k.memcg.tasks.items()
        if pid not in k.procs or group not in k.memcg.groups or group == ROOT
    ]


INVARIANTS = (charge_violations, group_violations, task_violations)


def violations(k: Kernel) -> list[str]:
    """Every memory cgroup invariant ``k`` breaks, each named by its function."""
    return [f"{check.__name__}: {problem}" for check in INVARIANTS for problem in check(k)]


def oom_violations(before: Kernel, after: Kernel, outcome: Outcome) -> list[str]:
    """What a group OOM got wrong against the state before the operation."""
    if not isinstance(outcome, MemcgOom):
        return []
    problems: list[str] = []
    private: set[int] = set()
    state = before
    for kill in outcome.kills:
        victim = kill.pid
        group = state.memcg.tasks.get(victim, ROOT)
        if victim not in state.procs or not under(group, outcome.group):
            problems.append(f"victim {victim} (group {group!r}) is outside the group {outcome.group!r} at its limit")
            break
        eligible = candidates(state, outcome.group)
        scores = dict(eligible)
        if victim not in scores:
            problems.append(f"victim {victim} was not eligible in {outcome.group!r}: {eligible}")
            break
        better = [(p, s) for p, s in eligible if s > scores[victim] or (s == scores[victim] and p > victim)]
        if better:
            problems.append(f"victim {victim} ({scores[victim]} points) chosen over {better} in {outcome.group!r}")
        if kill.points != scores[victim]:
            problems.append(f"victim {victim} reported {kill.points} points, its badness was {scores[victim]}")
        private |= private_frames(state, victim)
        state = replace(state, procs=MappingProxyType({p: sp for p, sp in state.procs.items() if p != victim}))
        if victim in after.procs:
            problems.append(f"victim {victim} is still a process")
    ran = not (outcome.outcome is None or isinstance(outcome.outcome, MemcgRetry) or outcome.outcome == ENOMEM)
    if not ran and free_frames(after) - free_frames(before) < len(private):
        problems.append(f"the kills freed {free_frames(after) - free_frames(before)} frames, the victims alone held "
                        f"{len(private)}: {sorted(private)}")
    return problems
