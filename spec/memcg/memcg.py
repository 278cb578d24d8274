"""Memory cgroups, cgroup v1 (Linux 6.12 mm/memcontrol.c, mm/memcontrol-v1.c, mm/page_counter.c): the rules.

- **The hierarchy** (``mem_cgroup_css_alloc``): groups by path below the root ``"/"``; a new group's parent
  must exist (mkdir ENOENT otherwise, EEXIST for a path in use).  v1 in 6.x is always hierarchical
  (``use_hierarchy`` is 1 and cannot be cleared): a group's counter counts its own charges and its
  descendants'.
- **Members**: every process starts in the root; ``cgroup.procs`` moves one (``memcg_move``); a fork's child
  joins its parent's group (``cgroup_post_fork``); an exited process leaves.
- **Charges** (``folio->memcg_data``): once memory cgroups are on, every frame a process or the page cache
  holds is charged to one group, from its allocation to its free (``mem_cgroup_charge``,
  ``mem_cgroup_uncharge`` from ``__folio_put``): an anonymous page (``do_anonymous_page``, a COW copy, a
  swap-in) to the group of the process that faulted it; a page-cache page (file or shmem:
  ``filemap_add_folio``, ``shmem_add_to_page_cache``) to the group of the process whose access or syscall
  brought it in (the root for a ``file_read`` no process makes); a page-table page (``pte_alloc_one`` and
  ``pgd_alloc``, ``GFP_PGTABLE_USER`` with ``__GFP_ACCOUNT``) to the group of the process it belongs to at the
  time (a fork's tables to the parent's, the child's group).  hugetlb pages are not charged (they have their
  own controller).  Charges do **not** move with a process (``memory.move_charge_at_immigrate`` is 0 by default
  and deprecated, memcontrol-v1.c ``mem_cgroup_move_charge_write``): after ``memcg_move`` the pages the process
  already had stay charged to its old group.  v1's memsw counter counts memory and swap together; swap slots
  are not charged yet (``mem_cgroup_swapout``'s ``swap_cgroup_record`` is not modelled), so memsw equals memory
  here and ``memory.memsw.limit_in_bytes`` matters through ``mem_cgroup_get_max`` and its own limit check.
- **Limits** (``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``; ``mem_cgroup_resize_max``): in bytes,
  rounded down to pages (``page_counter_memparse``), -1 for none; the root's cannot be set (EINVAL); the
  memory limit may not exceed the memsw limit nor the memsw limit go below the memory limit (EINVAL); a limit
  below the current usage is EBUSY (the kernel reclaims first and gives up: reclaim inside a group is not
  modelled, see below).
- **A charge past a limit** (``try_charge_memcg``): ``page_counter_try_charge`` walks from the charging group
  up and fails at the first counter that would go past its limit (``mem_over_limit``), incrementing its
  ``failcnt``.  Then (reclaim of the group's own pages not modelled) the group's OOM killer runs
  (``mem_cgroup_oom``, ``memory_events[MEMCG_OOM]`` +1): ``check_panic_on_oom`` panics only for
  ``vm.panic_on_oom=2``; ``oom_kill_allocating_task`` is ignored for a memcg OOM; the victim is the highest
  ``oom_badness`` among the processes of ``mem_over_limit`` and its descendants (``mem_cgroup_scan_tasks``:
  groups in pre-order, here tasks by pid within a group; a later one wins a tie), with
  ``mem_cgroup_get_max(mem_over_limit)`` as ``totalpages``: v1 with swap accounting,
  ``limit + min(memsw_limit - limit, total_swap_pages)``.  The kill ("Memory cgroup out of memory") counts
  ``oom_kill`` on the victim's group, and the charge is retried.  With no eligible process
  ("Out of memory and no killable processes..."): no panic for a memcg; the charge fails, and a page fault
  returns ``VM_FAULT_OOM``, which ``pagefault_out_of_memory`` turns into a retry of the same fault for ever
  (here one :class:`~spec.outcome.MemcgRetry` per attempt, the state unchanged but the counters), while a
  syscall's allocation (fork's page tables, a pin's fault: ``get_user_pages``) returns ENOMEM.

How an operation is charged here: the operation runs, its new frames are charged, and if a group is then
past its limit the operation is taken back, the group's OOM killer kills (choosing its victim in the state
before the operation, the state the kernel's charge sees) and the operation runs again, until it fits or
nothing is left to kill.  The victim's badness therefore never counts the page being charged, as in Linux.

Not modelled yet: reclaim inside a group before its OOM (``try_to_free_mem_cgroup_pages``), the kernel's own
OOM retry loop (``MAX_RECLAIM_RETRIES``), slab charges, and cgroup v2: ``memory.high``, ``memory.min`` and
``memory.low`` (mm/page_counter.c ``effective_protection``) and ``memory.oom.group`` are files of the v2
hierarchy only (``memory_files``; v1's ``mem_cgroup_legacy_files`` has none of them, and
``mem_cgroup_get_oom_group`` returns NULL unless ``cgroup_subsys_on_dfl``), so a v1 group cannot set them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import MappingProxyType

from lang.errors import DisallowedChoice
from lang.records import replace
from spec.memcg.state import PAGE_COUNTER_MAX, PAGE_SIZE, ROOT, Group, Memcg, under
from spec.mm.kernel import Kernel, space, updated
from spec.oom.badness import NO_KILLABLE, badness, chosen_victim, kill_report, memcg_domain_total
from spec.outcome import ENOMEM, Errno, MemcgOom, MemcgRetry, MemcgStat, Ok, OomKill, OomPanic, Outcome

LIMIT_FILES = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
MEMCG_OOM = "Memory cgroup out of memory"
EINVAL, EBUSY, EEXIST, ENOENT = Errno("EINVAL"), Errno("EBUSY"), Errno("EEXIST"), Errno("ENOENT")

Step = Callable[[Kernel], tuple[Kernel, Outcome]]
Exit = Callable[[Kernel, int], tuple[Kernel, Outcome]]


def chargeable(k: Kernel) -> dict[int, str]:
    """Every frame a charge covers, and its kind: user pages but hugetlb, and every process's page tables."""
    out = {pfn: ("anon" if page.anon else "file") for pfn, page in k.pages.items() if not page.huge}
    for sp in k.procs.values():
        out[sp.root] = "table"
        for pfn in sp.tables.values():
            out[pfn] = "table"
    return out


def group_of(m: Memcg, pid: int) -> str:
    """The group process ``pid`` is in."""
    return m.tasks.get(pid, ROOT)


def enable(k: Kernel) -> Kernel:
    """Memory cgroups on: what is held so far is charged to the root."""
    if k.memcg.enabled:
        return k
    charges = {pfn: (ROOT, kind) for pfn, kind in chargeable(k).items()}
    return watermarks(replace(k, memcg=replace(k.memcg, enabled=True, charges=MappingProxyType(charges))))


def create(k: Kernel, path: str) -> tuple[Kernel, Outcome]:
    """``mkdir`` of a memory cgroup (the path's syntax is checked at parse)."""
    k = enable(k)
    parent = path.rsplit("/", 1)[0] if "/" in path else ROOT
    if path in k.memcg.groups:
        return k, EEXIST
    if parent not in k.memcg.groups:
        return k, ENOENT
    return replace(k, memcg=replace(k.memcg, groups=updated(k.memcg.groups, path, Group(parent)))), Ok()


def move(k: Kernel, pid: int, path: str) -> tuple[Kernel, Outcome]:
    """Write ``pid`` to the group's ``cgroup.procs``: the process moves, its charges stay."""
    space(k, pid)
    k = enable(k)
    if path not in k.memcg.groups:
        return k, ENOENT
    tasks = {p: g for p, g in k.memcg.tasks.items() if p != pid}
    if path != ROOT:
        tasks[pid] = path
    return replace(k, memcg=replace(k.memcg, tasks=MappingProxyType(dict(sorted(tasks.items()))))), Ok()


def usage(m: Memcg, path: str) -> int:
    """``memcg->memory``: the pages charged to the group and its descendants."""
    return sum(1 for group, _ in m.charges.values() if under(group, path))


def usages(m: Memcg) -> dict[str, tuple[int, int]]:
    """Every group's ``usage`` and ``memsw_usage`` at once (one pass over the charges)."""
    own = Counter(group for group, _ in m.charges.values())
    swapped = Counter(m.swap.values())
    out = {}
    for path in m.groups:
        used = sum(n for group, n in own.items() if under(group, path))
        out[path] = (used, used + sum(n for group, n in swapped.items() if under(group, path)))
    return out


def memsw_usage(m: Memcg, path: str) -> int:
    """``memcg->memsw``: memory and the swap slots charged to the group and its descendants."""
    return usage(m, path) + sum(1 for group in m.swap.values() if under(group, path))


def set_limit(k: Kernel, path: str, knob: str, value: int) -> tuple[Kernel, Outcome]:
    """Write ``memory.limit_in_bytes`` or ``memory.memsw.limit_in_bytes`` (``-1``: no limit)."""
    k = enable(k)
    m = k.memcg
    if path not in m.groups:
        return k, ENOENT
    if path == ROOT:
        return k, EINVAL
    pages = PAGE_COUNTER_MAX if value < 0 else min(value // PAGE_SIZE, PAGE_COUNTER_MAX)
    g = m.groups[path]
    if knob == "memory.limit_in_bytes":
        if pages > g.memsw_limit:
            return k, EINVAL
        if usage(m, path) > pages:
            return k, EBUSY
        g = replace(g, limit=pages)
    else:
        if pages < g.limit:
            return k, EINVAL
        if memsw_usage(m, path) > pages:
            return k, EBUSY
        g = replace(g, memsw_limit=pages)
    return replace(k, memcg=replace(m, groups=updated(m.groups, path, g))), Ok()


def stat(k: Kernel, path: str) -> Outcome:
    """The group's files: usage, watermark, limit and failcnt of memory and memsw, ``memory.stat``'s ``cache``,
    ``rss``, ``swap`` (of the group itself, as v1's non-``total_`` lines) and ``memory.oom_control``'s counters.

    ``pagetables`` (the v2 ``memory.stat`` line; v1 counts them only in the usage) is given in bytes too.
    """
    m = k.memcg
    if path not in m.groups:
        return ENOENT
    g = m.groups[path]
    own = [kind for group, kind in m.charges.values() if group == path]
    values = (
        ("memory.usage_in_bytes", usage(m, path) * PAGE_SIZE),
        ("memory.max_usage_in_bytes", g.max_usage * PAGE_SIZE),
        ("memory.limit_in_bytes", g.limit * PAGE_SIZE),
        ("memory.failcnt", g.failcnt),
        ("memory.memsw.usage_in_bytes", memsw_usage(m, path) * PAGE_SIZE),
        ("memory.memsw.max_usage_in_bytes", g.memsw_max_usage * PAGE_SIZE),
        ("memory.memsw.limit_in_bytes", g.memsw_limit * PAGE_SIZE),
        ("memory.memsw.failcnt", g.memsw_failcnt),
        ("cache", own.count("file") * PAGE_SIZE),
        ("rss", own.count("anon") * PAGE_SIZE),
        ("pagetables", own.count("table") * PAGE_SIZE),
        ("swap", sum(1 for group in m.swap.values() if group == path) * PAGE_SIZE),
        ("oom", g.oom),
        ("oom_kill", g.oom_kill),
    )
    return MemcgStat(values)


# --- charging an operation -----------------------------------------------------------------------------------


def recharge(before: Kernel, after: Kernel, actor: int | None) -> Kernel:
    """The charges after an operation of process ``actor`` (None: no process): freed frames uncharged,
    new ones charged (a frame reused for another kind counts as new), tasks following forks and exits."""
    m = before.memcg
    tasks = {pid: g for pid, g in m.tasks.items() if pid in after.procs}
    if actor is not None and actor in m.tasks:
        for pid in after.procs:
            if pid not in before.procs:
                tasks[pid] = m.tasks[actor]
    mine = ROOT if actor is None else group_of(m, actor)
    charges = {}
    for pfn, kind in chargeable(after).items():
        old = m.charges.get(pfn)
        charges[pfn] = old if old is not None and old[1] == kind else (mine, kind)
    memcg = replace(
        m,
        tasks=MappingProxyType(dict(sorted(tasks.items()))),
        charges=MappingProxyType(dict(sorted(charges.items()))),
    )
    return replace(after, memcg=memcg)


def over_limit(m: Memcg, path: str) -> tuple[str, bool] | None:
    """``page_counter_try_charge`` from ``path`` up: the first group past a limit, and whether it is memsw's."""
    used = usages(m)
    while True:
        g = m.groups[path]
        if used[path][0] > g.limit:
            return path, False
        if used[path][1] > g.memsw_limit:
            return path, True
        if g.parent is None:
            return None
        path = g.parent


def watermarks(k: Kernel) -> Kernel:
    """Each group's ``max_usage`` raised to its usage (``page_counter_charge``'s watermark)."""
    m = k.memcg
    groups = dict(m.groups)
    counts = usages(m)
    for path, g in m.groups.items():
        used, both = counts[path]
        if used > g.max_usage or both > g.memsw_max_usage:
            groups[path] = replace(g, max_usage=max(used, g.max_usage), memsw_max_usage=max(both, g.memsw_max_usage))
    return k if groups == dict(m.groups) else replace(k, memcg=replace(m, groups=MappingProxyType(groups)))


def bump(k: Kernel, path: str, **counts: int) -> Kernel:
    """Add ``counts`` to the group's counters."""
    g = k.memcg.groups[path]
    g = replace(g, **{name: getattr(g, name) + n for name, n in counts.items()})
    return replace(k, memcg=replace(k.memcg, groups=updated(k.memcg.groups, path, g)))


def get_max(k: Kernel, path: str) -> int:
    """``mem_cgroup_get_max`` of a v1 group with swap accounting: ``limit + min(memsw - limit, total swap)``."""
    g = k.memcg.groups[path]
    return memcg_domain_total(g.limit, g.memsw_limit, k.swap_slots)


def preorder(m: Memcg, path: str) -> list[str]:
    """``mem_cgroup_iter`` below ``path``: the group, then each child's subtree, children by name."""
    out = [path]
    for child in sorted(p for p, g in m.groups.items() if g.parent == path):
        out.extend(preorder(m, child))
    return out


def candidates(k: Kernel, path: str) -> list[tuple[int, int]]:
    """The eligible processes of the group and its descendants, with their badness, in scan order."""
    totalpages = get_max(k, path)
    out = []
    for group in preorder(k.memcg, path):
        for pid in sorted(k.procs):
            if group_of(k.memcg, pid) == group:
                points = badness(k, pid, totalpages)
                if points is not None:
                    out.append((pid, points))
    return out


def select_victim(k: Kernel, path: str) -> tuple[int, int] | None:
    """``mem_cgroup_scan_tasks(oom_evaluate_task)``: the highest badness, a later task winning a tie."""
    return chosen_victim(candidates(k, path))


def charged_step(
    k: Kernel, run: Step, trial: Step, actor: int | None, fault: bool, kill: Exit
) -> tuple[Kernel, Outcome]:
    """Run an operation under the memory cgroups: charge it, and on a limit run the group's OOM killer.

    ``run`` is the operation as the implementation chose its frames, ``trial`` the same with the spec's own
    choices (the frames a kill freed change what is free, not how many pages the operation charges).
    """
    if not k.memcg.enabled:
        return run(k)
    kills: list[OomKill] = []
    path = ""
    while True:
        exact = not kills
        try:
            after, outcome = (run if exact else trial)(k)
        except DisallowedChoice:
            exact = False
            after, outcome = trial(k)
        after = recharge(k, after, actor)
        start = group_of(k.memcg, actor) if actor is not None and actor in k.procs else ROOT
        over = over_limit(after.memcg, start)
        if over is None:
            if not exact:
                after, outcome = run(k)
                after = recharge(k, after, actor)
            if kills:  # the kills' effects come first, as the kernel's OOM ran inside the operation
                after = replace(after, events=(*k.events, *after.events), lru_steps=k.lru_steps + after.lru_steps)
            after = watermarks(after)
            return after, (MemcgOom(path, tuple(kills), outcome) if kills else outcome)
        path, memsw = over
        k = bump(k, path, **{"memsw_failcnt" if memsw else "failcnt": 1, "oom": 1})
        if k.oom_sysctls.get("vm.panic_on_oom", 0) == 2:
            return k, OomPanic("", "Out of memory: compulsory panic_on_oom is enabled")
        chosen = select_victim(k, path)
        if chosen is None:
            final: Outcome = MemcgRetry(path, NO_KILLABLE) if fault else ENOMEM
            return k, MemcgOom(path, tuple(kills), final) if kills else final
        victim, points = chosen
        kills.append(kill_report(k, victim, points, MEMCG_OOM))
        k = bump(k, group_of(k.memcg, victim), oom_kill=1)
        killed, _ = kill(k, victim)
        k = watermarks(recharge(k, killed, None))
        if victim == actor:
            return k, MemcgOom(path, tuple(kills), None)
