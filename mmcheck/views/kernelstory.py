"""Kernel-level ops told in plain words: the rule of the spec that fired, and a compact diff of the state.

Used by ``mmcheck explain`` for scenarios with processes (spawn, mmap, fork,
load, store ...).  The rule is read off the spec states before and after the
op (a missing entry that became a zero-page mapping was ``do_anonymous_page``
on a read; a read-only entry that now points at a new frame was a COW copy in
``do_wp_page``), so the story cannot say something the spec did not do.  The
diff lists the leaf entries, pages (reference and map counts, words), page
tables, VMAs and free frames that changed, and the TLB events of the op (IPIs
sent, INVLPGs and full flushes, frames freed by a shootdown's last step).

With several CPUs a load or store may succeed through a translation the page
tables no longer give (a stale TLB entry, SDM Vol. 3A 4.10.2); the story says
so instead of naming a fault path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from lang import ops
from mmcheck.views.draw import TABLE_NAMES, rights
from mmcheck.views.pressurestory import lru_changes, swap_changes
from spec.mm import kernel as spec_kernel
from spec.mm.kernel import Kernel, Leaf, Page, free_frames
from spec.mm.vma import Vma
from spec.paging.address import PAGE_SHIFT

Result = dict[str, Any]


def leaf_text(k: Kernel, leaf: Leaf | None) -> str:
    """``frame 0xa r--``, ``zero page r--`` or ``(none)``."""
    if leaf is None:
        return "(none)"
    target = "zero page" if leaf.pfn == k.zero_pfn else f"frame {leaf.pfn:#x}"
    return f"{target} {rights(leaf)}" + (" (2 MiB)" if leaf.huge else "")


def page_text(page: Page) -> str:
    """``refcount 2, mapcount 2, shared``: the counts that decide COW."""
    owner = "exclusive" if page.exclusive else "not exclusive"
    return f"refcount {page.refcount}, mapcount {page.mapcount}, {owner}"


def leaf_of(k: Kernel | None, pid: int, vpn: int) -> Leaf | None:
    """The leaf entry of ``pid`` for page ``vpn`` (its own or a 2 MiB one covering it), if both exist."""
    if k is None or pid not in k.procs:
        return None
    found = spec_kernel.leaf_of(k.procs[pid].leaves, vpn)
    return None if found is None else found[1]


def access_rule(op: ops.Load | ops.Store, before: Kernel, after: Kernel, result: Result) -> str:
    """Which fault path (if any) a load or store took, read off the entry before and after."""
    pid = before.current[op.cpu] if 0 <= op.cpu < len(before.current) else 0
    vpn = op.va >> PAGE_SHIFT
    old, new = leaf_of(before, pid, vpn), leaf_of(after, pid, vpn)
    where = f"pid {pid} {op.name} at {op.va:#x}"
    if "signal" in result:
        return f"{where}: the VMA does not allow it (or there is none): SIGSEGV (do_user_addr_fault -> bad_area)"
    if "error" in result:
        return f"{where}: no free frame to fix the fault: {result['error']}"
    if old is None and new is not None and new.pfn == after.zero_pfn:
        return f"{where}: page fault on a missing entry; a read maps the shared zero page read-only (do_anonymous_page)"
    thp = thp_access_rule(where, before, after, old, new)
    if thp is not None:
        return thp
    if old is None and new is not None and new.huge:
        page = after.pages.get(new.pfn)
        kind = "the shared file's" if page is not None and not page.anon else "a fresh zeroed private"
        return f"{where}: hugetlb fault on a missing entry; {kind} 2 MiB page is mapped (hugetlb_no_page)"
    if old is None and new is not None:
        page = after.pages.get(new.pfn)
        if page is not None and not page.anon:
            return f"{where}: page fault on a missing entry; the shared object's page is mapped (shmem_fault)"
        return f"{where}: page fault on a missing entry; a fresh zeroed page is mapped (do_anonymous_page)"
    if new is None or not new.present or (isinstance(op, ops.Store) and not new.writable):
        return (
            f"{where}: the page tables do not allow it, but cpu {op.cpu}'s TLB still holds the old translation: "
            "no walk, no fault (a stale entry, SDM Vol. 3A 4.10.2)"
        )
    if old is not None and new is not None and old != new and replace(old, young=new.young) == new:
        return f"{where}: the entry allows it, no fault; the walker sets its accessed bit again (SDM Vol. 3A 4.8)"
    if old is not None and new is not None and old != new and new.huge:
        if old.pfn == new.pfn:
            return f"{where}: hugetlb write fault on a read-only entry; mapped once, reused in place (hugetlb_wp)"
        return f"{where}: hugetlb write fault; 2 MiB frame {old.pfn:#x} is copied to frame {new.pfn:#x} (hugetlb_wp)"
    if old is not None and new is not None and old != new:
        if old.pfn == new.pfn:
            return f"{where}: write fault on a read-only entry; the page is exclusive, reused in place (do_wp_page)"
        source = "the zero page" if old.pfn == before.zero_pfn else f"COW-shared frame {old.pfn:#x}"
        return f"{where}: write fault on a read-only entry; {source} is copied to frame {new.pfn:#x} (wp_page_copy)"
    return f"{where}: the entry allows it, no fault"


def thp_access_rule(where: str, before: Kernel, after: Kernel, old: Leaf | None, new: Leaf | None) -> str | None:
    """The transparent-huge-page fault paths (mm/huge_memory.c), or None when the access took none of them."""
    huge_zero = after.thp.zero_pfn
    fallback = after.thp.fault_fallback > before.thp.fault_fallback
    if old is None and new is not None and new.huge and new.pfn == huge_zero:
        return (
            f"{where}: THP read fault on an empty PMD; the huge zero page is mapped read-only by one PMD leaf "
            "(set_huge_zero_folio)"
        )
    if old is None and new is not None and new.huge and (page := after.pages.get(new.pfn)) is not None and page.thp:
        return (
            f"{where}: THP fault on an empty PMD; an order-9 folio, zeroed, is mapped by one PMD leaf and its PT is "
            "deposited for a later split (do_huge_pmd_anonymous_page)"
        )
    if old is None and new is not None and fallback:
        return (
            f"{where}: THP fault on an empty PMD, but no order-9 block is free: thp_fault_fallback, and a 4 KiB page "
            "is mapped instead (VM_FAULT_FALLBACK -> do_anonymous_page)"
        )
    if old is not None and old.huge and old.pfn == before.thp.zero_pfn and new is not None and not new.huge:
        return (
            f"{where}: write to the huge zero page; its PMD is split into 512 read-only zero-page entries and this "
            f"page is copied to frame {new.pfn:#x} (do_huge_pmd_wp_page -> __split_huge_pmd, wp_page_copy)"
        )
    if old is not None and new is not None and old != new and new.huge and old.pfn == new.pfn:
        page = after.pages.get(new.pfn)
        if page is not None and page.thp:
            return (
                f"{where}: THP write fault on a read-only PMD; the folio is exclusive or referenced once, reused in "
                "place, PMD made writable (do_huge_pmd_wp_page)"
            )
    return None


def thp_notes(before: Kernel, after: Kernel) -> str:
    """What an op did to THPs beyond its own rule: PMDs split (and where the huge zero page's went)."""
    splits = after.thp.split_pmd - before.thp.split_pmd
    if splits <= 0:
        return ""
    return (
        f"; {splits} THP PMD{'s' * (splits > 1)} split where the range or a VMA edge cuts it: the deposited PT "
        "takes the 512 entries, with the PMD's rights and dirty bit, after the 2 MiB translation is flushed "
        "(__split_huge_pmd_locked); a THP's folio is split into 4 KiB pages (split_huge_page), the huge zero "
        "page's entries map the 4 KiB zero page"
    )


def fork_rule(op: ops.Fork, before: Kernel, after: Kernel, result: Result) -> str:
    """How many entries fork shared, and that they are now read-only in both."""
    if "pid" not in result:
        return f"fork of pid {op.pid}: {result}"
    leaves = after.procs[result["pid"]].leaves.values()
    shared = len(leaves)
    huge = sum(leaf.huge for leaf in leaves)
    how = "copy_present_ptes" + (f"; copy_hugetlb_page_range for the {huge} of 2 MiB" if huge else "")
    return (
        f"fork of pid {op.pid}: child pid {result['pid']} gets the parent's VMAs; {shared} private anonymous "
        "entr" + ("y is" if shared == 1 else "ies are") + " shared, write-protected in parent and child alike "
        f"({how}); no data is copied"
    )


def rule(op: ops.KernelOp, before: Kernel | None, after: Kernel, result: Result) -> str:
    """One line: the op and the rule of the spec that fired."""
    if before is None:
        before = after
    return op_rule(op, before, after, result) + thp_notes(before, after)


def op_rule(op: ops.KernelOp, before: Kernel, after: Kernel, result: Result) -> str:
    """The rule of the spec that fired for ``op``."""
    if isinstance(op, ops.Load | ops.Store):
        return access_rule(op, before, after, result)
    if isinstance(op, ops.Fork):
        return fork_rule(op, before, after, result)
    if isinstance(op, ops.Mmap):
        kind = "shared (a new shmem-like object)" if op.shared else "private"
        return (
            f"mmap pid {op.pid} {op.pages} page(s) at {op.va:#x} {op.prot} {kind}: a VMA only, no frame until a fault"
        )
    if isinstance(op, ops.Munmap) and "pending" in result:
        return (
            f"munmap pid {op.pid} {op.pages} page(s) at {op.va:#x}, first step only: entries cleared, pages and "
            f"empty tables gathered in the mmu_gather, IPIs sent; operation {result['pending']} in flight"
        )
    if isinstance(op, ops.Munmap):
        return f"munmap pid {op.pid} {op.pages} page(s) at {op.va:#x}: entries cleared, pages and empty tables freed"
    if isinstance(op, ops.Mprotect):
        return (
            f"mprotect pid {op.pid} {op.pages} page(s) at {op.va:#x} to {op.prot}: entries rewritten; a private one "
            "becomes writable only for an exclusive anonymous page (can_change_pte_writable)"
        )
    if isinstance(op, ops.Switch):
        return f"cpu {op.cpu} runs pid {op.pid} (loads its CR3)"
    if isinstance(op, ops.KernelThread):
        return (
            f"cpu {op.cpu} runs a kernel thread: the mm it had stays loaded and keeps the CPU in its mm_cpumask, "
            "lazy (enter_lazy_tlb)"
        )
    if isinstance(op, ops.Step) and "stage" in result:
        cpu = result["cpu"]
        where = f"step of operation {op.pending}: cpu {cpu} handles its IPI (flush_tlb_func)"
        was, now = before.cpus[cpu], after.cpus[cpu]
        if was.lazy and was.loaded and not now.loaded:
            return f"{where}: it was lazy, so it switches to init_mm and leaves the mm_cpumask"
        return where
    if isinstance(op, ops.Step):
        return (
            f"step of operation {op.pending}: every target has handled its IPI; the mmu_gather frees its frames and "
            "drops its page references, and the syscall returns (tlb_finish_mmu)"
        )
    fields = {key: value for key, value in op.to_json().items() if key != "op"}
    return f"{op.name} {fields}" if fields else op.name


def leaf_changes(before: Kernel | None, after: Kernel) -> Iterator[str]:
    """Entries added, removed or changed, per process."""
    pids = sorted(set(after.procs) | set(before.procs if before else ()))
    for pid in pids:
        old = before.procs[pid].leaves if before and pid in before.procs else {}
        new = after.procs[pid].leaves if pid in after.procs else {}
        for vpn in sorted(set(old) | set(new)):
            was_leaf, new_leaf = old.get(vpn), new.get(vpn)
            if was_leaf != new_leaf:
                was = leaf_text(before, was_leaf) if before else "(none)"
                if (
                    was_leaf is not None
                    and new_leaf is not None
                    and replace(was_leaf, young=new_leaf.young) == new_leaf
                ):
                    bit = "set" if new_leaf.young else "cleared"
                    yield f"pid {pid} va {vpn << PAGE_SHIFT:#x}: {was}, accessed bit {bit}"
                    continue
                yield f"pid {pid} va {vpn << PAGE_SHIFT:#x}: {was} -> {leaf_text(after, new_leaf)}"


def page_changes(before: Kernel | None, after: Kernel) -> Iterator[str]:
    """Pages allocated, freed, or whose counts or words changed."""
    old = before.pages if before else {}
    for pfn in sorted(set(old) | set(after.pages)):
        was, now = old.get(pfn), after.pages.get(pfn)
        if was == now:
            continue
        if was is None:
            assert now is not None
            yield f"frame {pfn:#x}: new page, {page_text(now)}"
        elif now is None:
            yield f"frame {pfn:#x}: last reference dropped, back to the buddy allocator"
        else:
            if (was.refcount, was.mapcount, was.exclusive) != (now.refcount, now.mapcount, now.exclusive):
                held = sum(f.frames.count(pfn) for f in after.flights.values())
                gather = f"; the mmu_gather holds {held} of them until every IPI is handled" if held else ""
                yield f"frame {pfn:#x}: {page_text(was)} -> {page_text(now)}{gather}"
            for offset in sorted(set(was.words) | set(now.words)):
                old_word, new_word = was.words.get(offset, 0), now.words.get(offset, 0)
                if old_word != new_word:
                    yield f"frame {pfn:#x} word {offset:#x}: {old_word:#x} -> {new_word:#x}"


def table_changes(before: Kernel | None, after: Kernel) -> Iterator[str]:
    """Page-table pages a process gained or lost, and processes that appeared or left."""
    for pid in sorted(set(after.procs) | set(before.procs if before else ())):
        if before is None or pid not in before.procs:
            yield f"pid {pid}: new address space, PML4 at frame {after.procs[pid].root:#x}"
            old_tables: dict[tuple[int, int], int] = {}
        elif pid not in after.procs:
            yield f"pid {pid}: gone, its PML4 and page tables freed"
            continue
        else:
            old_tables = dict(before.procs[pid].tables)
        new_tables = after.procs[pid].tables
        added = sorted(set(new_tables) - set(old_tables), key=lambda key: (-key[0], key[1]))
        removed = sorted(set(old_tables) - set(new_tables), key=lambda key: (-key[0], key[1]))
        if added:
            yield f"pid {pid}: new tables " + ", ".join(f"{TABLE_NAMES[lv]} {new_tables[lv, i]:#x}" for lv, i in added)
        if removed:
            yield f"pid {pid}: freed tables " + ", ".join(
                f"{TABLE_NAMES[lv]} {old_tables[lv, i]:#x}" for lv, i in removed
            )


def vma_text(vma: Vma) -> str:
    """``0x100000000000-0x100000001fff rw- private``."""
    kind = ("shared" if vma.shared else "private") + (" hugetlb" if vma.huge else "")
    return f"{vma.start << PAGE_SHIFT:#x}-{(vma.end << PAGE_SHIFT) - 1:#x} {vma.prot} {kind}"


def vma_changes(before: Kernel | None, after: Kernel) -> Iterator[str]:
    """The VMA list of every process whose VMAs changed."""
    for pid, sp in sorted(after.procs.items()):
        old = before.procs[pid].vmas if before and pid in before.procs else ()
        if [(v.start, v.end, v.prot, v.shared) for v in old] != [(v.start, v.end, v.prot, v.shared) for v in sp.vmas]:
            vmas = ", ".join(vma_text(v) for v in sp.vmas)
            yield f"pid {pid} VMAs: {vmas or '(none)'}"


def tlb_events(after: Kernel) -> Iterator[str]:
    """The events of the op (the state keeps the last op's): IPIs sent, INVLPGs and full flushes, frames freed."""
    new = after.events
    ipis = [e.cpu for e in new if e.kind == "ipi"]
    if ipis:
        yield "IPI sent to cpu " + ", ".join(str(c) for c in ipis)
    for cpu in sorted({e.cpu for e in new if e.kind in ("invlpg", "flush")}):
        pages = [e.value for e in new if e.cpu == cpu and e.kind == "invlpg"]
        if pages:
            yield f"cpu {cpu}: INVLPG " + ", ".join(f"{vpn << PAGE_SHIFT:#x}" for vpn in pages)
        for e in new:
            if e.cpu == cpu and e.kind == "flush":
                yield f"cpu {cpu}: full flush of PCID {e.value}"
    freed = [e.value for e in new if e.kind == "free"]
    if freed:
        yield "frames freed: " + ", ".join(f"{pfn:#x}" for pfn in freed)


def changes(before: Kernel | None, after: Kernel, pressure: bool = False) -> list[str]:
    """The compact diff between two kernel states; with ``pressure``, the LRU lists and dirty bits too."""
    lines = [*vma_changes(before, after), *table_changes(before, after)]
    lines += [*leaf_changes(before, after), *swap_changes(before, after), *page_changes(before, after)]
    lines += [*(lru_changes(before, after) if pressure else ()), *tlb_events(after)]
    old_free = free_frames(before) if before else None
    if old_free is not None and old_free != free_frames(after):
        lines.append(f"free frames: {old_free} -> {free_frames(after)}")
    return lines
