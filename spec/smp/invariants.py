"""Invariants of the SMP layer: each a function returning the list of violations.

- usable free: no TLB entry a CPU can use (its current PCID, or a global one)
  points at a free frame, and no page-table page a lazy CPU may still walk
  speculatively is free: a frame is never reused while a CPU could reach it
  (``tlb_batch_pages_flush`` frees only after the flush, mm/mmu_gather.c).
- generation: no CPU's ``local_tlb_gen`` is ahead of its mm's ``tlb_gen``
  (the ``WARN_ON_ONCE`` in ``flush_tlb_func``, arch/x86/mm/tlb.c).
- returned: once a change has returned, no CPU running the mm may use an entry
  granting more than the page tables do.
- cpumask: ``mm_cpumask`` holds exactly the CPUs with the mm loaded, lazy ones
  too, so IPIs reach every CPU that may cache it and only those.
"""

from __future__ import annotations

from spec.mm.kernel import Kernel
from spec.paging.tlb import GLOBAL_PCID
from spec.smp.shootdown import current_leaf, holds


def free_pfns(k: Kernel) -> frozenset[int]:
    return frozenset(p for block in k.buddy.free for p in range(block.pfn, block.end))


def usable_free_violations(k: Kernel) -> list[str]:
    """No entry a CPU can use (its current PCID, or global) points at a free frame; for a lazy CPU, no cached
    page-table page of its current PCID is free (speculative walks may use it)."""
    free = free_pfns(k)
    problems = []
    for cpu, (state, tlb) in enumerate(zip(k.cpus, k.tlbs, strict=True)):
        if not state.loaded:
            continue
        if not state.lazy:
            problems += [
                f"cpu {cpu} may use {e!r}, whose frame is free"
                for e in tlb.entries
                if e.pcid in (state.pcid, GLOBAL_PCID) and e.pfn in free
            ]
        problems += [
            f"cpu {cpu} may walk freed page-table page {t:#x} (PCID {p})"
            for p, t in tlb.tables
            if p == state.pcid and t in free
        ]
    return problems


def generation_violations(k: Kernel) -> list[str]:
    """``local_tlb_gen <= mm_tlb_gen`` for every CPU and slot (the WARN_ON_ONCE in ``flush_tlb_func``)."""
    return [
        f"cpu {cpu} slot {asid}: tlb_gen {slot.tlb_gen} ahead of pid {slot.ctx_id}'s {k.procs[slot.ctx_id].tlb_gen}"
        for cpu, state in enumerate(k.cpus)
        for asid, slot in enumerate(state.slots)
        if slot.ctx_id in k.procs and slot.tlb_gen > k.procs[slot.ctx_id].tlb_gen
    ]


def returned_violations(k: Kernel) -> list[str]:
    """Outside the pages of changes still in flight, no CPU running an mm may use an entry granting more than
    the page tables (another frame, or a right they lack); fewer rights are allowed."""
    problems = []
    for cpu, (state, tlb) in enumerate(zip(k.cpus, k.tlbs, strict=True)):
        if not state.loaded or state.lazy or state.loaded not in k.procs:
            continue
        busy = [f for f in k.flights.values() if f.pid == state.loaded]
        for e in tlb.entries:
            if e.pcid != state.pcid or any(f.covers(e.vpn) for f in busy):
                continue
            leaf = current_leaf(k, state.loaded, e.vpn)
            if not holds(e, leaf):
                problems.append(f"cpu {cpu} may use {e!r}, but pid {state.loaded} maps {leaf!r}")
    return problems


def cpumask_violations(k: Kernel) -> list[str]:
    """``mm_cpumask`` holds exactly the CPUs with the mm loaded (lazy ones too), so IPIs reach every CPU that may
    cache it and only those."""
    problems = []
    for pid, sp in k.procs.items():
        loaded = frozenset(c for c, s in enumerate(k.cpus) if s.loaded == pid)
        if sp.cpumask != loaded:
            problems.append(f"pid {pid}: mm_cpumask {sorted(sp.cpumask)}, loaded on {sorted(loaded)}")
    for number, f in k.flights.items():
        problems += [f"flight {number} interrupts cpu {c}, outside every mask" for c in f.targets if c >= len(k.cpus)]
    return problems


INVARIANTS = (usable_free_violations, generation_violations, returned_violations, cpumask_violations)


def violations(k: Kernel) -> list[str]:
    """Every shootdown invariant ``k`` breaks, each named by its function."""
    return [f"{check.__name__}: {problem}" for check in INVARIANTS for problem in check(k)]
