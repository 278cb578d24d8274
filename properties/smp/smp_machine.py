"""The SMP refinement machine: three CPUs, TLBs, lazy TLB, and mapping changes interleaved step by step.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` over a
small memory and three CPUs.  Every program starts with one process running on
CPUs 0 and 1, two private writable pages mapped and the first one written
through CPU 0 (so both CPUs may cache it).  The rules:

- *start* a mapping change in the background (``"async": true``): munmap,
  mprotect, madvise(DONTNEED), fork, or an mmap over the pages;
- *step* a change in flight: the next target CPU handles its IPI, or the
  gathered frames are freed and the syscall returns;
- *access* (load or store) from any CPU running a process, mostly to the pages;
- *switch* a CPU to a process or to a kernel thread (lazy TLB), or *evict* a
  TLB entry (hardware may drop any at any time);
- fork, exit or spawn a process at once;
- *kernel_remap*: move the kernel half's page to a new frame and flush it on
  every CPU (``flush_tlb_kernel_range``) before the old frame is freed, and
  *kernel_load*: a supervisor-mode load of the kernel page from a CPU running
  a process, so a global TLB entry to the old frame is filled and observable.

After every operation the lockstep runner has checked that the implementation
and the spec agree (results, ``cpu_tlbstate``, ``mm_cpumask``, ``tlb_gen``,
flights, events), that every entry in an implementation TLB is one the spec
says that CPU may hold, that every TLB hit used such an entry, and that L1
refines L0 with the changes in flight linearized somewhere between start and
return.  The machine's invariant checks the kernel invariants of the state
the gathers will leave and the shootdown invariants (:mod:`spec.smp.shootdown`).
A failure is saved as ``counterexamples/smp_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.kernel_ops import (
    Exit,
    Fork,
    KernelRemap,
    KernelThread,
    Load,
    Madvise,
    Mmap,
    Mprotect,
    Munmap,
    Spawn,
    Step,
    Store,
    Switch,
    TlbEvict,
)
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.memo import LastState
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.mm.vma import KERNEL_VA
from spec.smp import shootdown

# The L1 invariants, checked in full for every state; a state whose parts are all the ones just checked
# reuses that result (properties.memo).
violations = LastState(kernel_invariants.violations)
CONFIG = Config(frames=24, cpus=3, max_order=2, tlb_entries=4)
BASE = 0x10000000
PAGES = 2
VALUES = (1, 2, 3)
MAX_PROCS = 2
CHECK_NAME = "smp: TLBs within what the spec allows, shootdown invariants, L0 with changes in flight (3 CPUs)"


class SmpMachine(RuleBasedStateMachine):
    """Mapping changes in flight, accesses from every CPU, switches and evictions, in lockstep."""

    name = "smp_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.flights: list[int] = []
        self.running = [0] * CONFIG.cpus

    def run(self, op: Op) -> Result | None:
        """Run ``op`` on every side; refused input (the same on both sides) is None."""
        return self.recorder.try_apply(op)

    def pid(self, i: int) -> int:
        return self.pids[i % len(self.pids)]

    @initialize()
    def first_process(self) -> None:
        """pid 1 on CPUs 0 and 1, two private writable pages, the first written by CPU 0."""
        result = self.run(Spawn())
        assert result is not None
        self.pids.append(result["pid"])
        for cpu in (0, 1):
            self.run(Switch(cpu, self.pids[0]))
            self.running[cpu] = self.pids[0]
        self.run(Mmap(self.pids[0], BASE, PAGES, "rw-"))
        self.run(Store(0, BASE, VALUES[0]))

    @precondition(lambda self: bool(self.pids) and len(self.flights) < 2)
    @rule(
        kind=st.sampled_from(("munmap", "mprotect", "mprotect", "dontneed", "fork", "mmap")),
        i=st.integers(0, MAX_PROCS),
        page=st.integers(0, PAGES - 1),
        pages=st.integers(1, PAGES),
    )
    def start(self, kind: str, i: int, page: int, pages: int) -> None:
        """A mapping change started in the background."""
        pid, va = self.pid(i), BASE + page * 4096
        op: Op
        if kind == "munmap":
            op = Munmap(pid, va, pages, background=True)
        elif kind == "mprotect":
            op = Mprotect(pid, va, pages, "r--", background=True)
        elif kind == "dontneed":
            op = Madvise(pid, va, pages, "dontneed", background=True)
        elif kind == "fork":
            op = Fork(pid, background=True)
        else:
            op = Mmap(pid, va, pages, "rw-", background=True)
        result = self.run(op)
        if result and "pending" in result:
            self.flights.append(result["pending"])

    @precondition(lambda self: bool(self.flights))
    @rule(j=st.integers(0, 1))
    def step(self, j: int) -> None:
        """One more step of a change in flight."""
        number = self.flights[j % len(self.flights)]
        result = self.run(Step(number))
        if result is not None and "stage" not in result:
            self.flights.remove(number)
            if "pid" in result:
                self.pids.append(result["pid"])

    @precondition(lambda self: any(self.running))
    @rule(
        cpu=st.integers(0, CONFIG.cpus - 1),
        kind=st.sampled_from(("store", "load", "load")),
        page=st.integers(0, PAGES - 1),
        value=st.sampled_from(VALUES),
    )
    def access(self, cpu: int, kind: str, page: int, value: int) -> None:
        """A load or store from a CPU that runs a process."""
        runners = [c for c in range(CONFIG.cpus) if self.running[c]]
        cpu = cpu if self.running[cpu] else runners[cpu % len(runners)]
        va = BASE + page * 4096
        self.run(Store(cpu, va, value) if kind == "store" else Load(cpu, va))

    @rule(cpu=st.integers(0, CONFIG.cpus - 1), i=st.integers(0, MAX_PROCS), kind=st.sampled_from(("pid", "lazy")))
    def switch(self, cpu: int, i: int, kind: str) -> None:
        """A CPU runs a process, or a kernel thread on the mm it has loaded."""
        if kind == "lazy" or not self.pids:
            self.run(KernelThread(cpu))
            self.running[cpu] = 0
        else:
            self.run(Switch(cpu, self.pid(i)))
            self.running[cpu] = self.pid(i)

    @rule(cpu=st.integers(0, CONFIG.cpus - 1))
    def evict(self, cpu: int) -> None:
        self.run(TlbEvict(cpu))

    @precondition(lambda self: bool(self.pids) and not self.flights)
    @rule(kind=st.sampled_from(("fork", "exit", "spawn")), i=st.integers(0, MAX_PROCS))
    def process(self, kind: str, i: int) -> None:
        """Fork, exit or spawn at once (with nothing in flight, so no change is pending on a dead mm)."""
        if kind == "fork" and len(self.pids) < MAX_PROCS:
            result = self.run(Fork(self.pid(i)))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "exit" and len(self.pids) > 1:
            pid = self.pid(i)
            self.run(Exit(pid))
            self.pids.remove(pid)
            self.running = [0 if r == pid else r for r in self.running]
        elif kind == "spawn" and len(self.pids) < MAX_PROCS:
            result = self.run(Spawn())
            if result and "pid" in result:
                self.pids.append(result["pid"])

    @rule()
    def kernel_remap(self) -> None:
        """The kernel page moves to a new frame; every CPU flushes it before the old frame is freed."""
        self.run(KernelRemap())

    @precondition(lambda self: any(self.running))
    @rule(cpu=st.integers(0, CONFIG.cpus - 1), offset=st.sampled_from((0, 8)))
    def kernel_load(self, cpu: int, offset: int) -> None:
        """A supervisor-mode load of the kernel page (global, read-only) from a CPU that runs a process."""
        runners = [c for c in range(CONFIG.cpus) if self.running[c]]
        cpu = cpu if self.running[cpu] else runners[cpu % len(runners)]
        self.run(Load(cpu, KERNEL_VA + offset, "supervisor"))

    @invariant()
    def invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The SMP refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(SmpMachine))
