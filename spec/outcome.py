"""What a process-level operation returns, as values shared by both views of memory.

A SIGSEGV, ENOMEM or EINVAL is an outcome, not an exception.  The kernel
view (L1) knows the page-fault error code of a SIGSEGV; the programmer's view
(L0) knows only that the signal happens, so its :class:`Signal` has no code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ok:
    """The operation succeeded and returns nothing."""


@dataclass(frozen=True, slots=True)
class Value:
    """A load, fetch or pinned read returned this 64-bit word."""

    value: int


@dataclass(frozen=True, slots=True)
class OneOf:
    """The programmer's view allows any of these words (a pin of a private page, see :mod:`spec.memory`)."""

    values: frozenset[int]


@dataclass(frozen=True, slots=True)
class Signal:
    """The access raised SIGSEGV (``bus``: SIGBUS, a file page past the end of its file); ``error_code`` is the #PF
    error code (SDM Vol. 3A 4.7), None in L0 and for SIGBUS."""

    error_code: int | None = None
    bus: bool = False


@dataclass(frozen=True, slots=True)
class Errno:
    """The syscall failed with this errno name (``"EINVAL"``, ``"ENOMEM"``, ``"EPERM"``, ``"EFAULT"``)."""

    name: str


@dataclass(frozen=True, slots=True)
class NewPid:
    """``spawn`` or ``fork`` created process ``pid``."""

    pid: int


@dataclass(frozen=True, slots=True)
class NewPin:
    """``pin`` took pin number ``pin``."""

    pin: int


@dataclass(frozen=True, slots=True)
class Stat:
    """``/proc/PID/smaps_rollup`` totals in kB: Rss, Pss, USS (Private_Clean + Private_Dirty), Anonymous."""

    rss_kb: int
    pss_kb: int
    uss_kb: int
    anon_kb: int


@dataclass(frozen=True, slots=True)
class Smaps:
    """``/proc/PID/smaps_rollup`` fields in kB (fs/proc/task_mmu.c ``__show_smap``): Rss, Pss and its dirty,
    anonymous, file and shmem parts, Shared_Clean, Shared_Dirty, Private_Clean, Private_Dirty, Anonymous, Swap,
    SwapPss; and once transparent huge pages are on, AnonHugePages (``anon_huge_pages``, None before)."""

    rss: int
    pss: int
    pss_dirty: int
    pss_anon: int
    pss_file: int
    pss_shmem: int
    shared_clean: int
    shared_dirty: int
    private_clean: int
    private_dirty: int
    anonymous: int
    swap: int
    swap_pss: int
    anon_huge_pages: int | None = None


@dataclass(frozen=True, slots=True)
class Pagemap:
    """One ``/proc/PID/pagemap`` entry: present (bit 63), the pfn (bits 0-54; of a swap entry: its offset),
    exclusive (bit 56), swapped (bit 62)."""

    present: bool
    pfn: int
    exclusive: bool
    swapped: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    """A mapping change started in the background is in flight as number ``flight`` (see :mod:`spec.smp.shootdown`)."""

    flight: int


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a mapping change in flight: CPU ``cpu`` handled its shootdown IPI."""

    cpu: int


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """``reclaim`` freed this many pages."""

    pages: int


@dataclass(frozen=True, slots=True)
class Meminfo:
    """``/proc/meminfo`` fields, in kB; AnonHugePages (``anon_huge_pages``) once transparent huge pages are on."""

    mem_total: int
    mem_free: int
    mem_available: int
    cached: int
    swap_cached: int
    dirty: int
    anon_pages: int
    mapped: int
    swap_total: int
    swap_free: int
    page_tables: int
    slab: int
    s_reclaimable: int
    s_unreclaim: int
    anon_huge_pages: int | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """``/proc/PID/status`` memory fields in kB (VmRSS = RssAnon + RssFile + RssShmem, VmSwap) and the fault counts
    of ``/proc/PID/stat`` (minflt, majflt)."""

    vm_rss: int
    rss_anon: int
    rss_file: int
    rss_shmem: int
    vm_swap: int
    minflt: int
    majflt: int


@dataclass(frozen=True, slots=True)
class Vmstat:
    """``/proc/vmstat`` fault counters, and with workingset detection on its file refault counters
    (``workingset_refault_file``, ``workingset_activate_file``; None when off), and once transparent huge pages
    are on ``thp_fault_alloc``, ``thp_fault_fallback``, ``thp_split_pmd`` (``thp``; None before)."""

    pgfault: int
    pgmajfault: int
    workingset_refault_file: int | None = None
    workingset_activate_file: int | None = None
    thp: tuple[int, int, int] | None = None


ENOMEM = Errno("ENOMEM")
EFAULT = Errno("EFAULT")


@dataclass(frozen=True, slots=True)
class OomScore:
    """``/proc/PID/oom_score`` (0..2000) and ``/proc/PID/oom_score_adj`` of one process."""

    oom_score: int
    oom_score_adj: int


@dataclass(frozen=True, slots=True)
class OomKill:
    """The OOM killer killed process ``pid``: the fields of its ``Out of memory: Killed process`` line (kB) and
    its badness ``points``; ``message`` is the kill's reason (``oom_kill_process``'s message)."""

    pid: int
    points: int
    total_vm: int
    anon_rss: int
    file_rss: int
    shmem_rss: int
    pgtables: int
    oom_score_adj: int
    message: str


@dataclass(frozen=True, slots=True)
class OomPanic:
    """The OOM path ended in ``panic()``: ``report`` is what was printed before it (empty for none), ``reason``
    the panic's message."""

    report: str
    reason: str


@dataclass(frozen=True, slots=True)
class MemcgStat:
    """A memory cgroup's files (v1 names), in bytes where the file is: ``values`` as (file name, value) pairs."""

    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class MemcgRetry:
    """A page fault whose charge a memory cgroup refused with nothing left to kill: the fault is retried for ever
    (mm/oom_kill.c ``pagefault_out_of_memory`` returns and the access faults again); ``report`` is the line
    ``out_of_memory`` printed, ``group`` the group at its limit."""

    group: str
    report: str


@dataclass(frozen=True, slots=True)
class MemcgOom:
    """An operation whose charge took the memory cgroup ``group`` past its limit: the kills of the group's OOM
    killer, then the operation's own ``outcome`` (if nothing was left to kill, a :class:`MemcgRetry` for a
    fault and ENOMEM for a syscall; None when the operation's own process was killed)."""

    group: str
    kills: tuple[OomKill, ...]
    outcome: Outcome | None


Outcome = (
    Ok
    | Value
    | OneOf
    | Signal
    | Errno
    | NewPid
    | NewPin
    | Stat
    | Smaps
    | Pagemap
    | Pending
    | Stage
    | Reclaimed
    | Meminfo
    | Status
    | Vmstat
    | OomScore
    | OomKill
    | OomPanic
    | MemcgStat
    | MemcgRetry
    | MemcgOom
)
