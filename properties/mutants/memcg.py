"""Memory cgroup mutants (``impl.memcg.memcg.MemCgroups``): real charge, limit and group OOM bugs.

Each is the shipped method's source with one small edit, swapped in for the run only; the ``ci`` memcg
machine (:mod:`properties.oom.memcg_machine`) must catch each with a short counterexample.
"""

from __future__ import annotations

from impl.memcg.memcg import MemCgroups
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = (
    "memcg: impl state, abstracted, equals L1; memcg_read and group OOM results equal L1's; the OOM obeys its rules"
)


def patch(method: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.memcg.memcg.MemCgroups`."""
    return SourcePatch(MemCgroups, method, edits)


MEMCG_MUTANTS = (
    Mutant(
        "memcg-leak",
        "a freed page's charge dropped from memcg_data but never taken off the page counters (mm/memcontrol.c "
        "uncharge_folio/uncharge_batch skipping page_counter_uncharge): a group whose processes exited keeps "
        "its usage and OOMs for memory it no longer holds",
        f"{REFINES}; usage falls back when pages are freed",
        "memcg",
        patch("sync", ("        self.uncharge(pfn)", "        self.memcg_data.pop(pfn)")),
    ),
    Mutant(
        "memcg-victim-outside-group",
        "the group OOM scanning every process rather than the group at its limit and its descendants "
        "(mem_cgroup_scan_tasks over the root instead of oc->memcg): a cgroup OOM kills a process outside the "
        "group, the failure memory cgroups exist to prevent",
        f"{REFINES}; a cgroup OOM never kills outside the group",
        "memcg",
        patch("select", ("for group in self.subtree(path):", "for group in self.subtree(ROOT):")),
    ),
    Mutant(
        "memcg-domain-machine-total",
        "the group OOM's badness domain taken as the machine's RAM + swap (the global totalpages) instead of "
        "mem_cgroup_get_max(memcg): oom_score_adj is scaled by the machine, not the group's limit, and weighs "
        "far more than it should inside a small group",
        f"{REFINES}; a group OOM's totalpages is limit + min(memsw limit - limit, total swap)",
        "memcg",
        patch(
            "get_max",
            (
                "return g.memory.max + min(g.memsw.max - g.memory.max, self.k.pressure.swap_slots)",
                "return self.k.buddy.frames + self.k.pressure.swap_slots",
            ),
        ),
    ),
    Mutant(
        "memcg-failcnt-not-incremented",
        "page_counter_try_charge failing without c->failcnt++: memory.failcnt stays 0 while the group keeps "
        "hitting its limit, and monitoring that watches it sees nothing",
        f"{REFINES}; every charge refused at a limit counts in that counter's failcnt",
        "memcg",
        patch("charged", ("(g.memsw if memsw else g.memory).failcnt += 1", "pass")),
    ),
    Mutant(
        "memcg-hierarchy-ignored",
        "the charge checked against the charging group's own counter only, not walked up c->parent as "
        "page_counter_try_charge does: a child group's processes exceed the limit of its parent",
        f"{REFINES}; a charge past any ancestor's limit is refused",
        "memcg",
        patch("over", ("        path = self.parent_path(path)", "        return None")),
    ),
    Mutant(
        "memcg-oom-kill-counted-on-limit-group",
        "oom_kill counted on the group at its limit rather than the victim's (__oom_kill_process calls "
        "memcg_memory_event_mm(mm, MEMCG_OOM_KILL) for the victim's mm): a parent's OOM shows its kill in the "
        "wrong group's memory.oom_control",
        f"{REFINES}; oom_kill counts on the victim's own group",
        "memcg",
        patch("oom_kill", ("self.groups[self.group(pid)].oom_kill += 1", "self.groups[path].oom_kill += 1")),
    ),
)


REFINES_V2 = (
    "memcg v2: impl state, abstracted, equals L1; each memcg reclaim step is one the spec allows; every group OOM "
    "obeys its rules"
)

MEMCG_V2_MUTANTS = (
    Mutant(
        "memcg-high-as-max",
        "memory.high treated as a hard limit: page_counter_try_charge refusing a charge above memcg->memory.high "
        "instead of letting it through and reclaiming on the way back to user space (mem_cgroup_handle_over_high): "
        "a group over its high is OOM-killed, which memory.high exists to avoid",
        f"{REFINES_V2}; memory.high never kills",
        "memcg2",
        patch("over", ("if g.memory.usage > g.memory.max:", "if g.memory.usage > min(g.memory.max, g.memory.high):")),
    ),
    Mutant(
        "memcg-protection-not-bounded-by-parent",
        "page_counter_calculate_protection taking every group's memory.min/low as it is, as though its parent were "
        "the reclaim's target (effective_protection skipped): a grandchild keeps protection its parent does not "
        "have or that its siblings overcommit, and reclaim skips pages it should take",
        f"{REFINES_V2}; effective protection is bounded by the parent's and shared when siblings overcommit it",
        "memcg2",
        patch("protections", ("elif parent == target:", "elif True:")),
    ),
    Mutant(
        "memcg-oom-group-only-victim",
        "memory.oom.group ignored by the kill: mem_cgroup_get_oom_group's result not used, so only the chosen "
        "victim dies and the rest of a workload that asked to die together lives on half-broken",
        f"{REFINES_V2}; with memory.oom.group the victim's whole group is killed",
        "memcg2",
        patch("oom_kill", ("group = self.oom_group_of(victim, path)", "group = None")),
    ),
    Mutant(
        "memcg-reclaim-outside-group",
        "a group's reclaim walking every memory cgroup (mem_cgroup_iter from the root instead of "
        "sc->target_mem_cgroup): a group at its limit takes the pages of its neighbours",
        f"{REFINES_V2}; a group's reclaim takes only the pages of its own subtree",
        "memcg2",
        patch("reclaim_pass", ("for path in self.subtree(target):", "for path in self.subtree(ROOT):")),
    ),
    Mutant(
        "memcg-no-reclaim-retries",
        "try_charge_memcg going to the OOM killer after the first reclaim that freed nothing (no drain retry, no "
        "MAX_RECLAIM_RETRIES): the group OOMs early and memory.events max and failcnt undercount",
        f"{REFINES_V2}; a refused charge retries MAX_RECLAIM_RETRIES times before the OOM",
        "memcg2",
        patch(
            "charged",
            ("retries, drained, calls = MAX_RECLAIM_RETRIES, False, 0", "retries, drained, calls = 0, True, 0"),
        ),
    ),
)
