"""Memory cgroups of the implementation kernel (cgroup v1: mm/memcontrol.c, mm/memcontrol-v1.c, mm/page_counter.c).

Each group has two ``page_counter``-style counters, ``memory`` and ``memsw``, kept as running totals: a charge
adds one page to the group's counter and every ancestor's (``page_counter_charge`` walks ``c->parent``), an
uncharge takes it off the same way, and ``page_counter_try_charge`` is the walk from the charging group up
that stops at the first counter past its ``max`` (``failcnt`` +1 there).  ``memcg_data`` records the group and
kind of every charged frame; ``swap_cgroup`` the group of every swap slot in use.

After each operation :meth:`MemCgroups.sync` compares the frames the kernel holds (user pages but hugetlb, every
process's page tables and PML4) with ``memcg_data``: new ones are charged to the group of the operation's
process (the root when none), freed ones uncharged.  An operation of a process whose group chain has a limit
is first run on a clone of the kernel (:meth:`MemCgroups.charged`): past a limit, the group's OOM killer
(mm/oom_kill.c via ``mem_cgroup_oom``) kills the highest ``oom_badness`` among the processes of the group
and its descendants, with
``mem_cgroup_get_max()`` (``limit + min(memsw limit - limit, total swap)``) as the domain's total, and the
operation is tried again; with nothing to kill a fault answers the retry outcome (``pagefault_out_of_memory``
returns and the fault is retried for ever) and a syscall ENOMEM.

Before the OOM a refused charge reclaims inside the group at its limit (:meth:`MemCgroups.try_to_free`,
``try_to_free_mem_cgroup_pages``): the groups of its subtree in pre-order, each scanned as ``get_scan_count``
scans a protected lruvec (``size - size * protection / (usage + 1)``, at least ``SWAP_CLUSTER_MAX``, shifted by
the priority, ``DEF_PRIORITY`` down to 0), those below their effective ``memory.min`` never and those below
``memory.low`` only in a second pass when the first freed nothing; the charge retries as ``try_charge_memcg``
does (``MAX_RECLAIM_RETRIES``).  On cgroup v2 the group files ``memory.max``, ``memory.high``, ``memory.low``,
``memory.min``, ``memory.oom.group``, ``memory.reclaim``, ``memory.events`` and ``memory.stat`` work as
mm/memcontrol.c's ``memory_files`` do; a charge left above ``memory.high`` is reclaimed on the way back to user
space (``mem_cgroup_handle_over_high``) and never kills.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain, compress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel

Result = dict[str, Any]
ROOT = "/"
PAGE_SIZE = 4096
PAGE_COUNTER_MAX = ((1 << 63) - 1) // PAGE_SIZE
NO_KILLABLE = "Out of memory and no killable processes..."
MEMCG_OOM = "Memory cgroup out of memory"
PG_ANON, PG_HUGE = 1, 4
ANON_INACTIVE, FILE_INACTIVE = 0, 2
EVICT, ACTIVATE, DEACTIVATE = 0, 1, 2
DEF_PRIORITY, SWAP_CLUSTER_MAX, MAX_RECLAIM_RETRIES = 12, 32, 16
HZ, MEMCG_CHARGE_BATCH = 250, 64
OOM_SCORE_ADJ_MIN = -1000
V2_FILES = ("memory.max", "memory.high", "memory.low", "memory.min", "memory.oom.group", "memory.reclaim")
EVENTS = (
    ("low", "low_events"),
    ("high", "high_events"),
    ("max", "max_events"),
    ("oom", "oom"),
    ("oom_kill", "oom_kill"),
    ("oom_group_kill", "oom_group_kill"),
)
Flush = Callable[[], None]


def effective_protection(usage: int, parent_usage: int, setting: int, parent_effective: int, siblings: int) -> int:
    """mm/page_counter.c ``effective_protection`` without ``memory_recursiveprot`` (the default mount)."""
    protected = min(usage, setting)
    if siblings > parent_effective:
        return protected * parent_effective // siblings
    return protected


class Counter:
    """A ``struct page_counter``: usage, max, high, low, min, watermark, failcnt, and the parent counter."""

    __slots__ = ("failcnt", "high", "low", "max", "min", "parent", "usage", "watermark")

    def __init__(self, parent: Counter | None) -> None:
        self.parent = parent
        self.usage = self.watermark = self.failcnt = self.low = self.min = 0
        self.max = self.high = PAGE_COUNTER_MAX

    def charge(self, n: int) -> None:
        """``page_counter_charge``: this counter and every ancestor, watermarks raised."""
        c: Counter | None = self
        while c is not None:
            c.usage += n
            c.watermark = max(c.watermark, c.usage)
            c = c.parent

    def uncharge(self, n: int) -> None:
        """``page_counter_uncharge``."""
        c: Counter | None = self
        while c is not None:
            c.usage -= n
            c = c.parent

    def copy(self, parent: Counter | None) -> Counter:
        new = Counter(parent)
        new.usage, new.watermark, new.failcnt, new.max = self.usage, self.watermark, self.failcnt, self.max
        new.high, new.low, new.min = self.high, self.low, self.min
        return new


class Cgroup:
    """A ``struct mem_cgroup``: its counters, ``oom_group`` and its own event counts
    (``memory_events_local``)."""

    __slots__ = (
        "high_events", "low_events", "max_events", "memory", "memsw", "oom", "oom_group", "oom_group_kill",
        "oom_kill", "parent",
    )
    memory: Counter
    memsw: Counter
    parent: Cgroup | None

    def __init__(self, parent: Cgroup | None) -> None:
        self.parent = parent
        self.memory = Counter(parent.memory if parent else None)
        self.memsw = Counter(parent.memsw if parent else None)
        self.oom = self.oom_kill = self.high_events = self.max_events = self.low_events = self.oom_group_kill = 0
        self.oom_group = False


class MemCgroups:
    """Every memory cgroup of kernel ``k``."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.enabled = self.v2 = False
        self.groups: dict[str, Cgroup] = {ROOT: Cgroup(None)}
        self.tasks: dict[int, str] = {}
        self.memcg_data: dict[int, tuple[str, str]] = {}

    def clone(self, k: Kernel) -> MemCgroups:
        """An independent copy for the cloned kernel ``k``."""
        new = MemCgroups(k)
        new.enabled, new.v2 = self.enabled, self.v2
        new.groups = {}
        for path in sorted(self.groups, key=lambda p: (p != ROOT, p.count("/"), p)):
            old = self.groups[path]
            parent = None if old.parent is None else new.groups[self.parent_path(path)]
            g = Cgroup.__new__(Cgroup)
            g.parent = parent
            g.memory = old.memory.copy(parent.memory if parent else None)
            g.memsw = old.memsw.copy(parent.memsw if parent else None)
            g.oom, g.oom_kill, g.oom_group = old.oom, old.oom_kill, old.oom_group
            g.high_events, g.max_events, g.low_events = old.high_events, old.max_events, old.low_events
            g.oom_group_kill = old.oom_group_kill
            new.groups[path] = g
        new.tasks, new.memcg_data = dict(self.tasks), dict(self.memcg_data)
        return new

    @staticmethod
    def parent_path(path: str) -> str:
        return path.rsplit("/", 1)[0] if "/" in path else ROOT

    # --- what the kernel holds -----------------------------------------------------------------------

    def held(self) -> dict[int, str]:
        """Frames a charge covers, by kind."""
        k = self.k
        out: dict[int, str] = {}
        flags, frames = k.flags, range(len(k.flags))
        for pfn in set(chain(compress(frames, k.refcount), compress(frames, k.mapcount), compress(frames, flags))):
            if not flags[pfn] & PG_HUGE:
                out[pfn] = "anon" if flags[pfn] & PG_ANON else "file"
        for proc in k.procs.values():
            out[proc.root] = "table"
            for _, _, _, pfn in k._tables(proc.root, 4, 0, 0, 1 << 35):
                out[pfn] = "table"
        return out

    def group(self, pid: int | None) -> str:
        return ROOT if pid is None else self.tasks.get(pid, ROOT)

    def enable(self) -> None:
        """The first group: what is held so far is charged to the root."""
        if self.enabled:
            return
        self.enabled = True
        root = self.groups[ROOT]
        for pfn, kind in self.held().items():
            self.memcg_data[pfn] = (ROOT, kind)
            root.memory.charge(1)
            root.memsw.charge(1)

    def uncharge(self, pfn: int) -> None:
        """``mem_cgroup_uncharge``: the page is freed."""
        group, _ = self.memcg_data.pop(pfn)
        g = self.groups[group]
        g.memory.uncharge(1)
        g.memsw.uncharge(1)

    def charge(self, pfn: int, group: str, kind: str) -> None:
        """``mem_cgroup_charge`` (``commit_charge``)."""
        self.memcg_data[pfn] = (group, kind)
        g = self.groups[group]
        g.memory.charge(1)
        g.memsw.charge(1)

    def sync(self, actor: int | None, before_procs: set[int]) -> None:
        """Charge what the last operation of ``actor`` allocated, uncharge what it freed."""
        k = self.k
        if actor is not None and actor in self.tasks:
            for pid in k.procs:
                if pid not in before_procs:
                    self.tasks[pid] = self.tasks[actor]
        for pid in [p for p in self.tasks if p not in k.procs]:
            del self.tasks[pid]
        mine = self.group(actor if actor is None or actor in before_procs else None)
        held = self.held()
        for pfn in [p for p, (_, kind) in self.memcg_data.items() if held.get(p) != kind]:
            self.uncharge(pfn)
        for pfn, kind in held.items():
            if pfn not in self.memcg_data:
                self.charge(pfn, mine, kind)

    # --- limits and the group OOM ---------------------------------------------------------------------

    def limited(self, pid: int | None) -> bool:
        """Some group from ``pid``'s up has a limit or a ``memory.high``."""
        path = self.group(pid)
        while path != ROOT:
            g = self.groups[path]
            if g.memory.max < PAGE_COUNTER_MAX or g.memsw.max < PAGE_COUNTER_MAX or g.memory.high < PAGE_COUNTER_MAX:
                return True
            path = self.parent_path(path)
        return False

    def over(self, pid: int | None) -> tuple[str, bool] | None:
        """``page_counter_try_charge`` from ``pid``'s group up: the first counter past its max."""
        path = self.group(pid)
        while True:
            g = self.groups[path]
            if g.memory.usage > g.memory.max:
                return path, False
            if g.memsw.usage > g.memsw.max:
                return path, True
            if path == ROOT:
                return None
            path = self.parent_path(path)

    def get_max(self, path: str) -> int:
        """``mem_cgroup_get_max``: v1 with swap accounting."""
        g = self.groups[path]
        return g.memory.max + min(g.memsw.max - g.memory.max, self.k.pressure.swap_slots)

    def subtree(self, path: str) -> list[str]:
        """``mem_cgroup_iter`` pre-order below ``path``."""
        out = [path]
        for child in sorted(p for p in self.groups if p != ROOT and self.parent_path(p) == path):
            out.extend(self.subtree(child))
        return out

    def select(self, path: str) -> tuple[int, int] | None:
        """``mem_cgroup_scan_tasks(oom_evaluate_task)`` over the group and its descendants."""
        totalpages = self.get_max(path)
        chosen: tuple[int, int] | None = None
        for group in self.subtree(path):
            for pid in sorted(self.k.procs):
                if self.group(pid) != group:
                    continue
                points = self.k.oom.badness(pid, totalpages)
                if points is None or (chosen is not None and points < chosen[1]):
                    continue
                chosen = (pid, points)
        return chosen

    # --- reclaim inside a group ---------------------------------------------------------------------

    def protections(self, target: str) -> dict[str, tuple[int, int]]:
        """``mem_cgroup_calculate_protection`` of every group below ``target``, parents first."""
        out: dict[str, tuple[int, int]] = {target: (0, 0)}
        for path in self.subtree(target)[1:]:
            c = self.groups[path].memory
            parent = self.parent_path(path)
            if not c.usage:
                out[path] = (0, 0)
            elif parent == target:
                out[path] = (c.min, c.low)
            else:
                kids = [self.groups[p].memory for p in self.groups if p != ROOT and self.parent_path(p) == parent]
                pmin, plow = out[parent]
                pusage = self.groups[parent].memory.usage
                out[path] = (
                    effective_protection(c.usage, pusage, c.min, pmin, sum(min(k.usage, k.min) for k in kids)),
                    effective_protection(c.usage, pusage, c.low, plow, sum(min(k.usage, k.low) for k in kids)),
                )
        del out[target]
        return out

    def group_pages(self, path: str, lru: int) -> list[int]:
        """The pages of group ``path`` on list ``lru``, tail first (the group's own lruvec)."""
        data = self.memcg_data
        return [pfn for pfn in self.k.pressure.from_tail(lru) if data.get(pfn, (ROOT, ""))[0] == path]

    def shrink_group(self, path: str, scan: int, want: int, flush: Flush, may_swap: bool) -> tuple[int, int]:
        """``shrink_lruvec`` of one group: scan up to ``scan`` pages of its inactive lists from the tail
        (activate the referenced, evict the rest that can go), then deactivate from its active lists; (freed,
        steps)."""
        p = self.k.pressure
        done = steps = 0
        kinds = (FILE_INACTIVE, ANON_INACTIVE) if may_swap and p.swap_slots else (FILE_INACTIVE,)
        for inactive in kinds:
            for pfn in self.group_pages(path, inactive):
                if steps >= scan or done >= want:
                    return done, steps
                if p.referenced(pfn):
                    p.record(ACTIVATE, pfn)
                    p.age(pfn)
                    p.move(pfn, inactive + 1)
                    p.age_nonresident()
                    flush()
                elif p.evictable(pfn):
                    p.record(EVICT, pfn)
                    p.evict(pfn, flush)
                    self.uncharge(pfn)
                    done += 1
                else:
                    continue
                p.lru_steps += 1
                steps += 1
            for pfn in self.group_pages(path, inactive + 1):
                if steps >= scan or done >= want:
                    return done, steps
                p.record(DEACTIVATE, pfn)
                p.age(pfn)
                p.move(pfn, inactive)
                flush()
                p.lru_steps += 1
                steps += 1
        return done, steps

    def evictable_left(self, groups: list[str], may_swap: bool) -> bool:
        """Some page of ``groups`` could still be evicted."""
        p = self.k.pressure
        kinds = (FILE_INACTIVE, ANON_INACTIVE) if may_swap and p.swap_slots else (FILE_INACTIVE,)
        return any(p.evictable(pfn) for g in groups for lru in kinds for pfn in self.group_pages(g, lru) +
                   self.group_pages(g, lru + 1))

    def reclaim_pass(self, target: str, second: bool, want: int, flush: Flush, may_swap: bool) -> tuple[int, bool]:
        """One pass of ``do_try_to_free_pages``: the priority loop over the groups it may reclaim; (freed, whether
        a group was skipped for its low boundary)."""
        protection = self.protections(target)
        scope: list[tuple[str, int]] = []
        skipped = False
        for path in self.subtree(target):
            usage = self.groups[path].memory.usage
            emin, elow = (0, 0) if path in (target, ROOT) else protection[path]
            if path not in (target, ROOT) and emin >= usage:
                continue
            if path not in (target, ROOT) and elow >= usage:
                skipped = True
                if not second:
                    continue
                self.groups[path].low_events += 1
            scope.append((path, elow if not second and elow > emin else emin))
        done = 0
        p = self.k.pressure
        lists = [lru + a for lru in ((FILE_INACTIVE, ANON_INACTIVE) if may_swap and p.swap_slots else (FILE_INACTIVE,))
                 for a in (0, 1)]
        sizes = {path: 0 for path, _ in scope}
        for lru in lists:
            for pfn in p.from_tail(lru):
                owner = self.memcg_data.get(pfn, (ROOT, ""))[0]
                if owner in sizes:
                    sizes[owner] += 1
        if not any(sizes.values()):
            return 0, skipped
        for priority in range(DEF_PRIORITY, -1, -1):
            for path, prot in scope:
                size = sizes[path]
                if prot:
                    usage = self.groups[path].memory.usage
                    scan = max(size - size * prot // (max(usage, prot) + 1), SWAP_CLUSTER_MAX)
                else:
                    scan = size
                scan >>= priority
                if scan:
                    freed, _ = self.shrink_group(path, scan, want - done, flush, may_swap)
                    done += freed
                if done >= want:
                    return done, skipped
        groups = [path for path, _ in scope]
        while not done and self.evictable_left(groups, may_swap):
            for path in groups:
                freed, _ = self.shrink_group(path, 1 << 30, want - done, flush, may_swap)
                done += freed
        return done, skipped

    def try_to_free(self, target: str, nr_pages: int, call: int, flush: Flush, may_swap: bool = True) -> int:
        """``try_to_free_mem_cgroup_pages(target, nr_pages)``: up to ``max(nr_pages, SWAP_CLUSTER_MAX)`` pages of
        the group's subtree, a second pass below the low boundaries only if the first freed nothing; each pass's
        end reported as role ``("memcg_reclaim", 2 * call + pass, 0, 0)``."""
        want = max(nr_pages, SWAP_CLUSTER_MAX)
        p = self.k.pressure
        freed, skipped = self.reclaim_pass(target, False, want, flush, may_swap)
        self.k.effects.append((("memcg_reclaim", 2 * call, 0, 0), p.lru_steps))
        if not freed and skipped:
            freed, _ = self.reclaim_pass(target, True, want, flush, may_swap)
            self.k.effects.append((("memcg_reclaim", 2 * call + 1, 0, 0), p.lru_steps))
        return freed

    # --- the group OOM and memory.high --------------------------------------------------------------

    def oom_group_of(self, victim: int, domain: str) -> str | None:
        """``mem_cgroup_get_oom_group``: the highest group with ``memory.oom.group`` from the victim's up to the
        domain (v2 only)."""
        path = self.group(victim)
        if not self.v2 or path == ROOT or not (domain == ROOT or path == domain or path.startswith(domain + "/")):
            return None
        chosen = None
        while True:
            if self.groups[path].oom_group:
                chosen = path
            if path in (domain, ROOT):
                return chosen
            path = self.parent_path(path)

    def oom_kill(self, path: str, kill: Callable[[int], object]) -> list[Result] | None:
        """``mem_cgroup_out_of_memory(path)``: kill the victim and, with ``memory.oom.group``, every task of its
        group (the victim again in its place: it is still a task when the group is scanned)."""
        chosen = self.select(path)
        if chosen is None:
            return None
        victim, points = chosen
        group = self.oom_group_of(victim, path)
        members = [victim]
        if group is not None:
            self.groups[group].oom_group_kill += 1
            members += [
                pid
                for g in self.subtree(group)
                for pid in sorted(self.k.procs)
                if self.group(pid) == g and pid != 1 and self.k.oom.adj.get(pid, 0) != OOM_SCORE_ADJ_MIN
            ]
        totalpages = self.get_max(path)
        kills: list[Result] = []
        first: tuple[Result, str] | None = None
        for pid in members:
            if pid == victim and first is not None:
                kills.append(first[0])
                self.groups[first[1]].oom_kill += 1
                continue
            score = points if pid == victim else self.k.oom.badness(pid, totalpages) or 0
            home = self.group(pid)
            self.groups[self.group(pid)].oom_kill += 1
            procs = set(self.k.procs)
            kills.append(self.k.oom.kill(pid, score, MEMCG_OOM, kill)["oom_kill"])
            self.sync(None, procs)
            if pid == victim:
                first = (kills[-1], home)
        return kills

    def chain(self, path: str) -> list[str]:
        out = []
        while path != ROOT:
            out.append(path)
            path = self.parent_path(path)
        return out

    def high_delay(self, path: str, nr_pages: int) -> int:
        """``calculate_high_delay`` with ``mem_find_max_overage``, capped at ``2 * HZ``."""
        overage = 0
        for g in self.chain(path):
            c = self.groups[g].memory
            if c.usage > c.high:
                high = max(c.high, 1)
                overage = max(overage, ((c.usage - high) << 20) // high)
        if not overage:
            return 0
        return min(((overage * overage * HZ) >> 20 >> 14) * nr_pages // MEMCG_CHARGE_BATCH, 2 * HZ)

    def handle_over_high(self, path: str, nr_pages: int, call: int, flush: Flush) -> int:
        """``mem_cgroup_handle_over_high``: reclaim each group above its high, retry while throttled."""
        retries, in_retry = MAX_RECLAIM_RETRIES, False
        while True:
            reclaimed = 0
            for g in self.chain(path):
                c = self.groups[g].memory
                if c.usage <= c.high:
                    continue
                self.groups[g].high_events += 1
                reclaimed += self.try_to_free(g, SWAP_CLUSTER_MAX if in_retry else nr_pages, call, flush)
                call += 1
            if self.high_delay(path, nr_pages) <= HZ // 100:
                return call
            if not reclaimed:
                if not retries:
                    return call
                retries -= 1
            in_retry = True

    def charged(
        self,
        actor: int | None,
        fault: bool,
        dry: Callable[[], MemCgroups],
        run: Callable[[], Result],
        kill: Callable[[int], object],
        flush: Flush = lambda: None,
    ) -> Result:
        """Run an operation of ``actor`` under its limits: ``dry`` runs it on a clone and answers the clone's
        groups, ``run`` runs it here; ``kill(victim)`` runs a victim's exit.  A refused charge reclaims and
        retries as ``try_charge_memcg`` does, then runs the group's OOM killer."""
        kills: list[Result] = []
        path = ""
        retries, drained, calls = MAX_RECLAIM_RETRIES, False, 0
        while True:
            trial = dry()
            old = self.memcg_data
            new = any(old.get(pfn, (ROOT, ""))[1] != kind for pfn, (_, kind) in trial.memcg_data.items())
            over = trial.over(actor if actor is None or actor in self.k.procs else None) if new else None
            if over is None:
                procs = set(self.k.procs)
                start = self.group(actor if actor is None or actor in procs else None)
                before = set(self.memcg_data)
                result = run()
                self.sync(actor, procs)
                charged = sum(1 for pfn, (g, _) in self.memcg_data.items() if g == start and pfn not in before)
                if self.v2 and actor is not None and actor in self.k.procs and charged and self.over_high(start):
                    self.handle_over_high(start, charged, calls, flush)
                return {**result, "memcg_oom": {"group": path, "kills": kills}} if kills else result
            path, memsw = over
            t = trial.groups[path]
            need = t.memsw.usage - t.memsw.max if memsw else t.memory.usage - t.memory.max
            while True:
                g = self.groups[path]
                (g.memsw if memsw else g.memory).failcnt += 1
                g.max_events += 1
                steps = self.k.pressure.lru_steps
                freed = self.try_to_free(path, need, calls, flush, self.may_swap(path, memsw))
                calls += 1
                if freed:
                    break
                if not drained:
                    drained = True
                elif retries:
                    retries -= 1
                else:
                    g.oom += 1
                    if self.k.oom.sysctls.get("vm.panic_on_oom", 0) == 2:
                        return {"panic": "Out of memory: compulsory panic_on_oom is enabled", "report": ""}
                    killed = self.oom_kill(path, kill)
                    if killed is None:
                        final: Result = {"memcg_retry": path, "report": NO_KILLABLE} if fault else {"error": "ENOMEM"}
                        return {**final, "memcg_oom": {"group": path, "kills": kills}} if kills else final
                    kills += killed
                    if actor is not None and actor not in self.k.procs:
                        return {"memcg_oom": {"group": path, "kills": kills}}
                    retries = MAX_RECLAIM_RETRIES
                    break
                if self.k.pressure.lru_steps != steps:
                    break

    def may_swap(self, path: str, memsw: bool) -> bool:
        """Reclaim may swap: not for a memsw limit, nor while a group up the chain has one (swap is not charged)."""
        if memsw:
            return False
        g: Cgroup | None = self.groups[path]
        while g is not None:
            if g.memsw.max < PAGE_COUNTER_MAX:
                return False
            g = g.parent
        return True

    def over_high(self, path: str) -> bool:
        return any(self.groups[g].memory.usage > self.groups[g].memory.high for g in self.chain(path))

    # --- the files -----------------------------------------------------------------------------------

    def create(self, path: str) -> Result:
        self.enable()
        if path in self.groups:
            return {"error": "EEXIST"}
        parent = self.parent_path(path)
        if parent not in self.groups:
            return {"error": "ENOENT"}
        self.groups[path] = Cgroup(self.groups[parent])
        return {"ok": True}

    def move(self, pid: int, path: str) -> Result:
        self.k.proc(pid)
        self.enable()
        if path not in self.groups:
            return {"error": "ENOENT"}
        if path == ROOT:
            self.tasks.pop(pid, None)
        else:
            self.tasks[pid] = path
        return {"ok": True}

    def hierarchy(self, version: int) -> Result:
        """Mount the controller on cgroup v1 or v2: EBUSY once a group exists."""
        self.enable()
        if (version == 2) != self.v2:
            if len(self.groups) > 1:
                return {"error": "EBUSY"}
            self.v2 = version == 2
        return {"ok": True}

    def set_limit(self, path: str, knob: str, size: int, flush: Flush = lambda: None) -> Result:
        """``mem_cgroup_resize_max``: reclaim while the usage is above the new limit, EBUSY when that frees
        nothing."""
        self.enable()
        if path not in self.groups or self.v2:
            return {"error": "ENOENT"}
        if path == ROOT:
            return {"error": "EINVAL"}
        pages = PAGE_COUNTER_MAX if size < 0 else min(size // PAGE_SIZE, PAGE_COUNTER_MAX)
        g = self.groups[path]
        memsw = knob != "memory.limit_in_bytes"
        if (pages < g.memory.max) if memsw else (pages > g.memsw.max):
            return {"error": "EINVAL"}
        counter = g.memsw if memsw else g.memory
        call = 0
        while counter.usage > pages:
            if not self.try_to_free(path, 1, call, flush, self.may_swap(path, memsw)):
                return {"error": "EBUSY"}
            call += 1
        counter.max = pages
        return {"ok": True}

    def write(self, path: str, knob: str, size: int, kill: Callable[[int], object], flush: Flush) -> Result:
        """A v2 file of group ``path``."""
        self.enable()
        if path not in self.groups or not self.v2 or (path == ROOT and knob != "memory.reclaim"):
            return {"error": "ENOENT"}
        g = self.groups[path]
        c = g.memory
        pages = PAGE_COUNTER_MAX if size < 0 else min(size // PAGE_SIZE, PAGE_COUNTER_MAX)
        if knob == "memory.oom.group":
            if size not in (0, 1):
                return {"error": "EINVAL"}
            g.oom_group = bool(size)
        elif knob == "memory.low":
            c.low = pages
        elif knob == "memory.min":
            c.min = pages
        elif knob == "memory.reclaim":
            return self.reclaim(path, size, flush)
        elif knob == "memory.high":
            c.high = pages
            retries, call = MAX_RECLAIM_RETRIES, 0
            while c.usage > pages:
                freed = self.try_to_free(path, c.usage - pages, call, flush)
                call += 1
                if not freed:
                    if not retries:
                        break
                    retries -= 1
        else:
            return self.max_write(path, pages, kill, flush)
        return {"ok": True}

    def max_write(self, path: str, pages: int, kill: Callable[[int], object], flush: Flush) -> Result:
        """``memory_max_write``: set, reclaim, then OOM-kill until the usage fits or nothing is left to kill."""
        g = self.groups[path]
        g.memory.max = pages
        retries, call = MAX_RECLAIM_RETRIES, 0
        kills: list[Result] = []
        while g.memory.usage > pages:
            if retries:
                if not self.try_to_free(path, g.memory.usage - pages, call, flush):
                    retries -= 1
                call += 1
                continue
            g.oom += 1
            killed = self.oom_kill(path, kill)
            if killed is None:
                break
            kills += killed
        return {"ok": True, "memcg_oom": {"group": path, "kills": kills}} if kills else {"ok": True}

    def reclaim(self, path: str, size: int, flush: Flush) -> Result:
        """``memory_reclaim``."""
        if size < 0:
            return {"error": "EINVAL"}
        want, done, retries, call = size // PAGE_SIZE, 0, MAX_RECLAIM_RETRIES, 0
        while done < want:
            freed = self.try_to_free(path, (want - done) // 4, call, flush)
            call += 1
            if not freed:
                if not retries:
                    return {"error": "EAGAIN"}
                retries -= 1
            done += freed
        return {"ok": True}

    def read(self, path: str) -> Result:
        if path not in self.groups:
            return {"error": "ENOENT"}
        if self.v2:
            return self.read_v2(path)
        g = self.groups[path]
        own = [kind for group, kind in self.memcg_data.values() if group == path]
        return {
            "memory.usage_in_bytes": g.memory.usage * PAGE_SIZE,
            "memory.max_usage_in_bytes": g.memory.watermark * PAGE_SIZE,
            "memory.limit_in_bytes": g.memory.max * PAGE_SIZE,
            "memory.failcnt": g.memory.failcnt,
            "memory.memsw.usage_in_bytes": g.memsw.usage * PAGE_SIZE,
            "memory.memsw.max_usage_in_bytes": g.memsw.watermark * PAGE_SIZE,
            "memory.memsw.limit_in_bytes": g.memsw.max * PAGE_SIZE,
            "memory.memsw.failcnt": g.memsw.failcnt,
            "cache": own.count("file") * PAGE_SIZE,
            "rss": own.count("anon") * PAGE_SIZE,
            "pagetables": own.count("table") * PAGE_SIZE,
            "swap": 0,
            "oom": g.oom,
            "oom_kill": g.oom_kill,
        }

    def read_v2(self, path: str) -> Result:
        """The v2 files (``memory.stat`` only for the root)."""
        k = self.k
        files = {f.obj for f in k.pressure.files.values()}
        shmem = {pfn for obj, c in k.objects.items() if obj not in files for pfn in c.values()}
        prefix = path + "/"
        kinds = [
            (kind, pfn)
            for pfn, (group, kind) in self.memcg_data.items()
            if path == ROOT or group == path or group.startswith(prefix)
        ]
        tables = sum(kind == "table" for kind, _ in kinds) * PAGE_SIZE
        stat = {
            "anon": sum(kind == "anon" for kind, _ in kinds) * PAGE_SIZE,
            "file": sum(kind == "file" for kind, _ in kinds) * PAGE_SIZE,
            "kernel": tables,
            "pagetables": tables,
            "shmem": sum(kind == "file" and pfn in shmem for kind, pfn in kinds) * PAGE_SIZE,
        }
        if path == ROOT:
            return {"memory.stat": stat}
        g = self.groups[path]
        c = g.memory
        subtree = [self.groups[p] for p in self.subtree(path)]

        def tunable(pages: int) -> int | str:
            return "max" if pages >= PAGE_COUNTER_MAX else pages * PAGE_SIZE

        return {
            "memory.current": c.usage * PAGE_SIZE,
            "memory.peak": c.watermark * PAGE_SIZE,
            "memory.min": tunable(c.min),
            "memory.low": tunable(c.low),
            "memory.high": tunable(c.high),
            "memory.max": tunable(c.max),
            "memory.oom.group": int(g.oom_group),
            "memory.events": {name: sum(getattr(s, field) for s in subtree) for name, field in EVENTS},
            "memory.events.local": {name: getattr(g, field) for name, field in EVENTS},
            "memory.stat": stat,
        }
