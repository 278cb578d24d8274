"""The OOM killer of the implementation kernel (mm/oom_kill.c, fs/proc/base.c, Linux 6.x).

``oom_score_adj`` lives per process (``signal_struct::oom_score_adj``; a dict by pid here, holding the
non-zero values), the OOM sysctls beside it.  ``oom_badness`` reads the mm counters the kernel keeps as its
leaves and tables change (``get_mm_rss + MM_SWAPENTS`` and ``mm_pgtables_bytes``: PDPT, PD, PT; not the PGD;
:attr:`Kernel.mm_counters`); the kill report's split into ``MM_ANONPAGES``,
``MM_FILEPAGES``, ``MM_SHMEMPAGES`` is counted from the real page tables in one walk.  Badness is
``rss + swapents + pgtables + adj * (totalpages // 1000)``, -1000 and init (pid 1) never eligible;
``oom_evaluate_task`` walks the processes in task-list (pid) order and keeps a later task on a tie.
The kill is the exit path, run by the caller's ``kill`` (the exit syscall with its TLB shootdown).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel

Result = dict[str, Any]

OOM_SCORE_ADJ_MIN = -1000
INIT_PID = 1
USER_PAGES = 1 << 35
NO_KILLABLE = "Out of memory and no killable processes..."


class Oom:
    """``oom_score_adj`` by pid, the OOM sysctls, and the killer over kernel ``k``."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.adj: dict[int, int] = {}
        self.sysctls: dict[str, int] = {}

    def clone(self, k: Kernel) -> Oom:
        """An independent copy for the cloned kernel ``k``."""
        new = Oom(k)
        new.adj, new.sysctls = dict(self.adj), dict(self.sysctls)
        return new

    # --- oom_score_adj, fork and exit ------------------------------------------------------------

    def set_adj(self, pid: int, value: int) -> Result:
        """``/proc/PID/oom_score_adj`` written."""
        self.k.proc(pid)
        if value:
            self.adj[pid] = value
        else:
            self.adj.pop(pid, None)
        return {"ok": True}

    def forked(self, result: Result, parent: int) -> Result:
        """``copy_signal``: the child starts with the parent's ``oom_score_adj``."""
        child = result.get("pid")
        if child is not None and parent in self.adj:
            self.adj[child] = self.adj[parent]
        return result

    def exited(self, result: Result, pid: int) -> Result:
        """The process is gone: so is its ``oom_score_adj``."""
        if pid not in self.k.procs:
            self.adj.pop(pid, None)
        return result

    def sysctl(self, name: str, value: int) -> Result:
        """``/proc/sys/vm/<name>`` written."""
        if value:
            self.sysctls[name] = value
        else:
            self.sysctls.pop(name, None)
        return {"ok": True}

    # --- badness --------------------------------------------------------------------------------

    def counters(self, pid: int) -> tuple[int, int, int, int, int]:
        """anon, file and shmem pages mapped, swap entries, page-table pages of ``pid``."""
        k = self.k
        proc = k.proc(pid)
        anon, file, shmem, swap = k.pressure.rss_counts(proc)
        tables = sum(1 for _ in k._tables(proc.root, 4, 0, 0, USER_PAGES))
        return anon, file, shmem, swap, tables

    def total_pages(self) -> int:
        """``totalram_pages() + total_swap_pages``."""
        return self.k.buddy.frames + self.k.pressure.swap_slots

    def badness(self, pid: int, totalpages: int) -> int | None:
        """``oom_badness``; None for LONG_MIN.  It reads the mm counters the kernel keeps
        (:meth:`Kernel.mm_counts`: ``get_mm_rss``, ``MM_SWAPENTS``, ``mm_pgtables_bytes / PAGE_SIZE``), as
        mm/oom_kill.c does, not a walk of the page tables."""
        k = self.k
        k.proc(pid)
        adj = self.adj.get(pid, 0)
        if pid == INIT_PID or adj == OOM_SCORE_ADJ_MIN:
            return None
        rss, swap, tables = k.mm_counts(pid)
        points = rss + swap + tables
        return points + adj * (totalpages // 1000)

    def oom_score(self, pid: int) -> Result:
        """``/proc/PID/oom_score`` (``proc_oom_score``) and ``oom_score_adj``."""
        self.k.proc(pid)
        totalpages = self.total_pages()
        points = self.badness(pid, totalpages)
        score = 0
        if points is not None:
            scaled = abs(points) * 1000 // totalpages
            score = (1000 + (scaled if points >= 0 else -scaled)) * 2 // 3
        return {"oom_score": score, "oom_score_adj": self.adj.get(pid, 0)}

    def select(self, totalpages: int) -> tuple[int, int] | None:
        """``select_bad_process``: the last process of the highest badness, with its points."""
        chosen: tuple[int, int] | None = None
        for pid in sorted(self.k.procs):
            points = self.badness(pid, totalpages)
            if points is None or (chosen is not None and points < chosen[1]):
                continue
            chosen = (pid, points)
        return chosen

    # --- out_of_memory --------------------------------------------------------------------------

    def out_of_memory(self, pid: int, kill: Callable[[int], object]) -> Result:
        """``out_of_memory()`` for process ``pid``'s failed allocation; ``kill(victim)`` runs its exit."""
        self.k.proc(pid)
        panic = self.sysctls.get("vm.panic_on_oom", 0)
        if panic:
            mode = "compulsory" if panic == 2 else "system-wide"
            return {"panic": f"Out of memory: {mode} panic_on_oom is enabled", "report": ""}
        totalpages = self.total_pages()
        if self.sysctls.get("vm.oom_kill_allocating_task", 0):
            points = self.badness(pid, totalpages)
            if points is not None:
                return self.kill(pid, points, "Out of memory (oom_kill_allocating_task)", kill)
        chosen = self.select(totalpages)
        if chosen is None:
            return {"panic": "System is deadlocked on memory", "report": NO_KILLABLE}
        return self.kill(chosen[0], chosen[1], "Out of memory", kill)

    def kill(self, victim: int, points: int, message: str, kill: Callable[[int], object]) -> Result:
        """``__oom_kill_process``: the "Killed process" line's fields, then the victim's exit."""
        anon, file, shmem, _, tables = self.counters(victim)
        total_vm = sum(vma.end - vma.start for vma in self.k.procs[victim].vmas)
        report = {
            "pid": victim,
            "points": points,
            "total_vm_kb": total_vm * 4,
            "anon_rss_kb": anon * 4,
            "file_rss_kb": file * 4,
            "shmem_rss_kb": shmem * 4,
            "pgtables_kb": tables * 4,
            "oom_score_adj": self.adj.get(victim, 0),
            "message": message,
        }
        kill(victim)
        self.exited({}, victim)
        return {"oom_kill": report}
