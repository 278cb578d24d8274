"""User-space allocator mutants (``impl.ualloc.ptmalloc``): glibc malloc bugs and the checks classic heap exploits
defeat, each caught by the ualloc machine (:mod:`properties.ualloc.ualloc_machine`).

The hardening checks are glibc 2.36's ``malloc/malloc.c`` (``_int_free``, ``_int_malloc``'s unsorted scan and
``use_top``); the exploits are those of "Malloc Maleficarum" (Phantasmal Phantasmagoria, 2005) and
"Malloc Des-Maleficarum" (blackngel, Phrack 66:10, 2009).
"""

from __future__ import annotations

from impl.ualloc.ptmalloc import Ptmalloc
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "ualloc: every answer of the ptmalloc model is one the allocator's contract allows"


def ptmalloc_patch(name: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.ualloc.ptmalloc.Ptmalloc`."""
    return SourcePatch(Ptmalloc, name, edits)


UALLOC_MUTANTS = (
    Mutant(
        "tcache-double-free-undetected",
        "glibc 2.26-2.28's tcache, before 2.29's tcache_entry key ('malloc: tcache double free check', DJ Delorie, "
        "2018): a chunk freed twice is put in its tcache bin twice (the 'tcache dup' of how2heap), and the next "
        "two mallocs of its size return the same block",
        f"{REFINES}; live blocks disjoint, a chunk on one list at most",
        "ualloc",
        ptmalloc_patch("_check_free", ("if p in self.keyed:", "if False:")),
    ),
    Mutant(
        "free-invalid-size-unchecked",
        "_int_free without its \"free(): invalid size\" check (size < MINSIZE or unaligned), the check that stops "
        "House of Spirit's fake chunks (Phrack 66:10): a size word grown by an overflow sends the chunk to a "
        "bigger tcache bin, and malloc hands it out over its neighbour",
        f"{REFINES}; live blocks disjoint and of their usable size",
        "ualloc",
        ptmalloc_patch(
            "_check_free",
            ("if size < MINSIZE or size % MALLOC_ALIGNMENT:", "if False:"),
        ),
    ),
    Mutant(
        "top-size-unchecked",
        "House of Force (Malloc Maleficarum, 2005): _int_malloc's use_top without glibc 2.29's \"malloc(): "
        "corrupted top size\" check, so a top size word overwritten with -1 serves any request from the top, "
        "past the break",
        f"{REFINES}; heap blocks inside the heap",
        "ualloc",
        ptmalloc_patch("_int_malloc", ("if size > self.system_mem:", "if False:")),
    ),
    Mutant(
        "unsorted-checks-missing",
        "_int_malloc's unsorted scan without the checks glibc 2.29 added (\"malloc: Additional checks for unsorted "
        "bin integrity checks\", Istvan Kurucsai, 2018: invalid size, invalid next size, mismatching "
        "next->prev_size, next->prev_inuse): a freed chunk's size grown by a use-after-free store is taken whole, "
        "over the live chunk after it (the overlapping-chunks attack)",
        f"{REFINES}; live blocks disjoint",
        "ualloc",
        ptmalloc_patch("_int_malloc", ("self._check_unsorted(victim, size)", "pass")),
    ),
    Mutant(
        "mmap-threshold-not-raised",
        "the static M_MMAP_THRESHOLD of glibc before the dynamic threshold (__libc_free: 'update the dynamic mmap "
        "threshold'): after a free of a 200 KB mmapped chunk the next one is mmapped again, a mmap and munmap "
        "pair for every such block",
        f"{REFINES}; a chunk below the threshold (raised by a freed mmapped chunk) comes from the heap",
        "ualloc",
        ptmalloc_patch("free", ("self.mmap_threshold = self.chunksize(p)", "pass")),
    ),
    Mutant(
        "trim-releases-in-use-top",
        "systrim rounding the release up (ALIGN_UP for ALIGN_DOWN): the negative sbrk gives back the page holding "
        "the top's start, and with it the end of the last in-use chunk below the top",
        f"{REFINES}; heap blocks below the break, the top ending at the break",
        "ualloc",
        ptmalloc_patch("systrim", ("to_long(align_down(", "to_long(align_up(")),
    ),
    Mutant(
        "munmap-deferred",
        "a free of a mmapped chunk that keeps its mapping (the seed's wrong answer: 'free returns it to a cache'): "
        "munmap_chunk unmaps the whole mapping at once, so RSS drops at that free",
        f"{REFINES}; a freed mmapped block's mapping is gone, every mapping holds a live block",
        "ualloc",
        ptmalloc_patch("munmap_chunk", ("mapping = self.mappings.pop(block)", "mapping = self.mappings[block]")),
    ),
    Mutant(
        "realloc-forward-no-unlink",
        "_int_realloc growing into the free next chunk without unlink_chunk ('Try to expand forward into next "
        "chunk'): the chunk stays in its bin while in use, and a later malloc hands it out again",
        f"{REFINES}; no in-use chunk on a bin, live blocks disjoint",
        "ualloc",
        ptmalloc_patch("_int_realloc", ("self.unlink_chunk(nxt)", "pass")),
    ),
    Mutant(
        "usable-size-counts-next-header",
        "malloc_usable_size reporting the whole chunk (chunksize) for an in-use heap chunk: the prev_size word of "
        "the next chunk is the block's, its size word is not (musable: chunksize (p) - SIZE_SZ), so a program "
        "filling what it was told is usable overwrites the next chunk's header",
        f"{REFINES}; no allocator byte inside a live block",
        "ualloc",
        ptmalloc_patch("usable_size", ("return self.chunksize(p) - SIZE_SZ", "return self.chunksize(p)")),
    ),
)
