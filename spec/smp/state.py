"""Per-CPU TLB state of the kernel and the shootdowns in flight, as values (the rules are in :mod:`spec.smp.shootdown`).

- :class:`Slot` is ``cpu_tlbstate.ctxs[asid]`` (arch/x86/mm/tlb.c): which
  address space (``ctx_id``; a pid here, :data:`INIT_CTX` for ``init_mm``,
  :data:`NO_CTX` for a slot never used) the ASID holds and the generation
  of that address space's TLB this CPU has caught up to (``tlb_gen``);
- :class:`CpuTlb` is the rest of ``cpu_tlbstate``: the loaded mm (a pid, or
  0 for ``init_mm``), lazy mode (a kernel thread runs on the previous mm),
  the current ASID, the round-robin ``next_asid``, and CR4.PCIDE of the
  copy of CR4 it keeps (``cpu_tlbstate.cr4``): whether the CPU tags its TLB
  entries with the ASID's PCID at all;
- :class:`Flight` is a mapping change whose page tables are edited and whose
  shootdown is not finished: the flush request (``flush_tlb_info``: range,
  ``new_tlb_gen``, full or not, ``freed_tables``, and ``stride_shift``
  beyond 4 KiB: 9 when every changed entry is a 2 MiB one), the CPUs that still have
  to handle its IPI, the frames its ``mmu_gather`` holds, and the result the
  syscall returns once they are freed;
- :class:`Event` records one effect (an IPI, a flush, a frame freed), so a
  harness can count and order them.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.outcome import Outcome

TLB_NR_DYN_ASIDS = 6
INIT_CTX = 0
NO_CTX = -1


@dataclass(frozen=True, slots=True)
class Slot:
    """One dynamic ASID of a CPU: the ``ctx_id`` it holds and the ``tlb_gen`` this CPU has caught up to."""

    ctx_id: int = NO_CTX
    tlb_gen: int = 0


BOOT_SLOTS = (Slot(INIT_CTX, 0),) + (Slot(),) * (TLB_NR_DYN_ASIDS - 1)


@dataclass(frozen=True, slots=True)
class CpuTlb:
    """``cpu_tlbstate`` of one CPU: loaded mm (0: ``init_mm``), lazy, current ASID, next ASID, the slots, and
    CR4.PCIDE (``pcide``: False on a CPU without PCIDs)."""

    loaded: int = 0
    lazy: bool = False
    asid: int = 0
    next_asid: int = 1
    slots: tuple[Slot, ...] = BOOT_SLOTS
    pcide: bool = True

    @property
    def pcid(self) -> int:
        """The current PCID: :func:`asid_pcid` of the current ASID."""
        return asid_pcid(self.pcide, self.asid)


def asid_pcid(pcide: bool, asid: int) -> int:
    """The PCID the TLB tags an ASID's entries with: ``kern_pcid`` (ASID + 1, PCID 0 is left to PCID-unaware code)
    with CR4.PCIDE=1; with PCIDE=0 the current PCID is always 0 (Intel SDM Vol. 3A 4.10.1) and ``build_cr3``
    puts no PCID in CR3 (arch/x86/mm/tlb.c)."""
    return asid + 1 if pcide else 0


@dataclass(frozen=True, slots=True)
class Flight:
    """A mapping change of ``pid``'s address space between its page-table edit and its return."""

    op: str
    pid: int
    lo: int
    hi: int
    gen: int
    full: bool
    freed_tables: bool
    targets: tuple[int, ...]
    frames: tuple[int, ...]
    outcome: Outcome
    stride: int = 0

    def covers(self, vpn: int) -> bool:
        """The page is in the flush request's range."""
        return self.full or self.lo <= vpn < self.hi


@dataclass(frozen=True, slots=True)
class Event:
    """One effect: ``ipi`` (cpu, pid; 0 for a kernel-mapping change), ``invlpg`` (cpu, vpn), ``flush`` (cpu, pcid; a
    full flush, -1 for every PCID and the global entries), ``free`` (pfn)."""

    kind: str
    cpu: int
    value: int

    def __repr__(self) -> str:
        shown = hex(self.value) if self.kind in ("invlpg", "free") else str(self.value)
        return f"Event({self.kind!r}, cpu={self.cpu}, value={shown})"
