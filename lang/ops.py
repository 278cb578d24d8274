"""Every operation of the scenario language, as one namespace: ``from lang import ops``, then ``ops.Fork(1)``.

The hardware and buddy ops are defined in :mod:`lang.hardware_ops`, the
kernel ops in :mod:`lang.kernel_ops`, the slab ops in :mod:`lang.slab_ops`; importing this module registers them
all, so :func:`lang.scenario.parse_op` knows the whole vocabulary.
"""

from __future__ import annotations

from lang.hardware_ops import Access, AllocPages, BuddyInfo, FreePages, ReadPhys, SetCpu, WritePhys
from lang.kernel_ops import (
    Exit,
    Fetch,
    Fork,
    KernelOp,
    KernelRemap,
    KernelThread,
    Load,
    Madvise,
    Mmap,
    Mprotect,
    Munmap,
    PagemapOp,
    PinOp,
    ReadPin,
    Spawn,
    StatOp,
    Step,
    Store,
    Switch,
    TlbEvict,
    Unpin,
)
from lang.scenario import Op, Scenario
from lang.slab_ops import (
    Kfree,
    Kmalloc,
    KmemCacheAlloc,
    KmemCacheCreate,
    KmemCacheDestroy,
    KmemCacheFree,
    KmemCacheShrink,
    KmemRead,
    KmemWrite,
    MemInfo,
    SlabInfo,
    SlabOp,
)

__all__ = [
    "Access",
    "AllocPages",
    "BuddyInfo",
    "Exit",
    "Fetch",
    "Fork",
    "FreePages",
    "KernelOp",
    "KernelRemap",
    "KernelThread",
    "Kfree",
    "Kmalloc",
    "KmemCacheAlloc",
    "KmemCacheCreate",
    "KmemCacheDestroy",
    "KmemCacheFree",
    "KmemCacheShrink",
    "KmemRead",
    "KmemWrite",
    "Load",
    "Madvise",
    "MemInfo",
    "Mmap",
    "Mprotect",
    "Munmap",
    "Op",
    "PagemapOp",
    "PinOp",
    "ReadPhys",
    "ReadPin",
    "Scenario",
    "SetCpu",
    "SlabInfo",
    "SlabOp",
    "Spawn",
    "StatOp",
    "Step",
    "Store",
    "Switch",
    "TlbEvict",
    "Unpin",
    "WritePhys",
]
