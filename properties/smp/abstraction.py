"""The abstraction function of the implementation's CPUs (:class:`impl.smp.shootdown.Smp`) onto the L1 state.

Everything but the TLBs must equal the spec's: ``cpu_tlbstate``, each mm's
``tlb_gen`` and ``mm_cpumask``, the flights and the events.  Each TLB becomes
the set of its entries; the harness then checks that every one is an entry the
spec says the CPU may hold (:func:`spec.smp.shootdown.disallowed_entries`), not
that the sets are equal.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from impl.paging.tlb import GLOBAL, HUGE, NX, U, W
from impl.paging.tlb import Tlb as ImplTlb
from impl.smp.shootdown import Flight as ImplFlight
from impl.smp.shootdown import Smp
from spec.mm.kernel import Kernel
from spec.outcome import Errno, NewPid, NodeList, Ok, Outcome
from spec.paging.tlb import GLOBAL_PCID, Tlb, TlbEntry
from spec.smp.state import CpuTlb, Event, Flight, Slot


def result_outcome(result: dict[str, object]) -> Outcome:
    """The spec outcome of a syscall's JSON result (what a flight returns)."""
    if result == {"ok": True}:
        return Ok()
    if isinstance(result.get("error"), str):
        return Errno(str(result["error"]))
    pid = result.get("pid")
    if isinstance(pid, int):
        return NewPid(pid)
    nodes = result.get("nodes")
    if isinstance(nodes, list):
        return NodeList(tuple(int(n) for n in nodes))
    raise AssertionError(f"no syscall outcome for {result!r}")


def abstract_tlb(tlb: ImplTlb) -> Tlb:
    """One TLB as the set of its entries (global ones under :data:`~spec.paging.tlb.GLOBAL_PCID`)."""
    return Tlb(
        frozenset(
            TlbEntry(
                GLOBAL_PCID if pcid == GLOBAL else pcid,
                vpn,
                (code & ~HUGE) >> 4,
                bool(code & W),
                bool(code & U),
                bool(code & NX),
                bool(code & HUGE),
            )
            for pcid, vpn, code in tlb.items()
        )
    )


def abstract_flight(flight: ImplFlight) -> Flight:
    return Flight(
        flight.op,
        flight.pid,
        flight.lo,
        flight.hi,
        flight.gen,
        flight.full,
        flight.freed_tables,
        tuple(flight.targets),
        tuple(flight.frames),
        result_outcome(flight.result),
        flight.stride,
    )


def abstract_smp(k: Kernel, smp: Smp) -> Kernel:
    """``k`` (the abstraction of the kernel) with the SMP part of ``smp``."""
    cpus = tuple(
        CpuTlb(s.loaded, s.lazy, s.asid, s.next_asid, tuple(Slot(ctx, gen) for ctx, gen in s.slots), s.pcide)
        for s in smp.cpu_tlb
    )
    procs = {
        pid: replace(sp, tlb_gen=smp.tlb_gen.get(pid, 0), cpumask=frozenset(smp.cpumask.get(pid, set())))
        for pid, sp in k.procs.items()
    }
    return replace(
        k,
        procs=MappingProxyType(procs),
        cpus=cpus,
        tlbs=tuple(abstract_tlb(t) for t in smp.tlbs),
        flights=MappingProxyType({n: abstract_flight(f) for n, f in sorted(smp.flights.items())}),
        next_flight=smp.next_flight,
        events=tuple(Event(kind, cpu, value) for kind, cpu, value in smp.events),
        flush_ceiling=smp.flush_ceiling,
    )
