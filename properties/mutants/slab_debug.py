"""slab_debug mutants (``impl.slab.slub``): the checks of ``check_object`` and ``validate_slab`` gone wrong.

Each is a misreading of Linux 6.12 mm/slub.c that the slab_debug machine
must catch: it corrupts bytes of debug caches (``kmem_flip``) and runs
``validate_slab_cache``, whose error count and repairs the spec fixes.
"""

from __future__ import annotations

from properties.mutants.catalogue import Mutant
from properties.mutants.slab import slub_patch

REFINES = (
    "slab_debug: impl error counts of validate_slab_cache, its repairs and the bytes of red zones and poison "
    "equal the spec's"
)

SLAB_DEBUG_MUTANTS = (
    Mutant(
        "slab-kmalloc-redzone-from-object-size",
        "mm/slub.c alloc_debug_processing -> init_object(s, object, SLUB_RED_ACTIVE) with slub_debug's "
        "orig_size (set_orig_size, Linux 6.2 on): the red zone of a kmalloc object starts at the size asked "
        "for; started at the object size, bytes written past a short request go unreported",
        f"{REFINES}; a kmalloc object's red zone starts at its requested size",
        "slab_debug",
        slub_patch(
            "alloc_debug",
            (
                "orig_size if s.keep_orig and s.redzone else s.object_size)",
                "s.object_size)",
            ),
        ),
    ),
    Mutant(
        "slab-poison-end-unchecked",
        "mm/slub.c check_object: a free object's poison is POISON_FREE then one POISON_END byte, both checked "
        "(check_bytes_and_report of p + s->object_size - 1); skipping the last byte misses an off-by-one write",
        f"{REFINES}; every poisoned byte of a free object is checked",
        "slab_debug",
        slub_patch(
            "check_object",
            ("errors += self.check_bytes(p + s.object_size - 1, POISON_END, 1)", "pass"),
        ),
    ),
    Mutant(
        "slab-redzone-not-restored",
        "mm/slub.c check_bytes_and_report -> restore_bytes: a corrupted red zone or poison is reported and "
        "then rewritten, so the next check does not report it again; without the restore every "
        "validate_slab_cache reports the same damage",
        f"{REFINES}; a reported corruption is repaired",
        "slab_debug",
        slub_patch("check_bytes", ("self.fill(start, value, count)", "pass")),
    ),
    Mutant(
        "slab-left-redzone-unchecked",
        "mm/slub.c check_object: with SLAB_RED_ZONE the left red zone (s->red_left_pad bytes before the "
        "object, 'Left Redzone') is checked as well as the right one; an underflow goes unreported without it",
        f"{REFINES}; writes before an object are reported",
        "slab_debug",
        slub_patch(
            "check_object",
            ("errors += self.check_bytes(p - s.red_left_pad, val, s.red_left_pad)", "pass"),
        ),
    ),
    Mutant(
        "slab-validate-skips-full-slabs",
        "mm/slub.c validate_slab_node: the full list is validated too when SLAB_STORE_USER keeps it "
        "(add_full only tracks full slabs under SLAB_STORE_USER); skipping it misses damage in full slabs",
        f"{REFINES}; validate_slab_cache checks every slab it can list",
        "slab_debug",
        slub_patch(
            "validate_slab_cache",
            ("(id(slab) in listed or geometry.STORE_USER in s.flags)", "id(slab) in listed"),
        ),
    ),
    Mutant(
        "slab-wrong-count-not-fixed",
        "mm/slub.c on_freelist: 'Wrong object count' is reported and slab->inuse set from the chain "
        "(slab_fix 'Object count adjusted'); left unfixed, the count stays off and every later check reports it",
        f"{REFINES}; a slab's object count is repaired from its chain",
        "slab_debug",
        slub_patch("validate_slab", ("slab.inuse = slab.objects - nr", "pass")),
    ),
    Mutant(
        "slab-freechain-not-cut",
        "mm/slub.c on_freelist: at a free pointer outside the slab's objects ('Freechain corrupt') the chain "
        "is cut at the last good object (set_freepointer(s, object, NULL)); not cut, the bad pointer stays and "
        "the slab is not repaired",
        f"{REFINES}; a corrupt free chain is cut at its last valid object",
        "slab_debug",
        slub_patch("validate_slab", ("self.set_freepointer(s, prev, 0)", "pass")),
    ),
    Mutant(
        "slab-validate-every-object",
        "mm/slub.c validate_slab: for_each_object ... if (!check_object(...)) break: the walk stops at the first "
        "object that reports; going on counts errors SLUB never prints",
        f"{REFINES}; validate_slab stops at the first bad object",
        "slab_debug",
        slub_patch("validate_slab", ("if found:", "if False:")),
    ),
)
