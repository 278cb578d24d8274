"""OOM killer mutants (``impl.oom.oom.Oom``): real badness, victim-choice and kill bugs.

Each is the shipped method's source with one small edit, swapped in for the run only; the ``ci`` OOM
machine (:mod:`properties.oom.oom_machine`) must catch each with a short counterexample.
"""

from __future__ import annotations

from impl.oom.oom import Oom
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "oom: impl state, abstracted, equals L1; kill results and oom_score equal L1's; the kill obeys the rules"


def patch(method: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.oom.oom.Oom`."""
    return SourcePatch(Oom, method, edits)


OOM_MUTANTS = (
    Mutant(
        "badness-ignores-swap",
        "oom_badness without MM_SWAPENTS: a process pushed to swap looks small to the killer (swap entries "
        "count in the score since a63d83f427fb 'oom: badness heuristic rewrite')",
        f"{REFINES}; badness counts swap entries",
        "oom",
        patch("badness", ("points = rss + swap + tables", "points = rss + tables")),
    ),
    Mutant(
        "badness-ignores-pgtables",
        "oom_badness without mm_pgtables_bytes: page-table pages a process makes stay unnoticed by the killer "
        "(the hole dc6c9a35b66b 'mm: account pmd page tables to the process' closed for PMD tables, and "
        "b4e98d9ac775 'mm: account pud page tables' for PUD ones)",
        f"{REFINES}; badness counts the PDPT, PD and PT pages",
        "oom",
        patch("badness", ("points = rss + swap + tables", "points = rss + swap")),
    ),
    Mutant(
        "adj-unscaled",
        "oom_score_adj added as raw pages, not scaled by the domain (adj * totalpages / 1000): -900 protects "
        "nothing on a large machine and 1000 does not mean 'kill first'",
        f"{REFINES}; adj counts totalpages / 1000 pages per unit",
        "oom",
        patch("badness", ("return points + adj * (totalpages // 1000)", "return points + adj")),
    ),
    Mutant(
        "adj-multiplied-first",
        "adj * totalpages / 1000 with the multiplication first: the kernel's long arithmetic divides first "
        "(adj *= totalpages / 1000), and near ties depend on the truncation",
        f"{REFINES}; the division truncates before the multiplication",
        "oom",
        patch("badness", ("return points + adj * (totalpages // 1000)", "return points + adj * totalpages // 1000")),
    ),
    Mutant(
        "min-adj-eligible",
        "OOM_SCORE_ADJ_MIN not treated as unkillable: a -1000 task scored like any other (oom_badness's "
        "LONG_MIN for OOM_SCORE_ADJ_MIN skipped), so the task an administrator protected can be killed",
        f"{REFINES}; no process at -1000 is ever killed, its oom_score is 0",
        "oom",
        patch("badness", ("if pid == INIT_PID or adj == OOM_SCORE_ADJ_MIN:", "if pid == INIT_PID:")),
    ),
    Mutant(
        "init-killable",
        "oom_unkillable_task not consulted: the global init (is_global_init) scored and killed, which takes "
        "the whole system down",
        f"{REFINES}; init is never a victim",
        "oom",
        patch("badness", ("if pid == INIT_PID or adj == OOM_SCORE_ADJ_MIN:", "if adj == OOM_SCORE_ADJ_MIN:")),
    ),
    Mutant(
        "tie-first-wins",
        "a tie kept by the first task scanned: oom_evaluate_task skips only points < chosen_points, so the later "
        "task of equal badness replaces the chosen one",
        f"{REFINES}; of equal badness, the last in the task list is killed",
        "oom",
        patch(
            "select", ("(chosen is not None and points < chosen[1])", "(chosen is not None and points <= chosen[1])")
        ),
    ),
    Mutant(
        "victim-memory-kept",
        "the victim marked dead but its memory never released (the oom reaper's oom_reap_task_mm skipped and "
        "exit_mmap not reached: "
        "the victim's pages stay allocated, the next allocation OOMs again)",
        f"{REFINES}; after the kill the victim's private frames are free in the buddy allocator",
        "oom",
        patch("kill", ("kill(victim)", "del self.k.procs[victim]")),
    ),
    Mutant(
        "adj-not-inherited",
        "oom_score_adj not copied by fork (copy_signal not copying signal->oom_score_adj): a protected "
        "service's children start at 0, an opted-in one's at 0 as well",
        f"{REFINES}; a child has its parent's oom_score_adj",
        "oom",
        patch("forked", ("self.adj[child] = self.adj[parent]", "pass")),
    ),
    Mutant(
        "allocating-task-at-min-killed",
        "vm.oom_kill_allocating_task killing the allocating task even at OOM_SCORE_ADJ_MIN (out_of_memory "
        "checks current->signal->oom_score_adj != OOM_SCORE_ADJ_MIN before choosing current)",
        f"{REFINES}; no process at -1000 is ever killed",
        "oom",
        patch(
            "out_of_memory",
            (
                "points = self.badness(pid, totalpages)\n        if points is not None:",
                "points = self.badness(pid, totalpages)\n        if pid != INIT_PID:",
            ),
        ),
    ),
)
