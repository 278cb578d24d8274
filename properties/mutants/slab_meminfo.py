"""Mutants of /proc/meminfo's slab lines in a kernel with slab caches (``impl.pressure.pressure.Pressure.meminfo``).

fs/proc/meminfo.c reports ``Slab`` as ``NR_SLAB_RECLAIMABLE_B`` plus ``NR_SLAB_UNRECLAIMABLE_B``, and
``si_mem_available`` (mm/show_mem.c) counts only the reclaimable part as available.  Each mutant is the shipped
method's source with one edit; the ``ci`` slab pressure machine
(:mod:`properties.pressure.slab_pressure_machine`) must catch each with a short counterexample.
"""

from __future__ import annotations

from impl.pressure.pressure import Pressure
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "slab meminfo: the kernel's meminfo, with its slab lines, equals L1's"

SLAB_MEMINFO_MUTANTS = (
    Mutant(
        "available-counts-unreclaimable-slab",
        "MemAvailable counting every slab page as reclaimable, where si_mem_available adds only "
        "NR_SLAB_RECLAIMABLE_B: the error procps' free made when it counted all of Slab as cache (6cb75efef85f, "
        "corrected to SReclaimable by 05d751c4f076)",
        f"{REFINES}; MemAvailable leaves out SUnreclaim",
        "slab_meminfo",
        SourcePatch(
            Pressure,
            "meminfo",
            (
                (
                    '"MemAvailable": si_mem_available(free, 0, lru_file, 0, WMARK_LOW) * 4,',
                    '"MemAvailable": si_mem_available(free, 0, lru_file, len(k.slab_frames), WMARK_LOW) * 4,',
                ),
            ),
        ),
    ),
    Mutant(
        "unreclaimable-slab-as-reclaimable",
        "unreclaimable slab pages reported as SReclaimable: a cache accounted to the wrong NR_SLAB_* counter "
        "(cache_vmstat_idx in mm/slab.h picks NR_SLAB_RECLAIMABLE_B only for SLAB_RECLAIM_ACCOUNT caches)",
        f"{REFINES}; SReclaimable counts only SLAB_RECLAIM_ACCOUNT caches, none here",
        "slab_meminfo",
        SourcePatch(Pressure, "meminfo", (('"SReclaimable": 0,', '"SReclaimable": len(k.slab_frames) * 4,'),)),
    ),
)
