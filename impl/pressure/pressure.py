"""Files, the page cache, two-list LRU reclaim and swap, on the kernel's real page tables and frame arrays.

The LRU lists are doubly linked lists threaded through per-frame arrays
(``lru_next``, ``lru_prev``: ``struct page``'s ``lru`` list head), with four
heads past the last frame: inactive and active, anonymous and file
(``enum lru_list``, include/linux/mmzone.h).  New pages go to the head of
their inactive list; reclaim scans from the tail (mm/vmscan.c
``shrink_lruvec``): an inactive page that is referenced (``PG_referenced``
or an accessed bit in a PTE mapping it, found through the reverse map the
kernel keeps with every leaf write, :attr:`impl.mm.kernel.Kernel.rmap`,
mm/rmap.c's ``rmap_walk``) is activated; one that is not is evicted if it
can be; when a scan of an inactive list is done short of the target, the
active list is deactivated into it.  Aging clears the accessed bits and
flushes every TLB (``ptep_clear_flush_young``).  The anonymous lists are
scanned only with swap space.

A swap entry is a non-present PTE in the x86-64 layout
(arch/x86/include/asm/pgtable_64.h): type in bits 59-63, the offset
inverted in bits 9-58 (``__swp_entry``, inverted against L1TF), present
and PROT_NONE clear.  ``swap_map`` counts each slot's swap entries and its
swap-cache page; the swap device's contents are kept by slot.

Workingset detection (mm/workingset.c), when on: ``nonresident_age`` counts evictions and activations, an
evicted file page leaves its age in ``shadows`` at (object, index), and a read or fault that brings the page
back compares the distance with the active file list (and the anonymous lists while a slot is free) to put
it straight on the active list (:meth:`Pressure.workingset_refault`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from impl.mm.vma import Vma
from lang.errors import InvalidArgument, UnknownFile

if TYPE_CHECKING:
    from impl.mm.kernel import Kernel, Process

Result = dict[str, Any]
Flush = Callable[[], None]

_P, _RW, _A, _D, _PS, _PROTNONE = 0x1, 0x2, 0x20, 0x40, 0x80, 0x100
_PFN = ((1 << 52) - 1) & ~0xFFF
_MASK64 = (1 << 64) - 1
SWP_TYPE_BITS, SWP_OFFSET_SHIFT = 5, 14
PG_ANON, PG_EXCLUSIVE, PG_HUGE, PG_DIRTY, PG_REFERENCED, PG_THP = 1, 2, 4, 8, 16, 32
ANON_INACTIVE, ANON_ACTIVE, FILE_INACTIVE, FILE_ACTIVE = 0, 1, 2, 3
EVICT, ACTIVATE, DEACTIVATE = 0, 1, 2
WMARK_MIN, WMARK_LOW = 4, 5
DEF_PRIORITY = 12
PAGE_SIZE = 4096
HUGE_PAGES = 512
MAX_FILE_PAGES = 1 << 20
FAULT_AROUND_PAGES, PTRS_PER_PTE = 65536 // PAGE_SIZE, 512
OK: Result = {"ok": True}


def si_mem_available(free: int, reserve: int, file_lru: int, reclaimable: int, wmark_low: int) -> int:
    """``si_mem_available`` (mm/show_mem.c) in pages: free less ``totalreserve_pages``, plus the file LRU and the
    reclaimable kernel memory (slab and misc) each less ``min(half, wmark_low)``; never negative."""
    cache_kept = min(file_lru // 2, wmark_low)
    kernel_kept = min(reclaimable // 2, wmark_low)
    return max(free - reserve + file_lru - cache_kept + reclaimable - kernel_kept, 0)


def swp_entry(kind: int, offset: int) -> int:
    """``__swp_entry(type, offset)`` as a PTE value."""
    return (((~offset << SWP_OFFSET_SHIFT) & _MASK64) >> SWP_TYPE_BITS) | (kind << (64 - SWP_TYPE_BITS))


def swp_offset(entry: int) -> int:
    """``__swp_offset``: shift the type out, then down, inverted back."""
    return ((~entry << SWP_TYPE_BITS) & _MASK64) >> SWP_OFFSET_SHIFT


def is_swap(entry: int) -> bool:
    """A non-empty entry that is neither present nor PROT_NONE (``is_swap_pte``)."""
    return bool(entry) and not entry & (_P | _PROTNONE)


class File:
    """A file: its page-cache object, size in pages, and its pages on disk (index -> offset -> word)."""

    __slots__ = ("disk", "obj", "pages")

    def __init__(self, obj: int, pages: int, disk: dict[int, dict[int, int]]) -> None:
        self.obj, self.pages, self.disk = obj, pages, disk


class Pressure:
    """The memory-pressure state of one kernel; see the module docstring."""

    def __init__(
        self, kernel: Kernel, swap: int = 0, fault_around: int = FAULT_AROUND_PAGES, workingset: bool = False
    ) -> None:
        frames = kernel.buddy.frames
        self.k = kernel
        self.fault_around_pages = fault_around
        self.workingset = workingset
        self.nonresident_age = self.workingset_refault_file = self.workingset_activate_file = 0
        self.shadows: dict[tuple[int, int], int] = {}
        self.lru_next = array("i", [-1] * (frames + 4))
        self.lru_prev = array("i", [-1] * (frames + 4))
        for head in range(frames, frames + 4):
            self.lru_next[head] = self.lru_prev[head] = head
        self.lru_of = bytearray(frames)
        self.swap_slot = array("i", bytes(4 * frames))
        self.swap_slots = swap
        self.swap_map = array("i", bytes(4 * (swap + 1)))
        self.swap_low = 1  # every slot below it is in use: where the search for a free one starts
        self.swap_data: dict[int, dict[int, int]] = {}
        self.swap_cache: dict[int, int] = {}
        self.cache_pos: dict[int, tuple[int, int]] = {}  # frame -> (object, index) it was cached at
        self.files: dict[str, File] = {}
        self.pgfault = self.pgmajfault = self.lru_steps = 0

    def clone(self, kernel: Kernel) -> Pressure:
        """An independent copy for ``kernel``."""
        new = Pressure.__new__(Pressure)
        new.__dict__.update(self.__dict__)
        new.k = kernel
        new.lru_next, new.lru_prev = array("i", self.lru_next), array("i", self.lru_prev)
        new.lru_of, new.swap_slot, new.swap_map = (
            bytearray(self.lru_of),
            array("i", self.swap_slot),
            array("i", self.swap_map),
        )
        new.swap_data = {s: dict(w) for s, w in self.swap_data.items()}
        new.swap_cache = dict(self.swap_cache)
        new.cache_pos = dict(self.cache_pos)
        new.shadows = dict(self.shadows)
        new.files = {n: File(f.obj, f.pages, {i: dict(w) for i, w in f.disk.items()}) for n, f in self.files.items()}
        return new

    # --- the LRU lists ----------------------------------------------------------------------------

    def head(self, lru: int) -> int:
        return len(self.lru_of) + lru

    def lru_add(self, pfn: int, lru: int) -> None:
        """Put ``pfn`` at the head of list ``lru`` (``lruvec_add_folio``)."""
        head = self.head(lru)
        first = self.lru_next[head]
        self.lru_next[pfn], self.lru_prev[pfn] = first, head
        self.lru_prev[first] = self.lru_next[head] = pfn
        self.lru_of[pfn] = lru + 1

    def lru_del(self, pfn: int) -> None:
        """Take ``pfn`` off its list (``lruvec_del_folio``)."""
        if not self.lru_of[pfn]:
            return
        nxt, prev = self.lru_next[pfn], self.lru_prev[pfn]
        self.lru_next[prev], self.lru_prev[nxt] = nxt, prev
        self.lru_next[pfn] = self.lru_prev[pfn] = -1
        self.lru_of[pfn] = 0

    def from_tail(self, lru: int) -> list[int]:
        """The pages of list ``lru``, tail (oldest) first."""
        out, head = [], self.head(lru)
        pfn = self.lru_prev[head]
        while pfn != head:
            out.append(pfn)
            pfn = self.lru_prev[pfn]
        return out

    def move(self, pfn: int, lru: int) -> None:
        self.lru_del(pfn)
        self.lru_add(pfn, lru)

    # --- the reverse map --------------------------------------------------------------------------

    def mappers(self, pfn: int) -> Iterator[tuple[Process, int, int, int]]:
        """(process, vpn, pte address, entry) of every entry mapping ``pfn``, by pid and page (``rmap_walk``,
        mm/rmap.c): read off the kernel's reverse map (:attr:`impl.mm.kernel.Kernel.rmap`), so the walk costs the
        page's mappings, not every entry of every process."""
        k = self.k
        users = k.rmap.get(pfn)
        if not users:
            return
        read = k.mem.read_unchecked
        for pa, (pid, vpn) in sorted(users.items(), key=lambda user: user[1]):
            yield k.procs[pid], vpn, pa, read(pa)

    def referenced(self, pfn: int) -> bool:
        """``PG_referenced`` or a young PTE mapping it (``folio_referenced``)."""
        return bool(self.k.flags[pfn] & PG_REFERENCED) or any(e & _A for _, _, _, e in self.mappers(pfn))

    def age(self, pfn: int) -> None:
        """Clear ``PG_referenced`` and the accessed bits of its PTEs (the caller flushes the TLBs)."""
        self.k.flags[pfn] &= ~PG_REFERENCED
        for _, _, pa, entry in list(self.mappers(pfn)):
            self.k.mem.write(pa, entry & ~_A)

    def free_slot(self) -> int | None:
        """The lowest free slot, searched from :attr:`swap_low` (every slot below is in use, as the
        ``lowest_bit`` of ``struct swap_info_struct`` bounds ``scan_swap_map_slots``' search)."""
        for slot in range(self.swap_low, self.swap_slots + 1):
            if not self.swap_map[slot]:
                self.swap_low = slot
                return slot
        self.swap_low = self.swap_slots + 1
        return None

    def evictable(self, pfn: int) -> bool:
        """Not pinned (``folio_ref_freeze`` would succeed) and, anonymous, with a slot to go to."""
        k = self.k
        anon = bool(k.flags[pfn] & PG_ANON)
        held = k.mapcount[pfn] + (1 if self.swap_slot[pfn] else 0) + (0 if anon else 1)
        if k.refcount[pfn] != held:
            return False
        return not anon or bool(self.swap_slot[pfn]) or self.free_slot() is not None

    def record(self, kind: int, pfn: int) -> None:
        self.k.effects.append((("lru", self.lru_steps, 0, 0), pfn * 4 + kind))

    def evict(self, pfn: int, flush: Flush) -> None:
        """``shrink_folio_list`` for one page: unmap it everywhere, save or drop its data, flush, free the frame."""
        k = self.k
        if k.flags[pfn] & PG_ANON:
            slot = self.swap_slot[pfn]
            if not slot:
                new = self.free_slot()
                assert new is not None
                slot = new
                k.effects.append((("slot", self.lru_steps, 0, 0), slot))
            words = k.mem.frame_words(pfn)
            if words:
                self.swap_data[slot] = dict(words)
            else:
                self.swap_data.pop(slot, None)
            for proc, vpn, pa, _ in list(self.mappers(pfn)):
                k.set_pte(pa, swp_entry(0, slot), proc.pid, vpn)
                self.swap_map[slot] += 1
                k.mapcount[pfn] -= 1
                k.refcount[pfn] -= 1
            if self.swap_slot[pfn]:
                del self.swap_cache[slot]
                self.swap_slot[pfn] = 0
                k.refcount[pfn] -= 1
                self.swap_free(slot)
        else:
            obj, index = self.cached_at(pfn)
            if k.flags[pfn] & PG_DIRTY:
                self.writeback(obj, index)
            for proc, vpn, pa, _ in list(self.mappers(pfn)):
                k.set_pte(pa, 0, proc.pid, vpn)
                k.mapcount[pfn] -= 1
                k.refcount[pfn] -= 1
            del k.objects[obj][index]
            self.cache_pos.pop(pfn, None)
            k.refcount[pfn] -= 1
            if self.workingset:
                self.shadows[obj, index] = self.nonresident_age
        if self.workingset:
            self.nonresident_age += 1  # workingset_eviction, anonymous or file
        flush()
        assert k.refcount[pfn] == 0 and k.mapcount[pfn] == 0
        self.lru_del(pfn)
        k.flags[pfn] = 0
        k.buddy.free(pfn, 0)

    def shrink(self, inactive: int, target: int, done: int, flush: Flush) -> tuple[int, bool]:
        """Scan inactive list ``inactive`` from the tail: activate the referenced, evict the rest that can go."""
        progress = False
        for pfn in self.from_tail(inactive):
            if done >= target:
                break
            if self.lru_of[pfn] != inactive + 1:
                continue
            if self.referenced(pfn):
                self.record(ACTIVATE, pfn)
                self.age(pfn)
                self.move(pfn, inactive + 1)
                self.age_nonresident()
                flush()
            elif self.evictable(pfn):
                self.record(EVICT, pfn)
                self.evict(pfn, flush)
                done += 1
            else:
                continue
            self.lru_steps += 1
            progress = True
        return done, progress

    def deactivate(self, active: int, flush: Flush) -> bool:
        """``shrink_active_list``: every active page to the inactive list, aged."""
        pages = self.from_tail(active)
        for pfn in pages:
            self.record(DEACTIVATE, pfn)
            self.age(pfn)
            self.move(pfn, active - 1)
            flush()
            self.lru_steps += 1
        return bool(pages)

    def reclaim(self, target: int, flush: Flush) -> int:
        """Reclaim up to ``target`` pages in at most ``DEF_PRIORITY`` rounds (``do_try_to_free_pages``' priority
        loop); the pages freed."""
        done = 0
        kinds = (FILE_INACTIVE, ANON_INACTIVE) if self.swap_slots else (FILE_INACTIVE,)
        for _ in range(DEF_PRIORITY):
            if done >= target:
                break
            progress = False
            for inactive in kinds:
                done, moved = self.shrink(inactive, target, done, flush)
                progress |= moved
                if done < target:
                    progress |= self.deactivate(inactive + 1, flush)
            if not progress:
                break
        return done

    def direct_reclaim(self, flush: Flush) -> None:
        """Below the min watermark, reclaim up to it (``__alloc_pages_direct_reclaim``)."""
        free = self.k.free_frames()
        if free < WMARK_MIN:
            self.reclaim(WMARK_MIN - free, flush)

    def madvise(self, pid: int, va: int, pages: int, advice: str, flush: Flush) -> Result:
        """``MADV_COLD`` / ``MADV_PAGEOUT``: the range's pages mapped only there deactivated, aged, and evicted."""
        k = self.k
        proc = k.proc(pid)
        if va % PAGE_SIZE:
            return {"error": "EINVAL"}
        lo, hi = va >> 12, (va >> 12) + pages
        touched = False
        for _, _, entry in list(k.user_ptes(proc, lo, hi)):
            if is_swap(entry) or entry & _PS:
                continue
            pfn = (entry & _PFN) >> 12
            if pfn == k.zero_pfn or not self.lru_of[pfn] or k.mapcount[pfn] != 1:
                continue
            touched = True
            self.age(pfn)
            self.move(pfn, ANON_INACTIVE if k.flags[pfn] & PG_ANON else FILE_INACTIVE)
            if advice == "pageout" and self.evictable(pfn):
                self.evict(pfn, flush)
                self.lru_steps += 1
        if touched:
            flush()
        if pages and proc.vmas.mapped_pages(lo, hi) != hi - lo:
            return {"error": "ENOMEM"}
        return OK

    # --- workingset detection ------------------------------------------------------------------

    def age_nonresident(self) -> None:
        """``workingset_age_nonresident`` for one activation (``move_folios_to_lru``, ``workingset_activation``)."""
        if self.workingset:
            self.nonresident_age += 1

    def workingset_refault(self, obj: int, index: int, write: bool) -> bool:
        """``filemap_add_folio`` -> ``workingset_refault`` before the new page is on a list: the shadow is taken;
        unless ``write`` it is a refault, activated if its distance is at most the workingset size
        (``workingset_test_recent``)."""
        eviction = self.shadows.pop((obj, index), None)
        if eviction is None or write:
            return False
        self.workingset_refault_file += 1
        size = sum(1 for _ in self.from_tail(FILE_ACTIVE))
        if self.free_slot() is not None:
            size += sum(1 for _ in self.from_tail(ANON_ACTIVE)) + sum(1 for _ in self.from_tail(ANON_INACTIVE))
        if self.nonresident_age - eviction > size:
            return False
        self.nonresident_age += 1
        self.workingset_activate_file += 1
        return True

    # --- swap -------------------------------------------------------------------------------------

    def swap_free(self, slot: int) -> None:
        self.swap_map[slot] -= 1
        if not self.swap_map[slot]:
            self.swap_data.pop(slot, None)
            self.swap_low = min(self.swap_low, slot)

    def drop_swap_cache(self, pfn: int) -> None:
        slot = self.swap_slot[pfn]
        del self.swap_cache[slot]
        self.swap_slot[pfn] = 0
        self.swap_free(slot)
        self.k.drop_reference(pfn)

    def exclusive(self, pfn: int) -> bool:
        slot = self.swap_slot[pfn]
        return self.swap_map[slot] == 1 and self.k.mapcount[pfn] == 1 and self.k.refcount[pfn] == 2

    def read_slot(self, slot: int) -> int:
        """The swap-cache page of ``slot``, read in if needed (``swapin_readahead`` of one page)."""
        pfn = self.swap_cache.get(slot)
        if pfn is not None:
            return pfn
        k = self.k
        pfn = k._alloc(("swapin", slot, 0, 0))
        for offset, value in self.swap_data.get(slot, {}).items():
            k.mem.write((pfn << 12) + offset, value)
        k.refcount[pfn], k.mapcount[pfn], k.flags[pfn] = 1, 0, PG_ANON
        self.swap_slot[pfn], self.swap_cache[slot] = slot, pfn
        self.swap_map[slot] += 1
        self.lru_add(pfn, ANON_INACTIVE)
        return pfn

    def swap_fault(self, proc: Process, vma: Vma, vpn: int, pa: int, entry: int, write: bool) -> Result | None:
        """``do_swap_page``."""
        k = self.k
        slot = swp_offset(entry)
        major = slot not in self.swap_cache
        if major and k.free_frames() < 1:
            return {"error": "ENOMEM"}
        pfn = self.read_slot(slot)
        k._get(pfn)
        self.swap_free(slot)
        writable = False
        if self.exclusive(pfn):
            k.flags[pfn] |= PG_EXCLUSIVE
            writable = vma.write
            if write:
                self.drop_swap_cache(pfn)
        k.set_pte(pa, k._leaf(vma, pfn, writable, dirty=write and writable), proc.pid, vpn)
        self.count_fault(proc, major)
        return None

    def free_if_only_cache(self, pfn: int) -> None:
        """``wp_can_reuse_anon_folio``'s ``folio_free_swap`` before the reuse test."""
        if pfn != self.k.zero_pfn and self.swap_slot[pfn] and self.exclusive(pfn):
            self.drop_swap_cache(pfn)

    def swapoff(self, flush: Flush) -> Result:
        """``try_to_unuse`` every slot, then swap off."""
        k = self.k
        if not self.swap_slots:
            return {"error": "EINVAL"}
        used = [s for s in range(1, self.swap_slots + 1) if self.swap_map[s]]
        if k.free_frames() < sum(1 for s in used if s not in self.swap_cache):
            return {"error": "ENOMEM"}
        for slot in used:
            self.read_slot(slot)
        for _, proc in sorted(k.procs.items()):
            for vpn, pa, entry in list(k.user_ptes(proc)):
                if not is_swap(entry):
                    continue
                vma = proc.vmas.find(vpn)
                assert vma is not None
                slot = swp_offset(entry)
                pfn = self.swap_cache[slot]
                k._get(pfn)
                self.swap_free(slot)
                k.set_pte(pa, k._leaf(vma, pfn, False) & ~_A, proc.pid, vpn)
        for pfn in [p for _, p in sorted(self.swap_cache.items())]:
            self.drop_swap_cache(pfn)
            if k.refcount[pfn] == 1 and k.mapcount[pfn] == 1:
                k.flags[pfn] |= PG_EXCLUSIVE
        flush()
        self.swap_slots = 0
        self.swap_map = array("i", [0])
        return OK

    def count_fault(self, proc: Process, major: bool) -> None:
        """``mm_account_fault`` for a fault that was fixed."""
        if major:
            proc.maj_flt += 1
            self.pgmajfault += 1
        else:
            proc.min_flt += 1
        self.pgfault += 1

    # --- files and the page cache ---------------------------------------------------------------

    def file(self, name: str) -> File:
        f = self.files.get(name)
        if f is None:
            raise UnknownFile(f"file {name!r} does not exist: allowed {sorted(self.files)}; create it first")
        return f

    def file_of(self, obj: int) -> File | None:
        for f in self.files.values():
            if f.obj == obj:
                return f
        return None

    def is_file(self, vma: Vma) -> bool:
        return bool(vma.obj) and not vma.huge and self.file_of(vma.obj) is not None

    @staticmethod
    def check_offset(offset: int) -> None:
        if offset < 0 or offset % 8:
            raise InvalidArgument(
                f"file offset {offset:#x} is not a non-negative multiple of 8: files hold 64-bit words"
            )

    def file_create(self, name: str, pages: int, words: dict[int, int]) -> Result:
        for offset in words:
            self.check_offset(offset)
        if name in self.files:
            return {"error": "EEXIST"}
        disk: dict[int, dict[int, int]] = {}
        for offset, value in words.items():
            if value:
                disk.setdefault(offset // PAGE_SIZE, {})[offset % PAGE_SIZE] = value
        if any(index >= pages for index in disk) or not 0 <= pages <= MAX_FILE_PAGES:
            return {"error": "EINVAL"}
        k = self.k
        obj = k.next_object
        k.next_object += 1
        k.objects[obj], k.obj_users[obj] = {}, 1
        self.files[name] = File(obj, pages, disk)
        return OK

    def cache_page(self, f: File, index: int, write: bool = False) -> int:
        k = self.k
        pfn = k.objects[f.obj].get(index)
        if pfn is not None:
            return pfn
        pfn = k._alloc(("file", f.obj, index, 0))
        for offset, value in f.disk.get(index, {}).items():
            k.mem.write((pfn << 12) + offset, value)
        k.refcount[pfn], k.mapcount[pfn], k.flags[pfn] = 1, 0, 0
        active = self.workingset and self.workingset_refault(f.obj, index, write)
        self.lru_add(pfn, FILE_ACTIVE if active else FILE_INACTIVE)
        k.objects[f.obj][index] = pfn
        self.cache_pos[pfn] = f.obj, index
        return pfn

    def mark_accessed(self, pfn: int) -> None:
        """``folio_mark_accessed``."""
        flags = self.k.flags
        if not flags[pfn] & PG_REFERENCED:
            flags[pfn] |= PG_REFERENCED
        elif self.lru_of[pfn] == FILE_INACTIVE + 1:
            flags[pfn] &= ~PG_REFERENCED
            self.move(pfn, FILE_ACTIVE)
            self.age_nonresident()  # workingset_activation

    def file_read(self, name: str, offset: int) -> Result:
        f = self.file(name)
        self.check_offset(offset)
        index = offset // PAGE_SIZE
        if index >= f.pages:
            return {"value": 0}
        if index not in self.k.objects[f.obj] and self.k.free_frames() < 1:
            return {"error": "ENOMEM"}
        pfn = self.cache_page(f, index)
        value = self.k.mem.read((pfn << 12) + offset % PAGE_SIZE)
        self.mark_accessed(pfn)
        return {"value": value}

    def file_write(self, name: str, offset: int, value: int) -> Result:
        f = self.file(name)
        self.check_offset(offset)
        index = offset // PAGE_SIZE
        if index >= MAX_FILE_PAGES:
            return {"error": "EFBIG"}
        if index not in self.k.objects[f.obj] and self.k.free_frames() < 1:
            return {"error": "ENOMEM"}
        f.pages = max(f.pages, index + 1)
        pfn = self.cache_page(f, index, write=True)
        self.k.mem.write((pfn << 12) + offset % PAGE_SIZE, value)
        self.k.flags[pfn] |= PG_DIRTY
        self.mark_accessed(pfn)
        return OK

    def cached_at(self, pfn: int) -> tuple[int, int]:
        """(object, index) of the page-cache page in frame ``pfn`` (``folio->mapping``, ``folio->index``): where
        :meth:`cache_page` put it, if it is still there; else searched for in every file's cache."""
        pos = self.cache_pos.get(pfn)
        if pos is not None and self.k.objects.get(pos[0], {}).get(pos[1]) == pfn:
            return pos
        for f in self.files.values():
            for index, frame in self.k.objects[f.obj].items():
                if frame == pfn:
                    return f.obj, index
        raise AssertionError(f"frame {pfn:#x} is not in a file's page cache")

    def writeback(self, obj: int, index: int) -> None:
        """Write a dirty page back and write-protect its PTEs (``folio_mkclean``); the caller flushes."""
        k = self.k
        f = self.file_of(obj)
        assert f is not None
        pfn = k.objects[obj][index]
        words = dict(k.mem.frame_words(pfn))
        if words:
            f.disk[index] = words
        else:
            f.disk.pop(index, None)
        k.flags[pfn] &= ~PG_DIRTY
        for _, _, pa, entry in list(self.mappers(pfn)):
            if entry & (_RW | _D):
                k.mem.write(pa, entry & ~(_RW | _D))  # pte_wrprotect, pte_mkclean

    def sync_range(self, obj: int, lo: int, hi: int, flush: Flush) -> None:
        dirty = [i for i, pfn in sorted(self.k.objects[obj].items()) if lo <= i < hi and self.k.flags[pfn] & PG_DIRTY]
        for index in dirty:
            self.writeback(obj, index)
        if dirty:
            flush()

    def fsync(self, name: str, flush: Flush) -> Result:
        self.sync_range(self.file(name).obj, 0, MAX_FILE_PAGES, flush)
        return OK

    def msync(self, pid: int, va: int, pages: int, flush: Flush) -> Result:
        proc = self.k.proc(pid)
        if va % PAGE_SIZE:
            return {"error": "EINVAL"}
        lo, hi = va >> 12, (va >> 12) + pages
        for vma in list(proc.vmas):
            start, end = max(vma.start, lo), min(vma.end, hi)
            if start < end and vma.shared and self.is_file(vma):
                self.sync_range(vma.obj, vma.pgoff + start - vma.start, vma.pgoff + end - vma.start, flush)
        return OK if proc.vmas.mapped_pages(lo, hi) == pages else {"error": "ENOMEM"}

    def truncate(self, name: str, pages: int, flush: Flush) -> Result:
        f = self.file(name)
        if not 0 <= pages <= MAX_FILE_PAGES:
            return {"error": "EINVAL"}
        k = self.k
        for _, proc in sorted(k.procs.items()):
            for vma in list(proc.vmas):
                if vma.obj == f.obj and not vma.huge:
                    first = max(vma.start, vma.start + pages - vma.pgoff)
                    if first < vma.end:
                        k._zap(proc, first, vma.end)
        for index in sorted(i for i in k.objects[f.obj] if i >= pages):
            pfn = k.objects[f.obj].pop(index)
            self.cache_pos.pop(pfn, None)
            k._put(pfn, 0)
        for obj, index in [s for s in self.shadows if s[0] == f.obj and s[1] >= pages]:
            del self.shadows[obj, index]
        f.disk = {i: w for i, w in f.disk.items() if i < pages}
        f.pages = pages
        flush()
        return OK

    def mmap_file(
        self,
        pid: int,
        va: int,
        pages: int,
        rwx: tuple[bool, bool, bool],
        shared: bool,
        name: str,
        offset: int,
        flush: Flush,
    ) -> Result:
        """``mmap`` of a file over ``va``: what was mapped there is unmapped first, with every TLB flushed if a page
        was (``do_vmi_munmap`` -> ``tlb_finish_mmu``)."""
        k = self.k
        f = self.file(name)
        proc = k.proc(pid)
        error = k._mmap_error(va, pages, False)
        if error:
            return {"error": error}
        lo = va >> 12
        if proc.vmas.split_refused(lo) or proc.vmas.split_refused(lo + pages) or not 0 <= offset <= MAX_FILE_PAGES:
            return {"error": "EINVAL"}
        mapped = any(not is_swap(entry) for _, _, entry in k.user_ptes(proc, lo, lo + pages))
        k._unmap(proc, lo, lo + pages)
        if mapped:
            flush()
        if shared:
            k.obj_users[f.obj] += 1
        proc.vmas.insert(Vma(lo, lo + pages, rwx, shared, f.obj, offset))
        k._merge(proc, lo, lo + pages)
        return OK

    def file_fault(self, proc: Process, vma: Vma, vpn: int, write: bool) -> Result | None:
        """``filemap_fault`` and ``do_read_fault`` / ``do_shared_fault`` / ``do_cow_fault``."""
        k = self.k
        f = self.file_of(vma.obj)
        assert f is not None
        index = vma.pgoff + vpn - vma.start
        if index >= f.pages:
            return {"signal": "SIGBUS"}
        major = index not in k.objects[f.obj]
        copy = write and not vma.shared
        if k.free_frames() < k._missing_tables(proc.root, vpn) + int(major) + int(copy):
            return {"error": "ENOMEM"}
        pa = k._pte_pa_alloc(proc.pid, proc.root, vpn)
        pfn = self.cache_page(f, index)
        if copy:
            new = k._alloc(("page", proc.pid, vpn, 0))
            k.mem.copy_frame(pfn, new)
            k.refcount[new], k.mapcount[new], k.flags[new] = 1, 1, PG_ANON | PG_EXCLUSIVE
            self.lru_add(new, ANON_INACTIVE)
            proc.vmas.prepare_anon(vma)
            k.set_pte(pa, k._leaf(vma, new, True), proc.pid, vpn)
        else:
            k._get(pfn)
            if write:
                k.flags[pfn] |= PG_DIRTY
            k.set_pte(pa, k._leaf(vma, pfn, write), proc.pid, vpn)
        self.count_fault(proc, major)
        return None

    def fault_around(self, proc: Process, vma: Vma, vpn: int) -> None:
        """``do_fault_around`` -> ``filemap_map_pages`` after a read fault at ``vpn`` in a file or shmem mapping:
        every none PTE of the window whose page is in the cache (below the file's end) maps it, as the read fault
        would (``set_pte_range``), uncounted.

        The window (mm/memory.c, Linux 6.18): ``from_pte = max(ALIGN_DOWN(pte_off, nr_pages), pte_off -
        min(pte_off, vma_off))``, ``to_pte = min3(from_pte + nr_pages, PTRS_PER_PTE, pte_off + vma_pages -
        vma_off) - 1``: aligned, clipped to the VMA and to the page table.
        """
        nr_pages = self.fault_around_pages
        if nr_pages <= 1:
            return
        k = self.k
        pte_off, vma_off = vpn % PTRS_PER_PTE, vpn - vma.start
        from_pte = max(pte_off - pte_off % nr_pages, pte_off - min(pte_off, vma_off))
        to_pte = min(from_pte + nr_pages, PTRS_PER_PTE, pte_off + (vma.end - vma.start) - vma_off) - 1
        pa = k._pte_pa(proc.root, vpn)
        assert pa is not None, "the fault made the page table"
        table = pa - pte_off * 8
        f = self.file_of(vma.obj)
        end = MAX_FILE_PAGES if f is None else f.pages
        cache = k.objects[vma.obj]
        writable = f is None and vma.write
        for pte in range(from_pte, to_pte + 1):
            index = vma.pgoff + vpn - pte_off + pte - vma.start
            pfn = cache.get(index)
            if pfn is None or index >= end or k.mem.read(table + pte * 8):
                continue
            k._get(pfn)
            k.set_pte(table + pte * 8, k._leaf(vma, pfn, writable, dirty=False), proc.pid, vpn - pte_off + pte)

    # --- observations ---------------------------------------------------------------------------

    def meminfo(self) -> Result:
        """``/proc/meminfo`` (fs/proc/meminfo.c ``meminfo_proc_show``); every slab page is unreclaimable (no cache
        is made with ``SLAB_RECLAIM_ACCOUNT``), so MemAvailable has no slab term and SReclaimable is 0."""
        k = self.k
        files = {f.obj for f in self.files.values()}
        file_pages = [pfn for obj, c in k.objects.items() if obj in files for pfn in c.values()]
        shmem = [
            pfn for obj, c in k.objects.items() if obj not in files for pfn in c.values() if not k.flags[pfn] & PG_HUGE
        ]
        frames = range(len(self.lru_of))
        anon = sum(1 for p in frames if k.flags[p] & PG_ANON and not k.flags[p] & PG_HUGE and k.mapcount[p] > 0)
        thps = sum(1 for p in frames if k.flags[p] & PG_THP and k.mapcount[p] > 0)
        anon += thps * HUGE_PAGES
        lru_file = sum(1 for p in frames if self.lru_of[p] > FILE_INACTIVE)
        free = k.free_frames()
        tables = sum(1 for proc in k.procs.values() for _ in k._tables(proc.root, 4, 0, 0, 1 << 35))
        tables += len(k.thp.deposits)
        info = {
            "MemTotal": len(self.lru_of) * 4,
            "MemFree": free * 4,
            "MemAvailable": si_mem_available(free, 0, lru_file, 0, WMARK_LOW) * 4,
            "Cached": (len(file_pages) + len(shmem)) * 4,
            "SwapCached": len(self.swap_cache) * 4,
            "Dirty": sum(1 for p in file_pages if k.flags[p] & PG_DIRTY) * 4,
            "AnonPages": anon * 4,
            "Mapped": sum(1 for p in file_pages + shmem if k.mapcount[p] > 0) * 4,
            "SwapTotal": self.swap_slots * 4,
            "SwapFree": sum(1 for s in range(1, self.swap_slots + 1) if not self.swap_map[s]) * 4,
            "PageTables": tables * 4,
            "Slab": len(k.slab_frames) * 4,
            "SReclaimable": 0,
            "SUnreclaim": len(k.slab_frames) * 4,
        }
        if k.thp.shown:
            info["AnonHugePages"] = thps * HUGE_PAGES * 4
        return info

    def rss_counts(self, proc: Process) -> tuple[int, int, int, int]:
        """``proc``'s mapped anonymous, file and shmem pages and its swap entries (``MM_ANONPAGES``,
        ``MM_FILEPAGES``, ``MM_SHMEMPAGES``, ``MM_SWAPENTS``): the zero page and hugetlb pages are in none."""
        k = self.k
        files = {f.obj for f in self.files.values()}
        file_frames = {pfn for obj, c in k.objects.items() if obj in files for pfn in c.values()}
        anon = file = shmem = swap = 0
        for _, _, entry in k.user_ptes(proc):
            if is_swap(entry):
                swap += 1
                continue
            pfn = (entry & _PFN) >> 12
            if entry & _PS and pfn != k.thp.zero_pfn and k.flags[pfn] & PG_THP:
                anon += HUGE_PAGES  # a THP's PMD: add_mm_counter(MM_ANONPAGES, HPAGE_PMD_NR)
                continue
            if pfn == k.zero_pfn or entry & _PS:
                continue
            if k.flags[pfn] & PG_ANON:
                anon += 1
            elif pfn in file_frames:
                file += 1
            else:
                shmem += 1
        return anon, file, shmem, swap

    def status(self, pid: int) -> Result:
        proc = self.k.proc(pid)
        anon, file, shmem, swap = self.rss_counts(proc)
        return {
            "VmRSS": (anon + file + shmem) * 4,
            "RssAnon": anon * 4,
            "RssFile": file * 4,
            "RssShmem": shmem * 4,
            "VmSwap": swap * 4,
            "minflt": proc.min_flt,
            "majflt": proc.maj_flt,
        }

    def vmstat(self) -> Result:
        counts: Result = {"pgfault": self.pgfault, "pgmajfault": self.pgmajfault}
        if self.workingset:
            counts["workingset_refault_file"] = self.workingset_refault_file
            counts["workingset_activate_file"] = self.workingset_activate_file
        thp = self.k.thp
        if thp.shown:
            counts.update(thp_fault_alloc=thp.fault_alloc, thp_fault_fallback=thp.fault_fallback)
            counts["thp_split_pmd"] = thp.split_pmd
        return counts
