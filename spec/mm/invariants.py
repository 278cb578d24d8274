"""Invariants of the kernel view (L1): each a function returning the list of violations.

- COW: a frame mapped more than once through private VMAs is read-only in
  every entry; a writable private entry maps an exclusive anonymous page mapped
  exactly once ("anon pages that may be shared must never be writable",
  include/linux/rmap.h).
- Counts: every page's map count equals the entries mapping it and its
  reference count equals those plus its pins plus its page-cache (or swap-cache) reference;
  hence refcount >= mapcount (the pairing rule in mm/memory.c's COW reuse).
- Isolation: a frame one process can write through a private mapping is
  mapped nowhere else; user mode never reaches the kernel half, and every
  address space maps the same kernel half.
- Zero page: never writable, always zero.
- No leak: the frames the buddy allocator has handed out are exactly the
  reachable ones (boot frames, PML4s, tables, pages, the slab allocator's
  slabs), none used twice.
- Accounting: the sum of PSS over processes (exactly, before rounding) equals
  the number of frames mapped by user entries.
- Page tables: every leaf's PDPT, PD and PT exist.
- VMAs: sorted and disjoint; no two neighbours could be merged (every change
  that makes them compatible merges them, mm/vma.c); only private VMAs have
  an anon_vma, and every anonymous page is mapped through a VMA that has one.
- Hugetlb: a hugetlb VMA starts and ends on 2 MiB boundaries (it is created
  so and splits only there, ``hugetlb_vm_op_split``); 2 MiB leaves are
  exactly the leaves of hugetlb VMAs, at a 2 MiB aligned page, mapping a
  hugetlb page (an order-9 block at its first frame).  A hugetlb page's 512
  frames count as used (leak), it is not in PSS, and its leaf needs no PT.
- THP: a THP PMD maps an aligned order-9 block (a THP folio or the huge zero
  page) at a 2 MiB aligned page wholly inside a private anonymous VMA, with
  its deposited PT; the huge zero page is never writable and its 512 frames
  count as used; a THP counts 512 frames in PSS; its map count is its PMDs.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

from spec.memcg import invariants as memcg
from spec.mm.kernel import Kernel, is_zero_pfn
from spec.mm.pagetable import is_thp_leaf, table_keys
from spec.mm.vma import HUGE_ORDER, HUGE_PAGES, find, mergeable
from spec.oom import invariants as oom
from spec.pressure import invariants as pressure


def private_leaves(k: Kernel) -> list[tuple[int, int, int, bool]]:
    """(pid, vpn, pfn, writable) of every present entry in a private VMA."""
    out = []
    for pid, sp in k.procs.items():
        for vpn, leaf in sp.leaves.items():
            vma = find(sp.vmas, vpn)
            if vma is not None and not vma.shared:
                out.append((pid, vpn, leaf.pfn, leaf.writable))
    return out


def cow_violations(k: Kernel) -> list[str]:
    """Shared private frames are read-only; writable private entries map exclusive pages mapped once."""
    problems = []
    mapped = Counter(pfn for _, _, pfn, _ in private_leaves(k))
    for pid, vpn, pfn, writable in private_leaves(k):
        if not writable:
            continue
        page = k.pages.get(pfn)
        if mapped[pfn] > 1 or page is None or page.mapcount != 1 or not (page.anon and page.exclusive):
            problems.append(f"pid {pid} page {vpn:#x}: writable private entry to frame {pfn:#x}, which is {page}")
    return problems


def count_violations(k: Kernel) -> list[str]:
    """Map counts and reference counts equal the references that exist."""
    maps = Counter(leaf.pfn for sp in k.procs.values() for leaf in sp.leaves.values())
    pins = Counter(p.pfn for p in k.pins.values())
    cached = Counter(pfn for cache in k.objects.values() for pfn in cache.values())
    cached.update(list(k.swap_cache.values()))
    problems = []
    for pfn, page in k.pages.items():
        refs = maps[pfn] + pins[pfn] + cached[pfn]
        if page.mapcount != maps[pfn] or page.refcount != refs or page.refcount < max(1, page.mapcount):
            problems.append(
                f"frame {pfn:#x}: refcount {page.refcount}, mapcount {page.mapcount}; "
                f"entries {maps[pfn]}, pins {pins[pfn]}, page cache {cached[pfn]}"
            )
    unknown = sorted((set(maps) | set(pins) | set(cached)) - set(k.pages) - {k.zero_pfn, k.thp.zero_pfn})
    problems += [f"frame {pfn:#x} is referenced but has no struct page" for pfn in unknown]
    return problems


def isolation_violations(k: Kernel) -> list[str]:
    """No frame another process maps is writable privately; user entries stay out of the kernel's frames."""
    problems = []
    owners: dict[int, set[int]] = {}
    for pid, sp in k.procs.items():
        for leaf in sp.leaves.values():
            owners.setdefault(leaf.pfn, set()).add(pid)
    for pid, vpn, pfn, writable in private_leaves(k):
        if writable and owners[pfn] != {pid}:
            problems.append(f"pid {pid} can write frame {pfn:#x} (page {vpn:#x}), also mapped by {sorted(owners[pfn])}")
    kernel_frames = set(k.boot[1:])
    for pid, sp in k.procs.items():
        if sp.kernel != k.kernel_leaves:
            problems.append(f"pid {pid} maps a different kernel half: {dict(sp.kernel)}")
        problems += [f"pid {pid}: kernel leaf {vpn:#x} is user-accessible" for vpn, lf in sp.kernel.items() if lf.user]
        problems += [
            f"pid {pid}: user page {vpn:#x} maps kernel frame {lf.pfn:#x}"
            for vpn, lf in sp.leaves.items()
            if lf.pfn in kernel_frames or not lf.user
        ]
    return problems


def zero_page_violations(k: Kernel) -> list[str]:
    """The zero page is never mapped writable and always reads zero."""
    problems = [f"the zero page holds {dict(k.zero_words)}"] if k.zero_words else []
    for pid, sp in k.procs.items():
        problems += [
            f"pid {pid} maps the zero page writable at page {vpn:#x}"
            for vpn, leaf in sp.leaves.items()
            if is_zero_pfn(k, leaf.pfn) and leaf.writable
        ]
    return problems


def leak_violations(k: Kernel) -> list[str]:
    """Allocated frames are exactly the reachable ones, each used once."""
    uses = Counter(k.boot)
    uses.update(k.slab)
    if k.thp.zero_pfn is not None:
        uses.update(range(k.thp.zero_pfn, k.thp.zero_pfn + HUGE_PAGES))
    for sp in k.procs.values():
        uses.update([sp.root, *sp.tables.values()])
    uses.update(f for pfn, page in k.pages.items() for f in range(pfn, pfn + (HUGE_PAGES if page.huge else 1)))
    problems = [f"frame {pfn:#x} is used {n} times" for pfn, n in sorted(uses.items()) if n > 1]
    allocated = {pfn for block in k.buddy.allocated for pfn in range(block.pfn, block.end)}
    if allocated != set(uses):
        leaked = sorted(allocated - set(uses))
        lost = sorted(set(uses) - allocated)
        problems.append(f"allocated but unreachable (leaked): {leaked}; reachable but free: {lost}")
    return problems


def pss_violations(k: Kernel) -> list[str]:
    """The exact sum of PSS over processes equals the number of frames user entries map (zero page aside)."""
    total = Fraction(0)
    frames: set[int] = set()
    for sp in k.procs.values():
        for vpn, leaf in sp.leaves.items():
            thp = is_thp_leaf(sp, vpn, leaf)
            if not is_zero_pfn(k, leaf.pfn) and (thp or not leaf.huge):
                size = HUGE_PAGES if thp else 1
                total += Fraction(size, max(1, k.pages[leaf.pfn].mapcount))
                frames.update(range(leaf.pfn, leaf.pfn + size))
    return [] if total == len(frames) else [f"sum of PSS is {total} pages, user entries map {len(frames)} frames"]


def table_violations(k: Kernel) -> list[str]:
    """Every leaf has its PDPT, PD and PT."""
    return [
        f"pid {pid} page {vpn:#x} has a leaf but no table {key}"
        for pid, sp in k.procs.items()
        for vpn, leaf in sp.leaves.items()
        for key in table_keys(vpn, leaf.huge and not is_thp_leaf(sp, vpn, leaf))
        if key not in sp.tables
    ]


def huge_violations(k: Kernel) -> list[str]:
    """Hugetlb VMAs are 2 MiB aligned; 2 MiB leaves are exactly theirs, aligned, mapping order-9 hugetlb pages."""
    problems = []
    blocks = {b.pfn for b in k.buddy.allocated if b.order == HUGE_ORDER}
    for pid, sp in k.procs.items():
        problems += [
            f"pid {pid}: {v!r} is not on 2 MiB boundaries"
            for v in sp.vmas
            if v.huge and (v.start % HUGE_PAGES or v.end % HUGE_PAGES)
        ]
        for vpn, leaf in sp.leaves.items():
            vma = find(sp.vmas, vpn)
            page = k.pages.get(leaf.pfn)
            if is_thp_leaf(sp, vpn, leaf):
                continue  # thp_violations
            if vma is not None and vma.huge != leaf.huge:
                problems.append(f"pid {pid} page {vpn:#x}: {leaf!r} in {vma!r}")
            if leaf.huge and (vpn % HUGE_PAGES or page is None or not page.huge or leaf.pfn not in blocks):
                problems.append(f"pid {pid} page {vpn:#x}: 2 MiB {leaf!r} maps {page!r}, not a whole hugetlb page")
    return problems


def thp_violations(k: Kernel) -> list[str]:
    """A THP PMD sits at a 2 MiB aligned page of a private anonymous VMA covering its 2 MiB and maps a whole
    order-9 block at its first frame: a THP folio (``thp``) or the huge zero page, which is never writable; THP
    folios are mapped only by PMDs (a split splits the folio at once, :func:`spec.mm.thp.split_pmd`)."""
    problems = []
    blocks = {b.pfn for b in k.buddy.allocated if b.order == HUGE_ORDER}
    mapped = set()
    for pid, sp in k.procs.items():
        for vpn, leaf in sp.leaves.items():
            if not is_thp_leaf(sp, vpn, leaf):
                continue
            vma = find(sp.vmas, vpn)
            page = k.pages.get(leaf.pfn)
            inside = vma is not None and vma.start <= vpn and vpn + HUGE_PAGES <= vma.end
            if vpn % HUGE_PAGES or not inside or vma is None or vma.shared or vma.huge:
                problems.append(f"pid {pid} page {vpn:#x}: THP {leaf!r} not a whole 2 MiB of anonymous {vma!r}")
            zero = leaf.pfn == k.thp.zero_pfn
            if leaf.pfn not in blocks or not (zero or (page is not None and page.thp)):
                problems.append(f"pid {pid} page {vpn:#x}: THP {leaf!r} maps {page!r}, not an order-9 block")
            mapped.add(leaf.pfn)
    for pfn, page in k.pages.items():
        if page.thp and page.mapcount and pfn not in mapped:
            problems.append(f"THP {pfn:#x} is mapped {page.mapcount} times but by no PMD")
    return problems


def vma_violations(k: Kernel) -> list[str]:
    """VMAs disjoint and in order, never mergeable with a neighbour; anon_vmas where anonymous pages are."""
    problems = []
    for pid, sp in k.procs.items():
        for a, b in zip(sp.vmas, sp.vmas[1:], strict=False):
            if a.end > b.start:
                problems.append(f"pid {pid}: {a!r} overlaps or precedes {b!r}")
            elif mergeable(a, b):
                problems.append(f"pid {pid}: {a!r} and {b!r} should have been merged")
        problems += [f"pid {pid}: {v!r} is shared but has an anon_vma" for v in sp.vmas if v.shared and v.anon]
        problems += [f"pid {pid}: {v!r} is forked without an anon_vma" for v in sp.vmas if v.forked and not v.anon]
        for vpn, leaf in sp.leaves.items():
            vma = find(sp.vmas, vpn)
            page = k.pages.get(leaf.pfn)
            if vma is not None and not vma.shared and page is not None and page.anon and not vma.anon:
                problems.append(f"pid {pid}: anonymous page {leaf.pfn:#x} at {vpn:#x} in {vma!r} without an anon_vma")
    return problems


INVARIANTS = (
    cow_violations,
    count_violations,
    isolation_violations,
    zero_page_violations,
    leak_violations,
    pss_violations,
    table_violations,
    vma_violations,
    huge_violations,
    thp_violations,
)


def violations(k: Kernel) -> list[str]:
    """Every kernel invariant ``k`` breaks, each named by its function, memory pressure's
    (:mod:`spec.pressure.invariants`), the OOM killer's (:mod:`spec.oom.invariants`) and the memory
    cgroups' (:mod:`spec.memcg.invariants`) included."""
    own = [f"{check.__name__}: {problem}" for check in INVARIANTS for problem in check(k)]
    return own + pressure.violations(k) + oom.violations(k) + memcg.violations(k)
