"""Mutants of the TLB-hit fast path (``Mmu.translate`` and ``Mmu.load``), caught by the translate machine.

A TLB entry caches the rights combined over the walk (Intel SDM Vol. 3A
4.10.2.2); an access that hits is checked against them and the current
controls (CR0.WP, CR4.SMEP/SMAP, EFLAGS.AC, EFER.NXE), exactly as the walk
checks (4.6).  The hit paths inline that check for the common case, a data
read, so a slip there changes nothing the walk does: only a machine whose
accesses hit the TLB sees it (:mod:`properties.paging.translate_machine`).
"""

from __future__ import annotations

from impl.paging.mmu import Mmu
from properties.mutants.catalogue import Mutant, SourcePatch

RULE = "an access through the TLB gives the walk's outcome (SDM 4.6 on the cached rights, 4.10.2.2)"

FASTPATH_MUTANTS = (
    Mutant(
        "tlb-hit-smap-ignores-ac",
        "SDM misreading (4.6.1): the inlined read check of a TLB hit treats CR4.SMAP as absolute, forgetting that "
        "EFLAGS.AC=1 (stac) lets supervisor code read user pages, so copy_from_user faults on a cached translation",
        RULE,
        "fastpath",
        SourcePatch(
            Mmu,
            "translate",
            (
                (
                    "allowed = code & U if user else not (code & U and cpu.smap and not cpu.ac)",
                    "allowed = code & U if user else not (code & U and cpu.smap)",
                ),
            ),
        ),
    ),
    Mutant(
        "load-hit-ignores-user-bit",
        "a fast path that skips the rights check: a user-mode word read that hits a supervisor-only entry "
        "returns the word instead of a protection #PF (SDM 4.6.1: user reads need U/S=1 at every level)",
        RULE,
        "fastpath",
        SourcePatch(
            Mmu,
            "load",
            (
                (
                    "if code & U if user else not (code & U and cpu.smap and not cpu.ac):",
                    "if True if user else not (code & U and cpu.smap and not cpu.ac):",
                ),
            ),
        ),
    ),
    Mutant(
        "tlb-hit-write-skips-walk",
        "a cached translation taken for a write too: the entry does not cache D, so the write never sets the "
        "leaf's dirty flag (SDM 4.8: the processor sets D in the leaf on a write through it)",
        RULE,
        "fastpath",
        SourcePatch(Mmu, "translate", (("if kind != WRITE:", "if kind != WRITE or True:"),)),
    ),
    Mutant(
        "load-hit-drops-page-offset",
        "the fast path builds the physical address from the cached frame alone, without the page offset",
        RULE,
        "fastpath",
        SourcePatch(
            Mmu,
            "load",
            (("return self.mem.read(((code >> 4) << 12) | (va & 0xFFF))", "return self.mem.read((code >> 4) << 12)"),),
        ),
    ),
)
