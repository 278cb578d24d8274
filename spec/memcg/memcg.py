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
  ``failcnt`` and the group's ``max`` event (``memcg_memory_event(mem_over_limit, MEMCG_MAX)``); then the group
  reclaims its own pages (:func:`spec.memcg.reclaim.try_to_free`, at least ``SWAP_CLUSTER_MAX``, sparing the
  groups ``memory.min``/``memory.low`` protect) and the charge is retried: while reclaim frees pages, once
  more after the stock is drained, and ``MAX_RECLAIM_RETRIES`` (16) more times with nothing freed.  Then the
  group's OOM killer runs (``mem_cgroup_oom``, ``memory_events[MEMCG_OOM]`` +1): ``check_panic_on_oom`` panics
  only for ``vm.panic_on_oom=2``; ``oom_kill_allocating_task`` is ignored for a memcg OOM; the victim is the
  highest ``oom_badness`` among the processes of ``mem_over_limit`` and its descendants
  (``mem_cgroup_scan_tasks``: groups in pre-order, here tasks by pid within a group; a later one wins a tie),
  with ``mem_cgroup_get_max(mem_over_limit)`` as ``totalpages``: v1 with swap accounting,
  ``limit + min(memsw_limit - limit, total_swap_pages)``.  The kill ("Memory cgroup out of memory") counts
  ``oom_kill`` on the victim's group (with v2's ``memory.oom.group`` the victim's whole group goes,
  :func:`oom_kill`), and the charge is retried with the retries starting over.  With no eligible process
  ("Out of memory and no killable processes..."): no panic for a memcg; the charge fails, and a page fault
  returns ``VM_FAULT_OOM``, which ``pagefault_out_of_memory`` turns into a retry of the same fault for ever
  (here one :class:`~spec.outcome.MemcgRetry` per attempt, the state unchanged but the counters), while a
  syscall's allocation (fork's page tables, a pin's fault: ``get_user_pages``) returns ENOMEM.  The per-CPU
  charge stock (``consume_stock``, batches of ``MEMCG_CHARGE_BATCH``) is not modelled: the counters hold the
  pages charged, no more.
- **memory.high** (cgroup v2, :mod:`spec.memcg.v2`): a charge that leaves a group above its high succeeds; on
  the way back to user space the task reclaims from each group above its high (``high`` event), is throttled
  while far above it, and is never killed for it (:func:`handle_over_high`).

How an operation is charged here: the operation runs, its new frames are charged, and if a group is then
past its limit the operation is taken back, the group's OOM killer kills (choosing its victim in the state
before the operation, the state the kernel's charge sees) and the operation runs again, until it fits or
nothing is left to kill.  The victim's badness therefore never counts the page being charged, as in Linux.

Not modelled yet: slab charges, swap charging (``memory.swap.*``, v1's memsw counting swap slots) and the
throttling sleep's length as an observation.  ``memory.high``, ``memory.min``, ``memory.low`` and
``memory.oom.group`` are files of the v2 hierarchy only (``memory_files``; v1's ``mem_cgroup_legacy_files`` has
none of them, and ``mem_cgroup_get_oom_group`` returns NULL unless ``cgroup_subsys_on_dfl``), so a v1 group
cannot set them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import MappingProxyType

from lang.errors import DisallowedChoice
from lang.records import replace
from spec.memcg.reclaim import MAX_RECLAIM_RETRIES, SWAP_CLUSTER_MAX, try_to_free
from spec.memcg.state import PAGE_COUNTER_MAX, PAGE_SIZE, ROOT, Group, Memcg, under
from spec.mm.kernel import NO_CHOICES, Choices, Kernel, space, updated
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


def set_limit(
    k: Kernel, path: str, knob: str, value: int, choices: Choices = NO_CHOICES
) -> tuple[Kernel, Outcome]:
    """Write ``memory.limit_in_bytes`` or ``memory.memsw.limit_in_bytes`` (``-1``: no limit):
    ``mem_cgroup_resize_max``, which reclaims from the group while its usage is above the new limit (after
    draining the stock once) and answers EBUSY when a reclaim frees nothing, the pages reclaimed so far staying
    reclaimed; a memsw limit reclaims without swapping (``MEMCG_RECLAIM_MAY_SWAP`` clear)."""
    k = enable(k)
    m = k.memcg
    if path not in m.groups or m.v2:
        return k, ENOENT
    if path == ROOT:
        return k, EINVAL
    pages = PAGE_COUNTER_MAX if value < 0 else min(value // PAGE_SIZE, PAGE_COUNTER_MAX)
    g = m.groups[path]
    memsw = knob != "memory.limit_in_bytes"
    if (pages < g.limit) if memsw else (pages > g.memsw_limit):
        return k, EINVAL
    call = 0
    while (memsw_usage(k.memcg, path) if memsw else usage(k.memcg, path)) > pages:
        k, freed = try_to_free(k, path, 1, choices, call, may_swap(k.memcg, path, memsw))
        call += 1
        if not freed:
            return k, EBUSY
    g = k.memcg.groups[path]
    g = replace(g, memsw_limit=pages) if memsw else replace(g, limit=pages)
    return replace(k, memcg=replace(k.memcg, groups=updated(k.memcg.groups, path, g))), Ok()


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


def charged_new(before: Memcg, after: Memcg) -> bool:
    """The operation charged a frame (``try_charge_memcg`` runs only for a new charge: an operation that charges
    nothing never fails at a limit, even in a group a v2 ``memory.max`` left above it)."""
    old = before.charges
    return any(pfn not in old or old[pfn][1] != kind for pfn, (_, kind) in after.charges.items())


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


def may_swap(m: Memcg, path: str, memsw: bool) -> bool:
    """A reclaim for group ``path`` may swap: not for a memsw limit (``MEMCG_RECLAIM_MAY_SWAP`` cleared), and, as
    swap slots are not charged here, not while a group from ``path`` up has a memsw limit (Linux would swap and
    then find the memsw counter as full as before; the model stops short of the swap it could not count)."""
    if memsw:
        return False
    while True:
        g = m.groups[path]
        if g.memsw_limit < PAGE_COUNTER_MAX:
            return False
        if g.parent is None:
            return True
        path = g.parent


def excess(m: Memcg, path: str, memsw: bool) -> int:
    """How many pages group ``path`` holds past the limit of its counter (memory or memsw)."""
    g = m.groups[path]
    return memsw_usage(m, path) - g.memsw_limit if memsw else usage(m, path) - g.limit


def oom_group_of(k: Kernel, victim: int, domain: str) -> str | None:
    """``mem_cgroup_get_oom_group(victim, domain)``: on cgroup v2, the highest group with ``memory.oom.group``
    set from the victim's group up to the OOM's domain (both included); None on v1, for a victim in the root,
    or when none is set."""
    m = k.memcg
    path = group_of(m, victim)
    if not m.v2 or path == ROOT or not under(path, domain):
        return None
    chosen = None
    while True:
        if m.groups[path].oom_group:
            chosen = path
        if path in (domain, ROOT):
            return chosen
        parent = m.groups[path].parent
        assert parent is not None
        path = parent


def oom_kill(k: Kernel, path: str, kill: Exit) -> tuple[Kernel, list[OomKill]] | None:
    """``mem_cgroup_out_of_memory(path)`` after its ``oom`` event: the victim's kill (``oom_kill`` on its group)
    and, if it is in a ``memory.oom.group``, ``oom_kill_memcg_member`` over every task of that group but init and
    those at -1000 (``oom_group_kill`` on the group), each its own "Killed process" report.  The victim is still
    a task while the group is scanned (it has only been sent SIGKILL), so it is killed, reported and counted a
    second time in its place in the scan, as tools/testing/selftests/cgroup/test_memcontrol.c
    ``test_memcg_oom_group_score_events`` expects (``oom_kill`` 3 for two killable tasks).  None when nothing is
    eligible."""
    chosen = select_victim(k, path)
    if chosen is None:
        return None
    victim, points = chosen
    group = oom_group_of(k, victim, path)
    members = [victim]
    if group is not None:
        k = bump(k, group, oom_group_kill=1)
        members += [
            pid
            for g in preorder(k.memcg, group)
            for pid in sorted(k.procs)
            if group_of(k.memcg, pid) == g and pid != 1 and k.oom_score_adj.get(pid, 0) != -1000
        ]
    totalpages = get_max(k, path)
    kills: list[OomKill] = []
    first: OomKill | None = None
    first_group = ROOT
    for pid in members:
        if pid == victim and first is not None:
            kills.append(first)
            k = bump(k, first_group, oom_kill=1)
            continue
        score = points if pid == victim else badness(k, pid, totalpages)
        report = kill_report(k, pid, score or 0, MEMCG_OOM)
        kills.append(report)
        if pid == victim:
            first, first_group = report, group_of(k.memcg, pid)
        k = bump(k, group_of(k.memcg, pid), oom_kill=1)
        killed, _ = kill(k, pid)
        k = watermarks(recharge(k, killed, None))
    return k, kills


HZ = 250
"""CONFIG_HZ of the kernel the model follows (Debian's 6.12 x86-64 build)."""
MEMCG_CHARGE_BATCH = 64
MEMCG_DELAY_PRECISION_SHIFT, MEMCG_DELAY_SCALING_SHIFT = 20, 14
MEMCG_MAX_HIGH_DELAY_JIFFIES = 2 * HZ


def chain(m: Memcg, path: str) -> list[str]:
    """``path`` and its ancestors below the root (``parent_mem_cgroup`` until ``mem_cgroup_is_root``)."""
    out = []
    while path != ROOT:
        out.append(path)
        parent = m.groups[path].parent
        assert parent is not None
        path = parent
    return out


def high_delay(m: Memcg, path: str, nr_pages: int) -> int:
    """``calculate_high_delay(memcg, nr_pages, mem_find_max_overage(memcg))`` capped at
    ``MEMCG_MAX_HIGH_DELAY_JIFFIES`` (swap's overage is 0: ``memory.swap.high`` is not modelled)."""
    max_overage = 0
    for g in chain(m, path):
        used, high = usage(m, g), m.groups[g].high
        if used > high:
            high = max(high, 1)
            max_overage = max(max_overage, ((used - high) << MEMCG_DELAY_PRECISION_SHIFT) // high)
    if not max_overage:
        return 0
    penalty = (max_overage * max_overage * HZ) >> MEMCG_DELAY_PRECISION_SHIFT >> MEMCG_DELAY_SCALING_SHIFT
    return min(penalty * nr_pages // MEMCG_CHARGE_BATCH, MEMCG_MAX_HIGH_DELAY_JIFFIES)


def over_high(k: Kernel, path: str) -> bool:
    """Some group from ``path`` up is above its ``memory.high`` (``try_charge_memcg`` sets
    ``memcg_nr_pages_over_high``)."""
    return any(usage(k.memcg, g) > k.memcg.groups[g].high for g in chain(k.memcg, path))


def handle_over_high(k: Kernel, path: str, nr_pages: int, choices: Choices, call: int) -> tuple[Kernel, int]:
    """``mem_cgroup_handle_over_high`` on the way back to user space after ``nr_pages`` were charged from group
    ``path`` while it or an ancestor was above ``memory.high``: ``reclaim_high`` counts a ``high`` event on each
    group of the chain above its high and reclaims ``nr_pages`` (then ``SWAP_CLUSTER_MAX`` on a retry) from it;
    while the penalty (``calculate_high_delay``) is above ``HZ / 100`` it retries, without limit while reclaim
    frees pages and ``MAX_RECLAIM_RETRIES`` times when it frees nothing, then the task sleeps for the penalty
    (``schedule_timeout_killable``).  It never kills and never fails the charge.  Returns the state and the
    reclaim calls made so far."""
    retries, in_retry = MAX_RECLAIM_RETRIES, False
    while True:
        reclaimed = 0
        for g in chain(k.memcg, path):
            if usage(k.memcg, g) <= k.memcg.groups[g].high:
                continue
            k = bump(k, g, high_events=1)
            k, freed = try_to_free(k, g, SWAP_CLUSTER_MAX if in_retry else nr_pages, choices, call)
            call += 1
            reclaimed += freed
        if high_delay(k.memcg, path, nr_pages) <= HZ // 100:
            return k, call
        if not reclaimed:
            if not retries:
                return k, call
            retries -= 1
        in_retry = True


def charged_step(
    k: Kernel, run: Step, trial: Step, actor: int | None, fault: bool, kill: Exit, choices: Choices = NO_CHOICES
) -> tuple[Kernel, Outcome]:
    """Run an operation under the memory cgroups: charge it; on a limit, reclaim inside the group at its limit
    and retry, and run the group's OOM killer once reclaim gives up; above ``memory.high``, reclaim after it.

    ``run`` is the operation as the implementation chose its frames, ``trial`` the same with the spec's own
    choices (the frames a kill freed change what is free, not how many pages the operation charges).  The charge
    loop is ``try_charge_memcg``'s: each refused attempt counts in the counter's ``failcnt`` and the group's
    ``max`` event and reclaims the group's excess (at least ``SWAP_CLUSTER_MAX``); it retries while reclaim
    frees pages, once more after draining the per-CPU stock, and ``MAX_RECLAIM_RETRIES`` more times with
    nothing freed; then ``mem_cgroup_oom`` (``oom`` event), and after a kill the retries start over.  An
    attempt after a reclaim that made no step at all would see the same state, so it is not run again.
    """
    if not k.memcg.enabled:
        return run(k)
    kills: list[OomKill] = []
    path = ""
    start_events, start_steps = k.events, k.lru_steps
    retries, drained, calls = MAX_RECLAIM_RETRIES, False, 0
    while True:
        exact = not kills
        try:
            after, outcome = (run if exact else trial)(k)
        except DisallowedChoice:
            exact = False
            after, outcome = trial(k)
        after = recharge(k, after, actor)
        start = group_of(k.memcg, actor) if actor is not None and actor in k.procs else ROOT
        over = over_limit(after.memcg, start) if charged_new(k.memcg, after.memcg) else None
        if over is None:
            if not exact:
                after, outcome = run(k)
                after = recharge(k, after, actor)
            if kills or k.lru_steps != start_steps:  # the kills' and reclaims' effects come first
                after = replace(after, events=(*k.events[len(start_events) :], *after.events))
            after = watermarks(after)
            charged = sum(1 for pfn, c in after.memcg.charges.items() if c[0] == start and pfn not in k.memcg.charges)
            if after.memcg.v2 and actor is not None and actor in after.procs and charged and over_high(after, start):
                after, calls = handle_over_high(after, start, charged, choices, calls)
            return after, (MemcgOom(path, tuple(kills), outcome) if kills else outcome)
        path, memsw = over
        need = excess(after.memcg, path, memsw)
        while True:
            k = bump(k, path, **{"memsw_failcnt" if memsw else "failcnt": 1, "max_events": 1})
            steps = k.lru_steps
            k, freed = try_to_free(k, path, need, choices, calls, may_swap(k.memcg, path, memsw))
            calls += 1
            if freed:
                break
            if not drained:
                drained = True
            elif retries:
                retries -= 1
            else:
                k = bump(k, path, oom=1)
                if k.oom_sysctls.get("vm.panic_on_oom", 0) == 2:
                    return k, OomPanic("", "Out of memory: compulsory panic_on_oom is enabled")
                done = oom_kill(k, path, kill)
                if done is None:
                    final: Outcome = MemcgRetry(path, NO_KILLABLE) if fault else ENOMEM
                    return k, MemcgOom(path, tuple(kills), final) if kills else final
                k, killed = done
                kills += killed
                if actor is not None and actor not in k.procs:
                    return k, MemcgOom(path, tuple(kills), None)
                retries = MAX_RECLAIM_RETRIES
                break
            if k.lru_steps != steps:
                break
