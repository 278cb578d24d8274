"""Invariants of memory pressure (L1), each a function returning its violations, joined to
:mod:`spec.mm.invariants`.

- Mapped frames are never free: no entry, and no swap-cache page, is in a free block.
- Swap counts: every slot in use lies on the device and its count equals the swap entries that refer to it
  plus one for its swap-cache page; every swap-cache page names its slot; every slot's data is a slot in use.
- LRU: the pages on the lists are exactly the anonymous pages (hugetlb aside) and the files' page-cache pages.
- Page cache: a clean file page holds what its file has on disk (writeback happened); only file pages are dirty;
  a writable entry of a shared file mapping maps a dirty page (dirtying is tracked by write faults).
- Mapping: every entry and swap entry lies in a VMA; an entry of a shared or file VMA that maps a cache page maps
  the one its offset names (fault-around maps only inside the VMA, at the page's own offset, mm/memory.c
  ``do_fault_around``); a shared VMA's entries all map its object's pages.
- Workingset: shadow entries lie in files' page caches, below the file's end, where no page is cached
  (a refault consumes its shadow, truncation drops it), and hold an age not in the future; with workingset
  detection off there are none and nothing is counted.
- Orphans: every page is mapped, in a page cache or the swap cache, or pinned (with the boot frames, tables and
  free frames, every frame is accounted for: :func:`spec.mm.invariants.leak_violations`).
"""

from __future__ import annotations

from collections import Counter

from spec.mm.kernel import NO_WORKINGSET, Kernel
from spec.mm.vma import find
from spec.pressure.files import file_by_obj, file_objects


def mapped_free_violations(k: Kernel) -> list[str]:
    """No frame an entry maps or the swap cache holds is free."""
    free = {pfn for block in k.buddy.free for pfn in range(block.pfn, block.end)}
    problems = [
        f"pid {pid} page {vpn:#x} maps free frame {leaf.pfn:#x}"
        for pid, sp in k.procs.items()
        for vpn, leaf in sp.leaves.items()
        if leaf.pfn in free
    ]
    return problems + [
        f"swap cache slot {s} holds free frame {pfn:#x}" for s, pfn in k.swap_cache.items() if pfn in free
    ]


def swap_count_violations(k: Kernel) -> list[str]:
    """Every slot's count equals the swap entries and the swap-cache page that refer to it."""
    refs = Counter(slot for sp in k.procs.values() for slot in sp.swapped.values())
    refs.update(list(k.swap_cache))
    problems = [
        f"slot {slot}: count {k.swap_map.get(slot, 0)}, referred to by {refs[slot]}"
        for slot in sorted(set(refs) | set(k.swap_map))
        if k.swap_map.get(slot, 0) != refs[slot]
    ]
    problems += [
        f"slot {slot} is not on the device of {k.swap_slots}" for slot in k.swap_map if not 1 <= slot <= k.swap_slots
    ]
    problems += [f"slot {slot} holds data but is free" for slot in k.swap_data if slot not in k.swap_map]
    for slot, pfn in k.swap_cache.items():
        page = k.pages.get(pfn)
        if page is None or page.slot != slot or not page.anon:
            problems.append(f"swap cache slot {slot}: frame {pfn:#x} is {page!r}")
    problems += [
        f"frame {pfn:#x} names slot {p.slot}, not in the swap cache"
        for pfn, p in k.pages.items()
        if p.slot and k.swap_cache.get(p.slot) != pfn
    ]
    return problems


def lru_violations(k: Kernel) -> list[str]:
    """The LRU lists hold exactly the anonymous (not hugetlb) and file page-cache pages."""
    files = file_objects(k)
    cached = {pfn for obj, cache in k.objects.items() if obj in files for pfn in cache.values()}
    problems = []
    for pfn, page in k.pages.items():
        want = (page.anon and not page.huge) or pfn in cached
        if page.lru not in ("", "active", "inactive") or bool(page.lru) != want:
            problems.append(f"frame {pfn:#x} is on LRU {page.lru!r}: {page!r}")
    return problems


def page_cache_violations(k: Kernel) -> list[str]:
    """Clean file pages equal their disk pages; only file pages are dirty; writable shared file entries are dirty."""
    problems = []
    files = file_objects(k)
    dirty_ok = {pfn for obj, cache in k.objects.items() if obj in files for pfn in cache.values()}
    for obj in files:
        found = file_by_obj(k, obj)
        assert found is not None
        name, f = found
        for index, pfn in k.objects[obj].items():
            page = k.pages[pfn]
            if not page.dirty and dict(page.words) != dict(f.disk.get(index, {})):
                problems.append(
                    f"file {name!r} page {index}: clean frame {pfn:#x} holds {dict(page.words)}, "
                    f"disk {f.disk.get(index)}"
                )
            if index >= f.pages:
                problems.append(f"file {name!r} caches page {index} past its end ({f.pages} pages)")
    problems += [
        f"frame {pfn:#x} is dirty but not a file page" for pfn, p in k.pages.items() if p.dirty and pfn not in dirty_ok
    ]
    for pid, sp in k.procs.items():
        for vpn, leaf in sp.leaves.items():
            vma = find(sp.vmas, vpn)
            mapped = k.pages.get(leaf.pfn)
            if vma and vma.shared and vma.obj in files and leaf.writable and mapped is not None and not mapped.dirty:
                problems.append(f"pid {pid} page {vpn:#x}: writable shared file entry maps clean frame {leaf.pfn:#x}")
    return problems


def mapping_violations(k: Kernel) -> list[str]:
    """Entries lie in VMAs and map, through a shared or file VMA, the cached page at their offset."""
    problems = []
    for pid, sp in k.procs.items():
        problems += [f"pid {pid} swap entry {v:#x} lies in no VMA" for v in sp.swapped if find(sp.vmas, v) is None]
        for vpn, leaf in sp.leaves.items():
            vma = find(sp.vmas, vpn)
            if vma is None:
                problems.append(f"pid {pid} entry {vpn:#x} -> frame {leaf.pfn:#x} lies in no VMA")
                continue
            if vma.huge or not vma.obj or vma.obj not in k.objects:
                continue
            page = k.pages.get(leaf.pfn)
            own = k.objects[vma.obj].get(vma.index_of(vpn))
            if (vma.shared or (page is not None and not page.anon)) and leaf.pfn != own:
                problems.append(
                    f"pid {pid} entry {vpn:#x} maps frame {leaf.pfn:#x}, not page {vma.index_of(vpn)} of its "
                    f"object ({own})"
                )
    return problems


def workingset_violations(k: Kernel) -> list[str]:
    """Shadows only at uncached pages below their file's end, with past ages; none when detection is off."""
    ws = k.workingset
    if not ws.enabled:
        return [] if ws == NO_WORKINGSET else [f"workingset detection is off but its state is {ws!r}"]
    problems = []
    for (obj, index), age in sorted(ws.shadows.items()):
        found = file_by_obj(k, obj)
        if found is None or index >= found[1].pages or index in k.objects[obj]:
            problems.append(f"shadow at object {obj} page {index}: not an uncached page of a file")
        if not 0 <= age < ws.age:
            problems.append(f"shadow at object {obj} page {index} holds age {age}, now {ws.age}")
    if ws.activate_file > ws.refault_file:
        problems.append(f"{ws.activate_file} refaults activated of {ws.refault_file}")
    return problems


def orphan_violations(k: Kernel) -> list[str]:
    """Every page is mapped, cached (page cache or swap cache) or pinned."""
    held = {leaf.pfn for sp in k.procs.values() for leaf in sp.leaves.values()}
    held |= {pfn for cache in k.objects.values() for pfn in cache.values()}
    held |= set(k.swap_cache.values()) | {p.pfn for p in k.pins.values()}
    return [
        f"frame {pfn:#x} is neither mapped, cached nor pinned: {p!r}" for pfn, p in k.pages.items() if pfn not in held
    ]


INVARIANTS = (
    mapped_free_violations,
    swap_count_violations,
    lru_violations,
    page_cache_violations,
    mapping_violations,
    workingset_violations,
    orphan_violations,
)


def violations(k: Kernel) -> list[str]:
    """Every pressure invariant ``k`` breaks, each named by its function."""
    return [f"{check.__name__}: {problem}" for check in INVARIANTS for problem in check(k)]
