"""Transparent huge pages against 4 KiB pages: what a 2 MiB range costs in faults, page tables and TLB entries.

A process writes every page of one 2 MiB-aligned range, once with THP ``enabled=always`` (one fault maps a PMD
leaf: mm/huge_memory.c ``do_huge_pmd_anonymous_page``) and once with ``never`` (512 faults, 512 PTEs:
mm/memory.c ``do_anonymous_page``).  The counts come from a lockstep run (spec and implementation must agree, or
the run fails): ``pgfault`` from vmstat, ``PageTables`` from meminfo (the THP's deposited PT is counted too,
``mm_inc_nr_ptes``), and the TLB entries the writing CPU holds afterwards (the implementation's TLB, 1,024
entries so none is evicted; a 2 MiB PMD leaf fills one entry, SDM Vol. 3A 4.10.2.3).  Counts, not timings.
"""

from __future__ import annotations

from lang.kernel_ops import Mmap, Spawn, Store, Switch
from lang.pressure_ops import MeminfoOp, VmstatOp
from lang.scenario import Config, Op
from lang.thp_ops import ThpSetting
from properties.drivers import Lockstep

BASE = 0x100000000000
PAGES = 512


def touch_costs(thp: bool) -> dict[str, int]:
    """Faults, page-table pages and TLB entries after writing each page of one aligned 2 MiB range."""
    lockstep = Lockstep(Config(frames=2048, cpus=1, max_order=10, tlb_entries=1024))
    ops: list[Op] = [ThpSetting("enabled", "always" if thp else "never"), Spawn(), Switch(0, 1)]
    ops += [Mmap(1, BASE, PAGES, "rw-"), *(Store(0, BASE + i * 4096, 1) for i in range(PAGES))]
    for op in ops:
        lockstep.apply(op)
    faults = lockstep.apply(VmstatOp())["pgfault"]
    tables = lockstep.apply(MeminfoOp())["PageTables"] // 4
    smp = lockstep.impl.kernel.smp
    assert smp is not None
    return {"faults": faults, "page tables": tables, "TLB entries": len(smp.tlbs[0].entries)}
