"""glibc's malloc (ptmalloc, glibc 2.36 ``malloc/malloc.c``) for one single-threaded process: the main arena.

The heap is the chunk headers glibc writes, kept word by word where they live:
:attr:`Ptmalloc.head` holds each chunk's size word (size | PREV_INUSE |
IS_MMAPPED | NON_MAIN_ARENA) by the chunk's address, :attr:`Ptmalloc.foot` the
prev_size words (``set_foot``), so headers stay where glibc leaves them (a
chunk merged into its neighbour keeps its stale size word, as memory does).
The free lists are Python lists in glibc's order, the head of each list
(``bin->fd``, a fastbin's or a tcache bin's first entry) at index 0:

* tcache: 64 bins of chunk sizes 0x20..0x410, at most 7 chunks each
  (``tcache_put``, ``tcache_get``; the ``tcache_entry`` key marks a chunk in
  the tcache, :attr:`Ptmalloc.keyed`, and catches a double free);
* fastbins: chunk sizes up to ``global_max_fast`` (0x80 by default,
  ``set_max_fast (DEFAULT_MXFAST)``), LIFO;
* bins: 1 the unsorted bin, 2..63 small bins of one size each, 64..126 large
  bins kept sorted by size (the ``fd_nextsize`` skip list as the list order:
  largest first, a second chunk of a size just after the first);
* the top chunk, grown by ``sbrk`` in page multiples (``sysmalloc``) and given
  back at a free or ``malloc_trim`` (``systrim``).

Requests of at least ``mmap_threshold`` (128 KiB) are mmapped chunks
(``sysmalloc_mmap``); freeing one raises the threshold to its size and the
trim threshold to twice that (``__libc_free``'s dynamic threshold) until a
``mallopt`` fixes them.  The first allocation carves the tcache itself
(``tcache_init``: ``sizeof (tcache_perthread_struct)`` = 640 bytes, a 0x290
chunk) at the heap's start, as glibc does.

Addresses are ints: the heap starts at :attr:`Ptmalloc.heap_start` (the
initial program break, page-aligned as Linux places it: ``arch_randomize_brk``
and ``load_elf_binary`` page-align ``mm->brk``), mmapped chunks are placed by a
simple top-down counter (where the kernel puts them is the mmap layer's
business; the oracle compares offsets inside each mapping).

A call glibc would abort is refused with :class:`lang.errors.MallocAbort`
carrying glibc's message, checked before anything changes, so the state is
left as it was.  User data is not modelled: a free of an address that is no
chunk this model handed out is refused as ``free(): invalid pointer`` (glibc
would read whatever bytes lie there).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lang import ualloc_ops as uops
from lang.errors import MallocAbort, UnknownPointer

SIZE_SZ = 8
CHUNK_HDR_SZ = 2 * SIZE_SZ
MALLOC_ALIGNMENT = 16
MALLOC_ALIGN_MASK = MALLOC_ALIGNMENT - 1
MINSIZE = 32
PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 1, 2, 4
SIZE_BITS = PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA
PAGE = 4096
NBINS = 128
NSMALLBINS = 64
MIN_LARGE_SIZE = NSMALLBINS * 16
NFASTBINS = 10
TCACHE_MAX_BINS = 64
TCACHE_FILL_COUNT = 7
DEFAULT_MXFAST = 64 * SIZE_SZ // 4
MAX_FAST_SIZE = 80 * SIZE_SZ // 4
DEFAULT_TOP_PAD = 128 * 1024  # sysdeps/generic/malloc-machine.h
DEFAULT_MMAP_THRESHOLD = 128 * 1024
DEFAULT_MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * SIZE_SZ
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536
FASTBIN_CONSOLIDATION_THRESHOLD = 65536
TCACHE_STRUCT_BYTES = 2 * TCACHE_MAX_BINS + 8 * TCACHE_MAX_BINS  # uint16_t counts[64], tcache_entry *entries[64]
PTRDIFF_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1

# mallopt parameter numbers (malloc/malloc.h).
M_MXFAST, M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = 1, -1, -2, -3, -4
MALLOPT_PARAMS = {
    "M_MXFAST": M_MXFAST,
    "M_TRIM_THRESHOLD": M_TRIM_THRESHOLD,
    "M_TOP_PAD": M_TOP_PAD,
    "M_MMAP_THRESHOLD": M_MMAP_THRESHOLD,
    "M_MMAP_MAX": M_MMAP_MAX,
}

HEAP_START = 0x555555559000
MMAP_TOP = 0x7FFFF7FF0000


def request2size(req: int) -> int:
    """``request2size``: the chunk size serving ``req`` bytes (the header word added, 16-aligned, at least MINSIZE)."""
    if req + SIZE_SZ + MALLOC_ALIGN_MASK < MINSIZE:
        return MINSIZE
    return (req + SIZE_SZ + MALLOC_ALIGN_MASK) & ~MALLOC_ALIGN_MASK


def checked_request2size(req: int) -> int:
    """``checked_request2size``: 0 for a request above PTRDIFF_MAX (malloc then fails with ENOMEM)."""
    return 0 if req > PTRDIFF_MAX else request2size(req)


def csize2tidx(size: int) -> int:
    """``csize2tidx``: the tcache bin of a chunk size."""
    return (size - MINSIZE + MALLOC_ALIGNMENT - 1) // MALLOC_ALIGNMENT


def fastbin_index(size: int) -> int:
    """``fastbin_index`` on 64-bit: ``(sz >> 4) - 2``."""
    return (size >> 4) - 2


def in_smallbin_range(size: int) -> bool:
    """``in_smallbin_range``: below MIN_LARGE_SIZE (0x400)."""
    return size < MIN_LARGE_SIZE


def largebin_index(size: int) -> int:
    """``largebin_index_64``."""
    if size >> 6 <= 48:
        return 48 + (size >> 6)
    if size >> 9 <= 20:
        return 91 + (size >> 9)
    if size >> 12 <= 10:
        return 110 + (size >> 12)
    if size >> 15 <= 4:
        return 119 + (size >> 15)
    if size >> 18 <= 2:
        return 124 + (size >> 18)
    return 126


def bin_index(size: int) -> int:
    """``bin_index``: the small bin (``sz >> 4``) or large bin of a chunk size."""
    return size >> 4 if in_smallbin_range(size) else largebin_index(size)


def to_long(value: int) -> int:
    """A ``size_t`` value stored in a C ``long`` (two's complement)."""
    return value - (1 << 64) if value > PTRDIFF_MAX else value


def align_up(value: int, to: int) -> int:
    return (value + to - 1) & ~(to - 1)


def align_down(value: int, to: int) -> int:
    return value & ~(to - 1)


@dataclass(frozen=True, slots=True)
class MallInfo:
    """``mallinfo2 ()`` of the main arena (``int_mallinfo``)."""

    arena: int
    ordblks: int
    smblks: int
    hblks: int
    hblkhd: int
    uordblks: int
    fordblks: int
    fsmblks: int
    keepcost: int


@dataclass(frozen=True, slots=True)
class Mapping:
    """An mmapped chunk's mapping: its start and length."""

    start: int
    length: int


class Ptmalloc:
    """The main arena and ``mp_`` of glibc 2.36's malloc, mutable."""

    def __init__(self, heap_start: int = HEAP_START) -> None:
        if heap_start % PAGE:
            raise ValueError(f"the heap starts at a page boundary (Linux page-aligns the break), got {heap_start:#x}")
        self.heap_start = heap_start
        self.brk = heap_start
        self.head: dict[int, int] = {}
        self.foot: dict[int, int] = {}
        self.keyed: set[int] = set()
        self.top = 0  # 0: initial_top, no heap yet
        self.system_mem = 0
        self.max_system_mem = 0
        self.last_remainder = 0
        self.have_fastchunks = False
        self.fastbins: list[list[int]] = [[] for _ in range(NFASTBINS)]
        self.bins: list[list[int]] = [[] for _ in range(NBINS)]
        self.where: dict[int, int] = {}
        self.tcache: list[list[int]] | None = None
        self.tcache_chunk = 0
        self.max_fast = self._fast_limit(DEFAULT_MXFAST)
        self.top_pad = DEFAULT_TOP_PAD
        self.mmap_threshold = DEFAULT_MMAP_THRESHOLD
        self.trim_threshold = DEFAULT_TRIM_THRESHOLD
        self.n_mmaps_max = DEFAULT_MMAP_MAX
        self.no_dyn_threshold = False
        self.n_mmaps = 0
        self.mmapped_mem = 0
        self.mappings: dict[int, Mapping] = {}
        self.next_mmap = MMAP_TOP
        self.sbrk_base = 0

    def clone(self) -> Ptmalloc:
        """An independent copy (the words, the lists and the mappings copied; the rest are ints and flags)."""
        new = copy.copy(self)
        new.head, new.foot, new.keyed, new.where = dict(self.head), dict(self.foot), set(self.keyed), dict(self.where)
        new.fastbins = [list(b) for b in self.fastbins]
        new.bins = [list(b) for b in self.bins]
        new.tcache = None if self.tcache is None else [list(b) for b in self.tcache]
        new.mappings = dict(self.mappings)
        return new

    # ------------------------------------------------------------------ words
    @staticmethod
    def _fast_limit(value: int) -> int:
        """``set_max_fast``: 0 disables fastbins (a limit no chunk meets)."""
        return MINSIZE // 2 if value == 0 else (value + SIZE_SZ) & ~MALLOC_ALIGN_MASK

    def chunksize(self, p: int) -> int:
        if p == 0:  # initial_top: its size word is av->last_remainder, 0 before the first sysmalloc
            return 0
        return self.head.get(p, 0) & ~SIZE_BITS

    def set_head(self, p: int, value: int) -> None:
        self.head[p] = value

    def set_foot(self, p: int, size: int) -> None:
        self.foot[p + size] = size

    def prev_inuse(self, p: int) -> bool:
        return bool(self.head.get(p, 0) & PREV_INUSE)

    def inuse_bit_at_offset(self, p: int, offset: int) -> bool:
        return bool(self.head.get(p + offset, 0) & PREV_INUSE)

    def set_inuse_bit_at_offset(self, p: int, offset: int) -> None:
        self.head[p + offset] = self.head.get(p + offset, 0) | PREV_INUSE

    def clear_inuse_bit_at_offset(self, p: int, offset: int) -> None:
        self.head[p + offset] = self.head.get(p + offset, 0) & ~PREV_INUSE

    def is_mmapped(self, p: int) -> bool:
        return bool(self.head.get(p, 0) & IS_MMAPPED)

    # ------------------------------------------------------------------ bins
    def _bin_insert(self, index: int, position: int, p: int) -> None:
        self.bins[index].insert(position, p)
        self.where[p] = index

    def unlink_chunk(self, p: int) -> None:
        """``unlink_chunk``: take a free chunk out of its bin (the skip list follows the list order), after its
        boundary-tag check (the fd/bk links are the list itself here, so their check has nothing to read)."""
        if self.chunksize(p) != self.foot.get(p + self.chunksize(p), 0):
            raise MallocAbort("corrupted size vs. prev_size", f"chunk {p:#x}")
        index = self.where.pop(p)
        self.bins[index].remove(p)

    def _unsorted_push(self, p: int) -> None:
        """A chunk at the unsorted bin's head (``bck = unsorted_chunks (av); fwd = bck->fd``)."""
        self._bin_insert(1, 0, p)

    def _large_insert(self, index: int, p: int, size: int) -> None:
        """``_int_malloc``'s large-bin sort: largest first, a second chunk of a size just after the first."""
        chunks = self.bins[index]
        if not chunks or size < self.chunksize(chunks[-1]):
            self._bin_insert(index, len(chunks), p)
            return
        at = 0
        while size < self.chunksize(chunks[at]):
            at += 1
        if size == self.chunksize(chunks[at]):
            at += 1  # "Always insert in the second position."
        self._bin_insert(index, at, p)

    # ------------------------------------------------------------------ tcache
    def tcache_put(self, p: int, tc_idx: int) -> None:
        """``tcache_put``: mark the chunk (``e->key = tcache_key``) and push it on its tcache bin."""
        assert self.tcache is not None
        self.keyed.add(p)
        self.tcache[tc_idx].insert(0, p)

    def tcache_get(self, tc_idx: int) -> int:
        """``tcache_get``: pop the bin's first chunk and clear its key; returns the chunk."""
        assert self.tcache is not None
        p = self.tcache[tc_idx].pop(0)
        self.keyed.discard(p)
        return p

    def tcache_init(self) -> None:
        """``tcache_init``: ``_int_malloc (sizeof (tcache_perthread_struct))``, the first chunk of the heap."""
        mem = self._int_malloc(TCACHE_STRUCT_BYTES)
        if mem:
            self.tcache_chunk = mem - CHUNK_HDR_SZ
            self.tcache = [[] for _ in range(TCACHE_MAX_BINS)]

    def _maybe_init_tcache(self) -> None:
        if self.tcache is None:
            self.tcache_init()

    # ------------------------------------------------------------------ public calls
    def malloc(self, nbytes: int) -> int:
        """``__libc_malloc``: a tcache hit if the bin has a chunk, else ``_int_malloc``; 0 on failure."""
        tbytes = checked_request2size(nbytes)
        if tbytes == 0:
            return 0
        tc_idx = csize2tidx(tbytes)
        self._maybe_init_tcache()
        if tc_idx < TCACHE_MAX_BINS and self.tcache is not None and self.tcache[tc_idx]:
            return self.tcache_get(tc_idx) + CHUNK_HDR_SZ
        return self._int_malloc(nbytes)

    def calloc(self, n: int, elem_size: int) -> int:
        """``__libc_calloc``: ``_int_malloc`` straight (never the tcache); 0 when ``n * elem_size`` overflows."""
        total = n * elem_size
        if total > PTRDIFF_MAX:  # __builtin_mul_overflow into a ptrdiff_t
            return 0
        self._maybe_init_tcache()
        return self._int_malloc(total)

    def free(self, mem: int) -> None:
        """``__libc_free``: an mmapped chunk is unmapped (raising the dynamic thresholds), else ``_int_free``."""
        if mem == 0:
            return
        p = mem - CHUNK_HDR_SZ
        self._check_known(p, "free(): invalid pointer")
        if self.is_mmapped(p):
            self._check_munmap(p, "munmap_chunk(): invalid pointer")
            nomask = self.head[p]
            if not self.no_dyn_threshold and self.mmap_threshold < nomask <= DEFAULT_MMAP_THRESHOLD_MAX:
                self.mmap_threshold = self.chunksize(p)
                self.trim_threshold = 2 * self.mmap_threshold
            self.munmap_chunk(p)
            return
        self._maybe_init_tcache()
        self._check_free(p)
        self._int_free(p)

    def realloc(self, mem: int, nbytes: int) -> int:
        """``__libc_realloc``: free on 0 bytes, malloc on NULL, ``mremap_chunk`` for mmapped, else ``_int_realloc``."""
        if nbytes == 0 and mem != 0:
            self.free(mem)
            return 0
        if mem == 0:
            return self.malloc(nbytes)
        oldp = mem - CHUNK_HDR_SZ
        self._check_known(oldp, "realloc(): invalid pointer")
        oldsize = self.chunksize(oldp)
        if not self.is_mmapped(oldp):
            self._maybe_init_tcache()
        nb = checked_request2size(nbytes)
        if nb == 0:
            return 0
        if self.is_mmapped(oldp):
            self._check_munmap(oldp, "mremap_chunk(): invalid pointer")
            return self.mremap_chunk(oldp, nb) + CHUNK_HDR_SZ
        if oldsize <= CHUNK_HDR_SZ or oldsize >= self.system_mem:
            raise MallocAbort("realloc(): invalid old size", f"chunk {oldp:#x}")
        return self._int_realloc(oldp, oldsize, nb)

    def malloc_trim(self, pad: int) -> int:
        """``__malloc_trim`` → ``mtrim``: consolidate, count the free pages it would MADV_DONTNEED, ``systrim``."""
        self.malloc_consolidate()
        psindex = bin_index(PAGE)
        result = 0
        for i in range(1, NBINS):
            if i == 1 or i >= psindex:
                for p in self.bins[i]:
                    size = self.chunksize(p)
                    if size > PAGE - 1 + 48:  # sizeof (struct malloc_chunk)
                        paligned = (p + 48 + PAGE - 1) & ~(PAGE - 1)
                        if size - (paligned - p) > PAGE - 1:
                            result = 1
        return result | (self.systrim(pad) if self.top else 0)

    def mallopt(self, param: int, value: int) -> int:
        """``__libc_mallopt``: consolidate the main arena, then set the parameter (``do_set_*``); its result."""
        self.malloc_consolidate()
        v = value & SIZE_MAX  # "negative int values will wrap to very large size_t values"
        if param == M_MXFAST:
            if v > MAX_FAST_SIZE:
                return 0
            self.max_fast = self._fast_limit(v)
        elif param == M_TRIM_THRESHOLD:
            self.trim_threshold, self.no_dyn_threshold = v, True
        elif param == M_TOP_PAD:
            self.top_pad, self.no_dyn_threshold = v, True
        elif param == M_MMAP_THRESHOLD:
            self.mmap_threshold, self.no_dyn_threshold = v, True
        elif param == M_MMAP_MAX:
            self.n_mmaps_max, self.no_dyn_threshold = value, True
        return 1

    def usable_size(self, mem: int) -> int:
        """``malloc_usable_size`` (``musable``)."""
        p = mem - CHUNK_HDR_SZ
        if self.is_mmapped(p):
            return self.chunksize(p) - CHUNK_HDR_SZ
        if self.inuse_bit_at_offset(p, self.chunksize(p)):
            return self.chunksize(p) - SIZE_SZ
        return 0

    def mallinfo(self) -> MallInfo:
        """``int_mallinfo`` of the main arena: the top counts as one free block, tcache chunks as in use."""
        avail = self.chunksize(self.top)
        fast = [self.chunksize(p) for fb in self.fastbins for p in fb]
        binned = [self.chunksize(p) for chunks in self.bins[1:] for p in chunks]
        free_bytes = avail + sum(fast) + sum(binned)
        return MallInfo(
            arena=self.system_mem,
            ordblks=1 + len(binned),
            smblks=len(fast),
            hblks=self.n_mmaps,
            hblkhd=self.mmapped_mem,
            uordblks=self.system_mem - free_bytes,
            fordblks=free_bytes,
            fsmblks=sum(fast),
            keepcost=avail,
        )

    # ------------------------------------------------------------------ checks before a change
    def _check_known(self, p: int, message: str) -> None:
        if p % MALLOC_ALIGNMENT or p not in self.head:
            raise MallocAbort(message, f"{p + CHUNK_HDR_SZ:#x} is no chunk this heap handed out")

    def _check_munmap(self, p: int, message: str) -> None:
        """``munmap_chunk``'s check: the mapping starts and ends on a page."""
        block = p - self.foot.get(p, 0)
        total = self.foot.get(p, 0) + self.chunksize(p)
        mem = p + CHUNK_HDR_SZ
        low = mem & (PAGE - 1)
        if (block | total) & (PAGE - 1) or (low & (low - 1)) or block not in self.mappings:
            raise MallocAbort(message, f"chunk {p:#x}")

    def _check_free(self, p: int) -> None:
        """``_int_free``'s checks, in its order, before it changes anything."""
        size = self.chunksize(p)
        if p > SIZE_MAX + 1 - size or p % MALLOC_ALIGNMENT:
            raise MallocAbort("free(): invalid pointer", f"chunk {p:#x}")
        if size < MINSIZE or size % MALLOC_ALIGNMENT:
            raise MallocAbort("free(): invalid size", f"chunk {p:#x} has size {size:#x}")
        tc_idx = csize2tidx(size)
        if self.tcache is not None and tc_idx < TCACHE_MAX_BINS:
            if p in self.keyed:
                for cnt, q in enumerate(self.tcache[tc_idx]):
                    if cnt >= TCACHE_FILL_COUNT:
                        raise MallocAbort("free(): too many chunks detected in tcache")
                    if q == p:
                        raise MallocAbort("free(): double free detected in tcache 2", f"chunk {p:#x}")
            if len(self.tcache[tc_idx]) < TCACHE_FILL_COUNT:
                return
        self._check_unbinned(p, size)

    def _check_unbinned(self, p: int, size: int) -> None:
        """The checks of ``_int_free`` past the tcache: the fastbin's and the regular path's."""
        nxt = p + size
        if size <= self.max_fast:
            nxt_word = self.head.get(nxt, 0) & ~SIZE_BITS
            if self.head.get(nxt, 0) <= CHUNK_HDR_SZ or nxt_word >= self.system_mem:
                raise MallocAbort("free(): invalid next size (fast)", f"chunk {p:#x}")
            fb = self.fastbins[fastbin_index(size)]
            if fb and fb[0] == p:
                raise MallocAbort("double free or corruption (fasttop)", f"chunk {p:#x}")
            return
        if p == self.top:
            raise MallocAbort("double free or corruption (top)", f"chunk {p:#x}")
        if nxt >= (self.top + self.chunksize(self.top)) & SIZE_MAX:  # C pointer arithmetic wraps
            raise MallocAbort("double free or corruption (out)", f"chunk {p:#x}")
        if not self.prev_inuse(nxt):
            raise MallocAbort("double free or corruption (!prev)", f"chunk {p:#x}")
        if self.head.get(nxt, 0) <= CHUNK_HDR_SZ or self.chunksize(nxt) >= self.system_mem:
            raise MallocAbort("free(): invalid next size (normal)", f"chunk {p:#x}")

    def _check_unsorted(self, victim: int, size: int) -> None:
        """``_int_malloc``'s checks of the unsorted bin's last chunk, before it is taken or binned."""
        nxt = victim + size
        if size <= CHUNK_HDR_SZ or size > self.system_mem:
            raise MallocAbort("malloc(): invalid size (unsorted)", f"chunk {victim:#x} has size {size:#x}")
        nxt_word = self.head.get(nxt, 0)
        if nxt_word < CHUNK_HDR_SZ or nxt_word > self.system_mem:
            raise MallocAbort("malloc(): invalid next size (unsorted)", f"chunk {victim:#x}")
        if self.foot.get(nxt, 0) & ~SIZE_BITS != size:
            raise MallocAbort("malloc(): mismatching next->prev_size (unsorted)", f"chunk {victim:#x}")
        if nxt_word & PREV_INUSE:
            raise MallocAbort("malloc(): invalid next->prev_inuse (unsorted)", f"chunk {victim:#x}")

    def write_word(self, address: int, value: int) -> None:
        """A program's store of one word at ``address``: memory holds it whatever the allocator meant the word to
        be (the size word of the chunk 8 bytes below, the prev_size word of the chunk at it)."""
        self.head[address - SIZE_SZ] = value
        self.foot[address] = value

    # ------------------------------------------------------------------ _int_malloc
    def _int_malloc(self, nbytes: int) -> int:
        """``_int_malloc``: fastbin, small bin, unsorted scan (binning as it goes), large bin, binmap, top, sys."""
        nb = checked_request2size(nbytes)
        if nb == 0:
            return 0
        tc_idx = csize2tidx(nb)
        tcache = self.tcache if tc_idx < TCACHE_MAX_BINS else None
        if nb <= self.max_fast:
            fb = self.fastbins[fastbin_index(nb)]
            if fb:
                victim = fb.pop(0)
                if tcache is not None:
                    while len(tcache[tc_idx]) < TCACHE_FILL_COUNT and fb:
                        self.tcache_put(fb.pop(0), tc_idx)
                return victim + CHUNK_HDR_SZ
        if in_smallbin_range(nb):
            idx = nb >> 4
            chunks = self.bins[idx]
            if chunks:
                victim = chunks.pop()
                del self.where[victim]
                self.set_inuse_bit_at_offset(victim, nb)
                if tcache is not None:
                    while len(tcache[tc_idx]) < TCACHE_FILL_COUNT and chunks:
                        tc_victim = chunks.pop()
                        del self.where[tc_victim]
                        self.set_inuse_bit_at_offset(tc_victim, nb)
                        self.tcache_put(tc_victim, tc_idx)
                return victim + CHUNK_HDR_SZ
        else:
            idx = largebin_index(nb)
            if self.have_fastchunks:
                self.malloc_consolidate()
        tcache_nb = nb if tcache is not None else 0
        while True:
            return_cached = False
            unsorted = self.bins[1]
            while unsorted:
                victim = unsorted[-1]
                size = self.chunksize(victim)
                self._check_unsorted(victim, size)
                if (
                    in_smallbin_range(nb)
                    and len(unsorted) == 1
                    and victim == self.last_remainder
                    and size > nb + MINSIZE
                ):
                    remainder_size = size - nb
                    remainder = victim + nb
                    unsorted[-1] = remainder
                    del self.where[victim]
                    self.where[remainder] = 1
                    self.last_remainder = remainder
                    self.set_head(victim, nb | PREV_INUSE)
                    self.set_head(remainder, remainder_size | PREV_INUSE)
                    self.set_foot(remainder, remainder_size)
                    return victim + CHUNK_HDR_SZ
                unsorted.pop()
                del self.where[victim]
                if size == nb:
                    self.set_inuse_bit_at_offset(victim, size)
                    if tcache_nb and tcache is not None and len(tcache[tc_idx]) < TCACHE_FILL_COUNT:
                        self.tcache_put(victim, tc_idx)
                        return_cached = True
                        continue
                    return victim + CHUNK_HDR_SZ
                if in_smallbin_range(size):
                    self._bin_insert(size >> 4, 0, victim)
                else:
                    self._large_insert(largebin_index(size), victim, size)
            if return_cached:
                return self.tcache_get(tc_idx) + CHUNK_HDR_SZ
            if not in_smallbin_range(nb):
                chunks = self.bins[idx]
                if chunks and self.chunksize(chunks[0]) >= nb:
                    at = len(chunks) - 1
                    # bk_nextsize from the first: the first chunk of the smallest size that fits
                    while self.chunksize(chunks[at]) < nb:
                        at -= 1
                    while at > 0 and self.chunksize(chunks[at - 1]) == self.chunksize(chunks[at]):
                        at -= 1
                    if at != len(chunks) - 1 and self.chunksize(chunks[at + 1]) == self.chunksize(chunks[at]):
                        at += 1  # "Avoid removing the first entry for a size"
                    victim = chunks[at]
                    return self._take_binned(victim, nb, False) + CHUNK_HDR_SZ
            for index in range(idx + 1, NBINS):
                if self.bins[index]:
                    victim = self.bins[index][-1]
                    return self._take_binned(victim, nb, in_smallbin_range(nb)) + CHUNK_HDR_SZ
            victim = self.top
            size = self.chunksize(victim)
            if size > self.system_mem:
                raise MallocAbort("malloc(): corrupted top size", f"top {victim:#x} has size {size:#x}")
            if victim and size >= nb + MINSIZE:
                self.top = victim + nb
                self.set_head(victim, nb | PREV_INUSE)
                self.set_head(self.top, (size - nb) | PREV_INUSE)
                return victim + CHUNK_HDR_SZ
            if self.have_fastchunks:
                self.malloc_consolidate()
                idx = nb >> 4 if in_smallbin_range(nb) else largebin_index(nb)
                continue
            return self.sysmalloc(nb)

    def _take_binned(self, victim: int, nb: int, advertise: bool) -> int:
        """Take a binned chunk: exhaust it, or split it and put the remainder at the unsorted bin's head."""
        size = self.chunksize(victim)
        remainder_size = size - nb
        self.unlink_chunk(victim)
        if remainder_size < MINSIZE:
            self.set_inuse_bit_at_offset(victim, size)
        else:
            remainder = victim + nb
            self._unsorted_push(remainder)
            if advertise:
                self.last_remainder = remainder
            self.set_head(victim, nb | PREV_INUSE)
            self.set_head(remainder, remainder_size | PREV_INUSE)
            self.set_foot(remainder, remainder_size)
        return victim

    # ------------------------------------------------------------------ sysmalloc and systrim
    def sysmalloc_mmap(self, nb: int) -> int:
        """``sysmalloc_mmap``: a chunk in a mapping of its own, ``ALIGN_UP (nb + SIZE_SZ, pagesize)`` bytes."""
        size = align_up(nb + SIZE_SZ, PAGE)
        self.next_mmap -= size
        start = self.next_mmap
        self.mappings[start] = Mapping(start, size)
        self.foot[start] = 0
        self.set_head(start, size | IS_MMAPPED)
        self.n_mmaps += 1
        self.mmapped_mem += size
        return start + CHUNK_HDR_SZ

    def sysmalloc(self, nb: int) -> int:
        """``sysmalloc`` for the main arena: mmap at the threshold, else grow the break and extend top."""
        if nb >= self.mmap_threshold and self.n_mmaps < self.n_mmaps_max:
            return self.sysmalloc_mmap(nb)
        old_top = self.top
        old_size = self.chunksize(old_top)
        size = align_up(nb + self.top_pad + MINSIZE - old_size, PAGE)
        if size > PTRDIFF_MAX:
            return 0
        brk = self.brk
        self.brk += size
        if self.sbrk_base == 0:
            self.sbrk_base = brk
        self.system_mem += size
        if old_top and brk == old_top + old_size:
            self.set_head(old_top, (size + old_size) | PREV_INUSE)
        else:
            # First time through: the break is page-aligned, so no front or end correction.
            self.top = brk
            self.set_head(brk, size | PREV_INUSE)
        self.max_system_mem = max(self.max_system_mem, self.system_mem)
        p = self.top
        size = self.chunksize(p)
        if size >= nb + MINSIZE:
            self.top = p + nb
            self.set_head(p, nb | PREV_INUSE)
            self.set_head(self.top, (size - nb) | PREV_INUSE)
            return p + CHUNK_HDR_SZ
        return 0

    def systrim(self, pad: int) -> int:
        """``systrim``: give back whole pages of top above ``pad`` (and MINSIZE) with a negative sbrk.

        In C ``top_area`` and ``extra`` are ``long`` and ``pad`` a ``size_t``: a top of exactly MINSIZE makes
        ``top_area`` -1, which compares as the largest ``size_t``, and ``extra`` then comes out negative, so
        ``MORECORE (-extra)`` grows the break instead (by a page for a pad below one, and the top with it):
        glibc 2.36 does so, as the glibc oracle found.
        """
        top_size = self.chunksize(self.top)
        top_area = top_size - MINSIZE - 1
        if top_area & SIZE_MAX <= pad:
            return 0
        extra = to_long(align_down((top_area - pad) & SIZE_MAX, PAGE))
        if extra == 0:
            return 0
        if self.brk != (self.top + top_size) & SIZE_MAX:
            return 0  # "Only proceed if end of memory is where we last set it."
        self.brk -= extra
        self.system_mem -= extra
        self.set_head(self.top, (top_size - extra) | PREV_INUSE)
        return 1

    def munmap_chunk(self, p: int) -> None:
        """``munmap_chunk``: unmap the chunk's whole mapping at once."""
        block = p - self.foot.get(p, 0)
        mapping = self.mappings.pop(block)
        self.n_mmaps -= 1
        self.mmapped_mem -= mapping.length
        self.head.pop(p, None)

    def mremap_chunk(self, p: int, nb: int) -> int:
        """``mremap_chunk``: resize the mapping to ``ALIGN_UP (nb + offset + SIZE_SZ, pagesize)``, same offset."""
        offset = self.foot.get(p, 0)
        block = p - offset
        old = self.mappings[block]
        new_size = align_up(nb + offset + SIZE_SZ, PAGE)
        if old.length == new_size:
            return p
        del self.mappings[block]
        self.head.pop(p, None)
        self.next_mmap -= new_size
        start = self.next_mmap
        self.mappings[start] = Mapping(start, new_size)
        q = start + offset
        self.foot[q] = offset
        self.set_head(q, (new_size - offset) | IS_MMAPPED)
        self.mmapped_mem += new_size - old.length
        return q

    # ------------------------------------------------------------------ _int_free and consolidation
    def _int_free(self, p: int) -> None:
        """``_int_free``: tcache if its bin has room, a fastbin up to max_fast, else coalesce into unsorted or top."""
        size = self.chunksize(p)
        tc_idx = csize2tidx(size)
        if self.tcache is not None and tc_idx < TCACHE_MAX_BINS and len(self.tcache[tc_idx]) < TCACHE_FILL_COUNT:
            self.tcache_put(p, tc_idx)
            return
        if size <= self.max_fast:
            self.have_fastchunks = True
            self.fastbins[fastbin_index(size)].insert(0, p)
            return
        nextchunk = p + size
        nextsize = self.chunksize(nextchunk)
        if not self.prev_inuse(p):
            prevsize = self.foot[p]
            size += prevsize
            p -= prevsize
            self.unlink_chunk(p)
        if nextchunk != self.top:
            if not self.inuse_bit_at_offset(nextchunk, nextsize):
                self.unlink_chunk(nextchunk)
                size += nextsize
            else:
                self.clear_inuse_bit_at_offset(nextchunk, 0)
            self._unsorted_push(p)
            self.set_head(p, size | PREV_INUSE)
            self.set_foot(p, size)
        else:
            size += nextsize
            self.set_head(p, size | PREV_INUSE)
            self.top = p
        if size >= FASTBIN_CONSOLIDATION_THRESHOLD:
            if self.have_fastchunks:
                self.malloc_consolidate()
            if self.chunksize(self.top) >= self.trim_threshold:
                self.systrim(self.top_pad)

    def malloc_consolidate(self) -> None:
        """``malloc_consolidate``: empty the fastbins in order, coalescing each chunk into unsorted or top."""
        self.have_fastchunks = False
        for fb in self.fastbins:
            chunks, fb[:] = list(fb), []
            for p in chunks:
                size = self.chunksize(p)
                nextchunk = p + size
                nextsize = self.chunksize(nextchunk)
                if not self.prev_inuse(p):
                    prevsize = self.foot[p]
                    size += prevsize
                    p -= prevsize
                    self.unlink_chunk(p)
                if nextchunk != self.top:
                    if not self.inuse_bit_at_offset(nextchunk, nextsize):
                        size += nextsize
                        self.unlink_chunk(nextchunk)
                    else:
                        self.clear_inuse_bit_at_offset(nextchunk, 0)
                    self._unsorted_push(p)
                    self.set_head(p, size | PREV_INUSE)
                    self.set_foot(p, size)
                else:
                    size += nextsize
                    self.set_head(p, size | PREV_INUSE)
                    self.top = p

    # ------------------------------------------------------------------ realloc
    def _int_realloc(self, oldp: int, oldsize: int, nb: int) -> int:
        """``_int_realloc``: shrink in place, grow into top or a free next chunk, else malloc, copy and free."""
        nxt = oldp + oldsize
        nextsize = self.chunksize(nxt)
        if oldsize >= nb:
            newp, newsize = oldp, oldsize
        elif nxt == self.top and (oldsize + nextsize) & SIZE_MAX >= nb + MINSIZE:
            newsize = oldsize + nextsize
            self.head[oldp] = nb | (self.head[oldp] & SIZE_BITS)
            self.top = oldp + nb
            self.set_head(self.top, (newsize - nb) | PREV_INUSE)
            return oldp + CHUNK_HDR_SZ
        elif nxt != self.top and not self.inuse_bit_at_offset(nxt, nextsize) and oldsize + nextsize >= nb:
            newp, newsize = oldp, oldsize + nextsize
            self.unlink_chunk(nxt)
        else:
            newmem = self._int_malloc(nb - MALLOC_ALIGN_MASK)
            if newmem == 0:
                return 0
            newp = newmem - CHUNK_HDR_SZ
            newsize = self.chunksize(newp)
            if newp == nxt:
                newsize += oldsize
                newp = oldp
            else:
                self._int_free(oldp)
                return newmem
        remainder_size = newsize - nb
        if remainder_size < MINSIZE:
            self.head[newp] = newsize | (self.head[newp] & SIZE_BITS)
            self.set_inuse_bit_at_offset(newp, newsize)
        else:
            remainder = newp + nb
            self.head[newp] = nb | (self.head[newp] & SIZE_BITS)
            self.set_head(remainder, remainder_size | PREV_INUSE)
            self.set_inuse_bit_at_offset(remainder, remainder_size)
            self._int_free(remainder)
        return newp + CHUNK_HDR_SZ


class Process:
    """One process calling the allocator: its calls' returned pointers by call index, and the answers.

    :meth:`apply` runs one op and answers as the glibc oracle's driver does
    (:class:`lang.ualloc_ops.MallocAnswer`); a call glibc aborts answers with
    the message and leaves the allocator as it was.  Once the program has
    stored outside its blocks (a ``heap_write`` past a block's usable bytes, or
    into a freed one) glibc's checks can fire deep inside a call: the
    allocator is then copied before each call and put back on an abort.
    """

    def __init__(self, heap_start: int = HEAP_START) -> None:
        self.heap = Ptmalloc(heap_start)
        self.returned: list[int] = []
        self.allocating: set[int] = set()
        self.corrupted = False

    def pointer(self, call: int) -> int:
        """The pointer allocating op ``call`` returned (0 for a NULL answer)."""
        if call not in self.allocating:
            raise UnknownPointer(
                f"call {call} is not an earlier malloc, calloc or realloc "
                f"(there are {len(self.returned)} calls, allocating: {sorted(self.allocating)[:8]})"
            )
        return self.returned[call]

    def _place(self, mem: int) -> tuple[str, int, int, int]:
        heap = self.heap
        if mem == 0:
            return "null", 0, 0, 0
        p = mem - CHUNK_HDR_SZ
        if heap.is_mmapped(p):
            offset = heap.foot.get(p, 0)
            return "mmapped", CHUNK_HDR_SZ + offset, offset + heap.chunksize(p), heap.usable_size(mem)
        return "heap", mem - heap.heap_start, 0, heap.usable_size(mem)

    def answer(self, region: str, offset: int, length: int, usable: int, ret: int) -> uops.MallocAnswer:
        info = self.heap.mallinfo()
        return uops.MallocAnswer(
            region,
            offset,
            length,
            usable,
            self.heap.brk - self.heap.heap_start,
            ret,
            tuple(getattr(info, name) for name in uops.MALLINFO_FIELDS),
        )

    def heap_write(self, op: uops.HeapWrite) -> None:
        """The program stores ``op.value`` at the block's pointer plus ``op.offset`` (past its usable bytes, or
        into a freed block, a heap corruption)."""
        mem = self.pointer(op.call)
        if mem == 0:
            raise UnknownPointer(f"call {op.call} returned NULL: there is no block to write to")
        self.corrupted = True  # whether it was is the contract's to say; every later call is undone on an abort
        self.heap.write_word(mem + op.offset, op.value)

    def apply(self, op: uops.UallocOp) -> uops.MallocAnswer:
        """Run one call; bad input (a call naming no allocating op) raises and changes nothing."""
        if isinstance(op, uops.HeapWrite):
            self.heap_write(op)
            self.returned.append(0)
            return self.answer("none", 0, 0, 0, 0)
        saved = self.heap.clone() if self.corrupted else None
        heap = self.heap
        try:
            if isinstance(op, uops.Malloc):
                mem = heap.malloc(op.size)
            elif isinstance(op, uops.Calloc):
                mem = heap.calloc(op.count, op.size)
            elif isinstance(op, uops.Realloc):
                mem = heap.realloc(self.pointer(op.call), op.size)
            elif isinstance(op, uops.Free):
                heap.free(self.pointer(op.call))
                self.returned.append(0)
                return self.answer("none", 0, 0, 0, 0)
            elif isinstance(op, uops.MallocTrim):
                ret = heap.malloc_trim(op.pad)
                self.returned.append(0)
                return self.answer("none", 0, 0, 0, ret)
            elif isinstance(op, uops.Mallopt):
                ret = heap.mallopt(MALLOPT_PARAMS[op.param], op.value)
                self.returned.append(0)
                return self.answer("none", 0, 0, 0, ret)
            else:
                raise TypeError(f"not an allocator op: {op!r}")
        except MallocAbort as abort:
            if saved is not None:
                self.heap = saved
            self.returned.append(0)
            return uops.MallocAnswer("none", 0, 0, 0, 0, 0, (), abort.message)
        self.allocating.add(len(self.returned))
        self.returned.append(mem)
        return self.answer(*self._place(mem), 0)
