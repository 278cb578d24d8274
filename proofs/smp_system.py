"""The kernel's SMP layer as a system for the explorer: CPUs, TLBs and multi-step shootdowns, in lockstep.

A state is a :class:`properties.drivers.Lockstep`: the L1 spec (:mod:`spec.mm.kernel`,
:mod:`spec.smp.shootdown`), the implementation (:class:`impl.mm.kernel.Kernel` run by
:class:`impl.smp.shootdown.Smp`) and the programmer's view L0 with its candidates
for the changes in flight.  A step applies one op exactly as ``mmcheck replay``
does (results compared, the implementation abstracted and compared with the
spec, every TLB entry one the spec allows, L1 refining L0), then checks the
kernel invariants of the state the gathers will leave and the shootdown
invariants (:func:`spec.smp.shootdown.violations`).  Any failure is a
:class:`~proofs.explore.Violation`.

The sections below say what the explorer may do (the vocabulary), and how a state becomes
its fingerprint: the canonical form, and the symmetries it does and does not use.
"""

from __future__ import annotations

import copy
import hashlib
import marshal
import random
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from impl.ualloc.ptmalloc import Process
from lang import ops
from lang.errors import MMCheckError
from lang.records import field_names, frozen
from lang.scenario import Config, Op, Scenario
from proofs.explore import Result, Stats, Violation, explore, run_exploration
from properties.drivers import DivergenceError, ImplRunner, Lockstep
from properties.mm.driver import Candidate
from properties.ualloc.driver import UallocSide
from spec import memory as l0
from spec.mm.invariants import violations as kernel_violations
from spec.mm.kernel import Kernel, Space
from spec.mm.vma import KERNEL_VA
from spec.outcome import NewPid, Outcome
from spec.smp import shootdown

# --- the vocabulary -------------------------------------------------------------------------------
#
# The vocabulary (:class:`SmpBounds`): processes up to a bound (spawn, fork, exit),
# mmap/munmap/mprotect/madvise(DONTNEED) of the pages of one small window, each either at once or started
# in the background (``"async": true``) and then advanced one atomic ``step`` at a time (an IPI handled by
# one CPU, then the gathered frames freed), switches to a process or to a kernel thread (lazy TLB), loads
# and stores of the window's pages from every CPU running a process, TLB evictions, and the kernel-mapping
# change (``kernel_remap``) with supervisor loads of the kernel page.  With one CPU and every change at
# once (:data:`COW_BOUNDS`) it is the kernel layer alone: fork, COW, the zero page, shared mappings and
# pins.

BASE = 0x10000000


@dataclass(frozen=True)
class SmpBounds:
    """The bounded vocabulary.

    ``procs`` live processes at most; ``pages`` pages in the window at
    :data:`BASE`; ``values`` what stores write; ``flights`` changes in flight at
    once; ``syscalls`` which mapping changes run (``mmap``, ``munmap``,
    ``mprotect``, ``madvise``); ``ranges``: whole window only (``"window"``) or
    every run of pages in it (``"all"``); ``sync``: also run each change at once
    (it is reachable in steps anyway; at once gives shorter paths);
    ``kernel``: ``kernel_remap`` and supervisor loads of the kernel page;
    ``prots``: what mprotect sets; ``fork``, ``evict``, ``spawn``: whether those
    ops run; ``pins``: pins held at most (pin, read_pin, unpin); ``shared``:
    also shared mmaps; ``pcid``: False for CPUs without PCIDs (CR4.PCIDE=0,
    every switch to another mm flushes); ``flush_ceiling``: the kernel's
    ``tlb_single_page_flush_ceiling`` (a range of more pages is flushed whole);
    ``maxphyaddr``: the CPUs' physical-address width; ``setup``: ops run (and
    checked) before the exploration starts, the start of every path and
    counterexample.
    """

    cpus: int = 2
    procs: int = 2
    frames: int = 16
    pages: int = 2
    values: tuple[int, ...] = (1,)
    flights: int = 1
    tlb_entries: int = 2
    max_order: int = 2
    syscalls: tuple[str, ...] = ("mmap", "munmap", "mprotect", "madvise")
    ranges: str = "all"
    sync: bool = False
    fork: bool = True
    evict: bool = True
    kernel: bool = True
    setup: tuple[Op, ...] = ()
    spawn: bool = True
    prots: tuple[str, ...] = ("r--", "rw-")
    pins: int = 0
    shared: bool = False
    pcid: bool = True
    flush_ceiling: int = 33
    maxphyaddr: int = 46

    @property
    def config(self) -> Config:
        return Config(
            frames=self.frames,
            cpus=self.cpus,
            max_order=self.max_order,
            tlb_entries=self.tlb_entries,
            pcid=self.pcid,
            flush_ceiling=self.flush_ceiling,
            maxphyaddr=self.maxphyaddr,
        )

    def describe(self) -> str:
        start = f"after {len(self.setup)} setup ops, " if self.setup else ""
        return start + (
            f"{self.cpus} CPUs, {self.procs} processes, {self.frames} frames, {self.pages} pages, values "
            f"{list(self.values)}, {self.flights} in flight, TLBs of {self.tlb_entries}, "
            f"{'/'.join(self.syscalls)} ({self.ranges} ranges{', also at once' if self.sync else ''}"
            f"{', mprotect to ' + '/'.join(self.prots) if 'mprotect' in self.syscalls else ''})"
            f"{', fork' if self.fork else ''}{', evict' if self.evict else ''}"
            f"{', kernel_remap' if self.kernel else ''}{', no PCIDs' if not self.pcid else ''}"
            f"{f', flush ceiling {self.flush_ceiling}' if self.flush_ceiling != 33 else ''}"
            f"{f', MAXPHYADDR {self.maxphyaddr}' if self.maxphyaddr != 46 else ''}"
        )


RUNNER_FIELDS = frozenset({"config", "mem", "mmu", "tlbs", "buddy", "buddy_error", "kernel", "slab", "ualloc"})
SIDE_FIELDS = frozenset(
    {
        *("kernel", "smp", "tlb_entries", "flush_ceiling", "pcid", "swap", "fault_around", "workingset"),
        *("nodes", "distances"),
    }
)


def clone_impl(impl: ImplRunner) -> ImplRunner:
    """An independent copy of the implementation through its ``clone`` methods, sharing what it shared."""
    if impl.__dict__.keys() != RUNNER_FIELDS or impl.kernel.__dict__.keys() != SIDE_FIELDS:
        raise AssertionError("ImplRunner or ImplKernelSide changed: update proofs.smp_system.clone_impl")
    if impl.slab.slub is not None:
        raise AssertionError("the SMP explorer runs no slab ops: its states have no slab allocator to clone")
    if impl.ualloc.returned:
        raise AssertionError("the SMP explorer runs no allocator ops: its states have no malloc heap to clone")
    new = copy.copy(impl)
    new.ualloc = Process()
    new.slab = copy.copy(impl.slab)
    new.mem = impl.mem.clone()
    new.mmu = impl.mmu.clone(new.mem)
    new.tlbs = [tlb.clone() for tlb in impl.tlbs]
    new.buddy = impl.buddy.clone()
    new.kernel = side = copy.copy(impl.kernel)
    if impl.kernel.kernel is not None and impl.kernel.smp is not None:
        assert impl.kernel.kernel.mmu is impl.mmu and impl.kernel.kernel.buddy is impl.buddy
        side.kernel = impl.kernel.kernel.clone(new.mmu, new.buddy)
        side.smp = impl.kernel.smp.clone(side.kernel)
    return new


def clone(state: Lockstep) -> Lockstep:
    """An independent copy: spec values shared, the implementation cloned, L0's lists copied."""
    successor = copy.copy(state)
    successor.spec = copy.copy(state.spec)
    successor.spec.kernel = copy.copy(state.spec.kernel)
    successor.spec.slab = copy.copy(state.spec.slab)
    successor.impl = clone_impl(state.impl)
    if state.ualloc.calls:
        raise AssertionError("the SMP explorer runs no allocator ops: its states have no malloc heap to clone")
    successor.ualloc = UallocSide()
    successor.l0 = copy.copy(state.l0)
    successor.l0.candidates = list(state.l0.candidates)
    successor.l0.ops = dict(state.l0.ops)
    return successor


def fast_apply(state: Lockstep, op: Op) -> None:
    """Run ``op`` on every side without the checks: rebuilding a state along a path that passed them."""
    assert isinstance(op, ops.KernelOp)
    state.index += 1
    state.impl.apply(op)
    state.spec.apply_kernel(op, state.impl.kernel.choices())
    outcome = state.spec.kernel.last
    assert outcome is not None
    state.l0.check(op, outcome)


def vocabulary(
    bounds: SmpBounds, windows: list[tuple[int, int]], k: Kernel | None, evictable: Callable[[int], bool]
) -> Iterator[Op]:
    """Every op of the vocabulary ``bounds`` allows from L1 state ``k`` (``None``: not booted); ``evictable(cpu)``:
    whether a ``tlb_evict`` of that CPU runs (the lockstep explorer: its implementation TLB holds an entry)."""
    b = bounds
    pids = sorted(k.procs) if k is not None else []
    flights = sorted(k.flights) if k is not None else []
    current = k.current if k is not None else (0,) * b.cpus
    room = len(flights) < b.flights
    if len(pids) < b.procs and b.spawn:
        yield ops.Spawn()
    for pid in pids:
        if b.fork and len(pids) < b.procs:
            yield ops.Fork(pid)
            if room:
                yield ops.Fork(pid, background=True)
        if len(pids) > 1 and not flights:
            yield ops.Exit(pid)
        for background in (True, False) if b.sync else (True,):
            if background and not room:
                continue
            yield from syscalls(b, windows, pid, background)
    for number in flights:
        yield ops.Step(number)
    if b.pins and k is not None:
        if len(k.pins) < b.pins:
            for pid in pids:
                yield from (ops.PinOp(pid, BASE + page * 4096) for page in range(b.pages))
        for pin in sorted(k.pins):
            yield ops.ReadPin(pin)
            yield ops.Unpin(pin)
    for cpu in range(b.cpus):
        for pid in pids:
            if current[cpu] != pid:
                yield ops.Switch(cpu, pid)
        if current[cpu]:
            yield ops.KernelThread(cpu)
            for page in range(b.pages):
                va = BASE + page * 4096
                yield ops.Load(cpu, va)
                for value in b.values:
                    yield ops.Store(cpu, va, value)
            if b.kernel:
                yield ops.Load(cpu, KERNEL_VA, "supervisor")
        if b.evict and evictable(cpu):
            yield ops.TlbEvict(cpu)
    if b.kernel and k is not None:
        yield ops.KernelRemap()


def syscalls(bounds: SmpBounds, windows: list[tuple[int, int]], pid: int, background: bool) -> Iterator[Op]:
    """The mapping changes of ``bounds`` by ``pid`` over each window."""
    for va, count in windows:
        if "mmap" in bounds.syscalls:
            yield ops.Mmap(pid, va, count, "rw-", background=background)
            if bounds.shared:
                yield ops.Mmap(pid, va, count, "rw-", shared=True, background=background)
        if "munmap" in bounds.syscalls:
            yield ops.Munmap(pid, va, count, background=background)
        if "mprotect" in bounds.syscalls:
            for prot in bounds.prots:
                yield ops.Mprotect(pid, va, count, prot, background=background)
        if "madvise" in bounds.syscalls:
            yield ops.Madvise(pid, va, count, "dontneed", background=background)


def windows(bounds: SmpBounds) -> list[tuple[int, int]]:
    """The (first address, pages) runs mapping changes cover: the whole window, or every run of pages in it."""
    if bounds.ranges == "window":
        return [(BASE, bounds.pages)]
    pages = bounds.pages
    return [(BASE + first * 4096, count) for first in range(pages) for count in range(1, pages - first + 1)]


class SmpSystem:
    """The SMP kernel layer, spec and implementation in lockstep, over :class:`SmpBounds`."""

    def __init__(self, bounds: SmpBounds, seed: int | None = None) -> None:
        self.bounds = bounds
        self.shuffle = None if seed is None else random.Random(seed).shuffle
        self.config = bounds.config
        self.windows = windows(bounds)

    def initial(self) -> Lockstep:
        """The start: a fresh run with :attr:`SmpBounds.setup` applied and checked like any other op."""
        state = Lockstep(self.config)
        for op in self.bounds.setup:
            try:
                state.apply(op)
            except DivergenceError as exc:
                raise Violation(exc.divergence.describe()) from exc
        return state

    def restore(self, path: list[Op]) -> Lockstep:
        """The state ``path`` leads to from the start, rebuilt without re-checking."""
        state = Lockstep(self.config)
        for op in (*self.bounds.setup, *path):
            fast_apply(state, op)
        return state

    def enabled(self, state: Lockstep) -> Iterable[Op]:
        """Every op of the vocabulary the bound allows from ``state`` (shuffled when a seed was given)."""
        enabled = list(self._enabled(state))
        if self.shuffle is not None:
            self.shuffle(enabled)
        return enabled

    def _enabled(self, state: Lockstep) -> Iterator[Op]:
        smp = state.impl.kernel.smp
        return vocabulary(
            self.bounds,
            self.windows,
            state.spec.kernel.kernel,
            lambda cpu: smp is not None and bool(smp.tlbs[cpu].entries),
        )

    def step(self, state: Lockstep, op: Op) -> Lockstep:
        successor = clone(state)
        try:
            successor.apply(op)
        except DivergenceError as exc:
            raise Violation(exc.divergence.describe()) from exc
        except MMCheckError:
            return state
        return successor

    def check(self, state: Lockstep) -> None:
        """The kernel invariants of the state the gathers will leave, and the shootdown invariants.

        The explorer calls it once per distinct state: they are about the L1 state alone, and renaming
        pids, flights and generations as :func:`canonical` does changes none of them.
        """
        k = state.spec.kernel.kernel
        if k is None:
            return
        problems = kernel_violations(shootdown.settled(k)) + shootdown.violations(k)
        if problems:
            raise Violation(f"op {state.index - 1}: the L1 state breaks its invariants: {problems}")

    def fingerprint(self, state: Lockstep) -> Hashable:
        return digest(canonical(state))

    def scenario(self, path: list[Op], about: str) -> Scenario:
        """The path to a violation as a replayable scenario."""
        return Scenario(self.config, (*self.bounds.setup, *path), about=about)


# --- the canonical form -------------------------------------------------------------------------
#
# The fingerprint is a 128-bit BLAKE2b digest of a canonical tuple (:func:`canonical`): the spec's L1
# state, the parts of the implementation the abstraction forgets but that steer what it does next (the
# order of each buddy free list decides which frame the next allocation takes; each TLB's entries in LRU
# order decide which one an eviction drops and which hits), and L0's candidates.  Left out, because
# nothing reads them: the events of the last op (cleared by every op), the accessed and dirty bits of the
# implementation's page-table entries (no implementation path branches on them: flush decisions compare
# frame, P, R/W, U/S and XD only, and the abstraction ignores them). Storing digests instead of tuples is
# hash compaction: two different states share a digest with probability about ``n**2 / 2**129`` for ``n``
# states.
#
# Symmetry. Process ids, flight numbers, pin numbers and L0 cell numbers are labels: the model only
# compares them for equality and hands out fresh ones above every one in use.  The canonical form renames
# each by its rank among those the state mentions (pids: live processes, CPUs' loaded mms and ASID slots,
# flights, L0; flights: L1's and L0's; pins: L1's and L0's; cells: per L0 candidate, only those a page or
# pin refers to), and drops the counters for fresh ones.  TLB generations are renumbered per mm keeping
# order, equality and gaps of one (:func:`generations`).  An order-preserving renaming is a bisimulation,
# so two states with the same canonical form have the same futures up to the renaming.  Not applied:
#
# - *swapping two live processes*: only order-preserving renamings are used, so two states that differ by
#   which of two processes has which mapping stay two states (sound, a smaller reduction);
#
# - *CPUs*: the model is not symmetric in them.  A flight's IPIs are handled in ascending CPU order
#   (``request`` sorts ``mm_cpumask``), so swapping two CPUs maps a state whose next step flushes CPU 0 to
#   one whose next step would have to flush CPU 1 first, which the model never does; merging the two would
#   drop the interleavings in which the other CPU flushes first.
# - *frames*: the buddy allocator's choices depend on the frame numbers (buddies differ in one bit, free
#   lists hand out the most recently freed block), so renaming frames does not commute with allocation.

# marshal's version 2: the last without references.  From version 3 on, marshal writes an object met a second time
# as a back-reference, and only objects with more than one reference are remembered (``w_ref`` in
# Python/marshal.c), so two equal canonical forms whose parts are shared differently (a frozen part cached by
# identity in one, built afresh in the other, or a state unpickled in another process) give different bytes and
# count as two states.  Version 2 writes the value alone: equal forms, equal bytes.
MARSHAL_VERSION = 2


def digest(form: object) -> bytes:
    """The 128-bit fingerprint of a canonical form (hash compaction): BLAKE2b of its marshal bytes."""
    return hashlib.blake2b(marshal.dumps(form, MARSHAL_VERSION), digest_size=16).digest()  # type: ignore[arg-type]


freeze = frozen  # the canonical form of a value with no pids, flights or pins in it


_SHARED: dict[int, tuple[object, object]] = {}
SHARED_LIMIT = 200_000


def freeze_shared(value: object) -> object:
    """:func:`freeze` of a spec value, remembered by identity: the spec's states share every part an op did not
    change, so most parts of a successor were frozen already.  The value is held with its form, so its id
    cannot be reused while remembered."""
    held = _SHARED.get(id(value))
    if held is not None and held[0] is value:
        return held[1]
    if len(_SHARED) >= SHARED_LIMIT:
        _SHARED.clear()
    frozen = freeze(value)
    _SHARED[id(value)] = (value, frozen)
    return frozen


_EXPECTED: set[type] = set()


def expect(record: object, names: frozenset[str]) -> None:
    """Records whose fields are renamed one by one must have exactly those fields: a new one must be added here."""
    kind = type(record)
    if kind in _EXPECTED:
        return
    actual = set(field_names(record))
    if actual != names:
        raise AssertionError(f"{kind.__name__} fields changed ({sorted(actual ^ names)}): update proofs.smp_system")
    _EXPECTED.add(kind)


KERNEL_FIELDS = frozenset(
    {
        *("buddy", "boot", "current", "pages", "procs", "objects", "pins", "zero_words", "kernel_words", "next_pid"),
        *("next_object", "next_pin", "cpus", "tlbs", "flights", "next_flight", "events", "flush_ceiling"),
        *("gathering", "gathered"),
        *("files", "swap_slots", "swap_map", "swap_data", "swap_cache", "pgfault", "pgmajfault", "lru_steps"),
        *("fault_around", "workingset"),
        *("oom_score_adj", "oom_sysctls", "slab", "thp", "memcg", "numa"),
    }
)
SPACE_FIELDS = frozenset(
    {"vmas", "root", "tables", "leaves", "kernel", "tlb_gen", "cpumask", "swapped", "minflt", "majflt"}
)
CPU_FIELDS = frozenset({"loaded", "lazy", "asid", "next_asid", "slots", "pcide"})
SLOT_FIELDS = frozenset({"ctx_id", "tlb_gen"})
FLIGHT_FIELDS = frozenset(
    {"op", "pid", "lo", "hi", "gen", "full", "freed_tables", "targets", "frames", "outcome", "stride"}
)
# The explorer runs no file operation: ``files`` stays empty and file pages never occur, so renaming cells needs
# no care for them.
MEMORY_FIELDS = frozenset({"procs", "cells", "pins", "current", "next_pid", "next_cell", "next_pin", "files"})
L0_PAGE_FIELDS = frozenset({"prot", "cell", "shared", "huge", "file", "index", "cow"})
PIN_VIEW_FIELDS = frozenset({"pid", "vpn", "offset", "cell", "shared", "values", "live"})


def ranks(labels: Iterable[int]) -> dict[int, int]:
    """Each label's rank (from 1) among ``labels``: an order-preserving renaming."""
    return {label: rank for rank, label in enumerate(sorted(set(labels)), start=1)}


def outcome_key(outcome: Outcome | None, pid: Mapping[int, int]) -> object:
    if isinstance(outcome, NewPid):
        return ("NewPid", pid[outcome.pid])
    return None if outcome is None else (type(outcome).__name__, freeze(outcome))


def kernel_pids(k: Kernel) -> Iterator[int]:
    yield from k.procs
    yield from (p for p in k.current if p)
    for cpu in k.cpus:
        if cpu.loaded:
            yield cpu.loaded
        yield from (s.ctx_id for s in cpu.slots if s.ctx_id > 0)
    for f in k.flights.values():
        yield f.pid
        if isinstance(f.outcome, NewPid):
            yield f.outcome.pid


def memory_pids(mem: l0.Memory) -> Iterator[int]:
    yield from mem.procs
    yield from (p for p in mem.current if p)
    yield from (pin.pid for pin in mem.pins.values())


def l0_pids(candidates: list[Candidate], in_flight: Mapping[int, ops.KernelOp]) -> Iterator[int]:
    for c in candidates:
        yield from memory_pids(c.memory)
        for view in c.stale:
            yield from memory_pids(view)
        yield from (o.pid for o in c.done.values() if isinstance(o, NewPid))
    yield from (op.pid for op in in_flight.values())  # type: ignore[attr-defined]


def compress_gaps(values: Iterable[int]) -> dict[int, int]:
    """Renumber from 0 keeping order, equality and gaps of one; a gap of two or more becomes two."""
    out: dict[int, int] = {}
    previous = None
    for value in sorted(set(values)):
        out[value] = 0 if previous is None else out[previous] + min(value - previous, 2)
        previous = value
    return out


def generations(k: Kernel) -> dict[int, dict[int, int]]:
    """Per live mm, its generations renamed by :func:`compress_gaps`: the mm's ``tlb_gen``, its ASID slots'
    and its flights'.

    ``flush_decision``, ``choose_new_asid`` and ``switch_mm`` only compare them (``<``, ``==``) and test
    ``gen == local + 1``; a new flush takes the mm's ``tlb_gen + 1``.  So a renaming keeping order, equality and
    gaps of one, extended above the largest by translation, changes no decision: ``tlb_gen`` grows with every
    flush and would make the state space infinite otherwise.  Generations of dead mms are never compared again
    (their CPUs are lazy and leave on the next IPI) and read as 0.
    """
    values: dict[int, list[int]] = {p: [sp.tlb_gen] for p, sp in k.procs.items()}
    for cpu in k.cpus:
        for slot in cpu.slots:
            if slot.ctx_id in values:
                values[slot.ctx_id].append(slot.tlb_gen)
    for f in k.flights.values():
        if f.pid in values:
            values[f.pid].append(f.gen)
    return {p: compress_gaps(gens) for p, gens in values.items()}


def space_key(sp: Space, gen: Mapping[int, int]) -> tuple[object, ...]:
    expect(sp, SPACE_FIELDS)
    return (
        freeze_shared(sp.vmas),
        sp.root,
        freeze_shared(sp.tables),
        freeze_shared(sp.leaves),
        freeze_shared(sp.kernel),
        gen[sp.tlb_gen],
        tuple(sorted(sp.cpumask)),
    )


def kernel_key(
    k: Kernel, pid: Mapping[int, int], flight: Mapping[int, int], pin: Mapping[int, int]
) -> tuple[object, ...]:
    """L1 without the last op's events and the counters of fresh pids, flights and pins; pids, flights, pins
    and generations renamed."""
    expect(k, KERNEL_FIELDS)
    assert not k.memcg.enabled, "the SMP explorer's states have no memory cgroups: its key leaves them out"
    gens = generations(k)
    none: dict[int, int] = {}

    def slot_gen(ctx_id: int, value: int) -> int:
        return gens.get(ctx_id, none).get(value, 0)

    cpus = []
    for c in k.cpus:
        expect(c, CPU_FIELDS)
        for s in c.slots:
            expect(s, SLOT_FIELDS)
        slots = tuple((pid[s.ctx_id] if s.ctx_id > 0 else s.ctx_id, slot_gen(s.ctx_id, s.tlb_gen)) for s in c.slots)
        cpus.append((pid.get(c.loaded, 0), c.lazy, c.asid, c.next_asid, slots, c.pcide))
    flights = []
    for n, f in k.flights.items():
        expect(f, FLIGHT_FIELDS)
        request = (f.lo, f.hi, slot_gen(f.pid, f.gen), f.full, f.freed_tables, f.targets, f.stride)
        flights.append((flight[n], f.op, pid[f.pid], *request, f.frames, outcome_key(f.outcome, pid)))
    return (
        freeze_shared(k.buddy),
        k.boot,
        tuple(pid.get(p, 0) for p in k.current),
        freeze_shared(k.pages),
        tuple(sorted((pid[p], space_key(sp, gens[p])) for p, sp in k.procs.items())),
        freeze_shared(k.objects),
        tuple(sorted((pin[n], freeze(p)) for n, p in k.pins.items())),
        freeze_shared(k.zero_words),
        freeze_shared(k.kernel_words),
        k.next_object,
        tuple(cpus),
        tuple(freeze_shared(tlb) for tlb in k.tlbs),
        tuple(sorted(flights)),
        k.flush_ceiling,
        k.gathering,
        k.gathered,
        tuple(sorted((pid[p], adj) for p, adj in k.oom_score_adj.items())),
        freeze_shared(k.oom_sysctls),
        tuple(sorted(k.slab)),
        # The THP policy, khugepaged's limits and the huge zero page; its vmstat counters are left out, as pgfault is.
        (k.thp.enabled, k.thp.defrag, k.thp.use_zero_page, k.thp.zero_pfn),
        (k.thp.max_ptes_none, k.thp.max_ptes_swap, k.thp.max_ptes_shared),
        # The memory policies by renamed pid; the numastat counters are left out, as pgfault is, and so is the
        # CPU and process of the last op (each op sets its own).
        tuple(sorted((pid[p], pol) for p, pol in k.numa.task.items())),
        tuple(sorted((pid[p], n) for p, n in k.numa.il_prev.items())),
        tuple(sorted((pid[p], rs) for p, rs in k.numa.ranges.items())),
    )


def memory_key(
    mem: l0.Memory, pid: Mapping[int, int], cell: Mapping[int, int], pin: Mapping[int, int], stale: bool
) -> tuple[object, ...]:
    """One L0 memory: only the cells some page or pin of the candidate refers to (no op reaches the others), and
    for the memory before the changes (``stale``) not which process each CPU runs (L0 reads the CPUs from the
    current memory)."""
    expect(mem, MEMORY_FIELDS)
    procs = []
    for p, pages in mem.procs.items():
        for page in pages.values():
            expect(page, L0_PAGE_FIELDS)
        procs.append(
            (pid[p], tuple(sorted((v, freeze(pg.prot), cell[pg.cell], pg.shared, pg.huge) for v, pg in pages.items())))
        )
    pins = []
    for n, view in mem.pins.items():
        expect(view, PIN_VIEW_FIELDS)
        where = (view.vpn, view.offset, cell[view.cell], view.shared)
        pins.append((pin[n], pid[view.pid], *where, freeze(view.values), view.live))
    return (
        tuple(sorted(procs)),
        tuple(sorted((cell[c], freeze(words)) for c, words in mem.cells.items() if c in cell)),
        tuple(sorted(pins)),
        () if stale else tuple(pid.get(p, 0) for p in mem.current),
    )


def memory_cells(mem: l0.Memory) -> Iterator[int]:
    """The cells a page or a pin refers to."""
    for pages in mem.procs.values():
        yield from (pg.cell for pg in pages.values())
    yield from (v.cell for v in mem.pins.values())


def candidate_key(
    c: Candidate, pid: Mapping[int, int], flight: Mapping[int, int], pin: Mapping[int, int]
) -> tuple[object, ...]:
    cells = [*memory_cells(c.memory), *(n for view in c.stale for n in memory_cells(view))]
    cell = ranks(cells)
    return (
        memory_key(c.memory, pid, cell, pin, False),
        tuple(flight[n] for n in c.pending),
        tuple(sorted((flight[n], outcome_key(o, pid)) for n, o in c.done.items())),
        tuple(memory_key(view, pid, cell, pin, True) for view in c.stale),
    )


def op_key(op: ops.KernelOp, pid: Mapping[int, int]) -> str:
    return repr(replace(op, pid=pid[op.pid]))  # type: ignore[attr-defined,type-var]


def canonical(state: Lockstep) -> tuple[object, ...]:
    """The canonical, marshal-able form of ``state`` (see the module docstring)."""
    k = state.spec.kernel.kernel
    if k is None:
        return ("not booted",)
    smp = state.impl.kernel.smp
    assert smp is not None
    l0side = state.l0
    pid = ranks([*kernel_pids(k), *l0_pids(l0side.candidates, l0side.ops)])
    flight = ranks([*k.flights, *l0side.ops, *(n for c in l0side.candidates for n in (*c.pending, *c.done))])
    memories = [m for c in l0side.candidates for m in (c.memory, *c.stale)]
    pin = ranks([*k.pins, *(n for m in memories for n in m.pins)])
    buddy = state.impl.buddy
    return (
        kernel_key(k, pid, flight, pin),
        tuple(tuple(buddy.free_list(order)) for order in range(buddy.max_order + 1)),
        tuple(tuple(tlb.entries.items()) for tlb in smp.tlbs),
        tuple(sorted({candidate_key(c, pid, flight, pin) for c in l0side.candidates})),
        tuple(sorted((flight[n], op_key(op, pid)) for n, op in l0side.ops.items())),
    )


# --- running ------------------------------------------------------------------------------------


def rate(seconds: float, bounds: SmpBounds | None = None) -> Stats:
    """Explore ``bounds`` (default :data:`RATE_BOUNDS`) for about ``seconds``: the figures of that run."""
    system = SmpSystem(bounds or RATE_BOUNDS)
    start = time.perf_counter()
    result = explore(system, max_depth=1000, time_limit=seconds)
    assert result.path is None, result.reason
    result.stats.seconds = time.perf_counter() - start
    return result.stats


RATE_BOUNDS = SmpBounds()
# RATE_BOUNDS over one page: 2 CPUs, 2 processes, every change in flight.
SMALL_BOUNDS = replace(RATE_BOUNDS, pages=1)
# verify's bound: exhausted (every reachable state, to the depth where no new one appears) or not a pass.  One
# process runs on both CPUs with one written page; from there every interleaving of munmap and mprotect (to r--)
# in flight, step by step, with loads, stores, switches, kernel threads (lazy TLB) and evictions on both CPUs.
SETUP = (ops.Spawn(), ops.Switch(0, 1), ops.Switch(1, 1), ops.Mmap(1, BASE, 1, "rw-"), ops.Store(0, BASE, 1))
VERIFY_BOUNDS = SmpBounds(
    procs=1, pages=1, frames=12, fork=False, kernel=False, syscalls=("munmap", "mprotect"), prots=("r--",), setup=SETUP
)
VERIFY_DEPTH = 100
VERIFY_BUDGET = 40.0

# The mutant hunt (proofs.hunt): each bound in turn, to its depth, until one finds a violation.  The
# first has two CPUs and two processes over one page; the second starts from verify's setup (one written page on
# both CPUs) so that a fork shares it before a zap in flight (an mmu_gather holding a reference that is not the
# page's last); partial flushes of a CPU two generations behind need two changes in flight over different pages,
# which the third covers with one CPU.
HUNT_BOUNDS = (
    (SmpBounds(procs=2, pages=1, flights=1, evict=False, syscalls=("munmap", "mprotect", "mmap")), 6),
    (SmpBounds(procs=2, pages=1, flights=1, evict=False, kernel=False, syscalls=("munmap", "madvise"), setup=SETUP), 3),
    (
        SmpBounds(
            cpus=1, procs=1, pages=2, flights=2, fork=False, kernel=False, evict=False, syscalls=("mmap", "mprotect")
        ),
        7,
    ),
)
HUNT_BUDGET = 300.0

# The config knobs at their edges, in explorer configurations (tests/test_explore_knobs.py explores each to
# its depth): one CPU with a one-entry TLB and no PCIDs that flushes every range whole (ceiling 0) on memory near
# the kernel's minimum (it needs 6 free frames to boot, impl.mm.kernel) with max_order 0; four CPUs with one-entry
# TLBs flushing page by page only up to one page (ceiling 1) at MAXPHYADDR 36; three CPUs whose ceiling lies above
# the window (every range page by page) at MAXPHYADDR 52 with max_order 3.
KNOB_BOUNDS = (
    (
        SmpBounds(
            cpus=1,
            procs=1,
            frames=9,
            pages=2,
            tlb_entries=1,
            pcid=False,
            flush_ceiling=0,
            max_order=0,
            fork=False,
            kernel=True,
            syscalls=("munmap", "mprotect"),
            prots=("r--",),
            setup=(ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 2, "rw-"), ops.Store(0, BASE, 1)),
        ),
        4,
    ),
    (
        SmpBounds(
            cpus=4,
            procs=1,
            pages=2,
            tlb_entries=1,
            flush_ceiling=1,
            maxphyaddr=36,
            fork=False,
            kernel=True,
            syscalls=("munmap", "mprotect"),
            prots=("r--",),
            setup=(ops.Spawn(), ops.Switch(0, 1), ops.Switch(3, 1), ops.Mmap(1, BASE, 2, "rw-"), ops.Store(3, BASE, 1)),
        ),
        2,
    ),
    (
        SmpBounds(
            cpus=3,
            procs=1,
            pages=2,
            flush_ceiling=3,
            maxphyaddr=52,
            max_order=3,
            fork=False,
            kernel=False,
            syscalls=("munmap", "mprotect"),
            prots=("r--",),
            setup=(ops.Spawn(), ops.Switch(0, 1), ops.Switch(2, 1), ops.Mmap(1, BASE, 2, "rw-"), ops.Store(2, BASE, 1)),
        ),
        2,
    ),
)

# The kernel layer alone (one CPU, every change at once): fork, COW, the zero page, shared mappings and pins, from
# one process running with two private pages mapped.
COW_SETUP = (ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 2, "rw-"))
COW_BOUNDS = SmpBounds(
    cpus=1,
    procs=2,
    pages=2,
    flights=0,
    sync=True,
    spawn=False,
    kernel=False,
    evict=False,
    pins=1,
    shared=True,
    syscalls=("mmap", "munmap", "mprotect", "madvise"),
    setup=COW_SETUP,
)
# First fork, exit, pins, loads and stores alone (deep enough for a pin held across fork and exit), then every
# mapping change too (shared mappings, mprotect splitting a VMA) a few ops deep.
COW_HUNT_BOUNDS = ((replace(COW_BOUNDS, pages=1, syscalls=(), shared=False), 5), (COW_BOUNDS, 3))


def hunt(
    name: str, bounds_list: tuple[tuple[SmpBounds, int], ...] = HUNT_BOUNDS
) -> tuple[Result[Op] | None, Path | None]:
    """Explore each bound of ``bounds_list`` in turn until one finds a violation: its result and saved scenario.

    ``(None, None)`` when no bound found one (the bounds are depth-limited, so that is not a proof).
    """
    for bounds, depth in bounds_list:
        result, saved = run_exploration(SmpSystem(bounds), depth, None, name, time_limit=HUNT_BUDGET)
        if saved is not None:
            return result, saved
    return None, None
