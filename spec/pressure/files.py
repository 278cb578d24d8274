"""Files and the page cache: a small in-model file system, ``read``/``write`` through the cache, file mappings.

A file is a named array of pages on disk (``File.disk``) with a size in
pages; its page cache is the kernel object ``File.obj`` (the
``address_space``), index -> frame, each cached page holding one reference
for the cache (``filemap_add_folio``).  A page read from disk into the cache
goes on the inactive file LRU.  ``read`` and ``write`` go through the cache
(mm/filemap.c ``filemap_read``, ``generic_perform_write``) and mark the page
accessed (``folio_mark_accessed``: an unreferenced page becomes referenced,
a referenced inactive one active); ``write`` dirties it; a write past the end
grows the file.  ``fsync`` and ``msync`` write dirty pages back
(``filemap_write_and_wait_range``): the disk gets the page's words, the page
is clean again and every shared mapping of it is write-protected
(``folio_mkclean``), with the TLBs flushed, so the next store dirties it again.

A file mapping is a VMA whose object is the file's: ``MAP_SHARED`` maps the
page-cache page itself; a store goes to it and dirties it.  Dirtying is
tracked by write faults as Linux does for a file system that accounts dirty
pages (``vma_wants_writenotify``): a read fault maps the page read-only
(``do_read_fault``), a write fault, or a write to a read-only entry
(``wp_page_shared``), makes the entry writable and the page dirty.
``MAP_PRIVATE`` maps the page-cache page read-only; a write fault copies it
into a new anonymous page (``do_cow_fault``, or ``wp_page_copy`` on a
present entry), so a private store never reaches the file.  A fault that
had to read the page from disk is a major fault (``filemap_fault``:
``VM_FAULT_MAJOR``, ``PGMAJFAULT``); every other one is minor.  A fault on a
page at or past the end of the file is SIGBUS.  A read fault also maps the neighbouring cached pages
(:func:`fault_around`).  ``truncate`` shrinks or
grows a file; pages past the new end leave the cache and every mapping,
private copies included (``truncate_pagecache`` -> ``unmap_mapping_range``
with ``even_cows``), and their shadow entries with them.  With the config's ``workingset``, a page read back
soon after reclaim evicted it may go straight on the active list (:mod:`spec.pressure.workingset`).
"""

from __future__ import annotations

from lang.errors import InvalidArgument, UnknownFile
from lang.records import replace
from spec.mm import cow
from spec.mm.kernel import (
    NO_WORDS,
    Choices,
    File,
    Kernel,
    Leaf,
    Page,
    Words,
    free_frames,
    frozen,
    get_page,
    new_anon_page,
    put_page,
    space,
    take,
    updated,
    with_page,
    without,
)
from spec.mm.pagetable import ensure_tables, leaf_for, missing_tables, set_leaf, zap
from spec.mm.vma import Vma, inside
from spec.outcome import ENOMEM, Errno, Ok, Outcome, Signal, Value
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE
from spec.paging.tlb import Tlb
from spec.pressure import workingset

SIGBUS = Signal(None, bus=True)
MAX_FILE_PAGES = 1 << 20


def the_file(k: Kernel, name: str) -> File:
    """File ``name``; :class:`UnknownFile` if there is none."""
    if name not in k.files:
        raise UnknownFile(f"file {name!r} does not exist: allowed {sorted(k.files)}; create it first")
    return k.files[name]


def file_by_obj(k: Kernel, obj: int) -> tuple[str, File] | None:
    """The file whose page cache is object ``obj``, if any."""
    for name, f in k.files.items():
        if f.obj == obj:
            return name, f
    return None


def is_file_vma(k: Kernel, vma: Vma) -> bool:
    """``vma`` maps a file (its object is a file's page cache)."""
    return bool(vma.obj) and not vma.huge and file_by_obj(k, vma.obj) is not None


def file_objects(k: Kernel) -> frozenset[int]:
    """The objects that are files' page caches (they live as long as the file, mapped or not)."""
    return frozenset(f.obj for f in k.files.values())


def check_offset(offset: int) -> None:
    """A file offset is a non-negative, 8-byte aligned byte offset (files are read and written by words)."""
    if offset < 0 or offset % 8:
        raise InvalidArgument(f"file offset {offset:#x} is not a non-negative multiple of 8: files hold 64-bit words")


def disk_pages(words: dict[int, int]) -> dict[int, Words]:
    """Words by byte offset in the file, as pages by index (zero words left out)."""
    pages: dict[int, dict[int, int]] = {}
    for offset, value in words.items():
        check_offset(offset)
        if value:
            pages.setdefault(offset // PAGE_SIZE, {})[offset % PAGE_SIZE] = value
    return {index: frozen(ws) for index, ws in pages.items()}


def create(k: Kernel, name: str, pages: int, words: dict[int, int]) -> tuple[Kernel, Outcome]:
    """A new file of ``pages`` pages holding ``words`` (byte offset -> value) on disk; EEXIST if it exists,
    EINVAL if a word lies past its end."""
    disk = disk_pages(words)
    if name in k.files:
        return k, Errno("EEXIST")
    if any(index >= pages for index in disk) or not 0 <= pages <= MAX_FILE_PAGES:
        return k, Errno("EINVAL")
    obj = k.next_object
    k = replace(k, objects=updated(k.objects, obj, frozen({})), next_object=obj + 1)
    return replace(k, files=updated(k.files, name, File(obj, pages, frozen(disk)))), Ok()


def with_file(k: Kernel, name: str, f: File) -> Kernel:
    return replace(k, files=updated(k.files, name, f))


def cache_page(k: Kernel, f: File, index: int, choices: Choices, write: bool = False) -> tuple[Kernel, int]:
    """The page-cache page of page ``index`` of ``f``, read from disk into a new frame (role ``("file", obj,
    index, 0)``) if it is not cached, on the inactive list, or the active one if it is a refault that
    :func:`spec.pressure.workingset.refault` activates (never for ``write``); the caller has checked a frame is
    free when it is not."""
    cached = k.objects[f.obj].get(index)
    if cached is not None:
        return k, cached
    k, pfn = take(k, ("file", f.obj, index, 0), choices)
    k, active = workingset.refault(k, f.obj, index, write)
    page = Page(1, 0, False, False, f.disk.get(index, NO_WORDS), lru="active" if active else "inactive")
    k = replace(k, pages=updated(k.pages, pfn, page))
    return replace(k, objects=updated(k.objects, f.obj, updated(k.objects[f.obj], index, pfn))), pfn


def mark_accessed(k: Kernel, pfn: int) -> Kernel:
    """``folio_mark_accessed``: unreferenced -> referenced; referenced and inactive -> active, unreferenced (an
    activation: ``workingset_activation``)."""
    page = k.pages[pfn]
    if not page.referenced:
        return with_page(k, pfn, referenced=True)
    if page.lru == "inactive":
        return workingset.age_nonresident(with_page(k, pfn, lru="active", referenced=False))
    return k


def read(k: Kernel, name: str, offset: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """The word at byte ``offset`` of the file, through the page cache (0 past the end, like a short read)."""
    f = the_file(k, name)
    check_offset(offset)
    index = offset // PAGE_SIZE
    if index >= f.pages:
        return k, Value(0)
    if index not in k.objects[f.obj] and free_frames(k) < 1:
        return k, ENOMEM
    k, pfn = cache_page(k, f, index, choices)
    value = k.pages[pfn].words.get(offset % PAGE_SIZE, 0)
    return mark_accessed(k, pfn), Value(value)


def write(k: Kernel, name: str, offset: int, value: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """Store ``value`` at byte ``offset`` of the file through the page cache: the page becomes dirty; a write past
    the end grows the file to cover it."""
    f = the_file(k, name)
    check_offset(offset)
    index = offset // PAGE_SIZE
    if index >= MAX_FILE_PAGES:
        return k, Errno("EFBIG")
    if index not in k.objects[f.obj] and free_frames(k) < 1:
        return k, ENOMEM
    if index >= f.pages:
        f = replace(f, pages=index + 1)
        k = with_file(k, name, f)
    k, pfn = cache_page(k, f, index, choices, write=True)
    words = {o: v for o, v in updated(k.pages[pfn].words, offset % PAGE_SIZE, value).items() if v}
    k = with_page(k, pfn, words=frozen(words), dirty=True)
    return mark_accessed(k, pfn), Ok()


def flush_all(k: Kernel) -> Kernel:
    """Every CPU's TLB flushed of everything (``flush_tlb_all``): they hold only current translations."""
    return replace(k, tlbs=(Tlb(),) * len(k.tlbs))


def mappers(k: Kernel, pfn: int) -> list[tuple[int, int]]:
    """(pid, vpn) of every entry that maps frame ``pfn``: the reverse map (``rmap_walk``)."""
    return [
        (pid, vpn) for pid, sp in sorted(k.procs.items()) for vpn, leaf in sorted(sp.leaves.items()) if leaf.pfn == pfn
    ]


def writeback(k: Kernel, obj: int, index: int) -> Kernel:
    """Write the dirty page ``index`` of file object ``obj`` back: the disk gets its words, it is clean, and its
    entries are write-protected (``folio_mkclean``); the caller flushes the TLBs."""
    found = file_by_obj(k, obj)
    assert found is not None
    name, f = found
    pfn = k.objects[obj][index]
    page = k.pages[pfn]
    disk = updated(f.disk, index, page.words) if page.words else without(f.disk, [index])
    k = with_page(with_file(k, name, replace(f, disk=disk)), pfn, dirty=False)
    for pid, vpn in mappers(k, pfn):
        leaf = space(k, pid).leaves[vpn]
        if leaf.writable or leaf.dirty:
            k = set_leaf(k, pid, vpn, replace(leaf, writable=False, dirty=False))
    return k


def sync_range(k: Kernel, obj: int, lo: int, hi: int) -> Kernel:
    """Write back the dirty cached pages ``lo .. hi-1`` of object ``obj``; flush the TLBs if any was."""
    dirty = [i for i, pfn in sorted(k.objects[obj].items()) if lo <= i < hi and k.pages[pfn].dirty]
    for index in dirty:
        k = writeback(k, obj, index)
    return flush_all(k) if dirty else k


def fsync(k: Kernel, name: str) -> tuple[Kernel, Outcome]:
    """``fsync``: every dirty page of the file written back."""
    f = the_file(k, name)
    return sync_range(k, f.obj, 0, MAX_FILE_PAGES), Ok()


def msync(k: Kernel, pid: int, va: int, pages: int) -> tuple[Kernel, Outcome]:
    """``msync(MS_SYNC)``: write back the file pages the shared file mappings of the range map
    (mm/msync.c -> ``vfs_fsync_range``); EINVAL if ``va`` is not page aligned, ENOMEM if the range has a hole."""
    sp = space(k, pid)
    if va % PAGE_SIZE:
        return k, Errno("EINVAL")
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    for vma in inside(sp.vmas, lo, hi):
        if vma.shared and is_file_vma(k, vma):
            start, end = max(vma.start, lo), min(vma.end, hi)
            k = sync_range(k, vma.obj, vma.index_of(start), vma.index_of(end))
    covered = sum(min(v.end, hi) - max(v.start, lo) for v in inside(sp.vmas, lo, hi))
    return k, Ok() if covered == pages else ENOMEM


def truncate(k: Kernel, name: str, pages: int) -> tuple[Kernel, Outcome]:
    """``ftruncate`` to ``pages`` pages: pages past the new end leave every mapping (private copies too), the cache
    and the disk; a grown file reads zero past its old end."""
    f = the_file(k, name)
    if not 0 <= pages <= MAX_FILE_PAGES:
        return k, Errno("EINVAL")
    for pid, sp in sorted(k.procs.items()):
        for vma in sp.vmas:
            if vma.obj == f.obj and not vma.huge:
                first = max(vma.start, vma.start + pages - vma.pgoff)
                if first < vma.end:
                    k = zap(k, pid, first, vma.end)
    gone = sorted(i for i in k.objects[f.obj] if i >= pages)
    for index in gone:
        k = drop_cached(k, f.obj, index)
    k = workingset.truncated(k, f.obj, pages)
    disk = {i: ws for i, ws in f.disk.items() if i < pages}
    return flush_all(with_file(k, name, replace(f, pages=pages, disk=frozen(disk)))), Ok()


def drop_cached(k: Kernel, obj: int, index: int) -> Kernel:
    """Page ``index`` leaves object ``obj``'s cache with its reference (``filemap_remove_folio``)."""
    pfn = k.objects[obj][index]
    k = replace(k, objects=updated(k.objects, obj, without(k.objects[obj], [index])))
    return put_page(k, pfn, unmaps=0)


def file_fault(
    k: Kernel, pid: int, vma: Vma, vpn: int, write: bool, choices: Choices
) -> tuple[Kernel, Outcome | None, bool]:
    """A missing entry in a file mapping (``do_read_fault``, ``do_shared_fault``, ``do_cow_fault``): the cached
    page, read from disk if needed (major), mapped shared, or copied for a private write.  The third value says
    the fault was major."""
    found = file_by_obj(k, vma.obj)
    assert found is not None
    f = found[1]
    index = vma.index_of(vpn)
    if index >= f.pages:
        return k, SIGBUS, False
    major = index not in k.objects[f.obj]
    copy = write and not vma.shared
    need = len(missing_tables(space(k, pid), [vpn])) + int(major) + int(copy)
    if free_frames(k) < need:
        return k, ENOMEM, False
    k = ensure_tables(k, pid, vpn, choices)
    k, pfn = cache_page(k, f, index, choices)
    if copy:
        k, new = take(k, ("page", pid, vpn, 0), choices)
        k = cow.mark_anon(new_anon_page(k, new, k.pages[pfn].words), pid, vpn)
        return set_leaf(k, pid, vpn, leaf_for(vma, new, writable=True)), None, major
    k = get_page(k, pfn)
    if write:
        k = with_page(k, pfn, dirty=True)
    return set_leaf(k, pid, vpn, leaf_for(vma, pfn, writable=write)), None, major


def shared_wp_fault(k: Kernel, pid: int, vpn: int, leaf: Leaf) -> Kernel:
    """A write to a read-only entry of a shared file mapping (``wp_page_shared``): the page becomes dirty and the
    entry writable."""
    return set_leaf(with_page(k, leaf.pfn, dirty=True), pid, vpn, replace(leaf, writable=True, dirty=True))


PTRS_PER_PTE = 512


def fault_around_window(k: Kernel, vma: Vma, vpn: int) -> range:
    """The pages a read fault at ``vpn`` may map around itself (mm/memory.c ``do_fault_around``, Linux 6.18).

    The window is ``fault_around_pages`` pages naturally aligned in the virtual address space
    (``ALIGN_DOWN(pte_index(address), nr_pages)``), its start clipped up to the VMA's start, and it runs
    ``nr_pages`` from that start, clipped to the VMA's end and to the page table holding ``vpn``
    (``PTRS_PER_PTE``): it never crosses a VMA or a page table.  Empty when fault-around is off (one page,
    ``should_fault_around``).
    """
    n = k.fault_around
    if n <= 1:
        return range(0)
    pte_off, vma_off = vpn % PTRS_PER_PTE, vpn - vma.start
    first = max(pte_off - pte_off % n, pte_off - min(pte_off, vma_off))
    last = min(first + n, PTRS_PER_PTE, pte_off + (vma.end - vma.start) - vma_off)
    base = vpn - pte_off
    return range(base + first, base + last)


def fault_around(k: Kernel, pid: int, vma: Vma, vpn: int) -> Kernel:
    """After a read fault at ``vpn`` in a file or shmem mapping, map the window's other pages that are already in
    the page cache (``do_read_fault`` -> ``do_fault_around`` -> ``filemap_map_pages``, mm/filemap.c; shmem's
    ``vm_ops`` use ``filemap_map_pages`` too, mm/shmem.c).

    ``filemap_map_pages`` maps only what it finds in the cache, up to date and not locked
    (``next_uptodate_folio``; every cached page here is both), below the file's end, and only where the entry
    is none (``pte_none``: a present, PROT_NONE or swap entry stays).  Each page is mapped as the read fault
    itself would map it (``set_pte_range`` with ``vma->vm_page_prot``): read-only in a file mapping (private, or
    shared with dirty tracking), writable in a writable shmem mapping; clean (``pte_mkdirty`` only for a write,
    or a writable entry of a ``PG_dirty`` folio, which a shmem page is not here); young, since x86 does not want old
    prefaulted entries (``arch_wants_old_prefaulted_pte``); with a reference and a map count each
    (``folio_ref_add``, ``folio_add_file_rmap_ptes``).  None of them is a fault: only the faulting access is
    counted, and it is minor when fault-around mapped its page.  The page table is the faulting page's, which
    the fault made, so no frame is taken.  Linux runs fault-around before ``__do_fault`` reads a missing page;
    the model runs it after a fault that succeeded, which maps the same pages (the read page is mapped by the
    fault), and a fault that fails maps nothing.
    """
    found = file_by_obj(k, vma.obj)
    end = found[1].pages if found is not None else MAX_FILE_PAGES
    cache = k.objects[vma.obj]
    for page in fault_around_window(k, vma, vpn):
        sp = space(k, pid)
        index = vma.index_of(page)
        pfn = cache.get(index)
        if page == vpn or page in sp.leaves or page in sp.swapped or pfn is None or index >= end:
            continue
        k = get_page(k, pfn)
        k = set_leaf(k, pid, page, leaf_for(vma, pfn, writable=found is None and vma.prot.write, dirty=False))
    return k
