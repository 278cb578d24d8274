"""Kernel layer throughput: fork of large address spaces, COW faults per second, loads per second.

- fork of a process with 2**12 and 2**16 written private pages, and with 2**12
  pages spread one per page table over 2**12 tables: the implementation copies
  PTEs and tables, never data, so its cost follows the mapped pages and
  tables, not the size of the address space;
- COW faults per second: after fork, the parent writes each shared page once;
- loads per second through the MMU walk (implementation) against the spec's
  lookup, on present pages.

The spec runs the same workloads at 2**8 pages: its immutable maps are copied
on every step, which is what makes it a specification and not an
implementation.  Results print as a table and go to ``results/bench_kernel.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from impl.buddy import BuddyAllocator
from impl.kernel import Kernel as ImplKernel
from impl.mmu import READ, WRITE, Mmu
from impl.physmem import PhysMem
from spec import aspace, cow, fault
from spec import buddy as spec_buddy
from spec.kernel import NO_CHOICES, Kernel, boot
from spec.permissions import Kind, Mode
from spec.vma import Prot

BASE = 0x100000000000
PT_SPAN = 512 * 4096


def impl_process(pages: int, spread: bool) -> ImplKernel:
    """A booted implementation kernel with pid 1 running and ``pages`` written private pages (stores of zero)."""
    frames = 2 * pages + 4 * pages // 512 + (pages * 3 if spread else 0) + 64
    mmu = Mmu(PhysMem(frames), 1)
    kernel = ImplKernel(mmu, BuddyAllocator(frames))
    kernel.spawn()
    kernel.switch(0, 1)
    step = PT_SPAN if spread else 4096
    if spread:
        for i in range(pages):
            kernel.mmap(1, BASE + i * step, 1, (True, True, False), False)
    else:
        kernel.mmap(1, BASE, pages, (True, True, False), False)
    for i in range(pages):
        kernel.access(0, BASE + i * step, WRITE, True, 0)
    return kernel


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


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def bench_impl(pages: int, spread: bool) -> dict[str, object]:
    """Fork time, COW faults/s and loads/s of the implementation."""
    kernel = impl_process(pages, spread)
    step = PT_SPAN if spread else 4096
    fork_s = timed(lambda: kernel.fork(1))
    loads_s = timed(lambda: [kernel.access(0, BASE + i * step, READ, True) for i in range(pages)])
    cow_s = timed(lambda: [kernel.access(0, BASE + i * step, WRITE, True, 1) for i in range(pages)])
    return {
        "side": "impl",
        "pages": pages,
        "layout": "one page per page table" if spread else "dense",
        "fork_ms": round(fork_s * 1e3, 2),
        "fork_us_per_page": round(fork_s * 1e6 / pages, 2),
        "cow_faults_per_s": round(pages / cow_s),
        "loads_per_s": round(pages / loads_s),
    }


def bench_spec(pages: int) -> dict[str, object]:
    """The same on the spec."""
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
    return {
        "side": "spec",
        "pages": pages,
        "layout": "dense",
        "fork_ms": round(fork_s * 1e3, 2),
        "fork_us_per_page": round(fork_s * 1e6 / pages, 2),
        "cow_faults_per_s": round(pages / cow_s),
        "loads_per_s": round(pages / loads_s),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_kernel", description=__doc__)
    parser.add_argument("--out", default="results/bench_kernel.json")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (2**10 and 2**12 pages)")
    args = parser.parse_args(argv)
    sizes = (1 << 10, 1 << 12) if args.quick else (1 << 12, 1 << 16)
    rows = [bench_impl(n, False) for n in sizes]
    rows.append(bench_impl(sizes[0], True))
    rows.append(bench_spec(1 << 8))
    keys = ("side", "pages", "layout", "fork_ms", "fork_us_per_page", "cow_faults_per_s", "loads_per_s")
    print("  ".join(f"{k:>24}" for k in keys))
    for row in rows:
        print("  ".join(f"{row[k]!s:>24}" for k in keys))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
