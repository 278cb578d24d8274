"""The NUMA system calls and files on the kernel state: ``set_mempolicy``, ``mbind``, ``get_mempolicy``,
``move_pages`` (the status query), ``numastat``, ``numastat -p`` and ``/proc/PID/numa_maps`` (Linux 6.1).

- ``set_mempolicy`` (mm/mempolicy.c ``kernel_set_mempolicy``, ``do_set_mempolicy``): the policy is built by
  :func:`spec.numa.policy.new_policy`; EINVAL leaves everything as it was.
- ``mbind`` (``kernel_mbind``, ``do_mbind``): both mode flags at once or a start that is not page-aligned is
  EINVAL; an empty range succeeds at once; then the policy is built (EINVAL); a range with a hole, or outside
  every VMA, is EFAULT (``queue_pages_test_walk``).  MPOL_DEFAULT removes the VMAs' policy.  The policy is kept
  by page range (:func:`spec.numa.policy.set_range`); Linux splits the VMAs there (``mbind_range``), which the
  model's VMA list does not show.  Shared and file mappings keep shared policies in Linux (``shmem_set_policy``),
  not modelled: mbind on one is :class:`~lang.errors.NotModelled`.
- ``get_mempolicy`` (``do_get_mempolicy``): the process policy, or with ``MPOL_F_ADDR`` the VMA's policy
  (default when it has none; EFAULT without a VMA).
- ``move_pages`` with no target nodes (``do_pages_stat_array``): each page's node, or -EFAULT for a page never
  touched, the zero page or an address outside every VMA (6.1's ``follow_page(FOLL_DUMP)``).
- ``numa_maps`` (fs/proc/task_mmu.c ``show_numa_map``, ``gather_stats``; ``mpol_to_str``): per VMA its start,
  its policy (the VMA's, else the process's), ``huge`` for hugetlb, then ``anon``, ``dirty``, ``mapped``,
  ``mapmax``, ``swapcache``, ``active``, ``N<node>`` and ``kernelpagesize_kB``; the file name of a file or shmem
  mapping (``file=``) is left out.
"""

from __future__ import annotations

from dataclasses import replace

from lang.errors import NotModelled
from spec.mm.kernel import Kernel, leaf_of, space
from spec.mm.vma import HUGE_PAGES
from spec.numa import policy as mp
from spec.outcome import Errno, Mempolicy, NodeList, NodePages, NumaMapsLines, Numastat, Ok, Outcome

EFAULT = -14
POLICY_NAMES = {"default": "default", "preferred": "prefer", "bind": "bind", "interleave": "interleave",
                "local": "local", "preferred_many": "prefer (many)"}  # fmt: skip


def set_mempolicy(
    k: Kernel, pid: int, mode: str, nodes: tuple[int, ...], flags: tuple[str, ...]
) -> tuple[Kernel, Outcome]:
    """``set_mempolicy``: see the module docstring."""
    space(k, pid)
    new = mp.new_policy(mode, nodes, flags, k.numa.topology.nodes)
    if isinstance(new, str):
        return k, Errno(new)
    return replace(k, numa=mp.set_task(k.numa, pid, new)), Ok()


def covered(k: Kernel, pid: int, lo: int, hi: int) -> bool:
    """Every page of ``lo .. hi-1`` lies in a VMA of ``pid``."""
    at = lo
    for vma in sorted(space(k, pid).vmas, key=lambda v: v.start):
        if vma.start <= at < vma.end:
            at = vma.end
    return at >= hi


def mbind(
    k: Kernel, pid: int, va: int, pages: int, mode: str, nodes: tuple[int, ...], flags: tuple[str, ...]
) -> tuple[Kernel, Outcome]:
    """``mbind``: see the module docstring."""
    sp = space(k, pid)
    if ("static" in flags and "relative" in flags) or va % 4096:
        return k, Errno("EINVAL")
    if pages == 0:
        return k, Ok()
    new = mp.new_policy(mode, nodes, flags, k.numa.topology.nodes)
    if isinstance(new, str):
        return k, Errno(new)
    lo, hi = va >> 12, (va >> 12) + pages
    if not covered(k, pid, lo, hi):
        return k, Errno("EFAULT")
    if any(v.shared or (v.obj and not v.huge) for v in sp.vmas if v.start < hi and lo < v.end):
        raise NotModelled("mbind on a shared or file mapping sets its shared policy, which is not modelled")
    return replace(k, numa=mp.set_range(k.numa, pid, lo, hi, new)), Ok()


def as_outcome(policy: mp.Policy) -> Mempolicy:
    """``get_mempolicy``'s answer for ``policy``."""
    mode, nodes = mp.readback(policy)
    return Mempolicy(mode, nodes, "static" in policy.flags, "relative" in policy.flags)


def get_mempolicy(k: Kernel, pid: int, at: int | None) -> Outcome:
    """``get_mempolicy``: see the module docstring."""
    space(k, pid)
    if at is None:
        return as_outcome(k.numa.task.get(pid, mp.DEFAULT))
    vpn = at >> 12
    if not covered(k, pid, vpn, vpn + 1):
        return Errno("EFAULT")
    return as_outcome(mp.vma_policy(k.numa, pid, vpn) or mp.DEFAULT)


def page_node(k: Kernel, pid: int, vpn: int) -> int:
    """The node of the page ``pid`` maps at ``vpn``, or -EFAULT."""
    found = leaf_of(space(k, pid).leaves, vpn)
    if found is None or not covered(k, pid, vpn, vpn + 1):
        return EFAULT
    head, leaf = found
    pfn = leaf.pfn + (vpn - head if leaf.huge else 0)
    if pfn == k.zero_pfn or (k.thp.zero_pfn is not None and k.thp.zero_pfn <= pfn < k.thp.zero_pfn + HUGE_PAGES):
        return EFAULT
    return k.numa.topology.node_of_pfn(pfn)


def move_pages(k: Kernel, pid: int, va: int, pages: int) -> Outcome:
    """``move_pages`` with ``nodes == NULL``: the status of each page."""
    space(k, pid)
    return NodeList(tuple(page_node(k, pid, (va >> 12) + i) for i in range(pages)))


def numastat(k: Kernel) -> Outcome:
    """Every node's counters."""
    return Numastat(tuple(tuple(getattr(s, n) for n in mp.STAT_NAMES) for s in k.numa.stats))


def numastat_p(k: Kernel, pid: int) -> Outcome:
    """The 4 KiB pages ``pid`` maps on each node (the zero pages left out, as ``can_gather_numa_stats`` does)."""
    counts = [0] * k.numa.topology.nodes
    sp = space(k, pid)
    for vpn in sp.leaves:
        for i in range(sp.leaves[vpn].pages):
            node = page_node(k, pid, vpn + i)
            if node >= 0:
                counts[node] += 1
    return NodePages(tuple(counts))


def policy_text(policy: mp.Policy) -> str:
    """``mpol_to_str``: the mode, ``=static`` or ``=relative``, and ``:`` with the node list (``%*pbl``)."""
    text = POLICY_NAMES[policy.mode]
    if policy.flags:
        text += "=" + policy.flags[0]
    if policy.nodes:
        text += ":" + node_list(policy.user if policy.flags else policy.nodes)
    return text


def node_list(nodes: tuple[int, ...]) -> str:
    """A node set as ``bitmap_print_to_pagebuf`` lists it: ranges ``a-b`` and singles, comma separated."""
    parts: list[str] = []
    run: list[int] = []
    for n in sorted(nodes):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
        run = [n]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return ",".join(parts)


def numa_maps(k: Kernel, pid: int) -> Outcome:
    """``/proc/PID/numa_maps``: see the module docstring."""
    sp = space(k, pid)
    lines = []
    for vma in sorted(sp.vmas, key=lambda v: v.start):
        pol = mp.vma_policy(k.numa, pid, vma.start) or k.numa.task.get(pid, mp.DEFAULT)
        line = f"{vma.start << 12:08x} {policy_text(pol)}" + (" huge" if vma.huge else "")
        lines.append(line + vma_stats(k, pid, vma.start, vma.end, vma.huge))
    return NumaMapsLines(tuple(lines))


def vma_stats(k: Kernel, pid: int, lo: int, hi: int, huge: bool) -> str:
    """``gather_stats`` over the VMA's present pages, printed as ``show_numa_map`` does."""
    sp = space(k, pid)
    pages = anon = dirty = active = swapcache = mapmax = 0
    nodes = [0] * k.numa.topology.nodes
    step = HUGE_PAGES if huge else 1
    for vpn in range(lo, hi, step):
        leaf = sp.leaves.get(vpn)
        if leaf is None or leaf.pfn in (k.zero_pfn, k.thp.zero_pfn):
            continue
        page = k.pages.get(leaf.pfn)
        if page is None:
            continue
        nr = 1 if huge else leaf.pages
        pages += nr
        anon += nr if page.anon else 0
        dirty += nr if leaf.dirty or page.dirty else 0
        active += nr if page.lru == "active" else 0
        swapcache += nr if page.slot else 0
        mapmax = max(mapmax, page.mapcount)
        nodes[k.numa.topology.node_of_pfn(leaf.pfn)] += nr
    if not pages:
        return ""
    out = f" anon={anon}" if anon else ""
    out += f" dirty={dirty}" if dirty else ""
    out += f" mapped={pages}" if pages not in (anon, dirty) else ""
    out += f" mapmax={mapmax}" if mapmax > 1 else ""
    out += f" swapcache={swapcache}" if swapcache else ""
    out += f" active={active}" if active < pages and not huge else ""
    out += "".join(f" N{n}={c}" for n, c in enumerate(nodes) if c)
    return out + f" kernelpagesize_kB={2048 if huge else 4}"
