"""Walk and permission mutants of the hardware layer (``impl.paging.mmu.Mmu``)."""

from __future__ import annotations

from impl.paging.mmu import Mmu
from properties.mutants.catalogue import Mutant, SourcePatch

TRANSLATION = "translation: impl walk = spec walk (result, A/D bits, memory)"


def access_patch(*edits: tuple[str, str]) -> SourcePatch:
    """A source patch of :meth:`impl.paging.mmu.Mmu.access`."""
    return SourcePatch(Mmu, "access", edits)


def allowed_patch(*edits: tuple[str, str]) -> SourcePatch:
    """A source patch of the rights check :meth:`impl.paging.mmu.Mmu._allowed`."""
    return SourcePatch(Mmu, "_allowed", edits)


WALK_MUTANTS = (
    Mutant(
        "leaf-only-rights",
        "textbook error: R/W and U/S read from the leaf alone instead of ANDed over every level (SDM 4.6.1)",
        f"{TRANSLATION}; effective rights are the AND of R/W and U/S over all levels",
        "walk",
        access_patch(("rights &= entry", "rights = entry")),
    ),
    Mutant(
        "xd-not-ored",
        "textbook error: XD taken from the leaf only, so XD=1 in a PML4E or PDE does not forbid fetches (SDM 4.6.1)",
        f"{TRANSLATION}; XD is the OR over all levels",
        "walk",
        access_patch(("no_exec |= entry >> 63", "no_exec = entry >> 63")),
    ),
    Mutant(
        "wp-ignored",
        "SDM misreading: supervisor writes allowed to read-only pages whatever CR0.WP says (the pre-486 rule)",
        f"{TRANSLATION}; with CR0.WP=1 supervisor writes need R/W on every level",
        "walk",
        allowed_patch(("return kind == READ or bool(rights & _RW) or not cpu.wp", "return True")),
    ),
    Mutant(
        "smap-ignores-ac",
        "SDM misreading: SMAP blocks supervisor data accesses to user pages even with RFLAGS.AC=1 (stac ignored)",
        f"{TRANSLATION}; SMAP applies only when RFLAGS.AC=0",
        "walk",
        allowed_patch(("if us and cpu.smap and not cpu.ac:", "if us and cpu.smap:")),
    ),
    Mutant(
        "huge-offset-12-bits",
        "textbook error: a 2 MiB or 1 GiB leaf translated with the 4 KiB offset (12 bits, not 21 or 30)",
        f"{TRANSLATION}; huge-page offsets use 21/30 bits",
        "walk",
        access_patch(("offset_mask = (1 << shift) - 1", "offset_mask = 0xFFF")),
    ),
    Mutant(
        "canonical-off-by-one",
        "off-by-one: the canonical check tests bits 63:48 instead of 63:47, so bit 47 alone is accepted",
        f"{TRANSLATION}; a non-canonical address raises #GP",
        "walk",
        access_patch(
            ("if ((va + (1 << (width - 1))) & _MASK64) >> width:", "if ((va + (1 << width)) & _MASK64) >> (width + 1):")
        ),
    ),
    Mutant(
        "rsvd-maxphyaddr-missed",
        "SDM misreading: address bits 51:MAXPHYADDR not treated as reserved (no RSVD #PF)",
        f"{TRANSLATION}; a set reserved bit gives #PF with RSVD=1",
        "walk",
        access_patch(("rsvd = self._high_rsvd | (0 if cpu.nxe else _XD)", "rsvd = 0 if cpu.nxe else _XD")),
    ),
    Mutant(
        "dirty-on-read",
        "walker bug: D set in the leaf on every data access, not only writes (SDM 4.8)",
        "A/D: D is set only on the leaf of a successful write",
        "walk",
        access_patch(("update = _A | _D if kind == WRITE else _A", "update = _A | _D if kind != FETCH else _A")),
    ),
    Mutant(
        "accessed-never-set",
        "walker bug: the A bit is never written, so page aging sees every page as idle (SDM 4.8)",
        "A/D: A is set on every entry of a successful walk",
        "walk",
        access_patch(
            ("update = _A | _D if kind == WRITE else _A", "update = _D if kind == WRITE else 0"),
            ("mem.write_unchecked(entry_pa, entry | _A)", "pass"),
        ),
    ),
)
