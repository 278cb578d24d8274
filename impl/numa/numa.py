"""Nodes, zonelists, memory policies and the numastat counters (Linux mm/page_alloc.c, mm/mempolicy.c, 6.1).

The topology: node ``n`` owns frames ``n * node_frames`` up to the next node's and CPUs ``n * node_cpus`` up to
the next node's; each node's frames are one zone of the buddy allocator (:class:`impl.alloc.buddy.BuddyAllocator`
with ``node_frames``).  Zonelists are built at boot as ``build_all_zonelists`` does (``build_zonelists``,
``find_next_best_node``: nearest first, ties to the higher node, one shared ``node_load`` spreading equal
distances round robin).

A policy is a tuple ``(mode, nodes, flags, user)`` as ``struct mempolicy`` keeps it.  The process policies
(``current->mempolicy``) and ``il_prev`` are dicts by pid; the VMA policies are sorted ``[lo, hi, policy]``
ranges by pid.  Where a page goes (``alloc_pages_vma``, ``alloc_pages``, ``alloc_page_interleave``,
``alloc_pages_preferred_many``, ``policy_node``, ``policy_nodemask``, ``offset_il_node`` with its 32-bit cut,
``interleave_nodes``) and the counters (``zone_statistics``) follow Linux 6.1; :meth:`Numa.alloc` walks the
zones in order and takes the first that has a block.  Page tables follow the allocating task's policy
(``alloc_pages``), a full bind falling back for them; shmem, file, swap-cache and kernel frames go local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impl.pressure.pressure import ANON_ACTIVE, FILE_ACTIVE, PG_ANON, PG_DIRTY, is_swap
from lang.errors import ConfigError, NotModelled

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel

PFN_MASK = ((1 << 52) - 1) & ~0xFFF
PS, D_BIT = 0x80, 0x40
Policy = tuple[str, tuple[int, ...], tuple[str, ...], tuple[int, ...]]
DEFAULT: Policy = ("default", (), (), ())
MAX_NUMNODES = 1024
IL_MASK = 0xFFFFFFFF  # offset_il_node: (unsigned int)n
HIT, MISS, FOREIGN, INTERLEAVE_HIT, LOCAL, OTHER = range(6)
STAT_NAMES = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")
DATA_ROLES = frozenset({"page", "thp", "huge"})
TASK_ROLES = frozenset({"table", "root"})
Where = tuple[list[int], int, int, bool]  # zones to try, preferred node, interleave target (-1: none), strict bind


def build_zonelists(distances: list[list[int]]) -> list[list[int]]:
    """``build_all_zonelists``: each node's fallback order, built in node order over one ``node_load``."""
    nodes = len(distances)
    load = [0] * nodes
    out = []
    for local in range(nodes):
        used = [local]
        prev = local
        while len(used) < nodes:
            best, best_val = -1, None
            for n in range(nodes):
                if n in used:
                    continue
                val = (distances[local][n] + (1 if n < local else 0)) * MAX_NUMNODES + load[n]
                if best_val is None or val < best_val:
                    best, best_val = n, val
            if distances[local][best] != distances[local][prev]:
                load[best] += 1
            used.append(best)
            prev = best
        out.append(used)
    return out


class Numa:
    """The NUMA side of one kernel; see the module docstring."""

    def __init__(self, frames: int, cpus: int, nodes: int = 1, distances: list[list[int]] | None = None) -> None:
        if nodes > 1 and (frames % nodes or cpus % nodes):
            raise ConfigError(f"{frames} frames and {cpus} CPUs must split evenly into {nodes} nodes")
        self.nodes = nodes
        self.node_frames = frames // nodes
        self.node_cpus = max(cpus // nodes, 1)
        self.distances = distances or [[10 if i == j else 20 for j in range(nodes)] for i in range(nodes)]
        self.zonelists = build_zonelists(self.distances)
        self.cpu = 0
        self.pid = 0
        self.task: dict[int, Policy] = {}
        self.il_prev: dict[int, int] = {}
        self.ranges: dict[int, list[list[Any]]] = {}
        self.stats = [[0] * 6 for _ in range(nodes)]

    def clone(self) -> Numa:
        """An independent copy."""
        new = Numa.__new__(Numa)
        new.__dict__.update(self.__dict__)
        new.task, new.il_prev = dict(self.task), dict(self.il_prev)
        new.ranges = {pid: [list(r) for r in rs] for pid, rs in self.ranges.items()}
        new.stats = [list(s) for s in self.stats]
        return new

    def node_of_pfn(self, pfn: int) -> int:
        return pfn // self.node_frames if self.nodes > 1 else 0

    def node_of_cpu(self, cpu: int) -> int:
        return min(cpu // self.node_cpus, self.nodes - 1)

    # --- policies --------------------------------------------------------------------------

    def vma_policy(self, pid: int, vpn: int) -> Policy | None:
        for lo, hi, pol in self.ranges.get(pid, ()):
            if lo <= vpn < hi:
                return pol  # type: ignore[no-any-return]
        return None

    def cut(self, pid: int, lo: int, hi: int) -> None:
        """Pages ``lo .. hi-1`` of ``pid`` lose their VMA policy (a mapping made or removed there)."""
        ranges = self.ranges.get(pid)
        if not ranges:
            return
        out = []
        for a, b, pol in ranges:
            if a < lo:
                out.append([a, min(b, lo), pol])
            if b > hi:
                out.append([max(a, hi), b, pol])
        out = [r for r in out if r[0] < r[1]]
        if out:
            self.ranges[pid] = out
        else:
            del self.ranges[pid]

    def set_range(self, pid: int, lo: int, hi: int, pol: Policy | None) -> None:
        self.cut(pid, lo, hi)
        if pol is not None:
            ranges = self.ranges.setdefault(pid, [])
            ranges.append([lo, hi, pol])
            ranges.sort(key=lambda r: r[0])

    def set_task(self, pid: int, pol: Policy | None) -> None:
        if pol is None:
            self.task.pop(pid, None)
        else:
            self.task[pid] = pol
            if pol[0] == "interleave":
                self.il_prev.pop(pid, None)  # MAX_NUMNODES - 1

    def fork(self, parent: int, child: int) -> None:
        """``copy_process``: ``mpol_dup`` of the task policy, ``il_prev`` with the task, ``vma_dup_policy``."""
        if parent in self.task:
            self.task[child] = self.task[parent]
        if parent in self.il_prev:
            self.il_prev[child] = self.il_prev[parent]
        if parent in self.ranges:
            self.ranges[child] = [list(r) for r in self.ranges[parent]]

    def exit(self, pid: int) -> None:
        self.task.pop(pid, None)
        self.il_prev.pop(pid, None)
        self.ranges.pop(pid, None)

    # --- placement ---------------------------------------------------------------------------

    def where(self, k: Kernel, role: tuple[str, int, int, int]) -> Where:
        """The zones an allocation for ``role`` tries, its preferred node and interleave target."""
        kind, pid = role[0], role[1]
        index = -1
        if kind == "migrate":  # alloc_migration_target: __GFP_THISNODE
            return [role[3]], role[3], -1, False
        if kind in DATA_ROLES and pid in k.procs:
            vpn = role[2]
            pol = self.vma_policy(pid, vpn) or self.task.get(pid, DEFAULT)
            if pol[0] == "interleave":
                index = self.offset(k, pid, vpn, kind != "page")
        elif kind in TASK_ROLES:
            pol = self.task.get(self.pid, DEFAULT)
        else:
            pol = DEFAULT
        mode = pol[0]
        local = self.node_of_cpu(self.cpu)
        if mode == "preferred":
            zl = self.zonelists[pol[1][0]]
            return zl, zl[0], -1, False
        if mode == "bind" or mode == "preferred_many":
            zl = [n for n in self.zonelists[local] if n in pol[1]]
            first = zl[0]
            if mode == "preferred_many":
                zl = zl + self.zonelists[local]
            return zl, first, -1, mode == "bind"
        if mode == "interleave":
            nodes = pol[1]
            if index >= 0:
                target = nodes[(index & IL_MASK) % len(nodes)]
            elif self.nodes == 1:  # one node: il_prev is never read
                target = nodes[0]
            else:
                prev = self.il_prev.get(self.pid, MAX_NUMNODES - 1)
                target = next((n for n in nodes if n > prev), nodes[0])
                self.il_prev[self.pid] = target
            zl = self.zonelists[target]
            return zl, target, target, False
        zl = self.zonelists[local]
        return zl, local, -1, False

    @staticmethod
    def offset(k: Kernel, pid: int, vpn: int, huge: bool) -> int:
        """``interleave_nid``'s offset: ``vm_pgoff`` (a private anonymous VMA's first page) plus the pages (huge
        pages for a huge page) from ``vm_start``."""
        vma = k.procs[pid].vmas.find(vpn)
        if vma is None:
            return vpn
        pgoff = vma.pgoff if vma.obj else vma.start
        if huge:
            return (pgoff >> 9) + ((vpn - vma.start) >> 9)
        return pgoff + vpn - vma.start

    def can_place(self, k: Kernel, role: tuple[str, int, int, int], order: int = 0) -> bool:
        """A zone the policy allows has a block of ``order`` (false: a full bind, ENOMEM)."""
        zones, _, _, _ = self.where(k, role)
        return any(k.buddy.can_alloc(order, z) for z in zones)

    def alloc(self, k: Kernel, role: tuple[str, int, int, int], order: int) -> int | None:
        """``get_page_from_freelist`` over the policy's zones, then ``zone_statistics``."""
        zones, preferred, target, strict = self.where(k, role)
        buddy = k.buddy
        pfn = None
        for z in zones:
            pfn = buddy.alloc(order, z)
            if pfn is not None:
                break
        if pfn is None and strict:
            for z in self.zonelists[self.node_of_cpu(self.cpu)]:
                pfn = buddy.alloc(order, z)
                if pfn is not None:
                    break
        if pfn is None:
            return None
        node = self.node_of_pfn(pfn)
        pages = 1 << order
        s = self.stats[node]
        if node == preferred:
            s[HIT] += pages
        else:
            s[MISS] += pages
            self.stats[preferred][FOREIGN] += pages
        s[LOCAL if node == self.node_of_cpu(self.cpu) else OTHER] += pages
        if node == target:
            s[INTERLEAVE_HIT] += 1
        return pfn

    # --- system calls and files ----------------------------------------------------------------

    def new_policy(self, mode: str, nodes: tuple[int, ...], flags: tuple[str, ...]) -> Policy | str | None:
        """``mpol_new`` + ``mpol_set_nodemask``: the policy, None for the default, or the errno name."""
        user = tuple(sorted(set(nodes)))
        static, relative = "static" in flags, "relative" in flags
        if static and relative:
            return "EINVAL"
        if mode == "default":
            return "EINVAL" if user or flags else None
        if mode == "preferred" and not user:
            if flags:
                return "EINVAL"
            mode = "local"
        if mode == "local":
            return "EINVAL" if user or flags else ("local", (), (), ())
        if not user:
            return "EINVAL"
        # mpol_relative_nodemask folds the user's set onto the allowed nodes (nodes_fold, nodes_onto)
        kept = tuple(sorted({n % self.nodes for n in user})) if relative else tuple(n for n in user if n < self.nodes)
        if not kept:
            return "EINVAL"
        if mode == "preferred":
            kept = kept[:1]
        kept_flags = tuple(f for f in ("static", "relative") if f in flags)
        return (mode, kept, kept_flags, user if kept_flags else ())

    def set_mempolicy(
        self, k: Kernel, pid: int, mode: str, nodes: tuple[int, ...], flags: tuple[str, ...]
    ) -> dict[str, Any]:
        k.proc(pid)
        new = self.new_policy(mode, nodes, flags)
        if isinstance(new, str):
            return {"error": new}
        self.set_task(pid, new)
        return {"ok": True}

    @staticmethod
    def covered(k: Kernel, pid: int, lo: int, hi: int) -> bool:
        vmas = k.proc(pid).vmas
        at = lo
        while at < hi:
            vma = vmas.find(at)
            if vma is None:
                return False
            at = vma.end
        return True

    def mbind(
        self, k: Kernel, pid: int, va: int, pages: int, mode: str, nodes: tuple[int, ...], flags: tuple[str, ...]
    ) -> dict[str, Any]:
        proc = k.proc(pid)
        if ("static" in flags and "relative" in flags) or va & 0xFFF:
            return {"error": "EINVAL"}
        if not pages:
            return {"ok": True}
        new = self.new_policy(mode, nodes, flags)
        if isinstance(new, str):
            return {"error": new}
        lo, hi = va >> 12, (va >> 12) + pages
        if not self.covered(k, pid, lo, hi):
            return {"error": "EFAULT"}
        if any(v.shared or (v.obj and not v.huge) for v in proc.vmas if v.start < hi and lo < v.end):
            raise NotModelled("mbind on a shared or file mapping sets its shared policy, which is not modelled")
        self.set_range(pid, lo, hi, new)
        return {"ok": True}

    @staticmethod
    def readback(pol: Policy) -> dict[str, Any]:
        mode, nodes, flags, user = pol
        return {"mode": mode, "nodes": list(user if flags else nodes), "static": "static" in flags,
                "relative": "relative" in flags}  # fmt: skip

    def get_mempolicy(self, k: Kernel, pid: int, at: int | None) -> dict[str, Any]:
        k.proc(pid)
        if at is None:
            return self.readback(self.task.get(pid, DEFAULT))
        vpn = at >> 12
        if not self.covered(k, pid, vpn, vpn + 1):
            return {"error": "EFAULT"}
        return self.readback(self.vma_policy(pid, vpn) or DEFAULT)

    def page_node(self, k: Kernel, pid: int, vpn: int) -> int:
        """The node of the page at ``vpn``, or -14 (EFAULT)."""
        proc = k.proc(pid)
        if vpn >= 1 << 35 or proc.vmas.find(vpn) is None:
            return -14
        found = k._leaf_entry(proc.root, vpn)
        entry = 0 if found is None else found[1]
        if not entry or is_swap(entry):
            return -14
        pfn = (entry & PFN_MASK) >> 12
        if entry & PS:
            pfn += vpn % 512
        zero = k.thp.zero_pfn
        if pfn == k.zero_pfn or (zero is not None and zero <= pfn < zero + 512):
            return -14
        return self.node_of_pfn(pfn)

    def move_pages(self, k: Kernel, pid: int, va: int, pages: int) -> dict[str, Any]:
        k.proc(pid)
        return {"nodes": [self.page_node(k, pid, (va >> 12) + i) for i in range(pages)]}

    def migrate(self, k: Kernel, pid: int, va: int, pages: int, node: int) -> dict[str, Any]:
        """``move_pages`` to ``node`` (mm/migrate.c ``do_pages_move``, ``migrate_pages``), as the edit of a syscall
        whose shootdown frees the old frames (:meth:`impl.smp.shootdown.Smp.syscall`): each exclusive anonymous
        4 KiB page not on ``node`` gets a frame there, its contents and page state, and its entry rewritten with
        all its bits; the old frame's reference goes to the gather (:meth:`impl.mm.kernel.Kernel._put`)."""
        if node >= self.nodes:
            return {"error": "ENODEV"}
        proc = k.proc(pid)
        if k.memcg.enabled:
            raise NotModelled("move_pages with memory cgroups: the charge moving with the page is not modelled")
        first = va >> 12
        found = [k._leaf_entry(proc.root, vpn) for vpn in range(first, first + pages)]
        if any(f is not None and f[1] & PS and not is_swap(f[1]) for f in found):
            raise NotModelled("move_pages of a huge page (hugetlb or THP) is not modelled")
        status = []
        for i, f in enumerate(found):
            vpn = first + i
            entry = 0 if f is None else f[1]
            pfn = (entry & PFN_MASK) >> 12
            if not entry or is_swap(entry) or proc.vmas.find(vpn) is None or pfn == k.zero_pfn:
                status.append(-14)
            elif self.node_of_pfn(pfn) == node:
                status.append(node)
            elif k.mapcount[pfn] > 1:
                status.append(-13)  # EACCES
            elif k.refcount[pfn] != k.mapcount[pfn] or k.pressure.swap_slot[pfn] or not k.flags[pfn] & PG_ANON:
                status.append(-16)  # EBUSY: folio_migrate_mapping's reference count check
            elif not k.buddy.can_alloc(0, node):
                status.append(-12)  # ENOMEM
            else:
                assert f is not None
                status.append(self.move_page(k, pid, vpn, f[0], entry, node))
        return {"nodes": status}

    def move_page(self, k: Kernel, pid: int, vpn: int, pa: int, entry: int, node: int) -> int:
        """Copy the page at ``entry`` to a frame on ``node`` and point the entry at it (``migrate_folio``,
        ``folio_migrate_flags``, ``remove_migration_pte``)."""
        old = (entry & PFN_MASK) >> 12
        new = k._alloc(("migrate", pid, vpn, node))
        k.mem.copy_frame(old, new)
        k.refcount[new], k.mapcount[new], k.flags[new] = 1, 1, k.flags[old]
        if k.pressure.lru_of[old]:
            k.pressure.lru_add(new, k.pressure.lru_of[old] - 1)
        k.set_pte(pa, (entry & ~PFN_MASK) | (new << 12), pid, vpn)
        k._put(old)
        return node

    def numastat(self) -> dict[str, Any]:
        return {"nodes": [dict(zip(STAT_NAMES, s, strict=True)) for s in self.stats]}

    def numastat_p(self, k: Kernel, pid: int) -> dict[str, Any]:
        counts = [0] * self.nodes
        for vma in k.proc(pid).vmas:
            for vpn in range(vma.start, vma.end):
                node = self.page_node(k, pid, vpn)
                if node >= 0:
                    counts[node] += 1
        return {"pages": counts}

    def numa_maps(self, k: Kernel, pid: int) -> dict[str, Any]:
        proc = k.proc(pid)
        lines = []
        for vma in proc.vmas:
            pol = self.vma_policy(pid, vma.start) or self.task.get(pid, DEFAULT)
            line = f"{vma.start << 12:08x} {policy_text(pol)}" + (" huge" if vma.huge else "")
            lines.append(line + self.vma_stats(k, proc.root, vma))
        return {"lines": lines}

    def vma_stats(self, k: Kernel, root: int, vma: Any) -> str:
        pages = anon = dirty = active = swapcache = mapmax = 0
        nodes = [0] * self.nodes
        vpn = vma.start
        while vpn < vma.end:
            found = k._leaf_entry(root, vpn)
            entry = 0 if found is None else found[1]
            huge = bool(entry & PS)
            nr = 512 if huge else 1
            step = 512 - vpn % 512 if huge else 1
            pfn = (entry & PFN_MASK) >> 12
            if entry and not is_swap(entry) and pfn != k.zero_pfn and pfn != k.thp.zero_pfn and k.refcount[pfn]:
                flags = k.flags[pfn]
                nr = 1 if vma.huge else nr
                pages += nr
                anon += nr if flags & PG_ANON else 0
                dirty += nr if entry & D_BIT or flags & PG_DIRTY else 0
                active += nr if k.pressure.lru_of[pfn] - 1 in (ANON_ACTIVE, FILE_ACTIVE) else 0
                swapcache += nr if k.pressure.swap_slot[pfn] else 0
                mapmax = max(mapmax, k.mapcount[pfn])
                nodes[self.node_of_pfn(pfn)] += nr
            vpn += step
        if not pages:
            return ""
        out = f" anon={anon}" if anon else ""
        out += f" dirty={dirty}" if dirty else ""
        out += f" mapped={pages}" if pages not in (anon, dirty) else ""
        out += f" mapmax={mapmax}" if mapmax > 1 else ""
        out += f" swapcache={swapcache}" if swapcache else ""
        out += f" active={active}" if active < pages and not vma.huge else ""
        out += "".join(f" N{n}={c}" for n, c in enumerate(nodes) if c)
        return out + f" kernelpagesize_kB={2048 if vma.huge else 4}"


POLICY_NAMES = {"default": "default", "preferred": "prefer", "bind": "bind", "interleave": "interleave",
                "local": "local", "preferred_many": "prefer (many)"}  # fmt: skip


def policy_text(pol: Policy) -> str:
    """``mpol_to_str``."""
    mode, nodes, flags, user = pol
    text = POLICY_NAMES[mode] + ("=" + flags[0] if flags else "")
    shown = user if flags else nodes
    if nodes:
        parts: list[str] = []
        i = 0
        while i < len(shown):
            j = i
            while j + 1 < len(shown) and shown[j + 1] == shown[j] + 1:
                j += 1
            parts.append(f"{shown[i]}-{shown[j]}" if j > i else f"{shown[i]}")
            i = j + 1
        text += ":" + ",".join(parts)
    return text
