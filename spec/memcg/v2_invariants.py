"""The invariants of a cgroup v2 group OOM, against the state before the operation (checked by the v2 memcg
machine, :mod:`properties.oom.memcg_v2_machine`).

- a cgroup OOM never kills outside the group at its limit (``mem_cgroup_scan_tasks`` over ``oc->memcg``);
- ``memory.high`` never kills: the group an OOM ran for has a ``memory.max`` (mm/memcontrol.c
  ``mem_cgroup_handle_over_high`` only reclaims and sleeps);
- each OOM's victim is eligible and has the highest ``oom_badness`` in the group (a later task winning a tie),
  among the tasks the earlier kills of the operation left;
- ``memory.oom.group``: right after a victim come the kills of every task of its oom group
  (``mem_cgroup_get_oom_group``) but init and those at -1000 (``oom_kill_memcg_member`` over the whole group,
  the victim again in its place), in scan order, and no other.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from spec.memcg.memcg import candidates, group_of, oom_group_of, preorder
from spec.memcg.state import PAGE_COUNTER_MAX, under
from spec.mm.kernel import Kernel
from spec.outcome import MemcgOom, Outcome


def v2_oom_violations(before: Kernel, after: Kernel, outcome: Outcome) -> list[str]:
    """What a v2 group OOM got wrong against the state before the operation."""
    if not isinstance(outcome, MemcgOom) or not outcome.kills:
        return []
    domain = outcome.group
    problems: list[str] = []
    if domain not in after.memcg.groups or after.memcg.groups[domain].limit >= PAGE_COUNTER_MAX:
        problems.append(f"an OOM killed for group {domain!r}, which has no memory.max: memory.high never kills")
    pids = [kill.pid for kill in outcome.kills]
    outside = [pid for pid in pids if pid not in before.procs or not under(group_of(before.memcg, pid), domain)]
    if outside:
        return [*problems, f"victims {outside} are outside the group {domain!r} at its limit"]
    state, i = before, 0
    while i < len(pids):
        victim = pids[i]
        eligible = dict(candidates(state, domain))
        if victim not in eligible:
            return [*problems, f"victim {victim} was not eligible in {domain!r}: {sorted(eligible.items())}"]
        better = [(p, s) for p, s in eligible.items() if s > eligible[victim] or (s == eligible[victim] and p > victim)]
        if better:
            problems.append(f"victim {victim} ({eligible[victim]} points) chosen over {better} in {domain!r}")
        group = oom_group_of(state, victim, domain)
        members = [] if group is None else [
            pid
            for g in preorder(state.memcg, group)
            for pid in sorted(state.procs)
            if group_of(state.memcg, pid) == g and pid != 1 and state.oom_score_adj.get(pid, 0) != -1000
        ]
        killed = pids[i + 1 : i + 1 + len(members)]
        if killed != members:
            problems.append(
                f"victim {victim}'s memory.oom.group {group!r}: its tasks {members} were to die with it, "
                f"the kills were {killed}"
            )
            return problems
        gone = {victim, *members}
        state = replace(state, procs=MappingProxyType({p: sp for p, sp in state.procs.items() if p not in gone}))
        i += 1 + len(members)
    return problems
