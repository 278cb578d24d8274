"""TLB shootdown: what each CPU may cache, switching address spaces, and mapping changes in several steps.

The data are in :mod:`spec.smp.state` and :mod:`spec.paging.tlb`; the rules follow
arch/x86/mm/tlb.c (Linux 6.12), include/asm-generic/tlb.h and mm/mmu_gather.c.

Each section below opens with the rule it implements: what a TLB may hold, switching
address spaces, a mapping change in its three steps, and a change of the kernel's own mappings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lang.errors import DisallowedChoice, UnknownFlight
from lang.records import replace
from spec.alloc import buddy
from spec.memory import check_address
from spec.mm.fault import MAX_RETRIES, handle_fault, hardware_allows, hardware_error_code, leaf_at, perform, touch
from spec.mm.kernel import (
    Choices,
    Kernel,
    Leaf,
    Space,
    block_order,
    check_cpu,
    drop_reference,
    free_frames,
    frozen,
    running,
    space,
    take,
    updated,
    without,
)
from spec.mm.pagetable import deposit_key, is_thp_leaf
from spec.mm.vma import HUGE_PAGES, KERNEL_VA, TASK_SIZE
from spec.outcome import Errno, Ok, Outcome, Pending, Stage
from spec.paging.address import PAGE_SHIFT
from spec.paging.permissions import Kind, Mode
from spec.paging.tlb import (
    GLOBAL_PCID,
    Tlb,
    TlbEntry,
    fault_drop,
    invlpg,
    invpcid,
    mov_cr3,
    remember,
    remembers,
)
from spec.pressure.lru import direct_reclaim
from spec.smp.state import INIT_CTX, TLB_NR_DYN_ASIDS, CpuTlb, Event, Flight, Slot, asid_pcid

Edit = Callable[[Kernel], tuple[Kernel, Outcome]]


# --- the flush rule -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Logic:
    """The connectives :func:`flush_decision` is written with: Python's by default, Z3's for the proof."""

    both: Callable[..., Any]
    negate: Callable[[Any], Any]


PYTHON_LOGIC = Logic(lambda *terms: all(terms), lambda term: not term)


def flush_decision(local: Any, mm_gen: Any, gen: Any, full: Any, logic: Logic = PYTHON_LOGIC) -> tuple[Any, Any]:
    """``flush_tlb_func`` (arch/x86/mm/tlb.c) steps 3-5: (flush at all, page by page).

    Nothing to do when the request is not newer than what this CPU caught up
    to (``local``), or ``local`` is already the mm's generation.  Page by page
    only when the request is for a range, exactly one generation ahead of
    ``local``, and the latest (``new_tlb_gen == local + 1 == mm_tlb_gen``):
    otherwise an older change this CPU has not flushed could be skipped.
    Works on ints and bools, or on Z3 terms with ``logic``.
    """
    act = logic.both(gen > local, local != mm_gen)
    partial = logic.both(logic.negate(full), gen == local + 1, gen == mm_gen)
    return act, partial


# --- per-CPU state ------------------------------------------------------------------------------
#
# Switching (``switch_mm_irqs_off``): leaving an mm clears the CPU from its ``mm_cpumask`` and joining
# sets it; ``choose_new_asid`` reuses the slot that holds the mm, flushing it if its ``tlb_gen`` is behind
# the mm's, or takes the next slot round-robin and flushes it.  Switching to a kernel thread
# (``enter_lazy_tlb``) keeps the mm loaded and the CPU in the mask, *lazy*; switching back to the same mm
# flushes if the generation moved meanwhile.
#
# Without PCIDs (CR4.PCIDE=0, no ``X86_FEATURE_PCID``) the ASIDs do not help: ``choose_new_asid`` returns ASID
# 0 with ``need_flush`` whenever the mm changes, never looking at the slots, and only slot 0 is ever written;
# the CR3 write that loads the new mm drops every non-global entry, global ones (the kernel half) survive
# (Intel SDM Vol. 3A 4.10.4.1).


def with_cpu(k: Kernel, cpu: int, state: CpuTlb, tlb: Tlb | None = None) -> Kernel:
    """The state with CPU ``cpu``'s ``cpu_tlbstate`` (and TLB) replaced."""
    cpus = tuple(state if i == cpu else s for i, s in enumerate(k.cpus))
    tlbs = k.tlbs if tlb is None else tuple(tlb if i == cpu else t for i, t in enumerate(k.tlbs))
    return replace(k, cpus=cpus, tlbs=tlbs)


def with_mask(k: Kernel, pid: int, cpu: int, member: bool) -> Kernel:
    """``cpu`` set in or cleared from ``mm_cpumask`` of ``pid`` (a dead mm is left alone)."""
    if pid not in k.procs:
        return k
    sp = k.procs[pid]
    mask = sp.cpumask | {cpu} if member else sp.cpumask - {cpu}
    return replace(k, procs=updated(k.procs, pid, replace(sp, cpumask=frozenset(mask))))


def event(k: Kernel, kind: str, cpu: int, value: int) -> Kernel:
    return replace(k, events=(*k.events, Event(kind, cpu, value)))


def choose_new_asid(state: CpuTlb, ctx_id: int, gen: int) -> tuple[int, bool, int]:
    """``choose_new_asid``: (asid, need_flush, next_asid): the mm's slot if it has one, else the next one; without
    PCIDs always ASID 0 with a flush."""
    if not state.pcide:
        return 0, True, state.next_asid
    for asid, slot in enumerate(state.slots):
        if slot.ctx_id == ctx_id:
            return asid, slot.tlb_gen < gen, state.next_asid
    asid, following = state.next_asid, state.next_asid + 1
    if asid >= TLB_NR_DYN_ASIDS:
        asid, following = 0, 1
    return asid, True, following


def flush_current(k: Kernel, cpu: int) -> Kernel:
    """A full flush of the CPU's current PCID (``flush_tlb_local``: CR3 reloaded without the no-flush bit; without
    PCIDs, every non-global entry)."""
    state = k.cpus[cpu]
    tlb = mov_cr3(k.tlbs[cpu], state.pcid, noflush=False, pcide=state.pcide)
    return event(with_cpu(k, cpu, state, tlb), "flush", cpu, state.pcid)


def switch_mm(k: Kernel, cpu: int, pid: int) -> Kernel:
    """``switch_mm_irqs_off`` to ``pid``'s mm (0: ``init_mm``); see the module docstring."""
    state = k.cpus[cpu]
    gen = k.procs[pid].tlb_gen if pid else 0
    if state.loaded == pid:
        if not state.lazy:
            return k
        k = with_cpu(k, cpu, replace(state, lazy=False))
        if state.slots[state.asid].tlb_gen == gen:
            return k
        k = flush_current(k, cpu)
        return set_slot(k, cpu, state.asid, Slot(pid, gen))
    k = with_mask(k, state.loaded, cpu, False)
    if pid:
        k = with_mask(k, pid, cpu, True)
    ctx = pid if pid else INIT_CTX
    asid, need_flush, following = choose_new_asid(state, ctx, gen)
    k = with_cpu(k, cpu, replace(state, loaded=pid, lazy=False, asid=asid, next_asid=following))
    if need_flush:
        k = flush_current(k, cpu)
    return set_slot(k, cpu, asid, Slot(ctx, gen))


def set_slot(k: Kernel, cpu: int, asid: int, slot: Slot) -> Kernel:
    state = k.cpus[cpu]
    slots = tuple(slot if i == asid else s for i, s in enumerate(state.slots))
    return with_cpu(k, cpu, replace(state, slots=slots))


def switch(k: Kernel, cpu: int, pid: int | None) -> tuple[Kernel, Outcome]:
    """CPU ``cpu`` runs ``pid``, or (None) a kernel thread that keeps the previous mm loaded (lazy TLB)."""
    check_cpu(k, cpu)
    if pid is not None:
        space(k, pid)
    current = tuple((pid or 0) if i == cpu else c for i, c in enumerate(k.current))
    k = replace(k, current=current)
    if pid is None:
        state = k.cpus[cpu]
        return (with_cpu(k, cpu, replace(state, lazy=True)) if state.loaded else k), Ok()
    return switch_mm(k, cpu, pid), Ok()


# --- what a TLB may hold ------------------------------------------------------------------------
#
# What a TLB may hold. A CPU may hold any current translation of an address space one of its ASIDs belongs
# to, any entry with the same frame and fewer rights (it heals with a spurious fault, SDM 4.10.4.3), the
# kernel half's global entries, and whatever :class:`~spec.paging.tlb.Tlb` remembers: the old translation
# of every entry changed while the CPU had (or had had) the address space in an ASID, with its weaker
# forms (:func:`spec.paging.tlb.remembers`: what the CPU could hold before the change it may still hold
# after it), and every page-table page freed under it.  Only invalidations remove remembered entries: an
# exiting mm's entries stay in its ASID after a lazy CPU leaves for ``init_mm`` (``flush_tlb_func``
# switches without flushing the old ASID) until ``choose_new_asid`` hands the slot to another mm and
# flushes it.  Without PCIDs every entry is PCID 0's and belongs to the mm of slot 0, the one loaded.


def current_leaf(k: Kernel, ctx_id: int, vpn: int) -> Leaf | None:
    """The present leaf address space ``ctx_id`` has for ``vpn`` now (user half), else None."""
    sp = k.procs.get(ctx_id)
    leaf = None if sp is None or vpn << PAGE_SHIFT >= TASK_SIZE else sp.leaves.get(vpn)
    return leaf if leaf is not None and leaf.present else None


def holds(entry: TlbEntry, leaf: Leaf | None) -> bool:
    """``entry`` caches ``leaf`` (same size and frame) or a weaker form of it."""
    return (
        leaf is not None
        and entry.huge == leaf.huge
        and entry.weaker_or_equal(leaf.pfn, leaf.writable, leaf.user, leaf.nx)
    )


def pcid_asid(state: CpuTlb, pcid: int) -> int | None:
    """The ASID whose entries the TLB tags with ``pcid`` (:func:`spec.smp.state.asid_pcid` inverted), else None;
    without PCIDs, PCID 0 is ASID 0's, the only one ``choose_new_asid`` hands out."""
    if not state.pcide:
        return 0 if pcid == 0 else None
    return pcid - 1 if 1 <= pcid <= TLB_NR_DYN_ASIDS else None


def may_hold(k: Kernel, cpu: int, entry: TlbEntry) -> bool:
    """CPU ``cpu``'s TLB may hold ``entry`` (see the section's rule)."""
    if remembers(k.tlbs[cpu], entry):
        return True
    state = k.cpus[cpu]
    asid = pcid_asid(state, entry.pcid)
    if entry.pcid == GLOBAL_PCID:
        leaf = k.kernel_leaves.get(entry.vpn)
    elif asid is not None:
        leaf = current_leaf(k, state.slots[asid].ctx_id, entry.vpn)
    else:
        leaf = None
    return holds(entry, leaf)


def disallowed_entries(k: Kernel, cpu: int, entries: frozenset[TlbEntry]) -> list[TlbEntry]:
    """The ``entries`` (an implementation's TLB) the spec says ``cpu`` cannot hold."""
    return sorted((e for e in entries if not may_hold(k, cpu, e)), key=lambda e: (e.pcid, e.vpn))


# --- mapping changes ----------------------------------------------------------------------------
#
# A mapping change (munmap, mprotect, madvise, mmap over a mapping, fork's write-protect, exit, a COW
# break) is a :class:`~spec.smp.state.Flight`:
#
# 1. *start*: edit the entries with freed page tables and every dropped page reference queued in an
#    ``mmu_gather`` (:func:`spec.mm.kernel.release`, :func:`spec.mm.kernel.put_page`:
#    ``__tlb_remove_folio_pages``), remember the old translations in the TLB of every CPU that may hold
#    them, bump the mm's ``tlb_gen`` and send IPIs to the CPUs of ``mm_cpumask``: all of them when page
#    tables were freed (``freed_tables``), else only those not lazy (``native_flush_tlb_multi``); a range
#    longer than the flush ceiling (33 pages, ``tlb_single_page_flush_ceiling``) or a whole-mm flush asks
#    for a full flush; when every changed entry is a hugetlb one the stride is 2 MiB (``flush_tlb_range``
#    passes ``huge_page_shift``, arch/x86/include/asm/tlbflush.h) and the ceiling counts 2 MiB pages
#    (``flush_tlb_mm_range``); a change mixing sizes is flushed page by page over its whole range (Linux
#    flushes the gathered batch whenever the page size changes, ``tlb_change_page_size``);
# 2. one *step* per target CPU: it handles its IPI (``flush_tlb_func``): a lazy CPU leaves for
#    ``init_mm``; a CPU running the mm flushes page by page (INVLPG) or fully as :func:`flush_decision`
#    says and catches up to the mm's generation; a CPU that loaded another mm meanwhile does nothing;
# 3. a last *step* gives back what the gather holds and returns the syscall's result: the page tables are
#    freed, and each page reference is dropped, a page freed with its last (``tlb_batch_pages_flush`` →
#    ``free_pages_and_swap_cache``, mm/mmu_gather.c, after the flush).
#
# Sending the IPIs is part of the first step: other CPUs can observe nothing between the edit and the send
# that they cannot observe before the IPIs are handled.  Run as one operation, all steps happen at once.


def needs_flush(old: Leaf, new: Leaf | None, fault: bool) -> bool:
    """The change of a present entry needs a flush: always for a syscall (x86 flushes even an upgrade,
    ``pte_needs_flush``); in a fault only when it narrows or moves the entry (``ptep_clear_flush`` in
    ``wp_page_copy``; an upgrade heals by spurious fault)."""
    if not old.present or new == old:
        return False
    if not fault:
        return True
    if new is None or not new.present or new.huge != old.huge:
        return True  # a THP PMD split in a fault: pmdp_huge_clear_flush / pmdp_invalidate flush the 2 MiB
    return not TlbEntry(0, 0, old.pfn, old.writable, old.user, old.nx).weaker_or_equal(
        new.pfn, new.writable, new.user, new.nx
    )


def changed_pages(before: Space, after: Space | None, fault: bool) -> list[int]:
    """The pages whose present entry changed in a way that needs a flush."""
    leaves: Mapping[int, Leaf] = after.leaves if after is not None else {}
    return sorted(v for v, old in before.leaves.items() if needs_flush(old, leaves.get(v), fault))


def freed_tables(before: Space, after: Space | None) -> list[int]:
    """The page-table frames (and the PML4 on exit) no longer in the tree; a THP's deposited PT was never in it, and
    ``zap_deposited_table`` frees it at once (``pte_free``, no ``mmu_gather``)."""
    deposits = {before.tables[deposit_key(v)] for v, leaf in before.leaves.items() if is_thp_leaf(before, v, leaf)}
    if after is None:
        return sorted({before.root, *before.tables.values()} - deposits)
    return sorted(set(before.tables.values()) - set(after.tables.values()) - deposits)


def remember_old(k: Kernel, pid: int, before: Space, pages: list[int], tables: list[int]) -> Kernel:
    """Every CPU with an ASID for ``pid`` may still hold the old translations of ``pages`` and the freed ``tables``."""
    tlbs = list(k.tlbs)
    for cpu, state in enumerate(k.cpus):
        for asid, slot in enumerate(state.slots):
            if slot.ctx_id != pid:
                continue
            pcid = asid_pcid(state.pcide, asid)
            old = frozenset(
                TlbEntry(pcid, v, (lf := before.leaves[v]).pfn, lf.writable, lf.user, lf.nx, lf.huge) for v in pages
            )
            tlbs[cpu] = remember(tlbs[cpu], old, frozenset((pcid, t) for t in tables))
    return replace(k, tlbs=tuple(tlbs))


def start(
    k: Kernel,
    op: str,
    pid: int,
    edit: Edit,
    lo: int,
    whole_mm: bool = False,
    fault: bool = False,
    numbered: bool = False,
) -> tuple[Kernel, int]:
    """Step 1 of a mapping change of ``pid``: edit with frames gathered, remember, send IPIs; returns its number."""
    before = space(k, pid)
    k, outcome = edit(replace(k, gathering=True, gathered=()))
    frames, k = tuple(sorted(k.gathered)), replace(k, gathering=False, gathered=())
    after = k.procs.get(pid)
    if after is None:
        k = replace(k, cpus=tuple(replace(s, lazy=True) if s.loaded == pid else s for s in k.cpus))
    pages, tables = changed_pages(before, after, fault), freed_tables(before, after)
    flush = bool(pages or tables) or (whole_mm and not isinstance(outcome, Errno))
    number = k.next_flight if numbered else 0
    flight = Flight(op, pid, 0, 0, 0, False, False, (), frames, outcome)
    if flush:
        k = remember_old(k, pid, before, pages, tables)
        flight = request(k, flight, before, pages, lo, bool(tables) or whole_mm, whole_mm)
        if after is not None:
            k = replace(k, procs=updated(k.procs, pid, replace(after, tlb_gen=flight.gen)))
        for cpu in flight.targets:
            k = event(k, "ipi", cpu, pid)
    following = number + 1 if numbered else k.next_flight
    return replace(k, flights=updated(k.flights, number, flight), next_flight=following), number


def request(k: Kernel, flight: Flight, before: Space, pages: list[int], lo: int, freed: bool, whole_mm: bool) -> Flight:
    """``flush_tlb_mm_range``: the range, the stride, the new generation, full or not, and the CPUs to interrupt."""
    start_page, end_page = (min(pages), max(v + before.leaves[v].pages for v in pages)) if pages else (lo, lo + 1)
    if freed and pages:
        start_page = min(start_page, lo)
    stride = 9 if pages and all(before.leaves[v].huge for v in pages) else 0
    full = whole_mm or (end_page - start_page) >> stride > k.flush_ceiling
    targets = tuple(c for c in sorted(before.cpumask) if freed or not k.cpus[c].lazy)
    return replace(
        flight,
        lo=start_page,
        hi=end_page,
        gen=before.tlb_gen + 1,
        full=full,
        freed_tables=freed,
        targets=targets,
        stride=stride,
    )


def flight(k: Kernel, number: int) -> Flight:
    """Flight ``number``; :class:`UnknownFlight` if it is not in flight."""
    if number not in k.flights:
        raise UnknownFlight(f"no operation {number} is in flight: pending are {sorted(k.flights)}")
    return k.flights[number]


def handle_ipi(k: Kernel, cpu: int, f: Flight) -> Kernel:
    """``flush_tlb_func`` on ``cpu`` for request ``f``."""
    state = k.cpus[cpu]
    if state.loaded != f.pid:
        return k
    if state.lazy:
        return switch_mm(k, cpu, 0)
    local, mm_gen = state.slots[state.asid].tlb_gen, k.procs[f.pid].tlb_gen
    act, partial = flush_decision(local, mm_gen, f.gen, f.full)
    if not act:
        return k
    if partial:
        tlb = k.tlbs[cpu]
        for vpn in range(f.lo, f.hi, 1 << f.stride):
            tlb = invlpg(tlb, state.pcid, vpn)
            k = event(k, "invlpg", cpu, vpn)
        k = with_cpu(k, cpu, state, tlb)
    else:
        k = flush_current(k, cpu)
    return set_slot(k, cpu, state.asid, Slot(f.pid, mm_gen))


def step(k: Kernel, number: int) -> tuple[Kernel, Outcome]:
    """Advance flight ``number`` by one atomic step: the next target handles its IPI, or the frames are freed."""
    f = flight(k, number)
    if f.targets:
        cpu = f.targets[0]
        k = handle_ipi(k, cpu, f)
        return replace(k, flights=updated(k.flights, number, replace(f, targets=f.targets[1:]))), Stage(cpu)
    k, freed = give_back(k, f.frames)
    for pfn in freed:
        k = event(k, "free", -1, pfn)
    return replace(k, flights=without(k.flights, [number])), f.outcome


def give_back(k: Kernel, frames: tuple[int, ...]) -> tuple[Kernel, list[int]]:
    """What a gather holds given back in order, and the frames freed: a page table is freed, a page loses one
    reference and is freed with its last (``tlb_batch_pages_flush`` → ``free_pages_and_swap_cache``,
    mm/mmu_gather.c)."""
    freed = []
    for pfn in frames:
        if pfn in k.pages:
            k = drop_reference(k, pfn)
            if pfn in k.pages:
                continue
        else:
            k = replace(k, buddy=buddy.free(k.buddy, pfn, block_order(k.buddy, pfn)))
        freed.append(pfn)
    return k, freed


def finish(k: Kernel, number: int) -> tuple[Kernel, Outcome]:
    """Every remaining step of flight ``number``: the syscall's result."""
    while True:
        k, outcome = step(k, number)
        if not isinstance(outcome, Stage):
            return k, outcome


def run(k: Kernel, op: str, pid: int, edit: Edit, lo: int, whole_mm: bool, background: bool) -> tuple[Kernel, Outcome]:
    """A mapping change of ``pid``: all at once (as flight 0), or (``background``) only its first step, returning
    its number."""
    k, number = start(k, op, pid, edit, lo, whole_mm, numbered=background)
    if background:
        return k, Pending(number)
    return finish(k, number)


# --- kernel-mapping changes -----------------------------------------------------------------------
#
# A kernel-mapping change (:func:`kernel_remap`) moves the kernel half's page to a new frame, as ``vfree``
# + ``vmalloc`` would, and then runs ``flush_tlb_kernel_range`` (arch/x86/mm/tlb.c): kernel mappings are
# shared by every mm, so it interrupts every online CPU (``on_each_cpu``, no cpumask, lazy or idle alike),
# and each drops the page with INVLPG, which drops global translations too (SDM Vol. 3A 4.10.4.1), or,
# above the flush ceiling, flushes everything (``do_flush_tlb_all``: INVPCID type 2).  Only then is the
# old frame freed.  It runs in one step.


KERNEL_ROLE = ("kernel", 0, 0, 0)


def kernel_remap(k: Kernel, choices: Choices) -> tuple[Kernel, Outcome]:
    """The kernel half's page moved to a new frame (role ``("kernel", 0, 0, 0)``), its words copied, then
    ``flush_tlb_kernel_range`` on every CPU, then the old frame freed; ENOMEM if no frame is free.

    Every CPU may hold the old global translation until its flush
    (``on_each_cpu(do_kernel_range_flush)`` runs ``flush_tlb_one_kernel``,
    an INVLPG, on each CPU; above ``tlb_single_page_flush_ceiling``,
    ``do_flush_tlb_all``).  INVLPG drops global entries for the address in
    any PCID (Intel SDM Vol. 3A 4.10.4.1).  IPIs carry the value 0
    (``init_mm``); a full flush is recorded with PCID :data:`GLOBAL_PCID`.
    """
    if free_frames(k) < 1:
        return k, Errno("ENOMEM")
    vpn = KERNEL_VA >> PAGE_SHIFT
    old_pfn, old = k.boot[1], k.kernel_leaves[vpn]
    k, pfn = take(k, KERNEL_ROLE, choices)
    k = replace(k, boot=(k.boot[0], pfn, *k.boot[2:]))
    k = replace(k, procs=frozen({pid: replace(sp, kernel=k.kernel_leaves) for pid, sp in k.procs.items()}))
    stale = frozenset({TlbEntry(GLOBAL_PCID, vpn, old_pfn, old.writable, old.user, old.nx)})
    k = replace(k, tlbs=tuple(remember(t, stale, frozenset()) for t in k.tlbs))
    for cpu in range(len(k.cpus)):
        k = event(k, "ipi", cpu, 0)
    full = k.flush_ceiling < 1
    for cpu, state in enumerate(k.cpus):
        if full:
            k = event(with_cpu(k, cpu, state, invpcid(k.tlbs[cpu], 2)), "flush", cpu, GLOBAL_PCID)
        else:
            k = event(with_cpu(k, cpu, state, invlpg(k.tlbs[cpu], state.pcid, vpn)), "invlpg", cpu, vpn)
    k = replace(k, buddy=buddy.free(k.buddy, old_pfn, 0))
    return event(k, "free", -1, old_pfn), Ok()


def settled(k: Kernel) -> Kernel:
    """The state with everything the gathers hold given back (page tables freed, page references dropped): what
    the kernel invariants are about mid-flight."""
    for f in k.flights.values():
        k = give_back(k, f.frames)[0]
    return k


# --- accesses -----------------------------------------------------------------------------------


HUGE_HIT = 1 << 60


def decode_hit(code: int, pcid: int, vpn: int) -> TlbEntry:
    """A TLB hit as the implementation reports it: ``pfn << 4 | W << 3 | U << 2 | NX << 1 | G``, with
    :data:`HUGE_HIT` set for a 2 MiB entry (then keyed by the first page of its 2 MiB)."""
    huge = bool(code & HUGE_HIT)
    key = vpn - vpn % HUGE_PAGES if huge else vpn
    pfn = (code & ~HUGE_HIT) >> 4
    return TlbEntry(GLOBAL_PCID if code & 1 else pcid, key, pfn, bool(code & 8), bool(code & 4), bool(code & 2), huge)


def used_entry(k: Kernel, cpu: int, va: int, attempt: int, choices: Choices) -> Leaf | None:
    """The TLB entry the implementation says attempt ``attempt`` hit (checked: one the CPU may hold), else None."""
    vpn = va >> PAGE_SHIFT
    code = choices.get(("tlb", cpu, attempt, vpn))
    if code is None:
        return None
    entry = decode_hit(code, k.cpus[cpu].pcid, vpn)
    if not may_hold(k, cpu, entry):
        raise DisallowedChoice(f"cpu {cpu} used {entry!r}, a translation its TLB cannot hold")
    return Leaf(entry.pfn, True, entry.writable, entry.user, entry.nx, entry.huge)


def access(
    k: Kernel, cpu: int, va: int, kind: Kind, mode: Mode, value: int, choices: Choices
) -> tuple[Kernel, Outcome]:
    """A load, store or fetch through the TLB: a hit uses the cached entry, a miss walks; a #PF drops the entries,
    and, with free frames below the watermark, the first fault of the access reclaims
    (:func:`spec.pressure.lru.direct_reclaim`) before the handler runs.

    A fault that moves or narrows an entry (a COW copy) shoots it down at
    once, as ``ptep_clear_flush`` does inside the fault.
    """
    pid = running(k, cpu)
    check_address(va)
    for attempt in range(MAX_RETRIES):
        leaf = used_entry(k, cpu, va, attempt, choices)
        if leaf is None:
            leaf = leaf_at(k, pid, va)
        if hardware_allows(leaf, kind, mode):
            assert leaf is not None
            return perform(touch(k, pid, va, leaf, kind), leaf.pfn, leaf.offset(va), kind, value)
        code = hardware_error_code(leaf, kind, mode)
        state = k.cpus[cpu]
        k = with_cpu(k, cpu, state, fault_drop(k.tlbs[cpu], state.pcid, va >> PAGE_SHIFT))
        k = direct_reclaim(k, choices) if attempt == 0 else k
        k, failed = fix_fault(k, pid, va, kind, code, choices)
        if failed is not None:
            return k, failed
    raise AssertionError(f"access to {va:#x} still faults after {MAX_RETRIES} fixes")


def fix_fault(k: Kernel, pid: int, va: int, kind: Kind, code: int, choices: Choices) -> tuple[Kernel, Outcome | None]:
    """The fault handler as a flight of its own, finished at once (None: fixed, retry the access)."""
    failed: list[Outcome | None] = [None]

    def fix(inner: Kernel) -> tuple[Kernel, Outcome]:
        inner, failed[0] = handle_fault(inner, pid, va, kind, code, choices)
        return inner, Ok()

    k, number = start(k, "fault", pid, fix, va >> PAGE_SHIFT, fault=True)
    return finish(k, number)[0], failed[0]


# --- invariants ------------------------------------------------------------------------------------


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
