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
        patch("charged", ("self.groups[self.group(victim)].oom_kill += 1", "self.groups[path].oom_kill += 1")),
    ),
)
