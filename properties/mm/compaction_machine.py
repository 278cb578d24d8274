"""The refinement machine of compaction: compact_memory among writes, unmaps, forks, pins and protection changes.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` on a small zone (128 frames, blocks up to
order 6) on two CPUs.  Programs write runs of pages of one mapping, unmap single pages and runs (so the free
frames scatter), fork and exit (pages shared by two mms), pin pages (get_user_pages: unmovable), make ranges
read-only, and compact memory, then read the pages back and look at their frames (pagemap) and smaps.

After every operation the lockstep runner has checked that the implementation (the reverse map's PTEs rewritten
for the new frame, the old frames freed from each mm's gather) and the L1 spec agree in results, state and
events, that the TLBs hold only what the spec allows, and that L1 refines L0 (a migration changes nothing a
program reads); the machine's invariant checks the L1 kernel invariants and the shootdown invariants.  A failure
is saved as ``counterexamples/compaction_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.compaction_ops import CompactMemory
from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Load, Mmap, Mprotect, Munmap, PagemapOp, PinOp, ReadPin, Spawn, Store, Switch
from lang.pressure_ops import SmapsOp
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.smp import shootdown

CONFIG = Config(frames=128, cpus=2, max_order=6)
BASE = 0x10000000
REGION_PAGES = 96
STARTS = (0, 1, 7, 30, 31, 60, 95)
RUNS = (1, 1, 2, 8, 32)
MAX_PROCS = 2
CHECK_NAME = "compaction: compact_memory, impl refines L1 refines L0 (migration, pins, fork, shootdown)"


class CompactionMachine(RuleBasedStateMachine):
    """Random writes, unmaps, forks, pins and compactions in lockstep on L0, L1 and the implementation."""

    name = "compaction_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.running = [0, 0]
        self.pins: list[int] = []

    def run(self, op: Op) -> Result | None:
        """Run ``op`` on every side; refused input (the same on both sides) is None."""
        try:
            return self.recorder.apply(op)
        except DivergenceError:
            raise
        except MMCheckError:
            return None

    def pid(self, i: int) -> int:
        return self.pids[i % len(self.pids)]

    @initialize()
    def compaction_start(self) -> None:
        """A process running on both CPUs with the region mapped and its first 32 pages written, every other one
        of them unmapped again."""
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        pid = result["pid"]
        self.pids.append(pid)
        self.running = [pid, pid]
        self.run(Switch(0, pid))
        self.run(Switch(1, pid))
        self.run(Mmap(pid, BASE, REGION_PAGES, "rw-", False))
        for page in range(32):
            self.run(Store(0, BASE + 0x1000 * page, page + 1))
        for page in reversed(range(1, 32, 2)):
            self.run(Munmap(pid, BASE + 0x1000 * page, 1))

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("fork", "exit", "switch", "switch")),
        i=st.integers(0, MAX_PROCS),
        cpu=st.integers(0, 1),
    )
    def process(self, kind: str, i: int, cpu: int) -> None:
        """Fork, exit, or run a process on a CPU."""
        pid = self.pid(i)
        if kind == "fork" and len(self.pids) < MAX_PROCS:
            result = self.run(Fork(pid))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "exit" and len(self.pids) > 1:
            self.run(Exit(pid))
            self.pids.remove(pid)
            self.running = [0 if r == pid else r for r in self.running]
        else:
            self.run(Switch(cpu, pid))
            self.running[cpu] = pid

    @precondition(lambda self: any(self.running))
    @rule(store=st.booleans(), cpu=st.integers(0, 1), start=st.sampled_from(STARTS), count=st.sampled_from(RUNS))
    def access(self, store: bool, cpu: int, start: int, count: int) -> None:
        """Stores (or loads) by a CPU's process to a run of pages."""
        if not self.running[cpu]:
            cpu = 1 - cpu
        for page in range(start, min(start + count, REGION_PAGES)):
            va = BASE + 0x1000 * page
            self.run(Store(cpu, va, page + 7) if store else Load(cpu, va))

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("munmap", "munmap", "mprotect", "mmap")),
        i=st.integers(0, MAX_PROCS),
        start=st.sampled_from(STARTS),
        count=st.sampled_from(RUNS),
    )
    def change(self, kind: str, i: int, start: int, count: int) -> None:
        """Unmap, make read-only or map again a run of pages."""
        pid, va = self.pid(i), BASE + 0x1000 * start
        op: Op
        if kind == "munmap":
            op = Munmap(pid, va, count)
        elif kind == "mprotect":
            op = Mprotect(pid, va, count, "r--")
        else:
            op = Mmap(pid, va, count, "rw-", False)
        self.run(op)

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), start=st.sampled_from(STARTS), read=st.booleans())
    def pin(self, i: int, start: int, read: bool) -> None:
        """Pin a page (get_user_pages), or read the last pin."""
        if read and self.pins:
            self.run(ReadPin(self.pins[-1]))
            return
        result = self.run(PinOp(self.pid(i), BASE + 0x1000 * start))
        if result and "pin" in result:
            self.pins.append(result["pin"])

    @rule()
    def compact(self) -> None:
        """echo 1 > /proc/sys/vm/compact_memory."""
        self.run(CompactMemory())

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), start=st.sampled_from(STARTS), smaps=st.booleans())
    def observe(self, i: int, start: int, smaps: bool) -> None:
        """pagemap of a page (its frame) or smaps_rollup (Private_Dirty and the rest)."""
        pid = self.pid(i)
        self.run(SmapsOp(pid) if smaps else PagemapOp(pid, BASE + 0x1000 * start))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


# Minimised by replay, not shrunk, as the other kernel machines with long starts; a third of the profile's programs
# keeps the ci run within its share of verify's time.
machinery.run_as(CompactionMachine, shrink_phase=False, examples_divisor=3)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The compaction refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(CompactionMachine))
