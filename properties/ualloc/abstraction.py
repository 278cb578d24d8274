"""The ptmalloc model (:mod:`impl.ualloc.ptmalloc`) seen through the contract (:mod:`spec.ualloc.contract`).

:func:`answer_of` turns the model's last call into the spec's :class:`~spec.ualloc.contract.Answer` (absolute
addresses, the mapping a mmapped block lies in); :func:`owned_ranges` lists the bytes the allocator itself
holds (each chunk's size word, every free chunk, the top, a mmapped chunk's header), which must lie outside
every live block; :func:`heap_problems` walks the heap chunk by chunk and checks the model's own invariants:

* ``walk``: from the heap's start, chunk sizes (each at least MINSIZE, 16-aligned) lead exactly to the top,
  and the top ends at the break (``sysmalloc`` and ``systrim`` keep ``top + size == sbrk (0)``);
* ``bins``: a chunk is on at most one list; the bins (unsorted, small, large) hold only free chunks (next
  chunk's PREV_INUSE clear) of the bin's size range, the tcache and the fastbins only chunks marked in use
  (they stay "in use" for the boundary tags: ``tcache_put``, ``_int_free``'s fastbin path);
* ``coalesced``: no free chunk (PREV_INUSE clear at its successor) lies next to another or next to the top,
  and every free chunk is in a bin (else it is lost);
* ``live``: each live block of the spec is an in-use chunk the walk finds, on no list, of the usable size
  the model reports; every in-use heap chunk that is on no list is a live block or the tcache itself.
"""

from __future__ import annotations

from impl.ualloc.ptmalloc import (
    CHUNK_HDR_SZ,
    MALLOC_ALIGNMENT,
    MINSIZE,
    SIZE_SZ,
    Process,
    bin_index,
)
from lang import ualloc_ops as uops
from spec.ualloc.contract import AllocState, Answer


def answer_of(process: Process, answer: uops.MallocAnswer) -> Answer:
    """The spec's view of the model's answer to its last call."""
    heap = process.heap
    brk = heap.brk
    if answer.abort:
        return Answer("none", brk=brk, abort=answer.abort)
    if answer.region not in ("heap", "mmapped"):
        return Answer(answer.region, brk=brk, ret=answer.ret)
    mem = process.returned[-1]
    mapping = (0, 0)
    if answer.region == "mmapped":
        p = mem - CHUNK_HDR_SZ
        start = p - heap.foot.get(p, 0)
        found = heap.mappings.get(start)
        mapping = (start, found.length) if found is not None else (start, 0)
    return Answer(answer.region, mem, answer.usable, mapping, brk, answer.ret)


def listed(process: Process) -> dict[int, str]:
    """Every chunk on a list, by address, with the list's name (a chunk listed twice is named twice, '+')."""
    heap = process.heap
    where: dict[int, str] = {}

    def add(p: int, name: str) -> None:
        where[p] = f"{where[p]}+{name}" if p in where else name

    for index, chunks in enumerate(heap.tcache or []):
        for p in chunks:
            add(p, f"tcache[{index}]")
    for index, chunks in enumerate(heap.fastbins):
        for p in chunks:
            add(p, f"fastbin[{index}]")
    for index, chunks in enumerate(heap.bins):
        for p in chunks:
            add(p, f"bin[{index}]")
    return where


def owned_ranges(process: Process) -> list[tuple[int, int]]:
    """The bytes the allocator holds: each heap chunk's size word, the whole of every listed or top chunk
    (and a binned chunk's foot), each mmapped chunk's header."""
    heap = process.heap
    owned: list[tuple[int, int]] = []
    if heap.top:
        p = heap.heap_start
        while p < heap.top and heap.chunksize(p) >= MINSIZE:
            owned.append((p + SIZE_SZ, p + CHUNK_HDR_SZ))
            p += heap.chunksize(p)
        owned.append((heap.top + SIZE_SZ, heap.brk))
    for p, name in listed(process).items():
        end = p + heap.chunksize(p) + (SIZE_SZ if name.startswith("bin") else 0)
        owned.append((p + SIZE_SZ, end))
    if heap.tcache_chunk:
        owned.append((heap.tcache_chunk + SIZE_SZ, heap.tcache_chunk + heap.chunksize(heap.tcache_chunk)))
    for start in heap.mappings:
        p = start
        owned.append((p + SIZE_SZ, p + CHUNK_HDR_SZ))
    return owned


def heap_problems(process: Process, state: AllocState) -> list[str]:
    """The model's invariants (the module's list), with the spec's live blocks."""
    heap = process.heap
    problems: list[str] = []
    where = listed(process)
    problems += [f"chunk {p:#x} is on two lists: {name}" for p, name in where.items() if "+" in name]
    if not heap.top:
        return problems
    chunks: list[int] = []
    p = heap.heap_start
    while p < heap.top:
        size = heap.chunksize(p)
        if size < MINSIZE or size % MALLOC_ALIGNMENT:
            problems.append(f"walk: chunk {p:#x} has size {size:#x}")
            return problems
        chunks.append(p)
        p += size
    if p != heap.top:
        problems.append(f"walk: the chunks end at {p:#x}, past the top {heap.top:#x}")
        return problems
    if heap.top + heap.chunksize(heap.top) != heap.brk:
        problems.append(f"walk: the top ends at {heap.top + heap.chunksize(heap.top):#x}, the break is {heap.brk:#x}")
    live = {b.start - CHUNK_HDR_SZ: b for b in state.blocks if b.region == "heap"}
    walked = set(chunks)
    previous_free = False
    for p in chunks:
        size = heap.chunksize(p)
        in_use = heap.inuse_bit_at_offset(p, size)
        name = where.get(p, "")
        if not in_use:
            if previous_free:
                problems.append(f"coalesced: free chunk {p:#x} follows another free chunk")
            if not name.startswith("bin"):
                problems.append(f"coalesced: free chunk {p:#x} is on no bin ({name or 'lost'})")
            elif name.startswith("bin["):
                index = int(name[4:].split("]")[0])
                if index != 1 and bin_index(size) != index:
                    problems.append(f"bins: chunk {p:#x} of size {size:#x} is in bin {index}")
        elif name.startswith("bin"):
            problems.append(f"bins: in-use chunk {p:#x} is on {name}")
        elif not name and p not in live and p != heap.tcache_chunk:
            problems.append(f"live: in-use chunk {p:#x} of size {size:#x} is no live block (leaked)")
        previous_free = not in_use
    if previous_free:
        problems.append("coalesced: the chunk before the top is free")
    for p, block in live.items():
        if p not in walked:
            problems.append(f"live: the block of call {block.call} at {block.start:#x} is no chunk of the heap walk")
        elif p in where:
            problems.append(f"live: the block of call {block.call} is on {where[p]}")
        elif not heap.inuse_bit_at_offset(p, heap.chunksize(p)):
            problems.append(f"live: the block of call {block.call} is a free chunk")
        elif heap.usable_size(block.start) != block.usable:
            problems.append(f"live: the block of call {block.call} has {heap.usable_size(block.start)} usable bytes")
    for p in where:
        if p not in walked:
            problems.append(f"bins: listed chunk {p:#x} is no chunk of the heap walk")
    return problems


def mapping_problems(process: Process, state: AllocState) -> list[str]:
    """The model's mappings are exactly the live mmapped blocks' (none kept, none missing)."""
    actual = {(m.start, m.length) for m in process.heap.mappings.values()}
    expected = set(state.mappings)
    problems = [f"mapping {s:#x}+{n:#x} holds no live block" for s, n in sorted(actual - expected)]
    problems += [f"the live block's mapping {s:#x}+{n:#x} is not mapped" for s, n in sorted(expected - actual)]
    return problems
