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


class Counter:
    """A ``struct page_counter``: usage, max, watermark, failcnt, and the parent counter."""

    __slots__ = ("failcnt", "max", "parent", "usage", "watermark")

    def __init__(self, parent: Counter | None) -> None:
        self.parent = parent
        self.usage = self.watermark = self.failcnt = 0
        self.max = PAGE_COUNTER_MAX

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
        return new


class Cgroup:
    """A ``struct mem_cgroup``: its counters and its v1 OOM event counts."""

    __slots__ = ("memory", "memsw", "oom", "oom_kill", "parent")
    memory: Counter
    memsw: Counter
    parent: Cgroup | None

    def __init__(self, parent: Cgroup | None) -> None:
        self.parent = parent
        self.memory = Counter(parent.memory if parent else None)
        self.memsw = Counter(parent.memsw if parent else None)
        self.oom = self.oom_kill = 0


class MemCgroups:
    """Every memory cgroup of kernel ``k``."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.enabled = False
        self.groups: dict[str, Cgroup] = {ROOT: Cgroup(None)}
        self.tasks: dict[int, str] = {}
        self.memcg_data: dict[int, tuple[str, str]] = {}

    def clone(self, k: Kernel) -> MemCgroups:
        """An independent copy for the cloned kernel ``k``."""
        new = MemCgroups(k)
        new.enabled = self.enabled
        new.groups = {}
        for path in sorted(self.groups, key=lambda p: (p != ROOT, p.count("/"), p)):
            old = self.groups[path]
            parent = None if old.parent is None else new.groups[self.parent_path(path)]
            g = Cgroup.__new__(Cgroup)
            g.parent = parent
            g.memory = old.memory.copy(parent.memory if parent else None)
            g.memsw = old.memsw.copy(parent.memsw if parent else None)
            g.oom, g.oom_kill = old.oom, old.oom_kill
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
        """Some group from ``pid``'s up has a limit."""
        path = self.group(pid)
        while path != ROOT:
            g = self.groups[path]
            if g.memory.max < PAGE_COUNTER_MAX or g.memsw.max < PAGE_COUNTER_MAX:
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

    def charged(
        self,
        actor: int | None,
        fault: bool,
        dry: Callable[[], MemCgroups],
        run: Callable[[], Result],
        kill: Callable[[int], object],
    ) -> Result:
        """Run an operation of ``actor`` under its limits: ``dry`` runs it on a clone and answers the clone's
        groups, ``run`` runs it here; ``kill(victim)`` runs a victim's exit."""
        kills: list[Result] = []
        path = ""
        while True:
            trial = dry()
            over = trial.over(actor if actor is None or actor in self.k.procs else None)
            if over is None:
                procs = set(self.k.procs)
                result = run()
                self.sync(actor, procs)
                return {**result, "memcg_oom": {"group": path, "kills": kills}} if kills else result
            path, memsw = over
            g = self.groups[path]
            (g.memsw if memsw else g.memory).failcnt += 1
            g.oom += 1
            if self.k.oom.sysctls.get("vm.panic_on_oom", 0) == 2:
                return {"panic": "Out of memory: compulsory panic_on_oom is enabled", "report": ""}
            chosen = self.select(path)
            if chosen is None:
                final: Result = {"memcg_retry": path, "report": NO_KILLABLE} if fault else {"error": "ENOMEM"}
                return {**final, "memcg_oom": {"group": path, "kills": kills}} if kills else final
            victim, points = chosen
            self.groups[self.group(victim)].oom_kill += 1
            procs = set(self.k.procs)
            kills.append(self.k.oom.kill(victim, points, MEMCG_OOM, kill)["oom_kill"])
            self.sync(None, procs)
            if victim == actor:
                return {"memcg_oom": {"group": path, "kills": kills}}

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

    def set_limit(self, path: str, knob: str, size: int) -> Result:
        """``mem_cgroup_resize_max``."""
        self.enable()
        if path not in self.groups:
            return {"error": "ENOENT"}
        if path == ROOT:
            return {"error": "EINVAL"}
        pages = PAGE_COUNTER_MAX if size < 0 else min(size // PAGE_SIZE, PAGE_COUNTER_MAX)
        g = self.groups[path]
        if knob == "memory.limit_in_bytes":
            if pages > g.memsw.max:
                return {"error": "EINVAL"}
            if g.memory.usage > pages:
                return {"error": "EBUSY"}
            g.memory.max = pages
        else:
            if pages < g.memory.max:
                return {"error": "EINVAL"}
            if g.memsw.usage > pages:
                return {"error": "EBUSY"}
            g.memsw.max = pages
        return {"ok": True}

    def read(self, path: str) -> Result:
        if path not in self.groups:
            return {"error": "ENOENT"}
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
