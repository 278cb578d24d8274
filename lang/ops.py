"""Every operation of the scenario language, as one namespace: ``from lang import ops``, then ``ops.Fork(1)``.

The hardware and buddy ops are defined in :mod:`lang.hardware_ops`, the
kernel ops in :mod:`lang.kernel_ops`, memory pressure's in
:mod:`lang.pressure_ops`; importing this module registers them
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
from lang.pressure_ops import (
    FileCreate,
    FileRead,
    FileWrite,
    Fsync,
    MeminfoOp,
    MmapFile,
    Msync,
    PressureOp,
    Reclaim,
    StatusOp,
    Swapoff,
    Truncate,
    VmstatOp,
)
from lang.scenario import Op, Scenario

__all__ = [
    "Access",
    "AllocPages",
    "BuddyInfo",
    "Exit",
    "Fetch",
    "FileCreate",
    "FileRead",
    "FileWrite",
    "Fork",
    "FreePages",
    "Fsync",
    "KernelOp",
    "KernelRemap",
    "KernelThread",
    "Load",
    "Madvise",
    "MeminfoOp",
    "Mmap",
    "MmapFile",
    "Mprotect",
    "Msync",
    "Munmap",
    "Op",
    "PagemapOp",
    "PinOp",
    "PressureOp",
    "ReadPhys",
    "ReadPin",
    "Reclaim",
    "Scenario",
    "SetCpu",
    "Spawn",
    "StatOp",
    "StatusOp",
    "Step",
    "Store",
    "Swapoff",
    "Switch",
    "TlbEvict",
    "Truncate",
    "Unpin",
    "VmstatOp",
    "WritePhys",
]
