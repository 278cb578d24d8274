"""The contract of a user-space allocator (C's malloc family, glibc 2.36's policy where it chooses), as pure rules.

The state is what a program can rely on: the live blocks (each the pointer a
call returned, its usable bytes, the bytes asked for, and for a block in a
mapping of its own that mapping), the program break, and the parameters
``mallopt`` and glibc's dynamic threshold set.  Where the allocator is free
to choose (which free chunk, the top or a new mapping) the rules state the
set of allowed answers; the implementation picks, the harness checks the
pick (:func:`answer_problem`) and the state continues from it (:func:`step`).

The contract (C17 7.22.3; glibc ``malloc/malloc.c``, the header comment's
"Alignment" and "Minimum allocated size"):

* every live block is ``MALLOC_ALIGNMENT`` (16 bytes on x86-64) aligned and
  has at least the bytes asked for (``malloc_usable_size``);
* live blocks are disjoint;
* a heap block lies between the heap's start (the break before the first
  call) and the current break; a mmapped block lies inside its own mapping,
  page-aligned, disjoint from the heap and from every other mapping;
* contents are kept until freed: no byte of a live block is the allocator's
  (no chunk header, no free chunk, no part of the top chunk lies inside it),
  so nothing the allocator writes changes them (:func:`contents_problems`).

glibc's policy, where the contract leaves a choice:

* a NULL answer only for a request glibc refuses outright (more than
  ``PTRDIFF_MAX`` bytes, or a ``calloc`` product that overflows one:
  ``checked_request2size``, ``__libc_calloc``); the model has no memory limit;
* a block in a mapping of its own only for a chunk of at least
  ``mp_.mmap_threshold`` bytes (``sysmalloc``: ``nb >= mp_.mmap_threshold &&
  mp_.n_mmaps < mp_.n_mmaps_max``), or the ``realloc`` of a mmapped block
  (``mremap_chunk``); such a chunk grows no break (``sysmalloc`` maps before it
  extends the heap), but for the first call, which grows the heap for the
  tcache before it serves the request (``tcache_init``), maybe from the top;
* ``free`` of a mmapped block unmaps its mapping at once (``munmap_chunk``), and
  raises the threshold to that chunk's size unless ``mallopt`` fixed it
  (``__libc_free``: ``chunksize_nomask (p) > mp_.mmap_threshold`` and at most
  ``DEFAULT_MMAP_THRESHOLD_MAX``, 32 MiB on 64-bit);
* ``free`` of a heap block whose chunk is at most ``global_max_fast`` (0x80
  unless ``M_MXFAST`` changed it) never moves the break: the chunk goes to its
  tcache bin or to a fastbin, and neither path consolidates or trims
  (``_int_free``; the seed's wrong answer that every free returns memory);
* ``free`` and ``mallopt`` never grow the break (``free`` returns memory,
  ``systrim``; ``mallopt`` only consolidates), and ``malloc_trim (pad)`` grows
  it by at most ``pad`` and a page: glibc 2.36's ``systrim`` computes
  ``top_area`` and ``extra`` as ``long`` against a ``size_t`` pad, so a top of
  exactly MINSIZE (``top_area`` -1) makes ``extra`` negative and
  ``MORECORE (-extra)`` extends the heap (found by the glibc oracle,
  ``tests/scenarios/malloc/malloc-trim-grows-the-break.json``);
* ``realloc (p, 0)`` frees ``p`` and answers NULL (``REALLOC_ZERO_BYTES_FREES``);
* ``mallopt`` answers 1, or 0 for ``M_MXFAST`` above ``MAX_FAST_SIZE``
  (``do_set_mxfast``);
* an abort (``malloc_printerr``) only for a call that names a block no longer
  live (a double free, a realloc of a freed pointer) or after a program wrote
  outside its blocks (heap corruption), and it changes nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from lang import ualloc_ops as uops

ALIGNMENT = 16  # MALLOC_ALIGNMENT = 2 * SIZE_SZ (malloc/malloc-internal.h, sysdeps/generic/malloc-alignment.h)
PAGE = 4096
PTRDIFF_MAX = (1 << 63) - 1
SIZE_SZ = 8
MINSIZE = 32
DEFAULT_MMAP_THRESHOLD = 128 * 1024  # DEFAULT_MMAP_THRESHOLD_MIN (malloc/malloc.c)
DEFAULT_MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * SIZE_SZ
DEFAULT_MMAP_MAX = 65536
MAX_FAST_SIZE = 80 * SIZE_SZ // 4
DEFAULT_MXFAST = 64 * SIZE_SZ // 4
IS_MMAPPED = 2

MALLOPT_NUMBERS = {"M_MXFAST": 1, "M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_THRESHOLD": -3, "M_MMAP_MAX": -4}


@dataclass(frozen=True, slots=True)
class Block:
    """A live block: the pointer ``start`` call ``call`` returned, ``usable`` bytes from it, ``requested`` asked.

    ``mapping`` is ``(start, length)`` of its own mapping for a mmapped block, ``(0, 0)`` for a heap block.
    """

    call: int
    region: str
    start: int
    usable: int
    requested: int
    mapping: tuple[int, int] = (0, 0)

    @property
    def end(self) -> int:
        return self.start + self.usable

    @property
    def chunk_size(self) -> int:
        """A mmapped block's chunk size, header to the mapping's end (``chunksize``, the header 16 bytes before)."""
        return self.mapping[0] + self.mapping[1] - (self.start - 2 * SIZE_SZ)


@dataclass(frozen=True, slots=True)
class Params:
    """``mp_``'s fields the placement rules read: the mmap threshold, whether it is fixed, the most mappings."""

    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD
    no_dyn_threshold: bool = False
    mmap_max: int = DEFAULT_MMAP_MAX
    max_fast: int = (DEFAULT_MXFAST + SIZE_SZ) & ~(ALIGNMENT - 1)


@dataclass(frozen=True, slots=True)
class AllocState:
    """What a program may rely on: live blocks by call, the break, the parameters, whether it corrupted the heap."""

    heap_start: int
    brk: int
    blocks: tuple[Block, ...] = ()
    params: Params = Params()
    corrupted: bool = False

    def block(self, call: int) -> Block | None:
        return next((b for b in self.blocks if b.call == call), None)

    @property
    def mappings(self) -> frozenset[tuple[int, int]]:
        return frozenset(b.mapping for b in self.blocks if b.region == "mmapped")

    def n_mmapped(self) -> int:
        return sum(1 for b in self.blocks if b.region == "mmapped")


@dataclass(frozen=True, slots=True)
class Answer:
    """What one call did, in absolute addresses: the block it returned (region ``"heap"``, ``"mmapped"``,
    ``"null"``, or ``"none"`` for a call returning no pointer), the break after it, its int result, its abort."""

    region: str
    start: int = 0
    usable: int = 0
    mapping: tuple[int, int] = (0, 0)
    brk: int = 0
    ret: int = 0
    abort: str = ""


def initial(heap_start: int) -> AllocState:
    """No block, the break at the heap's start (page-aligned as Linux places it: ``arch_randomize_brk``)."""
    return AllocState(heap_start, heap_start)


def request2size(req: int) -> int:
    """The chunk a request needs (``request2size``): the size word added, 16-aligned, at least ``MINSIZE``."""
    return max(MINSIZE, (req + SIZE_SZ + ALIGNMENT - 1) & ~(ALIGNMENT - 1))


# --- the contract ---------------------------------------------------------------------------------------


def contract_problems(state: AllocState) -> tuple[str, ...]:
    """The contract's violations in ``state`` (none when the allocator kept it)."""
    problems: list[str] = []
    heap = (state.heap_start, state.brk)
    for b in state.blocks:
        if b.start % ALIGNMENT:
            problems.append(f"block of call {b.call} at {b.start:#x} is not {ALIGNMENT}-byte aligned")
        if b.usable < b.requested:
            problems.append(f"block of call {b.call} has {b.usable} usable bytes, {b.requested} were asked")
        if b.region == "heap" and not (heap[0] <= b.start and b.end <= heap[1]):
            problems.append(
                f"heap block of call {b.call} [{b.start:#x}, {b.end:#x}) lies outside the heap "
                f"[{heap[0]:#x}, {heap[1]:#x})"
            )
        if b.region == "mmapped":
            start, length = b.mapping
            if start % PAGE or length % PAGE or length <= 0:
                problems.append(f"mapping of call {b.call} [{start:#x}, +{length:#x}) is not whole pages")
            if not (start <= b.start and b.end <= start + length):
                problems.append(f"block of call {b.call} lies outside its mapping")
            if start < heap[1] and heap[0] < start + length:
                problems.append(f"mapping of call {b.call} overlaps the heap")
    ordered = sorted(state.blocks, key=lambda b: b.start)
    for low, high in pairwise(ordered):
        if high.start < low.end:
            problems.append(f"blocks of calls {low.call} and {high.call} overlap at {high.start:#x}")
    maps = sorted(state.mappings)
    for (s1, l1), (s2, _) in pairwise(maps):
        if s2 < s1 + l1:
            problems.append(f"mappings at {s1:#x} and {s2:#x} overlap")
    return tuple(problems)


def contents_problems(state: AllocState, owned: Sequence[tuple[int, int]]) -> tuple[str, ...]:
    """Contents kept until freed: none of the allocator's own ranges ``(start, end)`` (chunk headers, free
    chunks, the top) lies inside a live block, so the allocator writes none of a live block's bytes."""
    problems: list[str] = []
    ordered = sorted(state.blocks, key=lambda b: b.start)
    starts = [b.start for b in ordered]
    for low, high in owned:
        at = bisect.bisect_right(starts, low) - 1
        for b in ordered[max(at, 0) :]:
            if b.start >= high:
                break
            if low < b.end and b.start < high:
                problems.append(f"allocator bytes [{low:#x}, {high:#x}) lie inside the block of call {b.call}")
                break
    return tuple(problems)


# --- allowed answers ------------------------------------------------------------------------------------


def requested(op_name: str, size: int, count: int = 1) -> int | None:
    """The bytes an allocating call asks for; None when ``count * size`` cannot be a ``ptrdiff_t`` (calloc)."""
    total = size * count if op_name == "calloc" else size
    return None if total > PTRDIFF_MAX else total


def may_abort(state: AllocState, names_dead: bool) -> bool:
    """glibc aborts only a call naming a block no longer live, or after the program corrupted the heap."""
    return names_dead or state.corrupted


def new_block_problem(state: AllocState, want: int | None, answer: Answer, replacing: Block | None) -> str | None:
    """Why ``answer`` is not an allowed result of a call asking ``want`` bytes (``replacing``: realloc's old block)."""
    if want is None:
        return None if answer.region == "null" else "a request above PTRDIFF_MAX must fail with NULL"
    if answer.region == "null":
        return f"NULL for a request of {want} bytes, which glibc serves"
    if answer.region not in ("heap", "mmapped"):
        return f"no pointer for a request of {want} bytes"
    nb = request2size(want)
    if answer.region == "mmapped":
        keeps = replacing is not None and replacing.region == "mmapped"
        can_map = nb >= state.params.mmap_threshold and state.n_mmapped() < state.params.mmap_max
        if not keeps and not can_map:
            return (
                f"a chunk of {nb:#x} bytes mmapped below the mmap threshold {state.params.mmap_threshold:#x} "
                "(sysmalloc maps only at the threshold)"
            )
        others = state.mappings - ({replacing.mapping} if replacing is not None and keeps else set())
        if answer.mapping in others:
            return f"the new block's mapping {answer.mapping} is another live block's"
    elif (
        state.brk > state.heap_start  # the first call grows the heap for the tcache itself (tcache_init)
        and answer.brk > state.brk
        and nb >= state.params.mmap_threshold
        and state.n_mmapped() < state.params.mmap_max
    ):
        return (
            f"the break grew for a chunk of {nb:#x} bytes at or above the mmap threshold "
            f"{state.params.mmap_threshold:#x} (sysmalloc maps it)"
        )
    return None


def _pointer_call(op: uops.UallocOp) -> int | None:
    return op.call if isinstance(op, (uops.Free, uops.Realloc)) else None


def answer_problem(state: AllocState, op: uops.UallocOp, answer: Answer) -> str | None:
    """Why ``answer`` is not an allowed answer of ``op`` in ``state`` (None: allowed)."""
    call = _pointer_call(op)
    old = state.block(call) if call is not None else None
    names_dead = call is not None and old is None
    if answer.abort:
        if may_abort(state, names_dead):
            return None
        return f"aborted ({answer.abort}) a call on live blocks of an uncorrupted heap"
    if answer.region in ("heap", "mmapped") and not isinstance(op, (uops.Malloc, uops.Calloc, uops.Realloc)):
        return f"{op.name} returned a pointer"
    if isinstance(op, (uops.Free, uops.Mallopt)) and answer.brk > state.brk:
        return f"{op.name} grew the break from {state.brk:#x} to {answer.brk:#x}"
    if isinstance(op, uops.MallocTrim) and answer.brk > state.brk + op.pad + PAGE:
        return f"malloc_trim ({op.pad}) grew the break from {state.brk:#x} to {answer.brk:#x}, past pad and a page"
    if isinstance(op, uops.HeapWrite):
        return None if answer.brk == state.brk and answer.region == "none" else "a store moved the break"
    small = old is not None and old.region == "heap" and old.usable + SIZE_SZ <= state.params.max_fast
    if isinstance(op, uops.Free) and old is not None and small and answer.brk != state.brk:
        return (
            f"the free of a block of {old.usable} usable bytes (a tcache or fastbin chunk) moved the break: "
            "those paths neither consolidate nor trim"
        )
    if isinstance(op, uops.Mallopt):
        want = 0 if op.param == "M_MXFAST" and op.value > MAX_FAST_SIZE else 1
        if answer.ret != want:
            return f"mallopt ({op.param}, {op.value}) answered {answer.ret}, glibc answers {want}"
        if answer.brk != state.brk:
            return "mallopt moved the break (it only consolidates the fastbins)"
        return None
    if isinstance(op, uops.Malloc):
        return new_block_problem(state, requested("malloc", op.size), answer, None)
    if isinstance(op, uops.Calloc):
        return new_block_problem(state, requested("calloc", op.size, op.count), answer, None)
    if isinstance(op, uops.Realloc):
        if op.size == 0 and old is not None:
            return None if answer.region == "null" else "realloc (p, 0) must free p and answer NULL"
        if names_dead:
            return None  # glibc reads a freed chunk's stale header: undefined, any answer
        return new_block_problem(state, requested("realloc", op.size), answer, old)
    return None


def _raised(params: Params, freed: Block) -> Params:
    """``__libc_free``'s dynamic threshold: a freed mmapped chunk above the threshold becomes it."""
    nomask = freed.chunk_size | IS_MMAPPED
    if params.no_dyn_threshold or not params.mmap_threshold < nomask <= DEFAULT_MMAP_THRESHOLD_MAX:
        return params
    return replace(params, mmap_threshold=freed.chunk_size)


def _set(params: Params, op: uops.Mallopt) -> Params:
    """``do_set_*``: each parameter but M_MXFAST fixes the thresholds (``mp_.no_dyn_threshold = 1``)."""
    if op.param == "M_MMAP_THRESHOLD":
        return replace(params, mmap_threshold=op.value, no_dyn_threshold=True)
    if op.param == "M_MMAP_MAX":
        return replace(params, mmap_max=op.value, no_dyn_threshold=True)
    if op.param in ("M_TRIM_THRESHOLD", "M_TOP_PAD"):
        return replace(params, no_dyn_threshold=True)
    if op.value > MAX_FAST_SIZE:
        return params  # refused, mallopt answers 0
    # set_max_fast: 0 disables the fastbins (a limit no chunk meets)
    return replace(params, max_fast=MINSIZE // 2 if op.value == 0 else (op.value + SIZE_SZ) & ~(ALIGNMENT - 1))


def write_corrupts(state: AllocState, op: uops.HeapWrite) -> bool:
    """A store corrupts the heap unless its word lies within a live block's usable bytes."""
    block = state.block(op.call)
    return block is None or not (0 <= op.offset and op.offset + SIZE_SZ <= block.usable)


def step(state: AllocState, index: int, op: uops.UallocOp, answer: Answer) -> AllocState:
    """The state after op number ``index`` gave the allowed ``answer``: blocks freed and returned, the break, the
    parameters, whether the heap is corrupted.  An abort changes nothing."""
    if answer.abort:
        return state
    if isinstance(op, uops.HeapWrite):
        return replace(state, corrupted=True) if write_corrupts(state, op) else state
    blocks = state.blocks
    params = state.params
    call = _pointer_call(op)
    old = state.block(call) if call is not None else None
    if old is not None:
        blocks = tuple(b for b in blocks if b.call != old.call)
        frees = isinstance(op, uops.Free) or (isinstance(op, uops.Realloc) and op.size == 0)
        if frees and old.region == "mmapped":
            params = _raised(params, old)  # realloc (p, 0) is __libc_free (p)
    if isinstance(op, uops.Mallopt):
        params = _set(params, op)
    if answer.region in ("heap", "mmapped"):
        want = {
            uops.Malloc: lambda o: o.size,
            uops.Calloc: lambda o: o.size * o.count,
            uops.Realloc: lambda o: o.size,
        }[type(op)](op)
        mapping = answer.mapping if answer.region == "mmapped" else (0, 0)
        blocks = (*blocks, Block(index, answer.region, answer.start, answer.usable, want, mapping))
    return replace(state, brk=answer.brk, blocks=blocks, params=params)


def freed_mapping_problem(
    before: AllocState, op: uops.UallocOp, mappings_after: frozenset[tuple[int, int]]
) -> str | None:
    """``free`` of a mmapped block unmaps it at once (``munmap_chunk``): its mapping is gone after the call, and
    no call leaves a mapping that holds no live block."""
    call = _pointer_call(op)
    old = before.block(call) if call is not None else None
    frees = isinstance(op, uops.Free) or (isinstance(op, uops.Realloc) and op.size == 0)
    if frees and old is not None and old.region == "mmapped" and old.mapping in mappings_after:
        return f"the mapping {old.mapping[0]:#x} of the freed block of call {old.call} is still mapped"
    return None
