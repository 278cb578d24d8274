"""The kernel-layer operations on each side: the programmer's view (L0), the kernel spec (L1), the implementation.

The kernel boots on the first kernel-layer operation of a run, taking its
frames from the same buddy allocator the ``alloc_pages`` operations use.
On the spec side every operation takes the implementation's frame choices
(its effect records, by role) when there are any; run alone it takes the
buddy's least choice.  :class:`L0Side` checks that an L1 outcome is one the
programmer's view allows (L1 refines L0).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from impl.alloc.buddy import BuddyAllocator
from impl.memcg.memcg import V2_FILES, MemCgroups
from impl.mm import compaction as impl_compaction
from impl.mm import khugepaged as impl_khugepaged
from impl.mm.kernel import USER_PAGES
from impl.mm.kernel import Kernel as ImplKernel
from impl.numa.numa import Numa as ImplNuma
from impl.paging.mmu import FETCH, READ, WRITE, Mmu
from impl.pressure.pressure import FAULT_AROUND_PAGES
from impl.smp.shootdown import Smp
from lang import ops
from lang.errors import MMCheckError, NotModelled, UnknownCpu, UnknownPid
from lang.records import frozen
from lang.scenario import Config, Result
from spec import memory as l0
from spec.alloc.buddy import BuddyState
from spec.memcg import memcg
from spec.memcg import v2 as memcg_v2
from spec.mm import accounting, aspace, compaction, cow, khugepaged, thp
from spec.mm.kernel import NO_CHOICES, Choices, Kernel, boot, check_cpu
from spec.mm.vma import Prot, huge_pages
from spec.numa import migrate
from spec.numa import policy as mempolicy
from spec.numa import syscalls as numa_calls
from spec.numa.policy import STAT_NAMES
from spec.numa.topology import topology
from spec.oom import badness
from spec.outcome import (
    Collapsed,
    Compacted,
    Errno,
    MemcgOom,
    MemcgRetry,
    MemcgStat,
    Meminfo,
    Mempolicy,
    NewPid,
    NewPin,
    NodeList,
    NodePages,
    NumaMapsLines,
    Numastat,
    Ok,
    OneOf,
    OomKill,
    OomPanic,
    OomScore,
    Outcome,
    Pagemap,
    Pending,
    Reclaimed,
    Signal,
    Smaps,
    Stage,
    Stat,
    Status,
    Value,
    Vmstat,
)
from spec.paging.permissions import Kind, Mode
from spec.pressure import files, lru, meminfo, swap
from spec.smp import shootdown

ACCESS_KINDS = {"load": Kind.READ, "store": Kind.WRITE, "fetch": Kind.FETCH}
IMPL_KINDS = {"load": READ, "store": WRITE, "fetch": FETCH}
# Operations that may need a frame: ENOMEM from them is allowed by L0 when it changed nothing.
ALLOCATING = (
    ops.Spawn,
    ops.Fork,
    ops.Load,
    ops.Store,
    ops.Fetch,
    ops.PinOp,
    ops.KernelRemap,
    ops.FileRead,
    ops.FileWrite,
    ops.Swapoff,
)
PRESSURE_ADVICE = ("cold", "pageout")
THP_ADVICE = ("hugepage", "nohugepage")


def rwx(prot: str) -> tuple[bool, bool, bool]:
    """``"rw-"`` as three booleans."""
    return prot[0] == "r", prot[1] == "w", prot[2] == "x"


def outcome_json(outcome: Outcome) -> Result:
    """The JSON result of a spec outcome."""
    if isinstance(outcome, Ok):
        return {"ok": True}
    if isinstance(outcome, Value):
        return {"value": outcome.value}
    if isinstance(outcome, Signal):
        if outcome.bus:
            return {"signal": "SIGBUS"}
        return {"signal": "SIGSEGV", "error_code": outcome.error_code}
    if isinstance(outcome, Errno):
        return {"error": outcome.name}
    if isinstance(outcome, NewPid):
        return {"pid": outcome.pid}
    if isinstance(outcome, NewPin):
        return {"pin": outcome.pin}
    if isinstance(outcome, Stat):
        return {
            "rss_kb": outcome.rss_kb,
            "pss_kb": outcome.pss_kb,
            "uss_kb": outcome.uss_kb,
            "anon_kb": outcome.anon_kb,
        }
    if isinstance(outcome, Pagemap):
        out: Result = {"present": outcome.present, "pfn": outcome.pfn, "exclusive": outcome.exclusive}
        return {**out, "swapped": True} if outcome.swapped else out
    if isinstance(outcome, Pending):
        return {"pending": outcome.flight}
    if isinstance(outcome, Stage):
        return {"stage": "flushed", "cpu": outcome.cpu}
    if isinstance(outcome, Reclaimed):
        return {"reclaimed": outcome.pages}
    if isinstance(outcome, Compacted):
        return {"migrated": outcome.migrated, "unmovable": {hex(pfn): why for pfn, why in outcome.unmovable.items()}}
    if isinstance(outcome, Collapsed):
        return {"collapsed": outcome.thps, "scan": {hex(head << 12): r for head, r in outcome.results.items()}}
    if isinstance(outcome, Meminfo | Status | Vmstat):
        return pressure_json(outcome)
    if isinstance(outcome, Smaps):
        fields = {key: getattr(outcome, name) for key, name in SMAPS_KEYS}
        return fields if outcome.anon_huge_pages is None else {**fields, "AnonHugePages": outcome.anon_huge_pages}
    if isinstance(outcome, OomScore | OomKill | OomPanic):
        return oom_json(outcome)
    if isinstance(outcome, MemcgStat):
        return {name: dict(value) if isinstance(value, tuple) else value for name, value in outcome.values}
    if isinstance(outcome, MemcgRetry):
        return {"memcg_retry": outcome.group, "report": outcome.report}
    if isinstance(outcome, Mempolicy):
        return {
            "mode": outcome.mode,
            "nodes": list(outcome.nodes),
            "static": outcome.static,
            "relative": outcome.relative,
        }
    if isinstance(outcome, NodeList):
        return {"nodes": list(outcome.nodes)}
    if isinstance(outcome, Numastat):
        return {"nodes": [dict(zip(STAT_NAMES, counts, strict=True)) for counts in outcome.nodes]}
    if isinstance(outcome, NodePages):
        return {"pages": list(outcome.pages)}
    if isinstance(outcome, NumaMapsLines):
        return {"lines": list(outcome.lines)}
    if isinstance(outcome, MemcgOom):
        kills = [oom_json(kill)["oom_kill"] for kill in outcome.kills]
        inner = {} if outcome.outcome is None else outcome_json(outcome.outcome)
        return {**inner, "memcg_oom": {"group": outcome.group, "kills": kills}}
    raise AssertionError(f"no JSON form for {outcome!r}")


MEMINFO_KEYS = (
    ("MemTotal", "mem_total"),
    ("MemFree", "mem_free"),
    ("MemAvailable", "mem_available"),
    ("Cached", "cached"),
    ("SwapCached", "swap_cached"),
    ("Dirty", "dirty"),
    ("AnonPages", "anon_pages"),
    ("Mapped", "mapped"),
    ("SwapTotal", "swap_total"),
    ("SwapFree", "swap_free"),
    ("PageTables", "page_tables"),
    ("Slab", "slab"),
    ("SReclaimable", "s_reclaimable"),
    ("SUnreclaim", "s_unreclaim"),
)
SMAPS_KEYS = (
    ("Rss", "rss"),
    ("Pss", "pss"),
    ("Pss_Dirty", "pss_dirty"),
    ("Pss_Anon", "pss_anon"),
    ("Pss_File", "pss_file"),
    ("Pss_Shmem", "pss_shmem"),
    ("Shared_Clean", "shared_clean"),
    ("Shared_Dirty", "shared_dirty"),
    ("Private_Clean", "private_clean"),
    ("Private_Dirty", "private_dirty"),
    ("Anonymous", "anonymous"),
    ("Swap", "swap"),
    ("SwapPss", "swap_pss"),
)
STATUS_KEYS = (
    ("VmRSS", "vm_rss"),
    ("RssAnon", "rss_anon"),
    ("RssFile", "rss_file"),
    ("RssShmem", "rss_shmem"),
    ("VmSwap", "vm_swap"),
    ("minflt", "minflt"),
    ("majflt", "majflt"),
)


def pressure_json(outcome: Meminfo | Status | Vmstat) -> Result:
    """meminfo, status and vmstat under the kernel's own field names."""
    if isinstance(outcome, Vmstat):
        counts: Result = {"pgfault": outcome.pgfault, "pgmajfault": outcome.pgmajfault}
        if outcome.workingset_refault_file is not None:
            counts["workingset_refault_file"] = outcome.workingset_refault_file
            counts["workingset_activate_file"] = outcome.workingset_activate_file
        if outcome.thp is not None:
            counts.update(zip(("thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd"), outcome.thp, strict=True))
        return counts
    keys = MEMINFO_KEYS if isinstance(outcome, Meminfo) else STATUS_KEYS
    fields = {key: getattr(outcome, name) for key, name in keys}
    if isinstance(outcome, Meminfo) and outcome.anon_huge_pages is not None:
        fields["AnonHugePages"] = outcome.anon_huge_pages
    return fields


def oom_json(outcome: OomScore | OomKill | OomPanic) -> Result:
    """``/proc/PID/oom_score``, a kill (the "Killed process" line's fields) or a panic."""
    if isinstance(outcome, OomScore):
        return {"oom_score": outcome.oom_score, "oom_score_adj": outcome.oom_score_adj}
    if isinstance(outcome, OomPanic):
        return {"panic": outcome.reason, "report": outcome.report}
    return {
        "oom_kill": {
            "pid": outcome.pid,
            "points": outcome.points,
            "total_vm_kb": outcome.total_vm,
            "anon_rss_kb": outcome.anon_rss,
            "file_rss_kb": outcome.file_rss,
            "shmem_rss_kb": outcome.shmem_rss,
            "pgtables_kb": outcome.pgtables,
            "oom_score_adj": outcome.oom_score_adj,
            "message": outcome.message,
        }
    }


SpecEdit = Callable[[Kernel], tuple[Kernel, Outcome]]
ShootdownOp = ops.Fork | ops.Exit | ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise


def spec_edit(op: ShootdownOp, choices: Choices) -> SpecEdit:
    """The page-table edit of a syscall that may need a shootdown, as a spec function."""
    if isinstance(op, ops.Fork):
        return lambda k: badness.forked(*cow.fork(k, op.pid, choices), op.pid)
    if isinstance(op, ops.Exit):
        return lambda k: badness.exited(*aspace.exit_process(k, op.pid), op.pid)
    if isinstance(op, ops.Mmap):
        prot = Prot.parse(op.prot)
        return lambda k: aspace.mmap(k, op.pid, op.va, op.pages, prot, op.shared, op.huge)
    if isinstance(op, ops.Munmap):
        return lambda k: aspace.munmap(k, op.pid, op.va, op.pages)
    if isinstance(op, ops.Mprotect):
        prot = Prot.parse(op.prot)
        return lambda k: aspace.mprotect(k, op.pid, op.va, op.pages, prot)
    if op.advice in THP_ADVICE:
        return lambda k: thp.madvise_thp(k, op.pid, op.va, op.pages, op.advice)
    if op.advice == "collapse":
        return lambda k: khugepaged.madvise_collapse(k, op.pid, op.va, op.pages, choices)
    return lambda k: aspace.madvise_dontneed(k, op.pid, op.va, op.pages)


def refuse_background_collapse(op: ShootdownOp) -> None:
    """A collapse runs as one whole shootdown (:mod:`spec.mm.khugepaged`: ``collapse_huge_page`` flushes under
    ``mmap_write_lock`` before it copies)."""
    if isinstance(op, ops.Madvise) and op.advice == "collapse" and op.background:
        raise NotModelled('madvise collapse in the background is not modelled: drop "async"')


def spec_pressure_step(k: Kernel, op: ops.KernelOp, choices: Choices) -> tuple[Kernel, Outcome] | None:
    """A memory-pressure operation on the L1 spec; None for any other."""
    if isinstance(op, ops.Madvise) and op.advice in PRESSURE_ADVICE:
        if op.background:
            raise NotModelled(f'madvise {op.advice} in the background is not modelled: drop "async"')
        return lru.madvise_pressure(k, op.pid, op.va, op.pages, op.advice, choices)
    if isinstance(op, ops.FileCreate):
        return files.create(k, op.file, op.pages, dict(op.words))
    if isinstance(op, ops.FileRead):
        return files.read(k, op.file, op.offset, choices)
    if isinstance(op, ops.FileWrite):
        return files.write(k, op.file, op.offset, op.value, choices)
    if isinstance(op, ops.Truncate):
        return files.truncate(k, op.file, op.pages)
    if isinstance(op, ops.Fsync):
        return files.fsync(k, op.file)
    if isinstance(op, ops.Msync):
        return files.msync(k, op.pid, op.va, op.pages)
    if isinstance(op, ops.MmapFile):
        return aspace.mmap_file(k, op.pid, op.va, op.pages, Prot.parse(op.prot), op.shared, op.file, op.offset)
    if isinstance(op, ops.Reclaim):
        return lru.reclaim_op(k, op.target, choices)
    if isinstance(op, ops.Swapoff):
        return swap.swapoff(k, choices)
    if isinstance(op, ops.MeminfoOp):
        return k, meminfo.meminfo(k)
    if isinstance(op, ops.StatusOp):
        return k, meminfo.status(k, op.pid)
    if isinstance(op, ops.SmapsOp):
        return k, accounting.smaps(k, op.pid)
    if isinstance(op, ops.VmstatOp):
        return k, meminfo.vmstat(k)
    return None


def spec_kill(k: Kernel, pid: int) -> tuple[Kernel, Outcome]:
    """The OOM victim's death: its exit, through a TLB shootdown like the ``exit`` op's."""
    return shootdown.run(k, "exit", pid, lambda k: aspace.exit_process(k, pid), 0, True, False)


def spec_oom_step(k: Kernel, op: ops.KernelOp) -> tuple[Kernel, Outcome] | None:
    """An OOM killer operation on the L1 spec; None for any other."""
    if isinstance(op, ops.OomScoreAdj):
        return badness.set_oom_score_adj(k, op.pid, op.adj), Ok()
    if isinstance(op, ops.OomScoreOp):
        return k, badness.oom_score(k, op.pid)
    if isinstance(op, ops.Sysctl):
        return badness.set_sysctl(k, op.sysctl, op.setting), Ok()
    if isinstance(op, ops.OutOfMemory):
        return badness.out_of_memory(k, op.pid, spec_kill)
    return None


def spec_memcg_step(k: Kernel, op: ops.MemcgOp, choices: Choices = NO_CHOICES) -> tuple[Kernel, Outcome]:
    """A memory cgroup operation on the L1 spec (v1 files in :mod:`spec.memcg.memcg`, v2 in :mod:`spec.memcg.v2`)."""
    if isinstance(op, ops.MemcgCreate):
        return memcg.create(k, op.group)
    if isinstance(op, ops.MemcgMove):
        return memcg.move(k, op.pid, op.group)
    if isinstance(op, ops.MemcgHierarchy):
        return memcg_v2.set_hierarchy(k, op.version)
    if isinstance(op, ops.MemcgSet):
        if op.knob in memcg_v2.V2_FILES:
            return memcg_v2.write(k, op.group, op.knob, op.size, choices, spec_memcg_kill)
        return memcg.set_limit(k, op.group, op.knob, op.size, choices)
    assert isinstance(op, ops.MemcgRead)
    return k, (memcg_v2.stat(k, op.group) if k.memcg.v2 else memcg.stat(k, op.group))


FAULTING = (ops.Load, ops.Store, ops.Fetch)


def actor(op: ops.KernelOp, current: tuple[int, ...] | list[int]) -> int | None:
    """The process an operation runs for: its pid, or the process on its CPU for an access (None: none)."""
    if isinstance(op, FAULTING):
        pid = current[op.cpu] if 0 <= op.cpu < len(current) else 0
        return pid or None
    named = getattr(op, "pid", None)
    return named if isinstance(named, int) else None


def spec_memcg_kill(k: Kernel, pid: int) -> tuple[Kernel, Outcome]:
    """A memory cgroup OOM victim's death: the exit of :func:`spec_kill`, its ``oom_score_adj`` gone with it."""
    k, outcome = spec_kill(k, pid)
    return badness.exited(k, outcome, pid)


def spec_step(k: Kernel, op: ops.KernelOp, choices: Choices) -> tuple[Kernel, Outcome]:
    """One kernel-layer operation on the L1 spec, charged to its memory cgroup (:mod:`spec.memcg.memcg`)."""
    if isinstance(op, ops.MemcgOp):
        k = replace(k, events=()) if k.events else k
        return spec_memcg_step(replace(k, lru_steps=0) if k.lru_steps else k, op, choices)
    k = replace(k, lru_steps=0) if k.lru_steps else k
    if not k.memcg.enabled:
        return spec_plain_step(k, op, choices)
    return memcg.charged_step(
        k,
        lambda k: spec_plain_step(k, op, choices),
        lambda k: spec_plain_step(k, op, NO_CHOICES),
        actor(op, k.current),
        isinstance(op, FAULTING),
        spec_memcg_kill,
        choices,
    )


def op_context(op: ops.KernelOp, current: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """The CPU and the process an operation runs on, for NUMA placement: an access's CPU, else the lowest CPU
    running the op's process (CPU 0 when none does); the process is :func:`actor`'s (0: none)."""
    pid = actor(op, current) or 0
    if isinstance(op, FAULTING):
        return op.cpu, pid
    return next((cpu for cpu, running in enumerate(current) if pid and running == pid), 0), pid


def mapping_range(op: ops.KernelOp) -> tuple[int, int, int] | None:
    """The pid and pages of an op that makes or removes mappings there (a new VMA has no memory policy)."""
    if isinstance(op, ops.Mmap | ops.Munmap | ops.MmapFile):
        pages = huge_pages(op.pages) if isinstance(op, ops.Mmap) and op.huge else op.pages
        return op.pid, op.va >> 12, (op.va >> 12) + pages
    return None


def spec_numa_after(k: Kernel, op: ops.KernelOp, before: frozenset[int], outcome: Outcome) -> Kernel:
    """The NUMA side of an op that made, removed or forked mappings or processes (:mod:`spec.numa.policy`)."""
    numa = k.numa
    where = mapping_range(op)
    if where is not None and not isinstance(outcome, Errno):
        numa = mempolicy.set_range(numa, where[0], where[1], where[2], None)
    if isinstance(op, ops.Fork):
        for child in sorted(set(k.procs) - before):
            numa = mempolicy.forked(numa, op.pid, child)
    numa = mempolicy.pruned(numa, set(k.procs))
    return k if numa is k.numa else replace(k, numa=numa)


def spec_numa_step(k: Kernel, op: ops.NumaOp, choices: Choices) -> tuple[Kernel, Outcome]:
    """A NUMA system call or file on the L1 spec (:mod:`spec.numa.syscalls`)."""
    if isinstance(op, ops.SetMempolicy):
        return numa_calls.set_mempolicy(k, op.pid, op.policy, op.nodes, op.flags)
    if isinstance(op, ops.Mbind):
        return numa_calls.mbind(k, op.pid, op.va, op.pages, op.policy, op.nodes, op.flags)
    if isinstance(op, ops.GetMempolicy):
        return k, numa_calls.get_mempolicy(k, op.pid, op.at)
    if isinstance(op, ops.MovePages) and op.node is not None:
        node = op.node

        def edit(k: Kernel) -> tuple[Kernel, Outcome]:
            return migrate.move_pages(k, op.pid, op.va, op.pages, node, choices)

        return shootdown.run(k, op.name, op.pid, edit, op.va >> 12, False, op.background)
    if isinstance(op, ops.MovePages):
        return k, numa_calls.move_pages(k, op.pid, op.va, op.pages)
    if isinstance(op, ops.Numastat):
        return k, numa_calls.numastat(k)
    if isinstance(op, ops.NumastatP):
        return k, numa_calls.numastat_p(k, op.pid)
    assert isinstance(op, ops.NumaMaps)
    return k, numa_calls.numa_maps(k, op.pid)


def spec_plain_step(k: Kernel, op: ops.KernelOp, choices: Choices) -> tuple[Kernel, Outcome]:
    """One kernel-layer operation on the L1 spec, on the CPU and for the process of :func:`op_context`; the
    state keeps no trace of that context after the op (:func:`with_context`)."""
    context = k.numa.cpu, k.numa.pid
    if k.numa.topology.nodes > 1:  # on one node every placement is node 0's, whoever allocates
        k = with_context(k, *op_context(op, k.current))
    if isinstance(op, ops.NumaOp):
        k = replace(k, events=()) if k.events else k
        k, outcome = spec_numa_step(replace(k, lru_steps=0) if k.lru_steps else k, op, choices)
        return with_context(k, *context), outcome
    before = frozenset(k.procs)
    k, outcome = spec_kernel_step(k, op, choices)
    return with_context(spec_numa_after(k, op, before, outcome), *context), outcome


def with_context(k: Kernel, cpu: int, pid: int) -> Kernel:
    """The state with the allocating CPU and process of the NUMA placement rules set."""
    if (cpu, pid) == (k.numa.cpu, k.numa.pid):
        return k
    return replace(k, numa=replace(k.numa, cpu=cpu, pid=pid))


def spec_kernel_step(k: Kernel, op: ops.KernelOp, choices: Choices) -> tuple[Kernel, Outcome]:
    """One kernel-layer operation on the L1 spec; the events it records replace the last operation's.  Its
    reclaim steps count on from ``k.lru_steps`` (0 at an operation's start; the memory cgroups' reclaim of a
    charge before the operation runs again counts first)."""
    k = replace(k, events=()) if k.events else k
    pressure = spec_pressure_step(k, op, choices)
    if pressure is None and isinstance(op, ops.OomOp):
        pressure = spec_oom_step(k, op)
    if pressure is not None:
        return pressure
    if isinstance(op, ops.ThpSetting):
        return thp.set_policy(k, op.setting, op.value)
    if isinstance(op, ops.KhugepagedLimit):
        return khugepaged.set_limit(k, op.limit, op.value), Ok()
    if isinstance(op, ops.CompactMemory):
        return compaction.compact_memory(k, choices)
    if isinstance(op, ops.Khugepaged):
        scan = lambda k: khugepaged.khugepaged_scan(k, op.pid, choices)  # noqa: E731
        return shootdown.run(k, op.name, op.pid, scan, 0, False, False)
    if isinstance(op, ops.Spawn):
        return aspace.spawn(k, choices)
    if isinstance(op, ops.Fork | ops.Exit | ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise):
        refuse_background_collapse(op)
        whole = isinstance(op, ops.Fork | ops.Exit)
        lo = 0 if whole else op.va >> 12  # type: ignore[union-attr]
        return shootdown.run(k, op.name, op.pid, spec_edit(op, choices), lo, whole, op.background)
    if isinstance(op, ops.Step):
        return shootdown.step(k, op.pending)
    if isinstance(op, ops.TlbEvict):
        check_cpu(k, op.cpu)
        return k, Ok()
    if isinstance(op, ops.KernelRemap):
        return shootdown.kernel_remap(k, choices)
    if isinstance(op, ops.Switch | ops.KernelThread):
        return shootdown.switch(k, op.cpu, op.pid if isinstance(op, ops.Switch) else None)
    if isinstance(op, ops.Load | ops.Store | ops.Fetch):
        value = op.value if isinstance(op, ops.Store) else 0
        return shootdown.access(k, op.cpu, op.va, ACCESS_KINDS[op.name], Mode(op.mode), value, choices)
    if isinstance(op, ops.PinOp):
        return aspace.pin(k, op.pid, op.va, choices)
    if isinstance(op, ops.ReadPin):
        return k, aspace.read_pin(k, op.pin)
    if isinstance(op, ops.Unpin):
        return aspace.unpin(k, op.pin)
    if isinstance(op, ops.StatOp):
        return k, accounting.stat(k, op.pid)
    if isinstance(op, ops.PagemapOp):
        return k, accounting.pagemap(k, op.pid, op.va)
    raise MMCheckError(f"the kernel spec has no rule for {op.name!r}")


class SpecKernelSide:
    """The L1 kernel state of a spec run; ``None`` until the first kernel-layer op boots it."""

    def __init__(self, config: Config) -> None:
        self.cpus = config.cpus
        self.flush_ceiling = config.flush_ceiling
        self.pcid = config.pcid
        self.swap = config.swap
        self.fault_around = config.fault_around_pages
        self.workingset = bool(config.workingset)
        self.nodes = topology(config.frames, config.cpus, config.nodes, config.max_order, config.distances)
        self.kernel: Kernel | None = None
        self.last: Outcome | None = None

    def boot_if_needed(self, buddy: BuddyState, choices: Choices, slab: frozenset[int] = frozenset()) -> BuddyState:
        """Boot on the first use (kept even if the op that triggered it is refused), holding the frames of the
        slabs made before it (``slab``)."""
        if self.kernel is None:
            self.kernel = boot(
                buddy,
                self.cpus,
                choices,
                self.flush_ceiling,
                self.pcid,
                self.swap,
                self.fault_around,
                self.workingset,
                self.nodes,
            )
            self.adopt_slab(self.kernel.buddy, slab)
            return self.kernel.buddy
        return buddy

    def adopt_slab(self, buddy: BuddyState, slab: frozenset[int]) -> None:
        """After a slab op on the kernel's ``buddy``: the kernel holds the slab frames ``slab``."""
        if self.kernel is not None and (self.kernel.buddy is not buddy or self.kernel.slab != slab):
            self.kernel = replace(self.kernel, buddy=buddy, slab=slab)

    def apply(self, op: ops.KernelOp, buddy: BuddyState, choices: Choices = NO_CHOICES) -> tuple[BuddyState, Result]:
        """Run ``op`` against the current buddy state; returns the new buddy state and the result."""
        buddy = self.boot_if_needed(buddy, choices)
        assert self.kernel is not None
        if self.kernel.events or self.kernel.lru_steps:
            self.kernel = replace(self.kernel, events=(), lru_steps=0)
        start = self.kernel if self.kernel.buddy is buddy else replace(self.kernel, buddy=buddy)
        k, outcome = spec_step(start, op, choices)
        self.kernel, self.last = k, outcome
        return k.buddy, outcome_json(outcome)


class ImplKernelSide:
    """The implementation kernel of a run and its CPUs (:class:`impl.smp.shootdown.Smp`), booted on first use."""

    def __init__(self, config: Config | None = None) -> None:
        self.kernel: ImplKernel | None = None
        self.smp: Smp | None = None
        self.tlb_entries = 64 if config is None else config.tlb_entries
        self.flush_ceiling = 33 if config is None else config.flush_ceiling
        self.pcid = True if config is None else config.pcid
        self.swap = 0 if config is None else config.swap
        self.fault_around = FAULT_AROUND_PAGES if config is None else config.fault_around_pages
        self.workingset = False if config is None else bool(config.workingset)
        self.nodes = 1 if config is None else config.nodes
        self.distances = None if config is None or config.distances is None else [list(r) for r in config.distances]

    def choices(self) -> Choices:
        """The frames the last operation allocated, by role, and the TLB entries its accesses hit."""
        return {} if self.kernel is None else dict(self.kernel.effects)

    def apply(self, op: ops.KernelOp, mmu: Mmu, buddy: BuddyAllocator, slab: frozenset[int] = frozenset()) -> Result:
        """Run ``op``; bad input raises and changes nothing (but the boot, which holds the frames of the slabs
        made before it, ``slab``)."""
        if self.kernel is None or self.smp is None:
            numa = ImplNuma(buddy.frames, len(mmu.cpus), self.nodes, self.distances)
            self.kernel = ImplKernel(mmu, buddy, self.swap, self.fault_around, self.workingset, numa)
            self.kernel.slab_frames = set(slab)
            self.smp = Smp(self.kernel, self.tlb_entries, self.flush_ceiling, self.pcid)
        else:
            self.kernel.effects.clear()
            self.smp.events.clear()
            self.kernel.pressure.lru_steps = 0
        k, smp = self.kernel, self.smp
        if isinstance(op, ops.MemcgOp):
            return impl_memcg_step(k, op, smp)
        if not k.memcg.enabled:
            return impl_step(k, op, smp)
        pid = actor(op, k.current)
        if not k.memcg.limited(pid):
            procs = set(k.procs)
            result = impl_step(k, op, smp)
            k.memcg.sync(pid, procs)
            return result

        def dry() -> MemCgroups:
            mem = k.mem.clone()
            clone = k.clone(k.mmu.clone(mem), k.buddy.clone())
            procs = set(clone.procs)
            with contextlib.suppress(MMCheckError):
                impl_step(clone, op, smp.clone(clone))
            clone.memcg.sync(pid, procs)
            return clone.memcg

        return k.memcg.charged(
            pid, isinstance(op, FAULTING), dry, lambda: impl_step(k, op, smp), impl_killer(k, smp), smp.flush_all
        )

    def adopt_slab(self, slab: frozenset[int]) -> None:
        """After a slab op on the kernel's buddy: the kernel holds the slab frames ``slab``."""
        if self.kernel is not None:
            self.kernel.slab_frames = set(slab)


def impl_killer(k: ImplKernel, smp: Smp) -> Callable[[int], object]:
    """An OOM victim's exit on the implementation, through a TLB shootdown like the ``exit`` op's."""

    def kill(victim: int) -> object:
        return smp.syscall("exit", victim, lambda: k.exit(victim), 0, 0, True, False)

    return kill


def impl_memcg_step(k: ImplKernel, op: ops.MemcgOp, smp: Smp) -> Result:
    """A memory cgroup operation on the implementation."""
    if isinstance(op, ops.MemcgCreate):
        return k.memcg.create(op.group)
    if isinstance(op, ops.MemcgMove):
        return k.memcg.move(op.pid, op.group)
    if isinstance(op, ops.MemcgHierarchy):
        return k.memcg.hierarchy(op.version)
    if isinstance(op, ops.MemcgSet):
        if op.knob in V2_FILES:
            return k.memcg.write(op.group, op.knob, op.size, impl_killer(k, smp), smp.flush_all)
        return k.memcg.set_limit(op.group, op.knob, op.size, smp.flush_all)
    assert isinstance(op, ops.MemcgRead)
    return k.memcg.read(op.group)


def impl_edit(k: ImplKernel, op: ShootdownOp) -> Callable[[], Result]:
    """The kernel's own syscall, run by :meth:`impl.smp.shootdown.Smp.syscall` as the page-table edit."""
    if isinstance(op, ops.Fork):
        return lambda: k.oom.forked(k.fork(op.pid), op.pid)
    if isinstance(op, ops.Exit):
        return lambda: k.oom.exited(k.exit(op.pid), op.pid)
    if isinstance(op, ops.Mmap):
        return lambda: k.mmap(op.pid, op.va, op.pages, rwx(op.prot), op.shared, op.huge)
    if isinstance(op, ops.Munmap):
        return lambda: k.munmap(op.pid, op.va, op.pages)
    if isinstance(op, ops.Mprotect):
        return lambda: k.mprotect(op.pid, op.va, op.pages, rwx(op.prot))
    if op.advice in THP_ADVICE:
        return lambda: k.thp.madvise(op.pid, op.va, op.pages, op.advice)
    if op.advice == "collapse":
        return lambda: impl_khugepaged.madvise_collapse(k, op.pid, op.va, op.pages)
    return lambda: k.madvise_dontneed(op.pid, op.va, op.pages)


def impl_numa_step(k: ImplKernel, op: ops.NumaOp, smp: Smp | None) -> Result:
    """A NUMA system call or file on the implementation (:mod:`impl.numa.numa`)."""
    numa = k.numa
    if isinstance(op, ops.MovePages) and op.node is not None:
        node, smp = op.node, smp or Smp(k)
        k.proc(op.pid)
        lo = op.va >> 12
        return smp.syscall(
            op.name,
            op.pid,
            lambda: numa.migrate(k, op.pid, op.va, op.pages, node),
            lo,
            lo + op.pages,
            False,
            op.background,
        )
    if isinstance(op, ops.SetMempolicy):
        return numa.set_mempolicy(k, op.pid, op.policy, op.nodes, op.flags)
    if isinstance(op, ops.Mbind):
        return numa.mbind(k, op.pid, op.va, op.pages, op.policy, op.nodes, op.flags)
    if isinstance(op, ops.GetMempolicy):
        return numa.get_mempolicy(k, op.pid, op.at)
    if isinstance(op, ops.MovePages):
        return numa.move_pages(k, op.pid, op.va, op.pages)
    if isinstance(op, ops.Numastat):
        return numa.numastat()
    if isinstance(op, ops.NumastatP):
        return numa.numastat_p(k, op.pid)
    assert isinstance(op, ops.NumaMaps)
    return numa.numa_maps(k, op.pid)


def impl_step(k: ImplKernel, op: ops.KernelOp, smp: Smp | None = None) -> Result:
    """One kernel-layer operation on the implementation, on the CPU and for the process of :func:`op_context`."""
    context = k.numa.cpu, k.numa.pid
    if k.numa.nodes > 1:  # on one node every placement is node 0's, whoever allocates
        k.numa.cpu, k.numa.pid = op_context(op, k.current)
    before = set(k.procs)
    try:
        if isinstance(op, ops.NumaOp):
            return impl_numa_step(k, op, smp)
        result = impl_kernel_step(k, op, smp)
    finally:
        k.numa.cpu, k.numa.pid = context  # the context lasts only for the op
    where = mapping_range(op)
    if where is not None and "error" not in result:
        k.numa.cut(*where)
    if isinstance(op, ops.Fork):
        for child in sorted(set(k.procs) - before):
            k.numa.fork(op.pid, child)
    for pid in [p for p in (*k.numa.task, *k.numa.il_prev, *k.numa.ranges) if p not in k.procs]:
        k.numa.exit(pid)
    return result


def impl_kernel_step(k: ImplKernel, op: ops.KernelOp, smp: Smp | None = None) -> Result:
    """One kernel-layer operation on the implementation (its CPUs default to a fresh :class:`Smp`)."""
    smp = smp or Smp(k)
    pressure = impl_pressure_step(k, op, smp)
    if pressure is None and isinstance(op, ops.OomOp):
        pressure = impl_oom_step(k, op, smp)
    if pressure is not None:
        return pressure
    if isinstance(op, ops.ThpSetting):
        return k.thp.set_setting(op.setting, op.value)
    if isinstance(op, ops.KhugepagedLimit):
        return k.thp.set_limit(op.limit, op.value)
    if isinstance(op, ops.CompactMemory):
        return impl_compaction.compact_memory(k, smp)
    if isinstance(op, ops.Khugepaged):
        scan = lambda: impl_khugepaged.khugepaged_scan(k, op.pid)  # noqa: E731
        return smp.syscall(op.name, op.pid, scan, 0, USER_PAGES, False, False)
    if isinstance(op, ops.Spawn):
        return k.spawn()
    if isinstance(op, ops.Fork | ops.Exit | ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise):
        refuse_background_collapse(op)
        whole = isinstance(op, ops.Fork | ops.Exit)
        lo = 0 if whole else op.va >> 12  # type: ignore[union-attr]
        hi = 0 if whole else lo + op.pages  # type: ignore[union-attr]
        if isinstance(op, ops.Mmap) and op.huge:
            hi = lo + huge_pages(op.pages)
        return smp.syscall(op.name, op.pid, impl_edit(k, op), lo, hi, whole, op.background)
    if isinstance(op, ops.Step):
        return smp.step_flight(op.pending)
    if isinstance(op, ops.TlbEvict):
        return smp.evict(op.cpu)
    if isinstance(op, ops.KernelRemap):
        return smp.kernel_remap()
    if isinstance(op, ops.Switch | ops.KernelThread):
        return smp.switch(op.cpu, op.pid if isinstance(op, ops.Switch) else None)
    if isinstance(op, ops.Load | ops.Store | ops.Fetch):
        value = op.value if isinstance(op, ops.Store) else 0
        return smp.access(op.cpu, op.va, IMPL_KINDS[op.name], op.mode == "user", value)
    if isinstance(op, ops.PinOp):
        return k.pin(op.pid, op.va)
    if isinstance(op, ops.ReadPin):
        return k.read_pin(op.pin)
    if isinstance(op, ops.Unpin):
        return k.unpin(op.pin)
    if isinstance(op, ops.StatOp):
        return k.stat(op.pid)
    if isinstance(op, ops.PagemapOp):
        return k.pagemap(op.pid, op.va)
    raise MMCheckError(f"the kernel implementation has no rule for {op.name!r}")


def impl_oom_step(k: ImplKernel, op: ops.OomOp, smp: Smp) -> Result | None:
    """An OOM killer operation on the implementation; None for any other."""
    if isinstance(op, ops.OomScoreAdj):
        return k.oom.set_adj(op.pid, op.adj)
    if isinstance(op, ops.OomScoreOp):
        return k.oom.oom_score(op.pid)
    if isinstance(op, ops.Sysctl):
        return k.oom.sysctl(op.sysctl, op.setting)
    if isinstance(op, ops.OutOfMemory):
        return k.oom.out_of_memory(op.pid, lambda pid: smp.syscall("exit", pid, lambda: k.exit(pid), 0, 0, True, False))
    return None


def impl_pressure_step(k: ImplKernel, op: ops.KernelOp, smp: Smp) -> Result | None:
    """A memory-pressure operation on the implementation; None for any other."""
    p, flush = k.pressure, smp.flush_all
    if isinstance(op, ops.Madvise) and op.advice in PRESSURE_ADVICE:
        if op.background:
            raise NotModelled(f'madvise {op.advice} in the background is not modelled: drop "async"')
        return p.madvise(op.pid, op.va, op.pages, op.advice, flush)
    if isinstance(op, ops.FileCreate):
        return p.file_create(op.file, op.pages, dict(op.words))
    if isinstance(op, ops.FileRead):
        return p.file_read(op.file, op.offset)
    if isinstance(op, ops.FileWrite):
        return p.file_write(op.file, op.offset, op.value)
    if isinstance(op, ops.Truncate):
        return p.truncate(op.file, op.pages, flush)
    if isinstance(op, ops.Fsync):
        return p.fsync(op.file, flush)
    if isinstance(op, ops.Msync):
        return p.msync(op.pid, op.va, op.pages, flush)
    if isinstance(op, ops.MmapFile):
        return p.mmap_file(op.pid, op.va, op.pages, rwx(op.prot), op.shared, op.file, op.offset, flush)
    if isinstance(op, ops.Reclaim):
        return {"reclaimed": p.reclaim(op.target, flush)}
    if isinstance(op, ops.Swapoff):
        return p.swapoff(flush)
    if isinstance(op, ops.MeminfoOp):
        return p.meminfo()
    if isinstance(op, ops.StatusOp):
        return p.status(op.pid)
    if isinstance(op, ops.SmapsOp):
        return k.smaps(op.pid)
    if isinstance(op, ops.VmstatOp):
        return p.vmstat()
    return None


def l0_pressure_step(mem: l0.Memory, op: ops.KernelOp) -> tuple[l0.Memory, Outcome | None] | None:
    """A memory-pressure operation on the programmer's view; None for any other."""
    if isinstance(op, ops.Madvise) and op.advice in PRESSURE_ADVICE:
        return mem, None
    if isinstance(op, ops.FileCreate):
        return l0.file_create(mem, op.file, op.pages, dict(op.words))
    if isinstance(op, ops.FileRead):
        return mem, l0.file_read(mem, op.file, op.offset)
    if isinstance(op, ops.FileWrite):
        return l0.file_write(mem, op.file, op.offset, op.value)
    if isinstance(op, ops.Truncate):
        return l0.truncate(mem, op.file, op.pages)
    if isinstance(op, ops.MmapFile):
        return l0.mmap_file(mem, op.pid, op.va, op.pages, Prot.parse(op.prot), op.shared, op.file, op.offset)
    observes = ops.MeminfoOp | ops.StatusOp | ops.VmstatOp | ops.SmapsOp
    if isinstance(op, ops.Fsync | ops.Msync | ops.Reclaim | ops.Swapoff | observes):
        return mem, None
    if isinstance(op, ops.OomOp):
        return mem, None  # the OOM killer's kill is applied from L1's outcome (L0Side.check)
    return None


def l0_step(mem: l0.Memory, op: ops.KernelOp) -> tuple[l0.Memory, Outcome | None]:
    """One op on the programmer's view; None for observations it has no opinion on (stat, pagemap, meminfo, and
    what memory pressure does behind the program's back: reclaim, writeback, swapoff)."""
    pressure = l0_pressure_step(mem, op)
    if pressure is not None:
        return pressure
    if isinstance(op, ops.ThpSetting | ops.KhugepagedLimit):
        return mem, Ok()  # the THP policy changes how memory is mapped, never what a program reads
    if isinstance(op, ops.Khugepaged | ops.CompactMemory) or (isinstance(op, ops.Madvise) and op.advice == "collapse"):
        return mem, None  # a collapse changes nothing a program reads; whether it happens is the kernel's affair
    if isinstance(op, ops.Madvise) and op.advice in THP_ADVICE:
        return l0_thp_advice(mem, op)
    if isinstance(op, ops.Spawn):
        return l0.spawn(mem)
    if isinstance(op, ops.Fork):
        return l0.fork(mem, op.pid)
    if isinstance(op, ops.Exit):
        return l0.exit_process(mem, op.pid)
    if isinstance(op, ops.Mmap):
        return l0.mmap(mem, op.pid, op.va, op.pages, Prot.parse(op.prot), op.shared, op.huge)
    if isinstance(op, ops.Munmap):
        return l0.munmap(mem, op.pid, op.va, op.pages)
    if isinstance(op, ops.Mprotect):
        return l0.mprotect(mem, op.pid, op.va, op.pages, Prot.parse(op.prot))
    if isinstance(op, ops.Madvise):
        return l0.madvise_dontneed(mem, op.pid, op.va, op.pages)
    if isinstance(op, ops.KernelThread):
        if not 0 <= op.cpu < len(mem.current):
            raise UnknownCpu(f"cpu {op.cpu} does not exist: allowed 0..{len(mem.current) - 1}")
        return replace(mem, current=tuple(0 if i == op.cpu else c for i, c in enumerate(mem.current))), Ok()
    if isinstance(op, ops.Switch):
        return l0.switch(mem, op.cpu, op.pid)
    if isinstance(op, ops.KernelRemap):
        return mem, Ok()  # the kernel page is not part of L0: its word reads the same from the new frame
    if isinstance(op, ops.Load | ops.Store | ops.Fetch):
        value = op.value if isinstance(op, ops.Store) else 0
        return l0.access(mem, op.cpu, op.va, ACCESS_KINDS[op.name], Mode(op.mode), value)
    if isinstance(op, ops.PinOp):
        return l0.pin(mem, op.pid, op.va)
    if isinstance(op, ops.ReadPin):
        return mem, l0.read_pin(mem, op.pin)
    if isinstance(op, ops.Unpin):
        return l0.unpin(mem, op.pin)
    return mem, None


def l0_thp_advice(mem: l0.Memory, op: ops.Madvise) -> tuple[l0.Memory, Outcome]:
    """``madvise(MADV_[NO]HUGEPAGE)`` in the programmer's view: nothing a program reads changes; EINVAL for a
    misaligned start, ENOMEM when some page of the range is not mapped."""
    if op.pid not in mem.procs:
        raise UnknownPid(f"pid {op.pid} is not a live process: allowed {sorted(mem.procs)}")
    if op.va % 4096:
        return mem, Errno("EINVAL")
    lo, pages = op.va >> 12, mem.procs[op.pid]
    mapped = sum(1 for vpn in range(lo, lo + op.pages) if vpn in pages)
    return mem, Ok() if mapped == op.pages else Errno("ENOMEM")


def refines(l1: Outcome, l0_outcome: Outcome) -> bool:
    """An L1 outcome is one L0 allows: signals match whatever their code, a pinned word is one L0 allows."""
    if isinstance(l1, Signal):
        return isinstance(l0_outcome, Signal) and l0_outcome.bus == l1.bus
    if isinstance(l0_outcome, OneOf):
        return isinstance(l1, Value) and l1.value in l0_outcome.values
    return l1 == l0_outcome


@dataclass(frozen=True)
class Candidate:
    """One way the programmer's view may stand: its memory, the changes in flight not yet applied (in the order
    they started), the outcomes of those applied but not yet returned, and the views a stale TLB entry may still
    show: the memory just before each change that took effect and has not returned, oldest first."""

    memory: l0.Memory
    pending: tuple[int, ...] = ()
    done: Mapping[int, Outcome | None] = field(default_factory=dict)
    stale: tuple[l0.Memory, ...] = ()

    def form(self) -> Hashable:
        """A hashable form, equal exactly for equal candidates (:func:`lang.records.frozen`)."""
        return frozen((self.memory, self.pending, self.done, self.stale))


class L0Side:
    """The programmer's view run beside L1; :meth:`check` steps it and says what L1 got wrong, if anything.

    A mapping change in flight (``"async": true``) takes effect in L0 at one
    point between its start and its return, the same for every CPU
    (linearizability): until it returns, an access may see the memory before
    it or after it.  L0 keeps every candidate state that agrees with what L1
    has shown so far; at the return only those where the change took effect
    remain.  Changes take effect in the order they started.

    Hardware is not linearizable here: after one CPU saw the new mapping,
    another may still use a stale TLB entry until its IPI is handled.  So
    once a change took effect in a candidate, an access may also be
    explained by the memory before it (``stale``), even when the new mapping
    would allow it too (a store through a stale entry succeeds either way,
    but lands in the old cell); a store that lands that way writes the old
    cell, which matters only if the page still has it.  With several changes
    in flight an entry may have been filled between two of them, so there is
    one such view per change that took effect (the memory just before it),
    until the changes return.  A view gives the mappings of its time; the
    words are the current memory's for every cell it still has (a TLB entry
    names a frame, whose contents are what they are now: SDM Vol. 3A 4.10.2,
    a TLB caches the translation, not the data), the view's own for a cell
    freed since.
    """

    def __init__(self, config: Config) -> None:
        self.candidates = [Candidate(l0.initial(config.cpus))]
        self.ops: dict[int, ops.KernelOp] = {}

    @property
    def memory(self) -> l0.Memory:
        """The first candidate (the only one while nothing is in flight)."""
        return self.candidates[0].memory

    def check(self, op: ops.KernelOp, l1: Outcome) -> str | None:
        """Step L0 with ``op`` and compare with L1's outcome; ENOMEM from an allocating op must change nothing."""
        if isinstance(op, ops.TlbEvict | ops.StatOp | ops.PagemapOp) or isinstance(l1, Stage):
            return None
        if isinstance(l1, Pending):
            self.ops[l1.flight] = op
            self.candidates = [replace(c, pending=(*c.pending, l1.flight)) for c in self.candidates]
            return None
        if isinstance(op, ops.Step):
            return self.returned(op.pending, l1)
        if l1 == Errno("ENOMEM") and isinstance(op, ALLOCATING):
            return None
        if isinstance(l1, OomKill):
            return self.killed(l1.pid)
        if isinstance(l1, MemcgOom):
            for pid in dict.fromkeys(kill.pid for kill in l1.kills):  # a memory.oom.group victim is reported twice
                problem = self.killed(pid)
                if problem:
                    return problem
            if isinstance(op, ops.MemcgOp):  # a write of memory.max that killed
                return None
            if l1.outcome is None or isinstance(l1.outcome, MemcgRetry) or l1.outcome == Errno("ENOMEM"):
                return None
            return self.check(op, l1.outcome)
        if isinstance(op, ops.MemcgOp) or isinstance(l1, MemcgRetry):
            return None
        kept = Kept()
        expected: Outcome | None = None
        for candidate in self.candidates:
            for applied in range(len(candidate.pending) + 1):
                for c in self.apply_pending(candidate, applied):
                    mem, expected = l0_step(c.memory, op)
                    if expected is None or refines(l1, expected):
                        kept.add(replace(c, memory=mem))
        if isinstance(op, ops.Load | ops.Store | ops.Fetch):
            for candidate in self.stale_access(op, l1):
                kept.add(candidate)
        if not kept.candidates:
            return f"L1 gave {l1!r}, the programmer's view allows {expected!r}"
        self.candidates = kept.candidates
        return None

    def killed(self, pid: int) -> str | None:
        """The OOM killer chose ``pid`` (which process is L1's to choose: L0 knows no sizes): it exits."""
        kept = Kept()
        for candidate in self.candidates:
            try:
                mem, _ = l0.exit_process(candidate.memory, pid)
            except MMCheckError:
                continue
            kept.add(replace(candidate, memory=mem))
        if not kept.candidates:
            return f"the OOM killer killed {pid}, which the programmer's view has no process for"
        self.candidates = kept.candidates
        return None

    def stale_access(self, op: ops.Load | ops.Store | ops.Fetch, l1: Outcome) -> list[Candidate]:
        """The candidates where ``op`` is explained by the memory before one of the changes that took effect."""
        kept = Kept()
        for c in self.candidates:
            for index, view in enumerate(c.stale):
                if c.memory.current[op.cpu] not in view.procs:
                    continue  # the process was created since: it has no mapping from before
                # The mappings before, the CPUs as they run now, the words of every cell the memory still has.
                cells = MappingProxyType({**view.cells, **c.memory.cells})
                stale = replace(view, current=c.memory.current, cells=cells, next_cell=c.memory.next_cell)
                try:
                    before, expected = l0_step(stale, op)
                except MMCheckError:
                    continue
                if not refines(l1, expected or Ok()):
                    continue
                memory, views = c.memory, c.stale
                if isinstance(op, ops.Store) and before != stale:
                    memory = stale_store(stale, memory, op)
                    views = (*views[:index], replace(before, current=view.current), *views[index + 1 :])
                kept.add(replace(c, memory=memory, stale=views))
        return kept.candidates

    def apply_pending(self, c: Candidate, count: int) -> list[Candidate]:
        """``c`` with its first ``count`` changes in flight applied, one candidate per way they may have gone.

        An allocating change (fork) may take effect as L0 says or fail with
        ENOMEM and change nothing: L0 knows no frames, and L1 decides at the
        start of the change (``copy_mm`` in kernel/fork.c fails in ``dup_mm``
        when the PML4 or, in ``dup_mmap``, a page table cannot be allocated,
        under the parent's mmap lock, and ``dup_mmap`` returns only after its
        ``flush_tlb_mm``), while a change started later may
        return first and make this one take effect in L0 before L1 says how
        it went.  A failed fork takes no pid (``copy_mm`` runs before
        ``alloc_pid`` in ``copy_process``).  A way in which a later change is
        refused (a change of the child of a fork that failed in that way) is
        not one L1 took, as L1 accepted that change: it is dropped (if no way
        is left in any candidate, the caller reports that L1 does not refine L0).

        Each change that takes effect leaves the memory just before it as a view a stale TLB entry may show
        (:attr:`Candidate.stale`); it shares its parts with that memory.
        """
        Way = tuple[l0.Memory, dict[int, Outcome | None], tuple[l0.Memory, ...]]
        ways: list[Way] = [(c.memory, dict(c.done), c.stale)]
        for number in c.pending[:count]:
            op = self.ops[number]
            following: list[Way] = []
            for mem, done, views in ways:
                try:
                    after, outcome = l0_step(mem, op)
                except MMCheckError:
                    continue
                following.append((after, {**done, number: outcome}, (*views, mem)))
                if isinstance(op, ALLOCATING):
                    following.append((mem, {**done, number: Errno("ENOMEM")}, views))
            ways = following
        return [Candidate(mem, c.pending[count:], done, views) for mem, done, views in ways]

    def returned(self, number: int, l1: Outcome) -> str | None:
        """Flight ``number`` returned ``l1``: keep the candidates where it took effect with that outcome."""
        op = self.ops[number]
        kept = Kept()
        expected: Outcome | None = None
        for candidate in self.candidates:
            if number in candidate.pending:
                index = candidate.pending.index(number)
                if l1 == Errno("ENOMEM") and isinstance(op, ALLOCATING):
                    pending = candidate.pending[:index] + candidate.pending[index + 1 :]
                    kept.add(replace(candidate, pending=pending))
                    continue
                ways = self.apply_pending(candidate, index + 1)
            else:
                ways = [candidate]
            for way in ways:
                expected = way.done.get(number)
                if expected is None or refines(l1, expected):
                    done = {n: o for n, o in way.done.items() if n != number}
                    kept.add(replace(way, done=done, stale=way.stale if done else ()))
        del self.ops[number]
        if not kept.candidates:
            return f"L1 returned {l1!r} for {op.name}, the programmer's view allows {expected!r}"
        self.candidates = kept.candidates
        return None


def stale_store(stale: l0.Memory, memory: l0.Memory, op: ops.Store) -> l0.Memory:
    """``memory`` with the word ``op`` stored through a stale translation, if its page still has the old cell."""
    pid = stale.current[op.cpu]
    old = stale.procs[pid].get(op.va >> 12)
    if old is None or old.cell not in memory.cells:
        return memory
    words = dict(memory.cells[old.cell])
    words[op.va % 4096] = op.value
    cells = dict(memory.cells)
    cells[old.cell] = MappingProxyType(words)
    return replace(memory, cells=MappingProxyType(cells))


class Kept:
    """Candidates in the order they came, each once.  A few are compared by equality (cheap: candidates share
    their unchanged parts, and equal parts that are one object compare at once); past :data:`FEW`, by their
    hashable forms, so many candidates cost linear time, not quadratic."""

    FEW = 8

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
        self.forms: set[Hashable] | None = None

    def add(self, candidate: Candidate) -> None:
        if self.forms is None:
            if candidate in self.candidates:
                return
            self.candidates.append(candidate)
            if len(self.candidates) > self.FEW:
                self.forms = {c.form() for c in self.candidates}
            return
        form = candidate.form()
        if form not in self.forms:
            self.forms.add(form)
            self.candidates.append(candidate)


def kernel_difference(expected: Kernel, actual: Kernel) -> tuple[str, str] | None:
    """The first part where two L1 states differ, as (spec's, implementation's); None when equal.

    The TLBs are left out: the implementation's must be a subset of what the
    spec allows (:func:`tlb_difference`), not equal to it.
    """
    expected, actual = replace(expected, tlbs=()), replace(actual, tlbs=())
    if expected == actual:
        return None
    names = ("buddy", "boot", "current", "objects", "pins", "zero_words", "kernel_words", "cpus", "flights")
    for name in names:
        mine, theirs = getattr(expected, name), getattr(actual, name)
        if mine != theirs:
            return f"{name}: {dict(mine) if hasattr(mine, 'items') else mine}", f"{name}: {theirs}"
    for name in (
        *("next_pid", "next_object", "next_pin", "next_flight", "events"),
        *("oom_score_adj", "oom_sysctls", "workingset", "slab", "thp", "memcg", "numa"),
    ):
        if getattr(expected, name) != getattr(actual, name):
            return f"{name}: {getattr(expected, name)}", f"{name}: {getattr(actual, name)}"
    if set(expected.procs) != set(actual.procs):
        return f"pids {sorted(expected.procs)}", f"pids {sorted(actual.procs)}"
    for pid, sp in expected.procs.items():
        other = actual.procs[pid]
        for name in ("vmas", "root", "tables", "leaves", "kernel", "tlb_gen", "cpumask"):
            if getattr(sp, name) != getattr(other, name):
                return _mapping_difference(f"pid {pid} {name}", getattr(sp, name), getattr(other, name))
    return _mapping_difference("pages", expected.pages, actual.pages)


def tlb_difference(spec: Kernel, impl: Kernel) -> tuple[str, str] | None:
    """The entries of the implementation's TLBs that the spec says their CPUs cannot hold; None if there are none."""
    for cpu, tlb in enumerate(impl.tlbs):
        extra = shootdown.disallowed_entries(spec, cpu, tlb.entries)
        if extra:
            allowed = sorted(spec.tlbs[cpu].entries, key=lambda e: (e.pcid, e.vpn))
            return (
                f"cpu {cpu} may hold its current translations and {allowed}",
                f"cpu {cpu} holds {extra}",
            )
    return None


def _mapping_difference(what: str, mine: object, theirs: object) -> tuple[str, str]:
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        keys = sorted(set(mine) ^ set(theirs) | {k for k in mine if k in theirs and mine[k] != theirs[k]}, key=repr)
        return (
            f"{what}: " + ", ".join(f"{k!r}: {mine.get(k)!r}" for k in keys),
            f"{what}: " + ", ".join(f"{k!r}: {theirs.get(k)!r}" for k in keys),
        )
    return f"{what}: {mine!r}", f"{what}: {theirs!r}"
