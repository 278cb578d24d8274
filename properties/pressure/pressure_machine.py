"""The refinement machine of memory pressure: files, file mappings, reclaim, swap, writeback, on a small memory.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` on a
memory of 24 frames with 3 swap slots: two processes (a parent and its
forked child) over a private anonymous region and a file of three pages
mapped shared and private, with stores and loads, ``read``/``write``
through the page cache, ``reclaim`` of a few pages, ``MADV_COLD`` and
``MADV_PAGEOUT``, ``fsync``, ``msync``, ``truncate``, ``swapoff`` and the
observations (meminfo, status, vmstat, pagemap).  Memory is small enough
that faults go below the watermark and reclaim directly.  After every
operation the lockstep runner has checked that the implementation (its
two-list LRU, its swap entries in real PTEs) and the L1 spec agree, that
every reclaim step it took is one the spec allows, that its TLBs hold
only what the spec allows (a reclaimed page's translation is gone), and
that L1 refines L0 (a program reads after swap-in what it stored; a file
reads what was written to it or stored through a shared mapping); the
machine's invariant checks the L1 invariants, memory pressure's included
(:mod:`spec.pressure.invariants`).  A failure is saved as
``counterexamples/pressure_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Load, Madvise, Mmap, PagemapOp, Spawn, Store, Switch
from lang.pressure_ops import (
    FileCreate,
    FileRead,
    FileWrite,
    Fsync,
    MeminfoOp,
    MmapFile,
    Msync,
    Reclaim,
    StatusOp,
    Swapoff,
    Truncate,
    VmstatOp,
)
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants

CONFIG = Config(frames=24, cpus=1, max_order=2, swap=3)
ANON = 0x10000000
SHARED = 0x40000000
PRIVATE = 0x40004000
FILE_PAGES = 3
PAGES = (ANON, ANON + 0x1000, ANON + 0x2000, SHARED, SHARED + 0x1000, PRIVATE, PRIVATE + 0x1000)
VALUES = (1, 2, 0xBEEF)
CHECK_NAME = "pressure: page cache, file mappings, LRU reclaim, swap, writeback; impl refines L1 refines L0"


class PressureMachine(RuleBasedStateMachine):
    """Random accesses, file operations, reclaim and swap in lockstep on L0, L1 and the implementation."""

    name = "pressure_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.running = 0

    def run(self, op: Op) -> Result | None:
        """Run ``op`` on every side; refused input (the same on both sides) is None."""
        try:
            return self.recorder.apply(op)
        except DivergenceError:
            raise
        except MMCheckError:
            return None

    @initialize()
    def start(self) -> None:
        """A running process with an anonymous region, a three-page file mapped shared and private, a store each."""
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        self.pids.append(result["pid"])
        self.running = result["pid"]
        self.run(Switch(0, self.running))
        self.run(Mmap(self.running, ANON, 3, "rw-", False))
        self.run(FileCreate("f", FILE_PAGES, ((8, 5),)))
        self.run(MmapFile(self.running, SHARED, 2, "rw-", "f", True, 0))
        self.run(MmapFile(self.running, PRIVATE, 2, "rw-", "f", False, 1))
        self.run(Store(0, ANON, VALUES[0]))

    @rule(
        kind=st.sampled_from(("store", "store", "load")),
        i=st.integers(0, len(PAGES) - 1),
        value=st.sampled_from(VALUES),
    )
    def access(self, kind: str, i: int, value: int) -> None:
        va = PAGES[i] + 8 * (i % 2)
        self.run(Store(0, va, value) if kind == "store" else Load(0, va))

    @rule(
        kind=st.sampled_from(("read", "write", "write", "fsync", "msync", "truncate")),
        page=st.integers(0, FILE_PAGES),
        value=st.sampled_from(VALUES),
    )
    def file(self, kind: str, page: int, value: int) -> None:
        offset = page * 4096 + 8
        if kind == "read":
            self.run(FileRead("f", offset))
        elif kind == "write":
            self.run(FileWrite("f", offset, value))
        elif kind == "fsync":
            self.run(Fsync("f"))
        elif kind == "msync":
            self.run(Msync(self.running, SHARED, 2))
        else:
            self.run(Truncate("f", page))

    @rule(
        kind=st.sampled_from(("reclaim", "reclaim", "cold", "pageout", "swapoff")),
        pages=st.integers(1, 4),
        i=st.integers(0, 2),
    )
    def pressure(self, kind: str, pages: int, i: int) -> None:
        if kind == "reclaim":
            self.run(Reclaim(pages))
        elif kind == "swapoff":
            self.run(Swapoff())
        else:
            self.run(Madvise(self.running, (ANON, SHARED, PRIVATE)[i], 2, kind))

    @precondition(lambda self: bool(self.pids))
    @rule(kind=st.sampled_from(("fork", "fork", "switch", "exit")))
    def process(self, kind: str) -> None:
        if kind == "fork" and len(self.pids) < 2:
            result = self.run(Fork(self.running))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "exit" and len(self.pids) > 1:
            gone = self.pids.pop()
            self.run(Exit(gone))
            if self.running == gone:
                self.running = self.pids[0]
                self.run(Switch(0, self.running))
        else:
            self.running = self.pids[(self.pids.index(self.running) + 1) % len(self.pids)]
            self.run(Switch(0, self.running))

    @rule(i=st.integers(0, len(PAGES) - 1))
    def observe(self, i: int) -> None:
        self.run(MeminfoOp())
        self.run(StatusOp(self.running))
        self.run(VmstatOp())
        self.run(PagemapOp(self.running, PAGES[i]))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


machinery.run_as(PressureMachine, shrink_phase=False)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The memory-pressure refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(PressureMachine))
