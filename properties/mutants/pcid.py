"""Mutants of the implementation's CPUs without PCIDs (CR4.PCIDE=0), caught by the no-PCID SMP machine.

Without ``X86_FEATURE_PCID`` every TLB entry is PCID 0's and the ASIDs must not
be relied on: ``choose_new_asid`` (arch/x86/mm/tlb.c) returns ASID 0 with a
flush whenever the mm changes, and that CR3 write drops every non-global entry
(Intel SDM Vol. 3A 4.10.4.1).  The mutants break one half each: a local flush
aimed at the PCID the ASID would have with PCIDs, which keeps PCID 0's entries,
and the ASID slots searched and reused as if the CPU had PCIDs, so a switch
back to an mm whose slot is up to date keeps the other mm's entries.  Both
change nothing on a CPU with PCIDs, which is why they have a layer of their
own, hunted by :class:`properties.smp.nopcid_machine.NoPcidMachine`.
"""

from __future__ import annotations

import impl.smp.shootdown
from impl.smp.shootdown import CpuTlbState, Smp
from properties.mutants.catalogue import Mutant, Replace, SourcePatch

COHERENCE = "TLB coherence without PCIDs: after a switch no CPU holds an entry of the mm it left"


def choose_asid_as_if_pcid(state: CpuTlbState, ctx_id: int, gen: int) -> tuple[int, bool]:
    """``choose_new_asid`` without its ``!static_cpu_has(X86_FEATURE_PCID)`` early return: the mm's slot is reused
    without a flush when its generation is current, although every slot's entries share PCID 0."""
    for asid, (ctx, slot_gen) in enumerate(state.slots):
        if ctx == ctx_id:
            return asid, slot_gen < gen
    asid = state.next_asid
    state.next_asid += 1
    if asid >= impl.smp.shootdown.TLB_NR_DYN_ASIDS:
        asid, state.next_asid = 0, 1
    return asid, True


NOPCID_MUTANTS = (
    Mutant(
        "nopcid-flush-kern-pcid",
        "SDM misreading, PCID kept with PCIDE=0: flush_tlb_local drops the entries of kern_pcid(asid) (ASID + 1) "
        "as on a CPU with PCIDs, but with CR4.PCIDE=0 the current PCID is always 000H (Intel SDM Vol. 3A 4.10.1) "
        "and the CR3 write must drop all its non-global entries (4.10.4.1); the same confusion as Linux's INVLPGB "
        "broadcast flush of kern_pcid(asid) under nopcid ('x86/mm: Skip global ASID broadcast TLB flush when PCID "
        "is disabled')",
        f"{COHERENCE}; a switch to another mm leaves no non-global entry",
        "pcid",
        SourcePatch(
            Smp,
            "flush_local",
            (("self.tlbs[cpu].mov_cr3(state.pcid, pcide=state.pcide)", "self.tlbs[cpu].flush_pcid(state.asid + 1)"),),
        ),
    ),
    Mutant(
        "nopcid-asid-slots-reused",
        "ASIDs used without PCIDs: choose_new_asid without its !X86_FEATURE_PCID early return (arch/x86/mm/tlb.c), "
        "as in the nopcid bug where the global-ASID code keyed off X86_FEATURE_INVLPGB ran with CR4.PCIDE clear; "
        "switching back to an mm whose slot is current skips the flush, and the other mm's PCID-0 entries survive",
        f"{COHERENCE}; without PCIDs every switch to another mm flushes",
        "pcid",
        Replace(impl.smp.shootdown, "choose_new_asid", choose_asid_as_if_pcid),
    ),
)
