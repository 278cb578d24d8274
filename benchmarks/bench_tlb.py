"""Shootdown cost in IPIs and flushes: deterministic counts, not timings.

One munmap of 1, 32 and 512 written pages on a machine of 4 CPUs of which 2
have run the mm.  The counts are the event records of a lockstep run (the
spec and the implementation must report the same events, or the run fails):

- mmcheck: IPIs only to the CPUs of ``mm_cpumask`` (arch/x86/mm/tlb.c
  flush_tlb_mm_range / native_flush_tlb_multi), one flush round per syscall
  (the mmu_gather batch), INVLPG per page up to the flush ceiling of 33 pages
  and one full flush per CPU above it (tlb_single_page_flush_ceiling);
- naive: every CPU interrupted for every page (broadcast, no batching), the
  design the cpumask and the gather exist to avoid.

:mod:`benchmarks.run` reports them (``nox -s bench``).
"""

from __future__ import annotations

from lang.kernel_ops import Mmap, Munmap, Spawn, Store, Switch
from lang.scenario import Config, Op
from properties.drivers import Lockstep

BASE = 0x100000000000
CPUS = 4
RUNNING = 2
SIZES = (1, 32, 512)


def munmap_events(pages: int) -> dict[str, int]:
    """Event counts of one munmap of ``pages`` written pages, CPUs 0 and 1 having run the mm."""
    lockstep = Lockstep(Config(frames=pages + 64, cpus=CPUS, max_order=3))
    ops: list[Op] = [Spawn(), Switch(0, 1), Switch(1, 1), Mmap(1, BASE, pages, "rw-")]
    ops += [Store(0, BASE + i * 4096, 1) for i in range(pages)]
    for op in ops:
        lockstep.apply(op)
    lockstep.apply(Munmap(1, BASE, pages))
    kernel = lockstep.spec.kernel.kernel
    assert kernel is not None
    kinds = [event.kind for event in kernel.events]  # the events of the last op
    return {kind: kinds.count(kind) for kind in ("ipi", "invlpg", "flush")}


def naive(pages: int) -> dict[str, int]:
    """Broadcast to every CPU for every page, one INVLPG each."""
    return {"ipi": CPUS * pages, "invlpg": CPUS * pages, "flush": 0}
