"""A CPU's access to memory and the page-fault handler, as Linux does it.

The hardware tries the access against the leaf (SDM Vol. 3A 4.6: the user
bit for user mode, the write bit for writes with CR0.WP=1, XD for fetches with
EFER.NXE=1; SMEP and SMAP are off).  When it faults, the handler
(arch/x86/mm/fault.c ``do_user_addr_fault``, mm/memory.c ``handle_mm_fault``)
either fixes the page table and the access is retried, or the access ends in
SIGSEGV with the hardware's error code:

- an address outside every VMA, or in the kernel half, is SIGSEGV;
- ``access_error``: a write needs ``VM_WRITE``; a non-write fault on a present
  entry is an error; otherwise the VMA must be accessible.  Execute
  permission is not checked there: a fetch from a readable, non-executable
  page maps it and then faults on its XD bit;
- no entry (``do_anonymous_page``): a read of a private page maps the shared
  zero page read-only; a write allocates a zeroed exclusive anonymous page,
  writable; a shared VMA behaves like shmem (``shmem_fault``): its object's
  page, allocated on first touch (never the zero page), mapped writable if the
  VMA is;
- a write to a present read-only private entry is copy-on-write
  (:func:`spec.mm.cow.wp_fault`).

With transparent huge pages on, a fault with no entry in an eligible private anonymous VMA may map the whole
aligned 2 MiB around it with one PMD, or fall back to 4 KiB pages (:func:`spec.mm.thp.thp_fault`); a write to a
read-only THP PMD is :func:`spec.mm.thp.thp_wp_fault`.

A fault in a hugetlb VMA (mm/hugetlb.c ``hugetlb_fault``) works on the
2 MiB page around the address.  There is no zero page: with no entry,
``hugetlb_no_page`` gives a private VMA an anon_vma (``__vmf_anon_prepare``)
and a fresh zeroed exclusive anonymous 2 MiB page, mapped read-only for a
read and writable for a write (the write goes straight on to
``hugetlb_wp``, which reuses it); a shared VMA maps its file's page for the
offset, allocated zeroed on first touch, writable if the VMA is.  A write to a
read-only private entry is :func:`spec.mm.cow.huge_wp_fault`.

When a frame is needed and none is free the access returns ENOMEM and changes
nothing (Linux would invoke the OOM killer, ``VM_FAULT_OOM``).  For a
hugetlb page that is an abstraction: Linux takes pages from a pool filled
ahead (``nr_hugepages``; here the buddy allocator's order-9 blocks),
reserves them at mmap (``hugetlb_reserve_pages``, not modelled), and an
allocation that still fails at fault is ``-ENOSPC`` from
``alloc_hugetlb_folio``, which ``vmf_error`` turns into ``VM_FAULT_SIGBUS``:
SIGBUS, where this model answers ENOMEM and changes nothing.
"""

from __future__ import annotations

from lang.records import replace
from spec.memory import check_address
from spec.mm import cow, thp
from spec.mm.kernel import (
    Choices,
    Kernel,
    Leaf,
    can_place,
    can_take_huge,
    count_fault,
    free_frames,
    frozen,
    get_page,
    leaf_of,
    new_anon_page,
    new_shmem_page,
    page_words,
    running,
    space,
    take,
    updated,
    with_page,
    with_space,
)
from spec.mm.pagetable import ensure_tables, leaf_for, missing_tables, set_leaf
from spec.mm.vma import HUGE_ORDER, HUGE_PAGES, TASK_SIZE, Vma, find
from spec.outcome import ENOMEM, Ok, Outcome, Signal, Value
from spec.paging.address import PAGE_SHIFT
from spec.paging.permissions import PF_ID, PF_P, PF_US, PF_WR, Kind, Mode
from spec.pressure import files, swap

MAX_RETRIES = 3


def leaf_at(k: Kernel, pid: int, va: int) -> Leaf | None:
    """The leaf the hardware would reach for ``va`` in process ``pid``, user or kernel half."""
    sp = space(k, pid)
    found = leaf_of(sp.leaves if va < TASK_SIZE else sp.kernel, va >> PAGE_SHIFT)
    return None if found is None else found[1]


def hardware_allows(leaf: Leaf | None, kind: Kind, mode: Mode) -> bool:
    """The access succeeds against ``leaf`` (CR0.WP=1, EFER.NXE=1, SMEP=SMAP=0)."""
    if leaf is None or not leaf.present or (mode is Mode.USER and not leaf.user):
        return False
    if kind is Kind.WRITE:
        return leaf.writable
    return not (kind is Kind.FETCH and leaf.nx)


def hardware_error_code(leaf: Leaf | None, kind: Kind, mode: Mode) -> int:
    """The #PF error code: P for a present leaf, W/R, U/S, and I/D for a fetch (NXE=1) (SDM 4.7)."""
    code = PF_P if leaf is not None and leaf.present else 0
    code |= PF_WR if kind is Kind.WRITE else 0
    code |= PF_US if mode is Mode.USER else 0
    return code | (PF_ID if kind is Kind.FETCH else 0)


def access(
    k: Kernel, cpu: int, va: int, kind: Kind, mode: Mode, value: int, choices: Choices
) -> tuple[Kernel, Outcome]:
    """One load, store or fetch by the process ``cpu`` runs, with faults handled and retried."""
    pid = running(k, cpu)
    check_address(va)
    for _ in range(MAX_RETRIES):
        leaf = leaf_at(k, pid, va)
        if hardware_allows(leaf, kind, mode):
            assert leaf is not None
            return perform(touch(k, pid, va, leaf, kind), leaf.pfn, leaf.offset(va), kind, value)
        k, failed = handle_fault(k, pid, va, kind, hardware_error_code(leaf, kind, mode), choices)
        if failed is not None:
            return k, failed
    raise AssertionError(f"access to {va:#x} still faults after {MAX_RETRIES} fixes")


def touch(k: Kernel, pid: int, va: int, used: Leaf, kind: Kind = Kind.READ) -> Kernel:
    """The walker sets the accessed bit of the entry it used, and on a write its dirty bit, if it is the current one
    (SDM Vol. 3A 4.8).  A TLB hit needs no walk: an entry a TLB holds is young, as aging clears the bit with a
    flush; a write always walks, as a TLB entry here does not cache the dirty bit."""
    sp = space(k, pid)
    found = leaf_of(sp.leaves, va >> PAGE_SHIFT) if va < TASK_SIZE else None
    write = kind is Kind.WRITE
    if found is None or found[1].pfn != used.pfn or (found[1].young and (found[1].dirty or not write)):
        return k
    leaf = replace(found[1], young=True, dirty=found[1].dirty or write)
    return with_space(k, pid, replace(sp, leaves=updated(sp.leaves, found[0], leaf)))


def perform(k: Kernel, pfn: int, offset: int, kind: Kind, value: int) -> tuple[Kernel, Outcome]:
    """The access itself: read a word, or write one into the page."""
    words = page_words(k, pfn)
    if kind is not Kind.WRITE:
        return k, Value(words.get(offset, 0))
    new = {o: v for o, v in updated(words, offset, value).items() if v}
    return with_page(k, pfn, words=frozen(new)), Ok()


def access_error(vma: Vma, kind: Kind, code: int) -> bool:
    """``access_error`` (arch/x86/mm/fault.c): the VMA forbids this fault."""
    if kind is Kind.WRITE:
        return not vma.prot.write
    return bool(code & PF_P) or not vma.prot.accessible


def handle_fault(
    k: Kernel, pid: int, va: int, kind: Kind, code: int, choices: Choices
) -> tuple[Kernel, Outcome | None]:
    """Fix the fault (outcome None, retry) or end the access with SIGSEGV or ENOMEM."""
    vpn = va >> PAGE_SHIFT
    vma = find(space(k, pid).vmas, vpn) if va < TASK_SIZE else None
    if vma is None or access_error(vma, kind, code):
        return k, Signal(code)
    if vpn in space(k, pid).swapped:
        k, failed = swap.swap_fault(k, pid, vma, vpn, kind is Kind.WRITE, choices)
        found = leaf_of(space(k, pid).leaves, vpn)
        if failed is not None or kind is not Kind.WRITE or found is None or found[1].writable:
            return k, failed
        # do_swap_page with FAULT_FLAG_WRITE breaks COW in the same fault (mm/memory.c: ``ret |= do_wp_page(vmf)``):
        # one fault, counted once, as swap_fault counted it.
        return cow.wp_fault(swap.free_if_only_cache(k, found[1].pfn), pid, vma, vpn, found[1], choices)
    found = leaf_of(space(k, pid).leaves, vpn)
    if found is None:
        return missing_fault(k, pid, vma, vpn, kind is Kind.WRITE, choices)
    key, leaf = found
    if kind is not Kind.WRITE or leaf.writable:
        return k, None
    if vma.huge:
        k, failed = cow.huge_wp_fault(k, pid, vma, key, leaf, choices)
    elif leaf.huge:
        k, failed = thp.thp_wp_fault(k, pid, vma, vpn, key, leaf, choices)
    elif vma.shared and files.is_file_vma(k, vma):
        k, failed = files.shared_wp_fault(k, pid, vpn, leaf), None
    else:
        k, failed = cow.wp_fault(swap.free_if_only_cache(k, leaf.pfn), pid, vma, vpn, leaf, choices)
    return (k, failed) if failed is not None else (count_fault(k, pid, False), None)


def missing_fault(
    k: Kernel, pid: int, vma: Vma, vpn: int, write: bool, choices: Choices
) -> tuple[Kernel, Outcome | None]:
    """No entry yet: ``do_anonymous_page`` for a private VMA, ``shmem_fault`` for a shared one, ``filemap_fault``
    for a file mapping (:mod:`spec.pressure.files`); counted when fixed (:func:`~spec.mm.kernel.count_fault`).  A
    read fault in a file or shmem mapping (``do_read_fault``, mm/memory.c ``do_fault``) maps the neighbouring
    cached pages too (:func:`spec.pressure.files.fault_around`); an anonymous private one has no ``map_pages``."""
    major = False
    if files.is_file_vma(k, vma):
        k, failed, major = files.file_fault(k, pid, vma, vpn, write, choices)
    else:
        k, failed = anon_missing_fault(k, pid, vma, vpn, write, choices)
    if failed is not None:
        return k, failed
    if not write and not vma.huge and (vma.shared or files.is_file_vma(k, vma)):
        k = files.fault_around(k, pid, vma, vpn)
    return count_fault(k, pid, major), None


def anon_missing_fault(
    k: Kernel, pid: int, vma: Vma, vpn: int, write: bool, choices: Choices
) -> tuple[Kernel, Outcome | None]:
    """No entry in an anonymous (private, shared or hugetlb) mapping."""
    if vma.huge:
        return huge_missing_fault(k, pid, vma, vpn - vpn % HUGE_PAGES, write, choices)
    if vma.shared:
        return shmem_fault(k, pid, vma, vpn, choices)
    k, failed, handled = thp.thp_fault(k, pid, vma, vpn, write, choices)
    if handled:
        return k, failed
    need = len(missing_tables(space(k, pid), [vpn])) + (1 if write else 0)
    if free_frames(k) < need:
        return k, ENOMEM
    k = ensure_tables(k, pid, vpn, choices)
    if not write:
        return set_leaf(k, pid, vpn, leaf_for(vma, k.zero_pfn, writable=False)), None
    if not can_place(k, ("page", pid, vpn, 0)):
        return k, ENOMEM
    k, pfn = take(k, ("page", pid, vpn, 0), choices)
    k = cow.mark_anon(new_anon_page(k, pfn), pid, vpn)
    return set_leaf(k, pid, vpn, leaf_for(vma, pfn, writable=True)), None


def shmem_fault(k: Kernel, pid: int, vma: Vma, vpn: int, choices: Choices) -> tuple[Kernel, Outcome | None]:
    """Map the object's page for ``vpn``, allocating it zeroed on first touch; writable if the VMA is."""
    index = vma.index_of(vpn)
    cached = k.objects[vma.obj].get(index)
    need = len(missing_tables(space(k, pid), [vpn])) + (0 if cached is not None else 1)
    if free_frames(k) < need:
        return k, ENOMEM
    k = ensure_tables(k, pid, vpn, choices)
    if cached is None:
        k, cached = take(k, ("shmem", vma.obj, index, 0), choices)
        k = new_shmem_page(k, cached)
        k = replace(k, objects=updated(k.objects, vma.obj, updated(k.objects[vma.obj], index, cached)))
    k = get_page(k, cached)
    return set_leaf(k, pid, vpn, leaf_for(vma, cached, writable=vma.prot.write, dirty=False)), None


def huge_missing_fault(
    k: Kernel, pid: int, vma: Vma, head: int, write: bool, choices: Choices
) -> tuple[Kernel, Outcome | None]:
    """``hugetlb_no_page`` for the 2 MiB page at ``head``: the tables first (``huge_pte_alloc``), then the page.

    Roles: ``("huge", pid, head, 0)`` for a private page, ``("hugeshm", obj, index, 0)`` for a shared one.
    """
    index = vma.index_of(head)
    cached = k.objects[vma.obj].get(index) if vma.shared else None
    tables = len(missing_tables(space(k, pid), [head], frozenset({head})))
    if free_frames(k) < tables or (cached is None and not can_take_huge(k)):
        return k, ENOMEM
    k = ensure_tables(k, pid, head, choices, huge=True)
    if cached is None and not can_take_huge(k):
        return k, ENOMEM
    if not vma.shared:
        k, pfn = take(k, ("huge", pid, head, 0), choices, HUGE_ORDER)
        k = cow.mark_anon(new_anon_page(k, pfn, huge=True), pid, head)
        return set_leaf(k, pid, head, leaf_for(vma, pfn, writable=write)), None
    if cached is None:
        k, cached = take(k, ("hugeshm", vma.obj, index, 0), choices, HUGE_ORDER)
        k = new_shmem_page(k, cached, huge=True)
        k = replace(k, objects=updated(k.objects, vma.obj, updated(k.objects[vma.obj], index, cached)))
    k = get_page(k, cached)
    return set_leaf(k, pid, head, leaf_for(vma, cached, writable=vma.prot.write)), None
