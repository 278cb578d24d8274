"""Kernel layer throughput: fork of large address spaces, COW faults, munmap, loads.

- fork of a process with 2**12 to 2**16 written private pages, and with 2**12
  pages spread one per page table over 2**12 tables: the implementation copies
  PTEs and tables, never data, so its cost follows the mapped pages and
  tables, not the size of the address space;
- COW faults per second: after fork, the parent writes each shared page once;
- munmap of 512 written pages (one page table's worth);
- loads per second through the kernel layer's access path, on present pages.

The implementation runs as the refinement machines drive it: accesses through
its CPUs' TLBs (``Smp.access``: a hit, or a walk that fills, or the fault
handler), fork and munmap as system calls with their TLB shootdown
(``Smp.syscall``), so every path timed here is one verify checks
(``docs/bench-paths.txt``).

The spec runs the same workloads at up to 2**12 pages: its immutable maps are
copied on every step, which is what makes it a specification and not an
implementation (and makes its fork superlinear).  :mod:`benchmarks.run`
reports them (``nox -s bench``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from impl.alloc.buddy import BuddyAllocator
from impl.mm.kernel import Kernel as ImplKernel
from impl.paging.mmu import READ, WRITE, Mmu
from impl.paging.physmem import PhysMem
from impl.smp.shootdown import Smp
from spec.alloc import buddy as spec_buddy
from spec.mm import aspace, cow, fault
from spec.mm.kernel import NO_CHOICES, Kernel, boot
from spec.mm.vma import Prot
from spec.paging.permissions import Kind, Mode

BASE = 0x100000000000
PT_SPAN = 512 * 4096


def impl_process(pages: int, spread: bool, forks: int = 1) -> tuple[ImplKernel, Smp]:
    """A booted implementation kernel with its CPU (TLB and shootdown state), pid 1 running and ``pages`` written
    private pages (stores of zero).

    Memory holds the pages, their COW copies, and the page tables of pid 1
    and of ``forks`` children.
    """
    frames = 2 * pages + (1 + forks) * (4 * pages // 512 + (pages if spread else 0)) + 64
    mmu = Mmu(PhysMem(frames), 1)
    kernel = ImplKernel(mmu, BuddyAllocator(frames))
    smp = Smp(kernel)
    kernel.spawn()
    smp.switch(0, 1)
    step = PT_SPAN if spread else 4096
    if spread:
        for i in range(pages):
            kernel.mmap(1, BASE + i * step, 1, (True, True, False), False)
    else:
        kernel.mmap(1, BASE, pages, (True, True, False), False)
    for i in range(pages):
        smp.access(0, BASE + i * step, WRITE, True, 0)
    return kernel, smp


def spec_process(pages: int) -> Kernel:
    """The spec kernel with the same dense workload."""
    frames = 2 * pages + 64
    k = boot(spec_buddy.initial(frames), 1)
    k, _ = aspace.spawn(k, NO_CHOICES)
    k, _ = aspace.switch(k, 0, 1)
    k, _ = aspace.mmap(k, 1, BASE, pages, Prot.parse("rw-"), False)
    for i in range(pages):
        k, _ = fault.access(k, 0, BASE + i * 4096, Kind.WRITE, Mode.USER, 0, NO_CHOICES)
    return k


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class KernelRun:
    """One side's fork, COW and load times on a process of ``pages`` written pages."""

    side: str
    pages: int
    layout: str
    fork_seconds: float
    cow_seconds: float
    load_seconds: float

    @property
    def fork_us_per_page(self) -> float:
        return 1e6 * self.fork_seconds / self.pages

    @property
    def cow_faults_per_second(self) -> float:
        return self.pages / self.cow_seconds

    @property
    def loads_per_second(self) -> float:
        return self.pages / self.load_seconds


def bench_impl(pages: int, spread: bool, forks: int = 1) -> KernelRun:
    """Fork time (the fastest of ``forks`` forks of the same parent), then loads and COW faults in the parent."""
    kernel, smp = impl_process(pages, spread, forks)
    step = PT_SPAN if spread else 4096
    fork_s = min(timed(lambda: smp.syscall("fork", 1, lambda: kernel.fork(1), 0, 0, True, False)) for _ in range(forks))
    loads_s = timed(lambda: [smp.access(0, BASE + i * step, READ, True) for i in range(pages)])
    cow_s = timed(lambda: [smp.access(0, BASE + i * step, WRITE, True, 1) for i in range(pages)])
    layout = "one page per page table" if spread else "dense"
    return KernelRun("impl", pages, layout, fork_s, cow_s, loads_s)


def bench_spec(pages: int) -> KernelRun:
    """The same on the spec (one fork)."""
    k = spec_process(pages)
    start = time.perf_counter()
    k, _ = cow.fork(k, 1, NO_CHOICES)
    fork_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(pages):
        fault.access(k, 0, BASE + i * 4096, Kind.READ, Mode.USER, 0, NO_CHOICES)
    loads_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(pages):
        k, _ = fault.access(k, 0, BASE + i * 4096, Kind.WRITE, Mode.USER, 1, NO_CHOICES)
    cow_s = time.perf_counter() - start
    return KernelRun("spec", pages, "dense", fork_s, cow_s, loads_s)


def munmap_impl(pages: int, repeats: int) -> float:
    """Seconds for one munmap of ``pages`` written pages on the implementation (the fastest of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        kernel, smp = impl_process(pages, False)
        lo = BASE >> 12
        unmap = lambda: kernel.munmap(1, BASE, pages)  # noqa: B023, E731 - called at once
        best = min(best, timed(lambda: smp.syscall("munmap", 1, unmap, lo, lo + pages, False, False)))  # noqa: B023
    return best


def munmap_spec(pages: int, repeats: int) -> float:
    """The same on the spec."""
    best = float("inf")
    for _ in range(repeats):
        k = spec_process(pages)
        best = min(best, timed(lambda: aspace.munmap(k, 1, BASE, pages)))  # noqa: B023 - called at once
    return best
