"""TLB-shootdown mutants of the implementation's CPUs (:class:`impl.smp.shootdown.Smp`), caught by the SMP machine.

Each mirrors a bug of the linux-mm reference's catalogue (section 4, TLB
shootdown ordering and x86 PCID): the frames of an ``mmu_gather`` freed before
the flush, a protection change without the remote flush, page tables freed
without interrupting lazy CPUs, a reused ASID without the generation check, a
partial flush of a CPU more than one generation behind, fork without
``flush_tlb_mm`` of the parent, and an INVLPG that keeps global translations
(so ``flush_tlb_kernel_range`` leaves the kernel page's old frame reachable),
and a gather that holds only a page's last reference (the others dropped at
once, so a change returning first frees the frame under another's flush).
"""

from __future__ import annotations

import impl.smp.shootdown
from impl.mm.kernel import Kernel
from impl.paging.tlb import Tlb
from impl.smp.shootdown import CpuTlbState, Smp
from properties.mutants.catalogue import Mutant, Replace, SourcePatch

COHERENCE = "TLB coherence: every implementation TLB entry is one the spec's may-hold set allows"
TARGETS = "flight.targets = [cpu for cpu in cpumask if freed or not self.cpu_tlb[cpu].lazy]"


def choose_asid_ignoring_gen(state: CpuTlbState, ctx_id: int, gen: int) -> tuple[int, bool]:
    """``choose_new_asid`` that reuses the mm's slot without comparing its ``tlb_gen``."""
    for asid, (ctx, _) in enumerate(state.slots):
        if ctx == ctx_id:
            return asid, False
    asid = state.next_asid
    state.next_asid += 1
    if asid >= impl.smp.shootdown.TLB_NR_DYN_ASIDS:
        asid, state.next_asid = 0, 1
    return asid, True


TLB_MUTANTS = (
    Mutant(
        "free-before-flush",
        "mmu_gather frees before the flush (include/asm-generic/tlb.h '1) unhook 2) invalidate 3) free')",
        "shootdown: frames are freed only after every target CPU has flushed; no TLB entry reaches a free frame",
        "tlb",
        SourcePatch(
            Smp, "start_flight", (("self.k.buddy, self.k.gathered = cast(BuddyAllocator, gather), []", "pass"),)
        ),
    ),
    Mutant(
        "mprotect-no-remote-flush",
        "B-17/B-18 family: mprotect narrows PTEs but interrupts no other CPU",
        f"{COHERENCE}; IPIs reach every non-lazy CPU of mm_cpumask",
        "tlb",
        SourcePatch(
            Smp,
            "request",
            ((TARGETS, "flight.targets = [] if flight.op == 'mprotect' else " + TARGETS.split(" = ", 1)[1]),),
        ),
    ),
    Mutant(
        "freed-tables-skip-lazy",
        "B-14/B-15 (2ff6ddf19c0e, CVE-2025-22045): page tables freed without IPIs to lazy CPUs",
        "shootdown: a lazy CPU never keeps a freed page-table page in its paging-structure caches",
        "tlb",
        SourcePatch(Smp, "request", (("if freed or not self.cpu_tlb[cpu].lazy", "if not self.cpu_tlb[cpu].lazy"),)),
    ),
    Mutant(
        "asid-reuse-no-gen-check",
        "PCID reuse: choose_new_asid reuses the mm's slot without comparing its tlb_gen",
        f"{COHERENCE}; a slot behind the mm's tlb_gen is flushed when it is loaded",
        "tlb",
        Replace(impl.smp.shootdown, "choose_new_asid", choose_asid_ignoring_gen),
    ),
    Mutant(
        "partial-flush-when-behind",
        "flush_tlb_func: a partial flush although local_tlb_gen is more than one generation behind",
        f"{COHERENCE}; a CPU catches up past a generation only after every flush up to it",
        "tlb",
        SourcePatch(
            Smp,
            "handle_ipi",
            (("if partial:", "if act and not flight.full and flight.gen == mm_gen:"),),
        ),
    ),
    Mutant(
        "fork-skips-parent-flush",
        "dup_mmap without flush_tlb_mm(oldmm): the parent keeps writable entries to pages now shared",
        f"{COHERENCE}; after fork returns no CPU writes a COW-shared frame",
        "tlb",
        SourcePatch(
            Smp,
            "start_flight",
            (("if touched or freed or (whole_mm", 'if op != "fork" and (touched or freed or whole_mm) or (False'),),
        ),
    ),
    Mutant(
        "invlpg-keeps-global",
        "INVLPG misses global entries: INVLPG must also invalidate global translations (Intel SDM Vol. 3A "
        "4.10.4.1); the pop of the global entry is removed",
        f"{COHERENCE}; after flush_tlb_kernel_range no CPU holds the kernel page's old frame",
        "tlb",
        SourcePatch(Tlb, "invlpg", (("self.entries.pop((GLOBAL, vpn), None)", "pass"),)),
    ),
    Mutant(
        "gather-holds-last-reference-only",
        "mmu_gather holding only a page's last reference: zap_present_folio_ptes hands every zapped page's "
        "reference to the gather (__tlb_remove_folio_pages, mm/memory.c), dropped only after the flush "
        "(tlb_batch_pages_flush, mm/mmu_gather.c); here a reference that is not the last is dropped at once",
        "lockstep: page refcounts equal the spec's mid-flight; shootdown: no TLB entry reaches a free frame",
        "tlb",
        SourcePatch(
            Kernel,
            "_put",
            (("if self.gathered is not None:", "if self.gathered is not None and self.refcount[pfn] == 1:"),),
        ),
    ),
)
