"""The live Linux kernel as an oracle for COW, the zero page and accounting.

Each model process of a kernel-level scenario is a real process: ``spawn``
forks a fresh worker from the driver (this process), ``fork`` makes the
worker itself call ``fork()``, ``exit`` makes it exit.  Workers obey
commands sent over a ``SOCK_SEQPACKET`` socket pair; a forked worker gets its
own socket, passed to it with ``SCM_RIGHTS`` before the fork.  Memory is
mapped with ``mmap`` at the scenario's fixed addresses (anonymous, private or
shared), with transparent huge pages turned off for each mapping
(``MADV_NOHUGEPAGE``, mm/khugepaged.c ``hugepage_madvise``) so every fault
maps one base page, as the model does; a ``huge`` mapping is ``MAP_HUGETLB``
(2 MiB pages from the kernel's hugetlb pool), observed 4 KiB page by page.  ``munmap``, ``mprotect`` and
``madvise(MADV_DONTNEED)`` are the real system calls, through ctypes.

Loads and stores are made for real, 8 bytes at the address, in the model
process itself.  A faulting access cannot be made from Python, and it cannot
be made in a helper process either: a fork would change the very COW state
under test.  So a tiny C helper (``oracles/linux/access.c``, compiled with
gcc into a cache folder on first use and loaded with ctypes) makes the access
between ``sigsetjmp`` and a SIGSEGV/SIGBUS handler that ``siglongjmp``s back
with the signal and the hardware error code the kernel passes in the signal
frame (``uc_mcontext.gregs[REG_ERR]``; arch/x86/mm/fault.c
``set_signal_archinfo``).  Checking the protection in advance (from
``/proc/self/maps`` or the model's VMAs) would not be an oracle.

After every step the driver reads, for every live process, ``/proc/PID/smaps``
(summing Rss, Pss, Private_Clean + Private_Dirty and Anonymous over the VMAs
inside the scenario window) and ``/proc/PID/pagemap`` for every page any
``mmap`` of the scenario touched (present bit 63, exclusively mapped bit 56,
PFN bits 0-54, readable as root: fs/proc/task_mmu.c ``pagemap_read``).  The
model (the spec and the implementation, each on its own) answers the same
questions with ``stat`` and ``pagemap`` operations after every step, and
:func:`compare` checks, step by step: the op's result (load values, signals
with their error codes, errors), which pages are present, which map the zero
page (the kernel's zero PFN is found by reading a never-written private page),
the partition of present (process, page) pairs into groups that share one
frame (partitions are compared, never PFN values), the exclusive bit, and
Rss, Pss, USS and Anonymous in kB.

Pss: the kernel prints each VMA's Pss rounded down to a kB
(fs/proc/task_mmu.c ``__show_smap``), the model rounds the process total.
They can differ only when a VMA holds a page mapped by a number of PTEs that
does not divide 4 (a kB is a quarter page), by less than one kB per such VMA:
:func:`pss_agrees` allows exactly that and no more.

A pin is a read-only ``get_user_pages`` reference, as ``vmsplice`` takes one
(fs/splice.c ``vmsplice_to_pipe`` → ``iov_iter_get_pages2``, no FOLL_WRITE):
the worker vmsplices the word into a new pipe and hands the pipe to the
driver, so the pin outlives the process; ``read_pin`` ``tee``s the pipe into
another and reads that (the pin stays), ``unpin`` closes it.

``switch`` has no live counterpart (each model process runs when it is sent a
command; one CPU is enough).  What the oracle refuses
(:class:`OracleUnsupported`) rather than answer wrongly: supervisor-mode
accesses, ``fetch`` (it would execute the page's bytes), huge mappings when the kernel's hugetlb pool is
empty (``HugePages_Total`` in /proc/meminfo; fill it with ``echo 8 > /proc/sys/vm/nr_hugepages``), changes
in flight (``"async": true`` and ``step``: the live kernel runs each syscall at once), operations outside the kernel
layer,
ranges in user space outside the scenario window (they could hit the worker's
own memory), and scenarios in which the model runs out of frames (the live
kernel has far more memory than a scenario's config).

Workers are killed, by pid, when the run ends, whatever happened; every reply
is awaited with a timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lang import ops
from lang.errors import (
    OracleUnavailable,
    OracleUnsupported,
)
from lang.pressure_ops import PressureOp
from lang.scenario import Op, Result, Scenario
from oracles.linux.host import ALLOCATING, PAGE, PAGE_SHIFT, TASK_SIZE, WINDOW, unavailable
from oracles.linux.live import LinuxRun, ModelRun, Snapshot

# --- checking a scenario before it runs -----------------------------------------------------------


def hugetlb_pool() -> int:
    """``HugePages_Total`` of /proc/meminfo: the 2 MiB pages the kernel keeps for MAP_HUGETLB (0 if unknown)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("HugePages_Total:"):
                return int(line.split()[1])
    return 0


FAULT_AROUND_DEBUGFS = Path("/sys/kernel/debug/fault_around_bytes")


def kernel_fault_around_bytes() -> int:
    """The kernel's ``fault_around_bytes`` (debugfs); Linux's default 65536 (mm/memory.c ``fault_around_pages``)
    when debugfs is not mounted, as only debugfs changes it."""
    with contextlib.suppress(OSError, ValueError):
        return int(FAULT_AROUND_DEBUGFS.read_text())
    return 65536


def touched_pages(program: Sequence[Op]) -> list[int]:
    """Every page an ``mmap`` of the scenario maps: the pages observed after each step."""
    pages: set[int] = set()
    for op in program:
        if isinstance(op, ops.Mmap) and op.va % PAGE == 0 and 0 < op.pages <= 4096:
            pages.update(range(op.va >> PAGE_SHIFT, (op.va >> PAGE_SHIFT) + op.pages))
    return sorted(p for p in pages if (p << PAGE_SHIFT) < TASK_SIZE)


def outside_window(va: int, length: int) -> bool:
    """The byte range reaches user space outside the window (where the worker's own memory lives)."""
    lo, hi = max(va, 0), min(va + length, TASK_SIZE)
    return lo < hi and (lo < WINDOW[0] or hi > WINDOW[1])


def range_outside_window(va: int, pages: int) -> bool:
    """A syscall range the kernel would act on (aligned, not empty) that reaches outside the window."""
    return va % PAGE == 0 and pages > 0 and outside_window(va, pages * PAGE)


def check_supported(scenario: Scenario) -> None:
    """Raise :class:`OracleUnsupported` for the first op the live kernel cannot run faithfully or safely, or for a
    config whose ``fault_around_bytes`` is not the kernel's."""
    around = kernel_fault_around_bytes()
    if scenario.config.fault_around_bytes != around:
        raise OracleUnsupported(
            f"config.fault_around_bytes: {scenario.config.fault_around_bytes}, but the kernel's is {around} "
            f"(/sys/kernel/debug/fault_around_bytes); the oracle does not change it"
        )
    for index, op in enumerate(scenario.ops):
        where = f"ops[{index}] ({op.name})"
        if not isinstance(op, ops.KernelOp):
            raise OracleUnsupported(f"{where}: the Linux oracle runs kernel-layer operations only")
        if isinstance(op, PressureOp):
            raise OracleUnsupported(f"{where}: a memory-pressure operation: run it with mmcheck oracle pressure")
        if isinstance(op, ops.Fetch):
            raise OracleUnsupported(f"{where}: a fetch would execute the page's bytes; not run on the live kernel")
        if isinstance(op, ops.Step) or getattr(op, "background", False):
            raise OracleUnsupported(f"{where}: the live kernel runs each syscall at once; a change in flight has none")
        if isinstance(op, ops.PinOp) and outside_window(op.va, 8):
            raise OracleUnsupported(f"{where}: {op.va:#x} is in user space outside the scenario window")
        if isinstance(op, ops.Load | ops.Store) and op.mode != "user":
            raise OracleUnsupported(f"{where}: a user process cannot make a supervisor-mode access")
        if isinstance(op, ops.Load | ops.Store) and outside_window(op.va, 8):
            raise OracleUnsupported(f"{where}: {op.va:#x} is in user space outside the scenario window")
        if isinstance(op, ops.Mmap) and op.huge and not hugetlb_pool():
            raise OracleUnsupported(
                f"{where}: the kernel's hugetlb pool is empty (HugePages_Total 0): echo 8 > /proc/sys/vm/nr_hugepages"
            )
        if isinstance(op, ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise) and range_outside_window(op.va, op.pages):
            lo, hi = WINDOW
            raise OracleUnsupported(f"{where}: the range must lie in the scenario window {lo:#x}..{hi:#x}")


# --- running and comparing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SideBySide:
    """One op on every side: results and snapshots by side name (``linux``, ``spec``, ``impl``)."""

    index: int
    op: Op
    results: Mapping[str, Result]
    snapshots: Mapping[str, Snapshot]


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One step where a model and the kernel differ, and in what."""

    index: int
    op: Op
    model: str
    what: tuple[str, ...]
    step: SideBySide

    def describe(self) -> str:
        """A paragraph: the op, what differs, both sides' results and observations."""
        lines = [f"op {self.index} {self.op.to_json()}: {self.model} and linux differ in {', '.join(self.what)}"]
        for side in ("linux", self.model):
            lines.append(f"  {side:5} -> {self.step.results[side]}")
            lines.extend(f"          {line}" for line in self.step.snapshots[side].render())
        return "\n".join(lines)


@dataclass
class OracleRun:
    """All steps run, and the first disagreement of each model with the kernel."""

    steps: list[SideBySide] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.disagreements

    def observations(self, side: str) -> list[dict[str, Any]]:
        """One side's results and snapshots, JSON-ready, to store with a saved scenario."""
        return [{"result": s.results[side], "observed": s.snapshots[side].render()} for s in self.steps]


MODELS = ("spec", "impl")


def run(scenario: Scenario, models: Sequence[str] = MODELS) -> OracleRun:
    """Run ``scenario`` on the live kernel and on each model, step by step, and compare after every step.

    Raises :class:`ReplayInputError` for an op a model refuses as bad input,
    :class:`OracleUnsupported` for a scenario the oracle cannot run, and
    :class:`OracleUnavailable` when not root / not Linux.
    """
    reason = unavailable()
    if reason:
        raise OracleUnavailable(reason)
    check_supported(scenario)
    pages = touched_pages(scenario.ops)
    sides: dict[str, ModelRun] = {m: ModelRun(scenario.config, m, pages) for m in models}
    model_steps = {
        m: [(side.apply(i, op), side.snapshot()) for i, op in enumerate(scenario.ops)] for m, side in sides.items()
    }
    check_frames(scenario, model_steps)
    verdict = OracleRun()
    with LinuxRun(scenario.config, pages) as linux:
        for index, op in enumerate(scenario.ops):
            result = linux.apply(op)
            results = {"linux": result, **{m: model_steps[m][index][0] for m in models}}
            snapshots = {"linux": linux.snapshot(), **{m: model_steps[m][index][1] for m in models}}
            step = SideBySide(index, op, results, snapshots)
            verdict.steps.append(step)
            for model in models:
                if any(d.model == model for d in verdict.disagreements):
                    continue
                what = differences(op, results[model], result, snapshots[model], snapshots["linux"])
                if what:
                    verdict.disagreements.append(Disagreement(index, op, model, what, step))
    return verdict


def check_frames(scenario: Scenario, model_steps: Mapping[str, list[tuple[Result, Snapshot]]]) -> None:
    """Refuse a scenario whose model ran out of frames: the live kernel would not."""
    for steps in model_steps.values():
        for index, (op, (result, _)) in enumerate(zip(scenario.ops, steps, strict=True)):
            if isinstance(op, ALLOCATING) and result == {"error": "ENOMEM"}:
                raise OracleUnsupported(
                    f"ops[{index}] ({op.name}): the model ran out of its {scenario.config.frames} frames; "
                    "the live kernel would not: give the config more frames"
                )


def pss_agrees(model_kb: int, kernel_kb: int, fractional: int) -> bool:
    """Model Pss (total rounded down) against the sum of the kernel's per-VMA figures (each rounded down).

    Each VMA with a fractional kB loses less than one kB, so the kernel's sum
    is at most the model's and at most ``fractional - 1`` kB below it.
    """
    return 0 <= model_kb - kernel_kb <= max(0, fractional - 1)


def stats_agree(model: Mapping[str, int], kernel: Mapping[str, int], fractional: int) -> bool:
    """Rss, USS and Anonymous equal; Pss as :func:`pss_agrees` allows."""
    same = all(model[k] == kernel[k] for k in ("rss_kb", "uss_kb", "anon_kb"))
    return same and pss_agrees(model["pss_kb"], kernel["pss_kb"], fractional)


def result_agrees(op: Op, model: Result, kernel: Result, fractional: Mapping[int, int], zeros: tuple[int, int]) -> bool:
    """The op's own result: exact, but for Pss rounding, and for pagemap PFNs (only zero-page-ness compared)."""
    if isinstance(op, ops.StatOp) and "rss_kb" in model and "rss_kb" in kernel:
        return stats_agree(model, kernel, fractional.get(op.pid, 0))
    if isinstance(op, ops.PagemapOp):
        keys = ("present", "exclusive")
        on_zero = (model["present"] and model["pfn"] == zeros[0], kernel["present"] and kernel["pfn"] == zeros[1])
        return all(model[k] == kernel[k] for k in keys) and on_zero[0] == on_zero[1]
    return model == kernel


def differences(op: Op, model: Result, kernel: Result, ms: Snapshot, ks: Snapshot) -> tuple[str, ...]:
    """What differs after one step, by name; empty when the two agree."""
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("result", lambda: result_agrees(op, model, kernel, ks.fractional_vmas, (ms.zero_pfn, ks.zero_pfn))),
        ("live processes", lambda: set(ms.stats) == set(ks.stats)),
        ("present pages", lambda: ms.present() == ks.present()),
        ("zero-page mappings", lambda: ms.zero() == ks.zero()),
        ("exclusive bits", lambda: ms.exclusive() == ks.exclusive()),
        ("frame sharing", lambda: ms.sharing() == ks.sharing()),
        (
            "rss/pss/uss/anon",
            lambda: all(
                stats_agree(ms.stats[p], ks.stats[p], ks.fractional_vmas.get(p, 0)) for p in ms.stats if p in ks.stats
            ),
        ),
    ]
    return tuple(name for name, check in checks if not check())


# --- divergences already reported -----------------------------------------------------------------

# Each reported divergence: its name (the stem of its scenario under tests/scenarios/linux-divergences/),
# why Linux differs, and a narrow recogniser of its instances.  None is open: the last one
# (fork copying the zero-page entries of a merged VMA) is modelled now (spec.mm.vma.merge_at) and its
# scenario became the regression scenario tests/scenarios/linux-vma-merge-fork.json.
KNOWN_DIVERGENCES: dict[str, str] = {}
RECOGNISERS: dict[str, Callable[[Disagreement], bool]] = {}


def known_divergence(d: Disagreement) -> str | None:
    """The name of the reported divergence ``d`` is an instance of, if any (see :data:`KNOWN_DIVERGENCES`)."""
    return next((name for name, recognise in RECOGNISERS.items() if recognise(d)), None)
