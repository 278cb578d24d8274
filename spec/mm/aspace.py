"""Address-space syscalls: spawn, exit, mmap, munmap, mprotect, madvise, switch, and pins.

Every rule takes the state and returns the new state with an outcome;
Linux's errors are outcomes (``Errno``), a pid that does not exist is an
exception and changes nothing.

- ``mmap`` (fixed address, anonymous) replaces whatever was mapped in the
  range (``MAP_FIXED``, mm/mmap.c ``mmap_region``); a shared mapping gets a new
  shmem-like object.  The new VMA merges with compatible neighbours
  (mm/vma.c ``vma_merge_new_range``, :func:`spec.mm.vma.merge_at`).  No frame is
  allocated until a fault.
- ``munmap`` clears the range's entries, splits the VMAs at its edges, frees
  the tables no VMA reaches any more and drops objects no VMA maps.
- ``mprotect`` changes the mapped run at the start of the range, stops at the
  first hole with ENOMEM (mm/mprotect.c ``do_mprotect_pkey``), merges the
  changed VMAs with each other and their neighbours where compatible
  (``mprotect_fixup`` -> ``vma_modify_flags``, mm/vma.c) and rewrites
  the entries (``change_pte_range``): a private entry becomes writable only
  for an exclusive anonymous page (``can_change_pte_writable``), a shared
  one whenever the VMA is writable.
- ``madvise(MADV_DONTNEED)`` clears the range's entries and keeps the tables
  (mm/madvise.c ``madvise_dontneed_single_vma``); ENOMEM if the range has a hole.
- ``exit`` clears every entry, frees every table, and idles the CPUs that ran it.
- ``pin`` takes a read-only ``get_user_pages`` reference (mm/gup.c): EFAULT
  without ``VM_READ``; a missing entry is faulted in for reading first.

Hugetlb mappings (``huge``, ``MAP_HUGETLB``): ``mmap`` rounds the length up
to 2 MiB and wants a 2 MiB aligned address (:func:`spec.mm.vma.huge_mmap_error`)
and gives the VMA a hugetlbfs file of its own (``hugetlb_file_setup``), shared
or private.  A range edge that would split a hugetlb VMA off a 2 MiB
boundary is EINVAL (``hugetlb_vm_op_split``): for munmap and an
``mmap(MAP_FIXED)`` over it before anything changes; for mprotect, which
changes the VMAs in order (``do_mprotect_pkey``), after the VMAs before the
one it cannot split have changed.  The VMA split Linux may already have
made at the first edge before refusing (``vms_gather_munmap_vmas``,
``vma_modify``) is not kept: it changes no observable result.
``madvise(MADV_DONTNEED)`` on a hugetlb VMA wants the start 2 MiB aligned
(EINVAL) and rounds the end *down* to 2 MiB
(``madvise_dontneed_free_valid_vma``, mm/madvise.c), so no data past the
range is lost.  mprotect gives a hugetlb entry the VMA's page protection
(``hugetlb_change_protection``: ``huge_pte_modify``), with no upgrade of a
private entry to writable.  Pinning a hugetlb page is refused with
:class:`~lang.errors.NotModelled`: ``hugetlb_wp`` reuses on the map count,
so a ``FOLL_GET`` reference may see another process's later writes (the
comment in ``hugetlb_wp`` says so), which the programmer's view of pins does
not allow.
"""

from __future__ import annotations

from lang.errors import NotModelled, UnknownPin
from lang.records import replace
from spec.memory import check_address
from spec.mm import thp
from spec.mm.fault import missing_fault
from spec.mm.kernel import (
    Choices,
    Kernel,
    Leaf,
    Pin,
    Space,
    check_cpu,
    free_frames,
    frozen,
    get_page,
    page_words,
    put_page,
    release,
    space,
    take,
    updated,
    with_space,
    without,
)
from spec.mm.pagetable import free_unused_tables, leaf_for, zap
from spec.mm.vma import (
    HUGE_PAGES,
    TASK_SIZE,
    Prot,
    Vma,
    covered_until,
    cut,
    find,
    has_hole,
    huge_mmap_error,
    huge_pages,
    insert,
    inside,
    merge_at,
    mmap_error,
    munmap_error,
    range_error,
    split_error,
    split_refused,
)
from spec.outcome import EFAULT, ENOMEM, Errno, NewPid, NewPin, Ok, Outcome, Value
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE
from spec.pressure import files, swap

ALL_PAGES = 1 << 52


def spawn(k: Kernel, choices: Choices) -> tuple[Kernel, Outcome]:
    """A new process with no VMAs: only its PML4 (role ``("root", pid, 0, 0)``), holding the kernel half."""
    if free_frames(k) < 1:
        return k, ENOMEM
    pid = k.next_pid
    k, root = take(k, ("root", pid, 0, 0), choices)
    sp = Space((), root, kernel=k.kernel_leaves)
    return replace(k, procs=updated(k.procs, pid, sp), next_pid=pid + 1), NewPid(pid)


def drop_objects(k: Kernel) -> Kernel:
    """Release the shmem objects no VMA maps any more, with their page-cache references (a file's page cache
    lives with the file)."""
    mapped = {v.obj for sp in k.procs.values() for v in sp.vmas if v.shared} | files.file_objects(k)
    dead = sorted(obj for obj in k.objects if obj not in mapped)
    pages = [pfn for obj in dead for pfn in k.objects[obj].values()]
    k = replace(k, objects=without(k.objects, dead))
    for pfn in pages:
        k = put_page(k, pfn, unmaps=0)
    return k


def unmap_range(k: Kernel, pid: int, lo: int, hi: int) -> Kernel:
    """Pages ``lo .. hi-1`` unmapped: THP PMDs an edge cuts split, entries cleared, VMAs split, unused tables and
    objects freed."""
    k = zap(thp.split_edges(k, pid, lo, hi), pid, lo, hi)
    sp = space(k, pid)
    k = with_space(k, pid, replace(sp, vmas=cut(sp.vmas, lo, hi)))
    return drop_objects(free_unused_tables(k, pid))


def exit_process(k: Kernel, pid: int) -> tuple[Kernel, Outcome]:
    """``pid`` is gone with all its entries and tables; CPUs running it become idle."""
    k = zap(k, pid, 0, ALL_PAGES)
    sp = space(k, pid)
    for pfn in [*sp.tables.values(), sp.root]:
        k = release(k, pfn)
    current = tuple(0 if c == pid else c for c in k.current)
    return drop_objects(replace(k, procs=without(k.procs, [pid]), current=current)), Ok()


def mmap(
    k: Kernel, pid: int, va: int, pages: int, prot: Prot, shared: bool, huge: bool = False
) -> tuple[Kernel, Outcome]:
    """Map ``pages`` fresh anonymous pages at ``va``, private or shared; ``huge``: 2 MiB hugetlb pages."""
    sp = space(k, pid)
    error = huge_mmap_error(va, pages) if huge else mmap_error(va, pages)
    pages = huge_pages(pages) if huge else pages
    lo = va >> PAGE_SHIFT
    error = error or split_error(sp.vmas, lo, lo + pages)
    if error:
        return k, Errno(error)
    k = unmap_range(k, pid, lo, lo + pages)
    obj = 0
    if shared or huge:
        obj = k.next_object
        k = replace(k, next_object=obj + 1)
    if shared:
        k = replace(k, objects=updated(k.objects, obj, frozen({})))
    sp = space(k, pid)
    vma = Vma(lo, lo + pages, prot, shared, obj, huge=huge)
    vmas = merge_at(insert(sp.vmas, (vma,)), lo, lo + pages)
    return with_space(k, pid, replace(sp, vmas=vmas)), Ok()


def mmap_file(
    k: Kernel, pid: int, va: int, pages: int, prot: Prot, shared: bool, name: str, offset: int
) -> tuple[Kernel, Outcome]:
    """``mmap(va, pages * 4096, prot, MAP_FIXED | MAP_SHARED or MAP_PRIVATE, fd, offset * 4096)`` of file ``name``
    (:mod:`spec.pressure.files`): no frame is touched until a fault; pages past the end of the file may be mapped
    (a fault there is SIGBUS).  What was mapped in the range is unmapped first, and if a page was, every TLB is
    flushed, so no CPU goes on reading the old page."""
    f = files.the_file(k, name)
    sp = space(k, pid)
    lo = va >> PAGE_SHIFT
    error = mmap_error(va, pages) or split_error(sp.vmas, lo, lo + pages)
    if not error and not 0 <= offset <= files.MAX_FILE_PAGES:
        error = "EINVAL"
    if error:
        return k, Errno(error)
    mapped = any(lo <= vpn < lo + pages for vpn in sp.leaves)
    k = unmap_range(k, pid, lo, lo + pages)
    if mapped:
        # MAP_FIXED over mapped pages unmaps them first, and the TLBs are flushed before their frames are freed
        # (mm/vma.c do_vmi_munmap -> vms_clear_ptes -> tlb_finish_mmu); the area flushes every CPU.
        k = files.flush_all(k)
    sp = space(k, pid)
    vmas = merge_at(insert(sp.vmas, (Vma(lo, lo + pages, prot, shared, f.obj, offset),)), lo, lo + pages)
    return with_space(k, pid, replace(sp, vmas=vmas)), Ok()


def munmap(k: Kernel, pid: int, va: int, pages: int) -> tuple[Kernel, Outcome]:
    """Unmap the range; EINVAL (nothing changed) if an edge would split a hugetlb VMA off 2 MiB."""
    sp = space(k, pid)
    lo = va >> PAGE_SHIFT
    error = munmap_error(va, pages) or split_error(sp.vmas, lo, lo + pages)
    if error:
        return k, Errno(error)
    return unmap_range(k, pid, lo, lo + pages), Ok()


def changed_leaf(k: Kernel, vma: Vma, leaf: Leaf) -> Leaf:
    """``change_pte_range``: the entry under the VMA's new protection, upgraded to writable when allowed
    (``hugetlb_change_protection`` never upgrades a private hugetlb entry; a shared file entry only when its page is
    dirty, ``can_change_pte_writable`` under write-notify; a THP PMD the range covers whole keeps its size,
    ``change_huge_pmd`` with ``can_change_pmd_writable``: an exclusive anonymous THP, never the huge zero page)."""
    if vma.shared:
        page = k.pages.get(leaf.pfn)
        writable = vma.prot.write and (page is None or page.anon or page.dirty or not files.is_file_vma(k, vma))
    elif vma.huge:
        writable = False
    else:
        page = k.pages.get(leaf.pfn)
        writable = vma.prot.write and page is not None and page.anon and page.exclusive
    return leaf_for(vma, leaf.pfn, writable, dirty=leaf.dirty, huge=leaf.huge)


def mprotect(k: Kernel, pid: int, va: int, pages: int, prot: Prot) -> tuple[Kernel, Outcome]:
    """Change the protection of the mapped run at ``va``; ENOMEM if it ends before the range does."""
    sp = space(k, pid)
    error = range_error(va)
    if error:
        return k, Errno(error)
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    if pages == 0:
        return k, Ok()
    end = covered_until(sp.vmas, lo, hi)
    if end == lo:
        return k, ENOMEM
    if split_refused(sp.vmas, lo):
        return k, Errno("EINVAL")
    outcome: Outcome = Ok() if end == hi else ENOMEM
    if split_refused(sp.vmas, end):
        last = find(sp.vmas, end)
        assert last is not None
        end, outcome = max(lo, last.start), Errno("EINVAL")
        if end == lo:
            return k, outcome
    # mprotect_fixup leaves a VMA whose flags do not change alone (mm/mprotect.c: newflags == oldflags), so
    # only an edge inside a VMA that changes splits a THP PMD there (vma_adjust_trans_huge).
    cut_at = [e for e in (lo, end) if (v := find(sp.vmas, e)) is not None and v.start < e and v.prot != prot]
    k = thp.split_edges(k, pid, *cut_at)
    sp = space(k, pid)
    changed = tuple(replace(v, prot=prot) for v in inside(sp.vmas, lo, end))
    vmas = merge_at(insert(cut(sp.vmas, lo, end), changed), lo, end)
    leaves = dict(sp.leaves)
    for vpn, leaf in sp.leaves.items():
        if lo <= vpn < end:
            vma = find(vmas, vpn)
            assert vma is not None
            leaves[vpn] = changed_leaf(k, vma, leaf)
    k = with_space(k, pid, replace(sp, vmas=vmas, leaves=frozen(leaves)))
    return k, outcome


def madvise_dontneed(k: Kernel, pid: int, va: int, pages: int) -> tuple[Kernel, Outcome]:
    """Clear the entries of the range, VMA by VMA (``madvise_walk_vmas``); ENOMEM (after clearing the mapped parts)
    if it has a hole.  In a hugetlb VMA the start must be 2 MiB aligned (EINVAL) and the end is rounded down."""
    sp = space(k, pid)
    error = range_error(va)
    if error:
        return k, Errno(error)
    if pages == 0:
        return k, Ok()
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    for vma in inside(sp.vmas, lo, hi):
        if vma.huge and vma.start % HUGE_PAGES:
            return k, Errno("EINVAL")
        end = vma.end - vma.end % HUGE_PAGES if vma.huge else vma.end
        k = zap(thp.split_edges(k, pid, vma.start, end), pid, vma.start, end)
    return k, ENOMEM if has_hole(sp.vmas, lo, hi) else Ok()


def switch(k: Kernel, cpu: int, pid: int) -> tuple[Kernel, Outcome]:
    """CPU ``cpu`` runs ``pid`` (loads its CR3); an unknown CPU is reported before an unknown pid."""
    check_cpu(k, cpu)
    space(k, pid)
    return replace(k, current=tuple(pid if i == cpu else c for i, c in enumerate(k.current))), Ok()


def pin(k: Kernel, pid: int, va: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """Take a read-only reference on the page at ``va`` (``get_user_pages`` without FOLL_WRITE)."""
    sp = space(k, pid)
    check_address(va)
    vpn = va >> PAGE_SHIFT
    vma = find(sp.vmas, vpn) if va < TASK_SIZE else None
    if vma is None or not vma.prot.read:
        return k, EFAULT
    if vma.huge:
        raise NotModelled(
            f"pin of {va:#x}: pinning a hugetlb page is not modelled (hugetlb_wp reuses on the map count, so a "
            "FOLL_GET reference may see another process's writes): pin a page of a mapping with huge=false"
        )
    if thp.thp_at(k, pid, vpn) is not None or thp.thp_allowed(k, vma, vpn - vpn % HUGE_PAGES):
        raise NotModelled(
            f"pin of {va:#x}: pinning a transparent huge page is not modelled (copy_huge_pmd splits a pinned "
            "THP): pin a page where THP is off (thp enabled never, or madvise nohugepage)"
        )
    if vpn in sp.swapped:
        k, failed = swap.swap_fault(k, pid, vma, vpn, False, choices)
        if failed is not None:
            return k, failed
    elif vpn not in sp.leaves:
        k, failed = missing_fault(k, pid, vma, vpn, False, choices)
        if failed is not None:
            return k, failed
    pfn = space(k, pid).leaves[vpn].pfn
    k = get_page(k, pfn, maps=0)
    number = k.next_pin
    return replace(k, pins=updated(k.pins, number, Pin(pfn, va % PAGE_SIZE)), next_pin=number + 1), NewPin(number)


def held_pin(k: Kernel, number: int) -> Pin:
    """Pin ``number``; :class:`UnknownPin` if it is not held."""
    if number not in k.pins:
        raise UnknownPin(f"pin {number} is not held: allowed {sorted(k.pins)}")
    return k.pins[number]


def read_pin(k: Kernel, number: int) -> Outcome:
    """The pinned word, read through the reference (as a vmsplice'd pipe would)."""
    held = held_pin(k, number)
    return Value(page_words(k, held.pfn).get(held.offset, 0))


def unpin(k: Kernel, number: int) -> tuple[Kernel, Outcome]:
    """Drop the pin's reference; the frame is freed if that was the last one."""
    held = held_pin(k, number)
    k = replace(k, pins=without(k.pins, [number]))
    return put_page(k, held.pfn, unmaps=0), Ok()
