"""Slab allocator mutants (``impl.slab.slub``): the SLUB bugs and misreadings the slab machine must catch."""

from __future__ import annotations

import impl.slab.geometry
from impl.slab.slub import Slub
from properties.mutants.catalogue import Mutant, Replace, SourcePatch

REFINES = "slab: impl caches, slabs and freelists (decoded from memory), abstracted, equal the spec state"


def slub_patch(name: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.slab.slub.Slub`."""
    return SourcePatch(Slub, name, edits)


def kmalloc_index_no_96(size: int) -> int:
    """``__kmalloc_index`` without the kmalloc-96 and kmalloc-192 classes: 65..96 bytes go to kmalloc-128."""
    if size <= 8:
        return 3
    index = 4
    while size > 1 << index:
        index += 1
    return index


SLAB_MUTANTS = (
    Mutant(
        "slab-double-free-undetected",
        "commit ce6fa91b9363 (mm/slub.c: add a naive detection of double free or corruption): "
        "without it a double free makes the freelist a cycle and the object is handed out twice",
        f"{REFINES}; a double free is refused and changes nothing; freelists acyclic",
        "slab",
        slub_patch(
            "free",
            ("if addr == slab.freelist:", "if False:"),
            ("if self.on_freelist(slab, addr):", "if False:"),
        ),
    ),
    Mutant(
        "slab-freeptr-unencoded",
        "commit 2482ddec670f (mm: add SLUB free list pointer obfuscation): the free pointer stored in the clear, "
        "so a leaked or overwritten object reveals or redirects the freelist",
        f"{REFINES}; free pointers encoded as ptr ^ s->random ^ swab(ptr_addr)",
        "slab",
        slub_patch(
            "set_freepointer",
            ("fp ^ s.random ^ swab64(ptr_addr)", "fp"),
        ),
    ),
    Mutant(
        "slab-freeptr-decoded-at-object",
        "commit 1ad53d9fa3f6 (slub: improve bit diffusion for freelist ptr obfuscation) class: the pointer "
        "decoded with the object's address instead of the address it is stored at (s->offset added once only)",
        f"{REFINES}; alloc returns the object the freelist leads to",
        "slab",
        slub_patch("get_freepointer", ("swab64(ptr_addr)", "swab64(obj)")),
    ),
    Mutant(
        "slab-objects-off-by-one",
        "heap overflow past a slab's end, the write of CVE-2021-22555 (x_tables) made by the allocator itself: "
        "oo's object count one too many, the last object crossing the end of the slab into the next page",
        f"{REFINES}; objects inside their slab",
        "slab",
        SourcePatch(
            Slub,
            "allocate_slab",
            (("(geometry.PAGE_SIZE << order) // s.size)", "(geometry.PAGE_SIZE << order) // s.size + 1)"),),
        ),
    ),
    Mutant(
        "slab-empty-never-discarded",
        'the MIN_PARTIAL rule ("SLUB: Add MIN_PARTIAL", linux-mm, 27 April 2007, <20070427042908.476546262@sgi.com>) '
        "keeps a bounded number of empty slabs and frees the rest; "
        "here discard_slab forgets the slab but never returns its pages to the buddy (a page leak)",
        f"{REFINES}; no leak: every allocated block is a slab page",
        "slab",
        slub_patch("discard_slab", ("self.buddy.free(slab.pfn, slab.order)", "pass")),
    ),
    Mutant(
        "slab-destroy-keeps-cpu-slab",
        "kmem_cache_close's release path (commit 69cb8e6b7c29, slub: free slabs without holding locks) without "
        "its flush_all: the per-CPU slabs are not flushed on destroy, their pages stay with a cache that is gone",
        f"{REFINES}; no leak; every slab belongs to a live cache",
        "slab",
        slub_patch("destroy", ("    self.flush_all(s)\n", "")),
    ),
    Mutant(
        "slab-cross-cache-free",
        "commit b9ce5ef49f00 (sl[au]b: always get the cache from its page in kmem_cache_free()): a free into the "
        "wrong cache accepted, the object threaded with the other cache's offset and secret (cross-cache "
        "confusion, as in CVE-2022-29582)",
        f"{REFINES}; a free into the wrong cache is refused",
        "slab",
        slub_patch(
            "free",
            ("if wanted is not None and slab.cache is not wanted:", "if False:"),
            ("    s = slab.cache\n", "    s = wanted or slab.cache\n"),
        ),
    ),
    Mutant(
        "slab-ctor-on-alloc",
        "SLOB's slob_alloc_node (mm/slob.c, removed in 6.4) ran c->ctor on every allocation: under SLUB's "
        "object caching a freed object must come back in the state it was freed in",
        f"{REFINES}; an object's words survive free and reallocation",
        "slab",
        slub_patch(
            "alloc",
            (
                "    slab.inuse += 1\n",
                "    slab.inuse += 1\n    if s.ctor:\n        self.mem.write(obj - PAGE_OFFSET, CTOR_MARK)\n",
            ),
        ),
    ),
    Mutant(
        "slab-kmalloc-no-96-192",
        "kmalloc_index skips the 96 and 192 byte classes when KMALLOC_MIN_SIZE exceeds 32 and 64 "
        "(include/linux/slab.h), as on arm64 before commit 4ab5f8ec7d71 (mm/slab: decouple ARCH_KMALLOC_MINALIGN "
        "from ARCH_DMA_MINALIGN), where it was 128; here they are gone on x86-64: kmalloc(65..96) from kmalloc-128",
        f"{REFINES}; kmalloc uses kmalloc_index's class",
        "slab",
        Replace(impl.slab.geometry, "kmalloc_index", kmalloc_index_no_96),
    ),
    Mutant(
        "slab-discard-at-min-partial-minus-one",
        'the MIN_PARTIAL rule ("SLUB: Add MIN_PARTIAL", <20070427042908.476546262@sgi.com>) off by one: __slab_free\'s '
        "n->nr_partial >= s->min_partial "
        "tested against min_partial - 1, so an empty slab is discarded with fewer than min_partial kept",
        f"{REFINES}; empty slabs kept up to min_partial",
        "slab",
        slub_patch("slab_free", ("len(s.partial) >= s.min_partial", "len(s.partial) >= s.min_partial - 1")),
    ),
)
