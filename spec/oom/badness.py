"""The OOM killer of the global domain: badness, ``/proc/PID/oom_score``, ``oom_score_adj``, the victim and the kill.

Rules (Linux 6.x, mm/oom_kill.c and fs/proc/base.c), each checked against the kernel source:

- **Badness** (``oom_badness``): an unkillable task (``oom_unkillable_task``: the global init, pid 1,
  ``is_global_init``; kernel threads have no process here) or one whose ``oom_score_adj`` is
  ``OOM_SCORE_ADJ_MIN`` (-1000) scores ``LONG_MIN``, here None: it is never chosen.  Otherwise
  ``points = get_mm_rss(mm) + get_mm_counter(mm, MM_SWAPENTS) + mm_pgtables_bytes(mm) / PAGE_SIZE``: the
  pages it maps (``MM_ANONPAGES + MM_FILEPAGES + MM_SHMEMPAGES``, as ``/proc/PID/status`` counts them,
  :func:`spec.pressure.meminfo.status`), its swap entries, and its page tables below the PGD
  (``mm_inc_nr_ptes``/``pmds``/``puds`` in include/linux/mm.h count the PT, PD and PDPT pages; the PGD is
  not counted).  Then ``adj *= totalpages / 1000; points += adj`` in C ``long`` arithmetic: the division
  comes first and truncates, so on a machine of fewer than 1000 pages ``oom_score_adj`` weighs nothing.
- **The domain's total** for a global OOM (``constrained_alloc``, CONSTRAINT_NONE):
  ``totalram_pages() + total_swap_pages``, here every frame and every swap slot.
- **/proc/PID/oom_score** (``proc_oom_score``): with the machine's totals, ``0`` for a LONG_MIN badness,
  else ``(1000 + badness * 1000 / totalpages) * 2 / 3`` (C division, truncating toward zero): the range
  0..2000 userspace has long read.  It always uses the machine's totals, even for a task in a memory
  cgroup, so it does not predict a cgroup OOM's victim.
- **oom_score_adj** (``__set_oom_adj``, fs/proc/base.c): -1000..1000 (``-EINVAL`` outside: a typed
  error at parse time here); a fork copies it to the child (``copy_signal``, kernel/fork.c); it goes
  with the process.
- **The victim** (``select_bad_process``/``oom_evaluate_task``): tasks in ``for_each_process`` order
  (the task list, in creation order: here increasing pid), ``chosen_points`` starting at LONG_MIN; a task
  is skipped when its badness is LONG_MIN or ``points < chosen_points``, so on a tie the *later* task
  replaces the one chosen.  (No kill is ever in flight here: the kill below completes at once, so the
  abort on a pending victim, ``tsk_is_oom_victim``, never happens.)
- **out_of_memory()**: first ``check_panic_on_oom``: with ``vm.panic_on_oom`` 1 or 2 a global OOM panics
  ("Out of memory: system-wide panic_on_oom is enabled", "compulsory" for 2).  Then, with
  ``vm.oom_kill_allocating_task`` set, the allocating task itself is killed when it is killable and not at
  -1000 ("Out of memory (oom_kill_allocating_task)").  Otherwise the victim above is killed ("Out of
  memory"); with none, "Out of memory and no killable processes..." is printed and, the OOM being an
  allocation's at the system level, the kernel panics ("System is deadlocked on memory").
- **The kill** (``__oom_kill_process``): SIGKILL, then the victim's exit tears its address space down
  (``exit_mmap``; the oom reaper's early unmapping of private anonymous memory frees the same pages):
  here the exit path of :func:`spec.mm.aspace.exit_process`, through a TLB shootdown like ``exit``.
  Pages others still map, page-cache pages and pinned pages stay.  The kill reports the fields of the
  "Killed process" line: total-vm, anon-rss, file-rss, shmem-rss, pgtables (kB) and oom_score_adj.

Out of scope here (later slices): memory cgroups (``mem_cgroup_get_max``), the allocation path's own call of
the killer (an allocation that fails after reclaim is reported as ENOMEM by the kernel ops; a scenario then
runs ``out_of_memory`` as the allocator would), a kill whose memory is freed later than it is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lang.records import replace
from spec.mm.kernel import Kernel, space, updated, without
from spec.outcome import NewPid, OomKill, OomPanic, OomScore, Outcome
from spec.pressure.meminfo import KB, status

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
INIT_PID = 1
SYSCTLS = {"vm.panic_on_oom": (0, 2), "vm.oom_kill_allocating_task": (0, 1)}
NO_KILLABLE = "Out of memory and no killable processes..."
DEADLOCKED = "System is deadlocked on memory"

Exit = Callable[[Kernel, int], tuple[Kernel, Outcome]]


def oom_score_adj(k: Kernel, pid: int) -> int:
    """The process's ``oom_score_adj`` (0 unless set)."""
    return k.oom_score_adj.get(pid, 0)


def set_oom_score_adj(k: Kernel, pid: int, value: int) -> Kernel:
    """Write ``/proc/PID/oom_score_adj`` (the value's range is checked when the op is parsed)."""
    space(k, pid)
    return replace(k, oom_score_adj=updated(k.oom_score_adj, pid, value) if value else without(k.oom_score_adj, [pid]))


def forked(k: Kernel, outcome: Outcome, parent: int) -> tuple[Kernel, Outcome]:
    """After a fork: the child has its parent's ``oom_score_adj`` (``copy_signal``)."""
    adj = oom_score_adj(k, parent)
    if isinstance(outcome, NewPid) and adj:
        k = replace(k, oom_score_adj=updated(k.oom_score_adj, outcome.pid, adj))
    return k, outcome


def exited(k: Kernel, outcome: Outcome, pid: int) -> tuple[Kernel, Outcome]:
    """After an exit: the process's ``oom_score_adj`` is gone with it."""
    if pid in k.oom_score_adj and pid not in k.procs:
        k = replace(k, oom_score_adj=without(k.oom_score_adj, [pid]))
    return k, outcome


def total_pages(k: Kernel) -> int:
    """The global domain's size: ``totalram_pages() + total_swap_pages``."""
    return k.buddy.frames + k.swap_slots


def page_tables(k: Kernel, pid: int) -> int:
    """``mm_pgtables_bytes / PAGE_SIZE``: the PDPT, PD and PT pages of the process (not its PGD)."""
    return len(space(k, pid).tables)


def rss_and_swap(k: Kernel, pid: int) -> tuple[int, int, int, int]:
    """``MM_ANONPAGES``, ``MM_FILEPAGES``, ``MM_SHMEMPAGES`` and ``MM_SWAPENTS``, in pages."""
    st = status(k, pid)
    return st.rss_anon // KB, st.rss_file // KB, st.rss_shmem // KB, st.vm_swap // KB


def c_div(a: int, b: int) -> int:
    """C's integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def badness_of(rss: int, swapents: int, pgtables: int, adj: int, totalpages: int) -> int | None:
    """``oom_badness()`` on its inputs, all in pages: ``get_mm_rss`` (anon + file + shmem), ``MM_SWAPENTS``,
    ``mm_pgtables_bytes / PAGE_SIZE``, plus ``adj * (totalpages / 1000)`` (the division first); None for
    LONG_MIN (``oom_score_adj`` -1000)."""
    if adj == OOM_SCORE_ADJ_MIN:
        return None
    return rss + swapents + pgtables + adj * (totalpages // 1000)


def displayed_score(points: int | None, totalpages: int) -> int:
    """What ``/proc/PID/oom_score`` shows for a badness (fs/proc/base.c ``proc_oom_score``): 0 for LONG_MIN,
    else ``(1000 + badness * 1000 / totalpages) * 2 / 3`` in C's truncating division."""
    return 0 if points is None else c_div((1000 + c_div(points * 1000, totalpages)) * 2, 3)


def memcg_domain_total(limit: int, memsw_limit: int, total_swap: int, swappiness: int = 60) -> int:
    """The domain of a cgroup v1 OOM (mm/memcontrol.c ``mem_cgroup_get_max``, memsw accounting on), in
    pages: the memory limit plus the swap the group may use, ``min(memsw.max - memory.max,
    total_swap_pages)``, when its swappiness is not 0; the limit alone otherwise."""
    return limit + min(memsw_limit - limit, total_swap) if swappiness else limit


def chosen_victim(points: Iterable[tuple[int, int | None]]) -> tuple[int, int] | None:
    """``select_bad_process`` over (pid, badness) pairs in scan order: the highest badness, a later task
    winning a tie (``oom_evaluate_task`` skips only ``points < chosen_points``); None if none is eligible."""
    chosen: tuple[int, int] | None = None
    for pid, value in points:
        if value is not None and (chosen is None or value >= chosen[1]):
            chosen = (pid, value)
    return chosen


def badness(k: Kernel, pid: int, totalpages: int) -> int | None:
    """``oom_badness(p, totalpages)``; None for LONG_MIN (init, or ``oom_score_adj`` -1000)."""
    if pid == INIT_PID:
        return None
    anon, file, shmem, swapents = rss_and_swap(k, pid)
    return badness_of(anon + file + shmem, swapents, page_tables(k, pid), oom_score_adj(k, pid), totalpages)


def oom_score(k: Kernel, pid: int) -> OomScore:
    """``/proc/PID/oom_score`` with the machine's totals, and ``oom_score_adj``."""
    space(k, pid)
    totalpages = total_pages(k)
    return OomScore(displayed_score(badness(k, pid, totalpages), totalpages), oom_score_adj(k, pid))


def candidates(k: Kernel, totalpages: int) -> list[tuple[int, int]]:
    """Every eligible process and its badness, in ``for_each_process`` order."""
    out = []
    for pid in sorted(k.procs):
        points = badness(k, pid, totalpages)
        if points is not None:
            out.append((pid, points))
    return out


def select_bad_process(k: Kernel, totalpages: int) -> tuple[int, int] | None:
    """The victim and its points: the highest badness, a later task winning a tie; None if none is eligible."""
    return chosen_victim(candidates(k, totalpages))


def kill_report(k: Kernel, pid: int, points: int, message: str) -> OomKill:
    """The "Killed process" line's fields, taken before the victim's memory goes."""
    anon, file, shmem, _ = rss_and_swap(k, pid)
    total_vm = sum(vma.end - vma.start for vma in space(k, pid).vmas)
    return OomKill(
        pid,
        points,
        total_vm * KB,
        anon * KB,
        file * KB,
        shmem * KB,
        page_tables(k, pid) * KB,
        oom_score_adj(k, pid),
        message,
    )


def out_of_memory(k: Kernel, pid: int, kill: Exit) -> tuple[Kernel, Outcome]:
    """``out_of_memory()`` for an allocation of process ``pid`` that failed after reclaim: kill or panic."""
    space(k, pid)
    panic_on_oom = k.oom_sysctls.get("vm.panic_on_oom", 0)
    if panic_on_oom:
        mode = "compulsory" if panic_on_oom == 2 else "system-wide"
        return k, OomPanic("", f"Out of memory: {mode} panic_on_oom is enabled")
    totalpages = total_pages(k)
    if k.oom_sysctls.get("vm.oom_kill_allocating_task", 0):
        points = badness(k, pid, totalpages)
        if points is not None:
            return oom_kill(k, pid, points, "Out of memory (oom_kill_allocating_task)", kill)
    chosen = select_bad_process(k, totalpages)
    if chosen is None:
        return k, OomPanic(NO_KILLABLE, DEADLOCKED)
    return oom_kill(k, chosen[0], chosen[1], "Out of memory", kill)


def oom_kill(k: Kernel, victim: int, points: int, message: str, kill: Exit) -> tuple[Kernel, Outcome]:
    """Kill ``victim``: report it, then its exit frees its memory."""
    report = kill_report(k, victim, points, message)
    k, _ = kill(k, victim)
    return exited(k, report, victim)


def set_sysctl(k: Kernel, name: str, value: int) -> Kernel:
    """Write ``/proc/sys/vm/panic_on_oom`` or ``oom_kill_allocating_task`` (name and range checked at parse)."""
    return replace(k, oom_sysctls=updated(k.oom_sysctls, name, value) if value else without(k.oom_sysctls, [name]))
