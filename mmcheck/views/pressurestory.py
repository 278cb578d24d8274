"""Memory-pressure ops told in plain words, read off the spec's states: a page's life from fault to swap and back.

Used by ``mmcheck explain`` (through :mod:`mmcheck.views.kernelstory`).  Every
sentence is decided by the spec's kernel states before and after the op, never
by the op's name alone:

- a fault is *major* when the spec's fault counters say so (``majflt``), and
  the reason is read off the state before it: a swap entry whose slot has no
  swap-cache page (``do_swap_page``, mm/memory.c, reads the slot:
  ``swap_read_folio``), a file page not in the page cache (``filemap_fault``,
  mm/filemap.c, reads it from disk); *minor* for the shared zero page or a
  fresh page (``do_anonymous_page``), a page-cache hit (``filemap_fault``
  finds the folio: ``filemap_get_folio``), a swap-cache hit
  (``swap_cache_get_folio``), or a write to a read-only entry (``do_wp_page``:
  COW copy, reuse, or ``wp_page_shared`` dirtying a shared file page);
- reclaim is replayed step by step with the spec's own step function
  (:func:`spec.pressure.lru.apply_step`) and the implementation's choices of
  the op, so each *second chance* (a referenced inactive page moved to the
  active list, ``folio_check_references`` -> ``FOLIOREF_ACTIVATE``), each
  deactivation (``shrink_active_list``) and each eviction
  (``shrink_folio_list``) is a state the spec went through; an evicted
  anonymous page's entries become swap entries (``try_to_unmap``), shown in
  the x86-64 layout of ``__swp_entry`` (arch/x86/include/asm/pgtable_64.h:
  type in bits 59-63, offset inverted in bits 9-58), and the TLBs are flushed
  before its frame is freed (``try_to_unmap_flush`` before
  ``free_unref_folios``); a dirty file page is written back first (``pageout``);
- ``read``/``write`` through the page cache, ``fsync``/``msync`` writeback
  (``folio_mkclean`` write-protects the shared entries), ``MADV_COLD`` and
  ``MADV_PAGEOUT``, ``swapoff`` and the ``/proc`` figures are told the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from lang import ops
from lang import pressure_ops as pops
from spec.mm.kernel import Choices, Kernel, Leaf, free_frames
from spec.mm.kernel import leaf_of as find_leaf
from spec.mm.vma import Vma, find
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE
from spec.pressure import lru
from spec.pressure.files import file_by_obj, mappers

Result = Mapping[str, Any]
SWP_TYPE_BITS, SWP_OFFSET_SHIFT = 5, 14
MASK64 = (1 << 64) - 1


def swp_entry(kind: int, offset: int) -> int:
    """``__swp_entry(type, offset)`` as the PTE value x86-64 stores (arch/x86/include/asm/pgtable_64.h): the
    offset inverted (against L1TF) in bits 9-58, the type in bits 59-63, P and PROT_NONE clear."""
    return (((~offset << SWP_OFFSET_SHIFT) & MASK64) >> SWP_TYPE_BITS) | (kind << (64 - SWP_TYPE_BITS))


def swap_entry_text(slot: int) -> str:
    """``swap entry type 0 offset 1 (PTE 0x7ffffffffffffe00)``: the spec has one swap device, type 0."""
    return f"swap entry type 0 offset {slot} (PTE {swp_entry(0, slot):#x}, __swp_entry)"


def va_of(vpn: int) -> str:
    return f"{vpn << PAGE_SHIFT:#x}"


def list_name(k: Kernel, pfn: int) -> str:
    """``inactive anon``, ``active file`` or ``no LRU list``."""
    page = k.pages.get(pfn)
    if page is None or not page.lru:
        return "no LRU list"
    return f"{page.lru} {'anon' if page.anon else 'file'}"


def page_name(k: Kernel, pfn: int) -> str:
    """``anon frame 0x12 (pid 1 0x10000000)`` or ``file f page 1 in frame 0xa``."""
    page = k.pages.get(pfn)
    at = lru.cached_at(k, pfn)
    if page is not None and not page.anon and at is not None:
        found = file_by_obj(k, at[0])
        name = found[0] if found else f"object {at[0]}"
        return f"file {name} page {at[1]} (frame {pfn:#x})"
    users = ", ".join(f"pid {pid} {va_of(vpn)}" for pid, vpn in mappers(k, pfn))
    return f"anon frame {pfn:#x}" + (f" ({users})" if users else "")


def reference_reason(k: Kernel, pfn: int) -> str:
    """Why ``folio_referenced`` says a page was used: PG_referenced, or the young entries mapping it."""
    young = [f"pid {pid} {va_of(vpn)}" for pid, vpn in mappers(k, pfn) if k.procs[pid].leaves[vpn].young]
    why = []
    if k.pages[pfn].referenced:
        why.append("PG_referenced set (folio_mark_accessed by read()/write())")
    if young:
        why.append("the accessed bit set in the PTE of " + ", ".join(young))
    return " and ".join(why)


# --- reclaim ------------------------------------------------------------------------------------


def step_lines(k: Kernel, kind: int, pfn: int, after: Kernel) -> list[str]:
    """One reclaim step on the spec's state ``k`` (before it) and ``after`` (after it)."""
    name = page_name(k, pfn)
    if kind == lru.ACTIVATE:
        return [
            f"second chance: {name} is on the inactive list but referenced ({reference_reason(k, pfn)}): "
            "folio_check_references -> FOLIOREF_ACTIVATE moves it to the active list; PG_referenced and the accessed "
            "bits are cleared, the TLBs flushed (ptep_clear_flush_young), so only a new use sets them again"
        ]
    if kind == lru.DEACTIVATE:
        return [
            f"{name}: active -> inactive, aged (shrink_active_list): the inactive list ran short of pages that can go"
        ]
    page = k.pages[pfn]
    users = mappers(k, pfn)
    if page.anon:
        slot = next((s for pid, vpn in users for s in [after.procs[pid].swapped.get(vpn, 0)] if s), page.slot)
        how = (
            f"already in the swap cache with slot {slot}"
            if page.slot
            else f"given free swap slot {slot} (folio_alloc_swap via add_to_swap)"
        )
        lines = [
            f"evict {name}: inactive and not referenced (folio_check_references -> FOLIOREF_RECLAIM), {how}; "
            f"its words are written to slot {slot} (pageout -> swap_writepage)"
        ]
        lines += [f"  pid {pid} {va_of(vpn)}: PTE becomes {swap_entry_text(slot)} (try_to_unmap)" for pid, vpn in users]
    else:
        dirty = "dirty, so written back to the file first (pageout); " if page.dirty else "clean; "
        lines = [
            f"evict {name}: inactive and not referenced, {dirty}it leaves the page cache (__remove_mapping)"
            + (" and every PTE mapping it is cleared (try_to_unmap)" if users else "")
        ]
    lines.append(
        f"  every TLB flushed before frame {pfn:#x} goes back to the buddy allocator (try_to_unmap_flush in "
        "shrink_folio_list, then free_unref_folios)"
    )
    return lines


def replay_reclaim(before: Kernel, after: Kernel, choices: Choices) -> tuple[list[str], Kernel]:
    """The reclaim steps between ``before`` and ``after``, replayed on the spec with the op's choices."""
    k, lines = replace(before, lru_steps=0), []  # the driver counts each op's steps from 0
    while k.lru_steps < after.lru_steps:
        code = choices.get(("lru", k.lru_steps, 0, 0))
        step = lru.own_step(k) if code is None else (code % 4, code // 4)
        if step is None:
            break
        kind, pfn = step
        nxt = lru.apply_step(k, kind, pfn, choices)
        lines += step_lines(k, kind, pfn, nxt)
        k = nxt
    return lines, k


def reclaim_story(op: pops.Reclaim, before: Kernel, after: Kernel, result: Result, choices: Choices) -> list[str]:
    """The rule line of ``reclaim`` and its steps."""
    freed = result.get("reclaimed", 0)
    scans = "anonymous and file lists" if before.swap_slots else "file lists only (no swap: can_reclaim_anon_pages)"
    head = (
        f"reclaim up to {op.target} page(s) (shrink_lruvec, mm/vmscan.c) scanning the {scans}: "
        f"{after.lru_steps} step(s), {freed} page(s) freed"
    )
    steps, replayed = replay_reclaim(before, after, choices)
    if replayed.pages != after.pages:
        steps.append("(the replayed steps do not end in the op's state: the narration above is incomplete)")
    if freed < op.target:
        steps.append("reclaim stops short: no page left on the lists can be evicted")
    return [head, *steps]


# --- faults -------------------------------------------------------------------------------------


def fault_count(before: Kernel, after: Kernel, pid: int) -> tuple[int, int]:
    """Minor and major faults the op added to ``pid``'s counts."""
    if pid not in before.procs or pid not in after.procs:
        return 0, 0
    was, now = before.procs[pid], after.procs[pid]
    return now.minflt - was.minflt, now.majflt - was.majflt


def file_of(k: Kernel, vma: Vma) -> str | None:
    found = file_by_obj(k, vma.obj) if vma.obj else None
    return None if found is None else found[0]


def access_story(
    op: ops.Load | ops.Store, before: Kernel, after: Kernel, result: Result, choices: Choices
) -> list[str]:
    """A load or store that took a memory-pressure path: a swap-in, a file fault, direct reclaim, or a fault
    whose minor/major kind is worth saying; empty when it took none of these."""
    pid = before.current[op.cpu] if 0 <= op.cpu < len(before.current) else 0
    if pid not in before.procs or "signal" in result or "error" in result:
        return []
    sp = before.procs[pid]
    vpn = op.va >> PAGE_SHIFT
    vma = find(sp.vmas, vpn)
    minor, major = fault_count(before, after, pid)
    if vma is None or minor + major == 0:
        return []
    where = f"pid {pid} {op.name} at {op.va:#x}"
    kind = "major" if major else "minor"
    lines: list[str] = []
    start = before
    if after.lru_steps:
        lines.append(
            f"  {free_frames(before)} frame(s) free, below the min watermark ({lru.WMARK_MIN}): direct reclaim "
            "first (__alloc_pages_direct_reclaim)"
        )
        steps, start = replay_reclaim(before, after, choices)
        lines += [f"  {line}" for line in steps]
    found = find_leaf(after.procs[pid].leaves, vpn)
    new: Leaf | None = None if found is None else found[1]
    frame = "" if new is None else f"frame {new.pfn:#x}"
    rights = "" if new is None else ("writable" if new.writable else "read-only")
    if vpn in sp.swapped:
        slot = sp.swapped[vpn]
        cached = start.swap_cache.get(slot)
        if cached is None:
            why = (
                f"the PTE holds {swap_entry_text(slot)} and slot {slot} has no page in the swap cache: "
                f"do_swap_page reads the slot into {frame} (swap_read_folio), adds it to the swap cache and the "
                "inactive anon list: VM_FAULT_MAJOR, PGMAJFAULT"
            )
        else:
            why = (
                f"the PTE holds {swap_entry_text(slot)} but slot {slot} is still in the swap cache as frame "
                f"{cached:#x} (another mapping brought it in): do_swap_page maps it without I/O "
                "(swap_cache_get_folio)"
            )
        page = after.pages.get(new.pfn) if new is not None else None
        if page is not None and page.slot == 0:
            tail = f"mapped {rights}; exclusive and written, so slot {slot} is freed (folio_free_swap)"
        elif new is not None and new.writable:
            tail = f"mapped {rights}: no other entry refers to slot {slot} (exclusive)"
        elif not vma.prot.write:
            tail = f"mapped {rights}, as the VMA is"
        else:
            tail = f"mapped {rights}: other swap entries or mappings share it, a write will be COW"
        return [f"{where}: {kind} fault, swap-in: {why}; {tail}", *lines]
    old = find_leaf(sp.leaves, vpn)
    name = file_of(before, vma)
    if name is not None and old is None:
        index = vma.index_of(vpn)
        obj = before.files[name].obj
        hit = start.objects.get(obj, {}).get(index)
        source = (
            f"page-cache hit: file {name} page {index} is in frame {hit:#x} (filemap_fault -> filemap_get_folio)"
            if hit is not None
            else f"page-cache miss: file {name} page {index} is read from disk into a new frame on the "
            f"{refault_list(start, after)} file list (filemap_fault -> page_cache_ra_order / filemap_read_folio: "
            f"VM_FAULT_MAJOR){refault_story(start, after)}"
        )
        if isinstance(op, ops.Store) and not vma.shared:
            how = f"a private write copies it into anonymous {frame} (do_cow_fault)"
        elif vma.shared:
            how = f"mapped {rights}" + (
                " and the page marked dirty (do_shared_fault)"
                if isinstance(op, ops.Store)
                else " so the first write is noticed (do_read_fault; dirty tracking: vma_wants_writenotify)"
            )
        else:
            how = f"mapped {rights} (do_read_fault)"
        return [f"{where}: {kind} fault on a missing entry of a file mapping: {source}; {how}", *lines]
    if name is not None and old is not None and vma.shared and isinstance(op, ops.Store):
        return [
            f"{where}: {kind} fault, a write to the write-protected entry of shared file {name}'s page "
            f"{vma.index_of(vpn)}: clean pages are mapped read-only so the first write is seen; wp_page_shared "
            "makes the entry writable and the page dirty",
            *lines,
        ]
    if lines:
        return [f"{where}: {kind} fault after direct reclaim", *lines]
    return []


def fault_kind_line(op: ops.Load | ops.Store, before: Kernel, after: Kernel) -> list[str]:
    """``minor fault (minflt 1 -> 2)``: the counts the spec kept, for any access that faulted."""
    pid = before.current[op.cpu] if 0 <= op.cpu < len(before.current) else 0
    minor, major = fault_count(before, after, pid)
    if minor + major == 0:
        return []
    now = after.procs[pid]
    kind = "major (I/O was needed)" if major else "minor (no I/O)"
    return [f"{kind} fault: pid {pid} minflt {now.minflt}, majflt {now.majflt}; vmstat pgfault {after.pgfault}"]


# --- files, writeback, madvise, swapoff, /proc --------------------------------------------------


def refault_list(before: Kernel, after: Kernel) -> str:
    """The list a page read in went on: active when workingset detection activated it as a refault."""
    return "active" if after.workingset.activate_file > before.workingset.activate_file else "inactive"


def refault_story(before: Kernel, after: Kernel) -> str:
    """What workingset detection (mm/workingset.c) made of a page read in, when its shadow entry was found."""
    if after.workingset.refault_file == before.workingset.refault_file:
        return ""
    if refault_list(before, after) == "active":
        return (
            "; a refault: its shadow entry was in the page cache and its refault distance is at most the "
            "workingset, so it starts active (workingset_refault -> workingset_test_recent, folio_set_active)"
        )
    return (
        "; a refault, but its refault distance is larger than the workingset, so it starts inactive "
        "(workingset_refault -> workingset_test_recent)"
    )


def file_io_story(op: pops.FileRead | pops.FileWrite, before: Kernel, after: Kernel) -> list[str]:
    """``read``/``write`` through the page cache: hit or miss, the LRU list, the referenced bit, dirtying."""
    verb = "read" if isinstance(op, pops.FileRead) else "write"
    index = op.offset // PAGE_SIZE
    f = after.files.get(op.file)
    head = f"{verb}() of file {op.file} at {op.offset:#x} (page {index}) through the page cache"
    if f is None or index not in after.objects.get(f.obj, {}):
        return [f"{head}: past the end of the file, nothing cached"]
    pfn = after.objects[f.obj][index]
    old = before.objects.get(f.obj, {}).get(index) if op.file in before.files else None
    grown = op.file in before.files and index >= before.files[op.file].pages
    if old is not None:
        how = f"page-cache hit in frame {pfn:#x}"
    elif grown:
        how = (
            f"past the old end, the file grows: a new zeroed page in frame {pfn:#x}, added to the inactive file "
            "list (filemap_add_folio)"
        )
    else:
        how = (
            f"page-cache miss: read from disk into frame {pfn:#x}, added to the {refault_list(before, after)} file "
            f"list (filemap_add_folio){refault_story(before, after)}"
        )
    lines = [f"{head} ({'filemap_read' if verb == 'read' else 'generic_perform_write'}): {how}"]
    was = before.pages.get(pfn) if old is not None else None
    now = after.pages[pfn]
    if was is not None and was.lru == "inactive" and now.lru == "active":
        lines.append(
            "  folio_mark_accessed: it was already referenced on the inactive list, so it is activated (and its "
            "PG_referenced cleared)"
        )
    elif now.referenced and (was is None or not was.referenced):
        lines.append("  folio_mark_accessed: PG_referenced set; one more use and it goes to the active list")
    if verb == "write":
        lines.append(
            f"  the page is dirty (folio_mark_dirty): Dirty counts it until writeback ({list_name(after, pfn)})"
        )
    lines.append("  no process maps it: it counts in Cached, in no VmRSS")
    return lines


def written_back(before: Kernel, after: Kernel) -> list[str]:
    """Page-cache pages that were dirty and are clean: written back, their shared entries write-protected."""
    lines = []
    for pfn, page in sorted(after.pages.items()):
        was = before.pages.get(pfn)
        if was is not None and was.dirty and not page.dirty:
            protected = [
                f"pid {pid} {va_of(vpn)}"
                for pid, vpn in mappers(after, pfn)
                if before.procs[pid].leaves.get(vpn, Leaf(0)).writable and not after.procs[pid].leaves[vpn].writable
            ]
            wp = (
                "; entries write-protected so the next store faults and dirties it again (folio_mkclean): "
                + ", ".join(protected)
                if protected
                else ""
            )
            lines.append(f"  writeback of {page_name(after, pfn)}: the disk gets its words, it is clean{wp}")
    return lines


def madvise_story(op: ops.Madvise, before: Kernel, after: Kernel) -> list[str]:
    """``MADV_COLD`` / ``MADV_PAGEOUT``: which pages were deactivated, skipped (shared) or paged out."""
    head = (
        f"madvise pid {op.pid} {op.pages} page(s) at {op.va:#x} MADV_{op.advice.upper()} "
        "(madvise_cold_or_pageout_pte_range): pages mapped only here are deactivated and aged"
        + (
            "; each that can go is paged out at once, references ignored (reclaim_pages)"
            if op.advice == "pageout"
            else ""
        )
    )
    lines = [head]
    sp = before.procs.get(op.pid)
    lo = op.va >> PAGE_SHIFT
    for vpn in range(lo, lo + op.pages) if sp is not None else ():
        assert sp is not None
        leaf = sp.leaves.get(vpn)
        if leaf is None:
            why = f"already {swap_entry_text(sp.swapped[vpn])}" if vpn in sp.swapped else "no page mapped"
            lines.append(f"  {va_of(vpn)}: {why}, nothing to do")
            continue
        page = before.pages.get(leaf.pfn)
        if page is None or not page.lru:
            lines.append(f"  {va_of(vpn)}: frame {leaf.pfn:#x} is on no LRU list, skipped")
        elif page.mapcount != 1:
            lines.append(f"  {va_of(vpn)}: frame {leaf.pfn:#x} is mapped {page.mapcount} times, skipped (shared)")
        elif leaf.pfn not in after.pages:
            slot = after.procs[op.pid].swapped.get(vpn)
            entry = f"; PTE becomes {swap_entry_text(slot)}" if slot else ""
            lines.append(f"  {va_of(vpn)}: {page_name(before, leaf.pfn)} paged out, TLBs flushed, frame freed{entry}")
        else:
            lines.append(
                f"  {va_of(vpn)}: {page_name(before, leaf.pfn)} now {list_name(after, leaf.pfn)}, not referenced"
            )
    return lines


def swapoff_story(before: Kernel, after: Kernel) -> list[str]:
    """``swapoff``: every swap entry replaced by its page, read back if it was not in the swap cache."""
    lines = [
        "swapoff (try_to_unuse, mm/swapfile.c): every slot still on disk is read back, every swap entry "
        "replaced by its page (unuse_pte: read-only, old), the swap cache emptied, swap off"
    ]
    for pid, sp in sorted(before.procs.items()):
        for vpn, slot in sorted(sp.swapped.items()):
            leaf = after.procs[pid].leaves.get(vpn) if pid in after.procs else None
            how = "from the swap cache" if slot in before.swap_cache else "read from the device"
            to = "" if leaf is None else f" -> frame {leaf.pfn:#x} ({how})"
            lines.append(f"  pid {pid} {va_of(vpn)}: {swap_entry_text(slot)}{to}")
    return lines


def meminfo_story(after: Kernel, result: Result) -> list[str]:
    """What the meminfo figures count in the spec's state."""
    files = [
        f"{name} page {index}"
        for name, f in sorted(after.files.items())
        for index in sorted(after.objects.get(f.obj, {}))
    ]
    lines = [
        "/proc/meminfo (meminfo_proc_show): figures in kB, 4 kB a page",
        f"  Cached {result.get('Cached')} kB: page-cache pages, mapped or not ({', '.join(files) or 'none'}); "
        f"SwapCached {result.get('SwapCached')} kB: {len(after.swap_cache)} swap-cache page(s)",
        f"  AnonPages {result.get('AnonPages')} kB: anonymous pages mapped at least once; Mapped "
        f"{result.get('Mapped')} kB: page-cache pages some process maps",
    ]
    if after.slab:
        lines.append(
            f"  Slab {result.get('Slab')} kB: the slab allocator's {len(after.slab)} frame(s) (account_slab), "
            f"SUnreclaim {result.get('SUnreclaim')} kB of it: no cache is made with SLAB_RECLAIM_ACCOUNT, so "
            "MemAvailable counts none of it (si_mem_available adds only the reclaimable slab)"
        )
    return lines


def status_story(op: pops.StatusOp, after: Kernel, result: Result) -> list[str]:
    """What VmRSS counts, and the page cache it leaves out."""
    if op.pid not in after.procs:
        return [f"/proc/{op.pid}/status"]
    mapped = {leaf.pfn for leaf in after.procs[op.pid].leaves.values()}
    unmapped = [pfn for obj in (f.obj for f in after.files.values()) for pfn in after.objects.get(obj, {}).values()]
    unmapped = [pfn for pfn in unmapped if pfn not in mapped]
    lines = [
        f"/proc/{op.pid}/status (task_mem): VmRSS {result.get('VmRSS')} kB = RssAnon + RssFile + RssShmem, the "
        f"pages pid {op.pid}'s entries map (zero page excluded); VmSwap {result.get('VmSwap')} kB: its swap entries"
    ]
    if unmapped:
        lines.append(
            f"  {len(unmapped)} page-cache page(s) are not mapped by pid {op.pid}, so not in its VmRSS, though "
            "still in Cached: " + ", ".join(page_name(after, pfn) for pfn in unmapped)
        )
    return lines


def lru_changes(before: Kernel | None, after: Kernel) -> Iterator[str]:
    """Pages that joined, left or changed LRU list, or became dirty or clean."""
    old = before.pages if before is not None else {}
    for pfn in sorted(set(old) | set(after.pages)):
        was, now = old.get(pfn), after.pages.get(pfn)
        if now is None or was == now:
            continue
        kind = "anon" if now.anon else "file"
        if was is None or was.lru != now.lru:
            came = "joins" if was is None or not was.lru else f"{was.lru} ->"
            if now.lru:
                yield f"frame {pfn:#x}: {came} the {now.lru} {kind} LRU list"
        if was is not None and was.dirty != now.dirty:
            yield f"frame {pfn:#x}: {'dirty' if now.dirty else 'clean'}"


def swap_changes(before: Kernel | None, after: Kernel) -> Iterator[str]:
    """Swap entries written or dropped in the page tables."""
    for pid, sp in sorted(after.procs.items()):
        old = before.procs[pid].swapped if before is not None and pid in before.procs else {}
        for vpn, slot in sorted(sp.swapped.items()):
            if old.get(vpn) != slot:
                yield f"pid {pid} va {va_of(vpn)}: {swap_entry_text(slot)}"


def story(op: ops.KernelOp, before: Kernel, after: Kernel, result: Result, choices: Choices) -> list[str]:
    """The rule line and detail lines of a memory-pressure op, or of an access that took a pressure path;
    empty for the ops :mod:`mmcheck.views.kernelstory` tells alone."""
    if isinstance(op, ops.Load | ops.Store):
        return access_story(op, before, after, result, choices)
    if isinstance(op, pops.Reclaim):
        return reclaim_story(op, before, after, result, choices)
    if isinstance(op, ops.Madvise) and op.advice in ("cold", "pageout"):
        return madvise_story(op, before, after)
    if isinstance(op, pops.FileRead | pops.FileWrite):
        return file_io_story(op, before, after)
    if isinstance(op, pops.Fsync | pops.Msync):
        what = f"fsync of file {op.file}" if isinstance(op, pops.Fsync) else f"msync pid {op.pid} at {op.va:#x}"
        back = written_back(before, after)
        return [
            f"{what}: dirty page-cache pages written back (filemap_write_and_wait_range)"
            + ("" if back else ": none was dirty"),
            *back,
        ]
    if isinstance(op, pops.Swapoff):
        return swapoff_story(before, after) if "ok" in result else [f"swapoff: {dict(result)}"]
    if isinstance(op, pops.MeminfoOp):
        return meminfo_story(after, result)
    if isinstance(op, pops.StatusOp):
        return status_story(op, after, result)
    if isinstance(op, pops.FileCreate):
        return [f"file {op.file} created: {op.pages} page(s) on disk, none in the page cache yet"]
    if isinstance(op, pops.MmapFile):
        kind = "MAP_SHARED: the page-cache pages themselves" if op.shared else "MAP_PRIVATE: a write copies"
        return [
            f"mmap pid {op.pid} {op.pages} page(s) of file {op.file} from page {op.offset} at {op.va:#x} "
            f"{op.prot}, {kind}; a VMA only, no frame until a fault"
        ]
    if isinstance(op, pops.Truncate):
        return [
            f"truncate file {op.file} to {op.pages} page(s): later pages leave the page cache and every mapping "
            "(truncate_pagecache -> unmap_mapping_range)"
        ]
    if isinstance(op, pops.VmstatOp):
        return [
            f"/proc/vmstat: pgfault {after.pgfault}, pgmajfault {after.pgmajfault} (every fault, and the major ones)"
        ]
    return []
