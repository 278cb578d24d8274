"""Mutants of the full-flush paths, reached only below the default flush ceiling, caught by the ceiling machines.

Every shootdown above ``tlb_single_page_flush_ceiling`` pages flushes the whole
TLB instead of page by page (``flush_tlb_mm_range``: ``(end - start) >>
stride_shift > tlb_single_page_flush_ceiling``, a test the 2025 INVLPGB
patches move into ``get_flush_tlb_info``; ``flush_tlb_kernel_range``:
``do_flush_tlb_all``, arch/x86/mm/tlb.c).  At the default ceiling of 33 and
the machines' ranges of one or two pages neither the comparison's boundary nor
the kernel's full flush is ever reached, so these defects pass every other
check; :mod:`properties.smp.ceiling_machine` runs the SMP machine at ceiling 1
(layer ``ceiling``: the boundary of the range flush) and at ceiling 0 (layer
``flushall``: the kernel's full flush).
"""

from __future__ import annotations

from impl.smp.shootdown import Smp
from properties.mutants.catalogue import Mutant, SourcePatch

CEILING_MUTANTS = (
    Mutant(
        "ceiling-off-by-one",
        "off-by-one at the flush ceiling: a range of exactly tlb_single_page_flush_ceiling pages flushed whole "
        "(>= for the > of flush_tlb_mm_range, arch/x86/mm/tlb.c), so the flush the CPUs do is not the one the "
        "protocol asks for",
        "the flush events of every shootdown are the spec's (page by page up to the ceiling, whole above it)",
        "ceiling",
        SourcePatch(
            Smp,
            "request",
            (("flight.stride > self.flush_ceiling", "flight.stride >= self.flush_ceiling"),),
        ),
    ),
    Mutant(
        "kernel-flush-all-keeps-global",
        "SDM misreading (4.10.4.1): the full kernel flush done with INVPCID type 3 (all contexts except global "
        "translations) instead of type 2 (all, global ones included) as do_flush_tlb_all -> __flush_tlb_all "
        "-> native_flush_tlb_global -> invpcid_flush_all does on a CPU with INVPCID; the kernel's own pages are "
        "global, so their stale entries survive",
        "TLB coherence: after kernel_remap no CPU holds the kernel page's old translation",
        "flushall",
        SourcePatch(Smp, "kernel_remap", (("tlb.invpcid(2)", "tlb.invpcid(3)"),)),
    ),
)
