"""TLB shootdown in the implementation: per-CPU TLBs, ``cpu_tlbstate``, lazy TLB, ASIDs, ``mmu_gather``, IPIs.

:class:`Smp` runs the CPUs of an :class:`impl.mm.kernel.Kernel`: every access
goes through the CPU's :class:`impl.paging.tlb.Tlb` before the page walk, and it
follows arch/x86/mm/tlb.c (Linux 6.12): ``switch_mm_irqs_off`` with
``choose_new_asid`` over ``TLB_NR_DYN_ASIDS`` slots per CPU, lazy TLB mode,
``flush_tlb_mm_range`` choosing the CPUs of ``mm_cpumask`` (lazy ones only
when page tables were freed) and a full flush above the ceiling, and
``flush_tlb_func`` handling one IPI.  Without PCIDs (``Smp(pcid=False)``,
CR4.PCIDE=0) every CPU keeps to ASID 0 and flushes its non-global entries at
each switch to another mm.  A mapping change runs in steps
(:meth:`Smp.start_flight`, :meth:`Smp.step_flight`): the kernel's own syscall
with every frame it frees queued in a gather, then one IPI handled per step,
then the frames freed (include/asm-generic/tlb.h: "1) unhook page 2) TLB
invalidate page 3) free page").  Which entries changed is read from the page
tables of the range before and after the edit, as ``zap_pte_range`` and
``change_pte_range`` note them in the ``mmu_gather``.  A change of 2 MiB
entries only is flushed with a 2 MiB stride (``flush_tlb_range`` with
``huge_page_shift``, arch/x86/include/asm/tlbflush.h), the ceiling counting
2 MiB pages (``flush_tlb_mm_range``).  Each IPI, flush and
frame freed is appended to :attr:`Smp.events` as ``(kind, cpu, value)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from impl.alloc.buddy import BuddyAllocator
from impl.mm.kernel import _G, _NX, _P, _PFN, _PS, _RW, _US, HUGE_PAGES, KERNEL_VA, OK, USER_PAGES, Kernel, Process
from impl.paging.mmu import FETCH, WRITE, Translated
from impl.paging.tlb import GLOBAL, HUGE, NX, Tlb, U, W
from lang.errors import UnknownCpu, UnknownFlight

TLB_NR_DYN_ASIDS = 6
INIT_CTX = 0
NO_CTX = -1
Result = dict[str, Any]


class CpuTlbState:
    """``cpu_tlbstate``: loaded mm (pid, 0 for init_mm), lazy, current ASID, next ASID, slots [ctx_id, tlb_gen], and
    CR4.PCIDE of its copy of CR4 (``pcide``)."""

    __slots__ = ("asid", "lazy", "loaded", "next_asid", "pcide", "slots")

    def __init__(self, pcide: bool = True) -> None:
        self.loaded, self.lazy, self.asid, self.next_asid, self.pcide = 0, False, 0, 1, pcide
        self.slots = [[INIT_CTX, 0]] + [[NO_CTX, 0] for _ in range(TLB_NR_DYN_ASIDS - 1)]

    @property
    def pcid(self) -> int:
        """The PCID in CR3: ``kern_pcid`` (ASID + 1) with PCIDs, 0 without (Intel SDM Vol. 3A 4.10.1)."""
        return self.asid + 1 if self.pcide else 0

    def clone(self) -> CpuTlbState:
        new = CpuTlbState.__new__(CpuTlbState)
        new.loaded, new.lazy, new.asid, new.next_asid = self.loaded, self.lazy, self.asid, self.next_asid
        new.pcide, new.slots = self.pcide, [list(slot) for slot in self.slots]
        return new


class Flight:
    """A mapping change in flight: its flush request, the CPUs still to interrupt, its gathered frames, its result.

    ``frames`` is everything its ``mmu_gather`` holds, in order: the frames it
    frees and, once per reference, the pages whose references it drops
    (``held``) after the flush.
    """

    __slots__ = (
        "frames",
        "freed_tables",
        "full",
        "gen",
        "held",
        "hi",
        "lo",
        "op",
        "orders",
        "pid",
        "result",
        "stride",
        "targets",
    )

    def __init__(self, op: str, pid: int, frames: list[int], result: Result) -> None:
        self.op, self.pid, self.frames, self.result = op, pid, frames, result
        self.lo = self.hi = self.gen = self.stride = 0
        self.full = self.freed_tables = False
        self.targets: list[int] = []
        self.held: list[int] = []
        self.orders: dict[int, int] = {}

    def clone(self) -> Flight:
        new = Flight(self.op, self.pid, list(self.frames), dict(self.result))
        new.lo, new.hi, new.gen, new.full, new.freed_tables = self.lo, self.hi, self.gen, self.full, self.freed_tables
        new.targets, new.held = list(self.targets), list(self.held)
        new.stride, new.orders = self.stride, dict(self.orders)
        return new


def choose_new_asid(state: CpuTlbState, ctx_id: int, gen: int) -> tuple[int, bool]:
    """The slot holding ``ctx_id`` (flush if its generation is behind), else the next one round-robin (flush); without
    PCIDs ASID 0 and a flush, always (``!static_cpu_has(X86_FEATURE_PCID)``, arch/x86/mm/tlb.c)."""
    if not state.pcide:
        return 0, True
    for asid, (ctx, slot_gen) in enumerate(state.slots):
        if ctx == ctx_id:
            return asid, slot_gen < gen
    asid = state.next_asid
    state.next_asid += 1
    if asid >= TLB_NR_DYN_ASIDS:
        asid, state.next_asid = 0, 1
    return asid, True


def flush_decision(local: int, mm_gen: int, gen: int, full: bool) -> tuple[bool, bool]:
    """``flush_tlb_func``: (flush at all, page by page only if one generation behind and the latest request)."""
    if gen <= local or local == mm_gen:
        return False, False
    return True, not full and gen == local + 1 and gen == mm_gen


_SEEN = _PFN | _P | _RW | _US | _NX


class Gather:
    """An ``mmu_gather`` standing in for the buddy allocator during an edit: frees are queued, the rest passes."""

    def __init__(self, buddy: BuddyAllocator) -> None:
        self.buddy = buddy
        self.frames: list[int] = []
        self.orders: dict[int, int] = {}

    def free(self, pfn: int, order: int) -> None:
        self.frames.append(pfn)
        if order:
            self.orders[pfn] = order  # tlb_remove_page_size: a hugetlb page goes back whole

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buddy, name)


def needs_flush(old: int, new: int, fault: bool) -> bool:
    """A present entry changed: a syscall always flushes (x86 ``pte_needs_flush``); a fault only when it moves or
    narrows the entry (``ptep_clear_flush`` in ``wp_page_copy``)."""
    if not old & _P or old & (_SEEN | _PS) == new & (_SEEN | _PS):
        return False
    if not fault or not new & _P or new & _PFN != old & _PFN or (new ^ old) & _PS:
        return True
    return bool(old & ~new & (_RW | _US) or new & ~old & _NX)


def allows(code: int, kind: int, user: bool) -> bool:
    """A cached translation allows the access (CR0.WP=1, EFER.NXE=1, SMEP=SMAP=0)."""
    if user and not code & U:
        return False
    if kind == WRITE:
        return bool(code & W)
    return not (kind == FETCH and code & NX)


class Smp:
    """The CPUs of ``kernel``: TLBs, ``cpu_tlbstate``, ``mm_cpumask`` and ``tlb_gen`` per pid, flights, events."""

    def __init__(self, kernel: Kernel, tlb_entries: int = 64, flush_ceiling: int = 33, pcid: bool = True) -> None:
        cpus = len(kernel.current)
        self.k = kernel
        self.tlbs = [Tlb(tlb_entries) for _ in range(cpus)]
        self.cpu_tlb = [CpuTlbState(pcid) for _ in range(cpus)]
        self.tlb_gen: dict[int, int] = {}
        self.cpumask: dict[int, set[int]] = {}
        self.flights: dict[int, Flight] = {}
        self.next_flight = 1
        self.events: list[tuple[str, int, int]] = []
        self.flush_ceiling = flush_ceiling

    _CLONED = frozenset(
        {"k", "tlbs", "cpu_tlb", "tlb_gen", "cpumask", "flights", "next_flight", "events", "flush_ceiling"}
    )

    def clone(self, kernel: Kernel) -> Smp:
        """An independent copy running ``kernel`` (a clone of this one's); an attribute it does not know raises."""
        unknown = self.__dict__.keys() - self._CLONED
        if unknown:
            raise AssertionError(f"Smp.clone does not copy {sorted(unknown)}: add them to it")
        new = Smp.__new__(Smp)
        new.__dict__.update(self.__dict__)
        new.k = kernel
        new.tlbs = [tlb.clone() for tlb in self.tlbs]
        new.cpu_tlb = [state.clone() for state in self.cpu_tlb]
        new.tlb_gen = dict(self.tlb_gen)
        new.cpumask = {pid: set(cpus) for pid, cpus in self.cpumask.items()}
        new.flights = {number: flight.clone() for number, flight in self.flights.items()}
        new.events = list(self.events)
        return new

    def check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < len(self.cpu_tlb):
            raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(self.cpu_tlb) - 1}")

    # --- switching ------------------------------------------------------------------------------

    def flush_local(self, cpu: int) -> None:
        """``flush_tlb_local``: CR3 reloaded without the no-flush bit, dropping the current PCID's entries (every
        non-global one without PCIDs)."""
        state = self.cpu_tlb[cpu]
        self.tlbs[cpu].mov_cr3(state.pcid, pcide=state.pcide)
        self.events.append(("flush", cpu, state.pcid))

    def switch_mm(self, cpu: int, pid: int) -> None:
        """``switch_mm_irqs_off`` to ``pid``'s mm, 0 for init_mm."""
        state = self.cpu_tlb[cpu]
        gen = self.tlb_gen.get(pid, 0)
        if state.loaded == pid:
            if state.lazy:
                state.lazy = False
                if state.slots[state.asid][1] != gen:
                    self.flush_local(cpu)
                    state.slots[state.asid] = [pid, gen]
            return
        self.cpumask.get(state.loaded, set()).discard(cpu)
        if pid:
            self.cpumask.setdefault(pid, set()).add(cpu)
        ctx = pid or INIT_CTX
        asid, need_flush = choose_new_asid(state, ctx, gen)
        state.loaded, state.lazy, state.asid = pid, False, asid
        if need_flush:
            self.flush_local(cpu)
        state.slots[asid] = [ctx, gen]

    def switch(self, cpu: int, pid: int | None) -> dict[str, Any]:
        """Run ``pid`` on ``cpu``, or (None) a kernel thread keeping the mm loaded (``enter_lazy_tlb``)."""
        if pid is None:
            self.check_cpu(cpu)
            self.k.current[cpu] = 0
            if self.cpu_tlb[cpu].loaded:
                self.cpu_tlb[cpu].lazy = True
            return OK
        result = self.k.switch(cpu, pid)
        self.switch_mm(cpu, pid)
        return result

    def evict(self, cpu: int) -> dict[str, Any]:
        """The TLB drops its least recently used entry, as hardware may at any time."""
        self.check_cpu(cpu)
        self.tlbs[cpu].evict()
        return OK

    # --- mapping changes ------------------------------------------------------------------------

    def entries(self, proc: Process, lo: int, hi: int) -> dict[int, int]:
        return {vpn: entry for vpn, _, entry in self.k.user_ptes(proc, lo, hi)}

    def start_flight(
        self,
        op: str,
        proc: Process,
        edit: Callable[[], Result],
        lo: int,
        hi: int,
        whole_mm: bool = False,
        numbered: bool = False,
    ) -> int:
        """The edit with frees gathered, then ``flush_tlb_mm_range``: new generation, range, IPIs."""
        fault = op == "fault"
        if whole_mm:
            lo, hi = 0, USER_PAGES
        before = self.entries(proc, lo, hi)
        tables = {pfn for _, _, _, pfn in self.k._tables(proc.root, 4, 0, lo, hi)} | {proc.root}
        cpumask = sorted(self.cpumask.get(proc.pid, set()))
        gather = Gather(self.k.buddy)
        self.k.buddy, self.k.gathered = cast(BuddyAllocator, gather), []
        try:
            result = edit()
        finally:
            self.k.buddy, held, self.k.gathered = gather.buddy, self.k.gathered or [], None
        alive = proc.pid in self.k.procs
        if not alive:
            for state in self.cpu_tlb:
                if state.loaded == proc.pid:
                    state.lazy = True
        after = self.entries(proc, lo, hi) if alive else {}
        touched = [vpn for vpn, old in before.items() if needs_flush(old, after.get(vpn, 0), fault)]
        freed = any(pfn in tables for pfn in gather.frames)
        flight = Flight(op, proc.pid, sorted(gather.frames + held), result)
        flight.orders, flight.held = gather.orders, held
        if touched or freed or (whole_mm and "error" not in result):
            huge = [vpn for vpn in touched if before[vpn] & _PS]
            self.request(flight, cpumask, proc.pid, touched, lo, freed or whole_mm, whole_mm, huge)
            for cpu in flight.targets:
                self.events.append(("ipi", cpu, proc.pid))
        number = self.next_flight if numbered else 0
        self.next_flight += 1 if numbered else 0
        self.flights[number] = flight
        return number

    def request(
        self,
        flight: Flight,
        cpumask: list[int],
        pid: int,
        touched: list[int],
        lo: int,
        freed: bool,
        whole_mm: bool,
        huge: list[int],
    ) -> None:
        if touched:
            flight.lo, flight.hi = min(touched), max(v + (HUGE_PAGES if v in huge else 1) for v in touched)
            if freed:
                flight.lo = min(flight.lo, lo)
        else:
            flight.lo, flight.hi = lo, lo + 1
        flight.stride = 9 if touched and len(huge) == len(touched) else 0
        flight.gen = self.tlb_gen.get(pid, 0) + 1
        self.tlb_gen[pid] = flight.gen
        flight.full = whole_mm or (flight.hi - flight.lo) >> flight.stride > self.flush_ceiling
        flight.freed_tables = freed
        flight.targets = [cpu for cpu in cpumask if freed or not self.cpu_tlb[cpu].lazy]

    def flight(self, number: int) -> Flight:
        if number not in self.flights:
            raise UnknownFlight(f"no operation {number} is in flight: pending are {sorted(self.flights)}")
        return self.flights[number]

    def handle_ipi(self, cpu: int, flight: Flight) -> None:
        """``flush_tlb_func`` for ``flight`` on ``cpu``."""
        state = self.cpu_tlb[cpu]
        if state.loaded != flight.pid:
            return
        if state.lazy:
            self.switch_mm(cpu, 0)
            return
        local, mm_gen = state.slots[state.asid][1], self.tlb_gen[flight.pid]
        act, partial = flush_decision(local, mm_gen, flight.gen, flight.full)
        if not act:
            return
        if partial:
            tlb = self.tlbs[cpu]
            for vpn in range(flight.lo, flight.hi, 1 << flight.stride):
                tlb.invlpg(state.pcid, vpn)
                self.events.append(("invlpg", cpu, vpn))
        else:
            self.flush_local(cpu)
        state.slots[state.asid] = [flight.pid, mm_gen]

    def step_flight(self, number: int) -> Result:
        """One step of flight ``number``: the next CPU handles its IPI, or its gather is given back (frames freed,
        page references dropped, a page freed with its last: ``tlb_batch_pages_flush``) and it returns."""
        flight = self.flight(number)
        if flight.targets:
            cpu = flight.targets.pop(0)
            self.handle_ipi(cpu, flight)
            return {"stage": "flushed", "cpu": cpu}
        held = Counter(flight.held)
        for pfn in flight.frames:
            if held[pfn]:
                held[pfn] -= 1
                if not self.k.drop_reference(pfn):
                    continue
            else:
                self.k.buddy.free(pfn, flight.orders.get(pfn, 0))
            self.events.append(("free", -1, pfn))
        del self.flights[number]
        return flight.result

    def finish_flight(self, number: int) -> Result:
        while True:
            result = self.step_flight(number)
            if "stage" not in result:
                return result

    def syscall(
        self, op: str, pid: int, edit: Callable[[], Result], lo: int, hi: int, whole_mm: bool, background: bool
    ) -> Result:
        """A mapping change of ``pid``: all steps at once, or (``background``) the first, giving ``{"pending": N}``."""
        proc = self.k.proc(pid)
        number = self.start_flight(op, proc, edit, lo, hi, whole_mm, background)
        return {"pending": number} if background else self.finish_flight(number)

    def kernel_remap(self) -> Result:
        """The kernel half's page moved to a new frame, then ``flush_tlb_kernel_range`` (arch/x86/mm/tlb.c), then
        the old frame freed; ``{"error": "ENOMEM"}`` if no frame is free.

        Kernel mappings are shared by every mm, so ``on_each_cpu`` interrupts every online CPU (no cpumask; IPIs
        recorded with pid 0, ``init_mm``) and each runs ``do_kernel_range_flush``: ``flush_tlb_one_kernel``, an
        INVLPG, which drops the global translation in any PCID (Intel SDM Vol. 3A 4.10.4.1).  Above
        ``tlb_single_page_flush_ceiling`` each runs ``do_flush_tlb_all`` instead (INVPCID type 2, recorded as a
        flush of PCID -1).  The frame is freed only after every CPU flushed.
        """
        old = self.k.move_kernel_page()
        if old is None:
            return {"error": "ENOMEM"}
        vpn = KERNEL_VA >> 12
        for cpu in range(len(self.tlbs)):
            self.events.append(("ipi", cpu, 0))
        for cpu, tlb in enumerate(self.tlbs):
            if self.flush_ceiling < 1:
                tlb.invpcid(2)
                self.events.append(("flush", cpu, GLOBAL))
            else:
                tlb.invlpg(self.cpu_tlb[cpu].pcid, vpn)
                self.events.append(("invlpg", cpu, vpn))
        self.k.buddy.free(old, 0)
        self.events.append(("free", -1, old))
        return OK

    # --- accesses -------------------------------------------------------------------------------

    def translation(self, root: int, va: int) -> int:
        """The TLB code of the walk of ``va`` from ``root``: frame, rights combined over the levels, G of the leaf,
        and :data:`impl.paging.tlb.HUGE` for a 2 MiB leaf (a PD entry with PS=1, SDM Vol. 3A 4.5.4)."""
        table, rights, nx, entry, huge = root, _RW | _US, 0, 0, 0
        read = self.k.mem.read_unchecked
        for level in (4, 3, 2, 1):
            entry = read((table << 12) + ((va >> (12 + 9 * (level - 1))) & 511) * 8)
            rights &= entry
            nx |= entry >> 63
            table = (entry & _PFN) >> 12
            if level == 2 and entry & _PS:
                huge = HUGE
                break
        code = table << 4 | (W if rights & _RW else 0) | (U if rights & _US else 0) | (NX if nx else 0)
        return code | (1 if entry & _G else 0) | huge

    def access(self, cpu: int, va: int, kind: int, user: bool, value: int = 0) -> Result:
        """A load, store or fetch: a TLB hit uses the cached entry; a miss walks and fills; a #PF drops the entries
        for ``va`` and runs the fault handler (shooting down what a COW copy replaced), then the access is retried.

        Each hit is reported in the kernel's effects as ``(("tlb", cpu, attempt, vpn), code)``.
        """
        proc = self.k.running(cpu)
        self.k.check_va(va)
        vpn, tlb, state = va >> 12, self.tlbs[cpu], self.cpu_tlb[cpu]
        for attempt in range(3):
            code = tlb.lookup(state.pcid, vpn)
            if code is not None:
                self.k.effects.append((("tlb", cpu, attempt, vpn), code))
                if allows(code, kind, user):
                    offset = va & (HUGE_PAGES * 4096 - 1 if code & HUGE else 0xFFF)
                    if kind == WRITE:
                        self.k.set_dirty(proc, vpn, (code & ~HUGE) >> 4)
                    return self.perform((((code & ~HUGE) >> 4) << 12) | offset, kind, value)
                error = 1 | (2 if kind == WRITE else 0) | (4 if user else 0) | (0x10 if kind == FETCH else 0)
            else:
                outcome = self.k.mmu.access(cpu, va, kind, user)
                if isinstance(outcome, Translated):
                    tlb.fill(state.pcid, vpn, self.translation(proc.root, va))
                    return self.perform(outcome.pa, kind, value)
                error = outcome.error_code
            tlb.fault(state.pcid, vpn)
            if attempt == 0:
                self.k.pressure.direct_reclaim(self.flush_all)
            failed = self.fault(proc, va, kind, error)
            if failed is not None:
                return failed
        raise AssertionError(f"access to {va:#x} still faults after three fixes")

    def flush_all(self) -> None:
        """``flush_tlb_all``: every CPU's TLB emptied (INVPCID type 2), as reclaim and writeback do after an rmap
        walk changed entries of any process."""
        for tlb in self.tlbs:
            tlb.invpcid(2)

    def perform(self, pa: int, kind: int, value: int) -> Result:
        if kind == WRITE:
            self.k.mem.write(pa, value)
            return OK
        return {"value": self.k.mem.read(pa)}

    def fault(self, proc: Process, va: int, kind: int, error: int) -> Result | None:
        """The kernel's fault handler as a flight of its own, finished at once."""
        failed: list[Result | None] = [None]

        def edit() -> Result:
            failed[0] = self.k._fault(proc, va, kind, error)
            return OK

        self.finish_flight(self.start_flight("fault", proc, edit, va >> 12, (va >> 12) + 1))
        return failed[0]
