"""The refinement machine of collapse: khugepaged's scan and MADV_COLLAPSE among faults, forks, pins and splits.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` over the THP machine's region (two 2 MiB
ranges at a 1 GiB boundary and a few pages after them) on two CPUs.  Programs write small pages (the THP
policy starts at ``madvise`` with the region not advised, so faults map 4 KiB pages), fork and write again (COW
copies beside pages still shared), pin pages, change the policy, the advice and khugepaged's limits
(``max_ptes_none``, ``max_ptes_shared`` at 0, a few or their defaults), and collapse: a khugepaged scan of a
process (limits kept) or ``MADV_COLLAPSE`` over a range (limits ignored); then they split what was collapsed
(munmap, mprotect, DONTNEED at an edge inside a 2 MiB) and read it back.

After every operation the lockstep runner has checked that the implementation (the PD entry pointed at a new
order-9 block, the emptied PT kept as the deposit, the old frames handed to the gather) and the L1 spec agree in
results, state and events (each CPU's IPI and flush before the old frames are freed), that the TLBs hold only
what the spec allows, and that L1 refines L0 (a collapse changes nothing a program reads); the machine's
invariant checks the L1 kernel invariants (a PMD leaf maps an aligned order-9 block, no leak, counts) and the
shootdown invariants.  A failure is saved as ``counterexamples/collapse_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Load, Madvise, Mmap, Mprotect, Munmap, PinOp, ReadPin, Spawn, Store, Switch
from lang.pressure_ops import SmapsOp
from lang.scenario import Config, Op, Result
from lang.thp_ops import Khugepaged, KhugepagedLimit, ThpSetting
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.smp import shootdown

CONFIG = Config(frames=2048, cpus=2, max_order=10)
HUGE = 0x200000
BASE = 0x40000000
REGION_PAGES = 1024 + 4
STARTS = (BASE, BASE, BASE + HUGE, BASE + 0x1000, BASE + HUGE - 0x1000, BASE + 2 * HUGE)
LENGTHS = (1, 512, 512, 513, 1024, 1028)
SETTINGS = (("enabled", "madvise"), ("enabled", "always"), ("enabled", "never"))
LIMITS = (("max_ptes_none", 511), ("max_ptes_none", 0), ("max_ptes_shared", 0), ("max_ptes_shared", 256))
PAGES = (0, 1, 2, 255, 511, 512, 513, 1023, 1024)
PINNED = (0, 0, 1, 513)
FILLS = (1, 1, 4, 16)
MAX_PROCS = 2
CHECK_NAME = "collapse: khugepaged and MADV_COLLAPSE, impl refines L1 refines L0 (limits, COW, pins, flush, split)"


class CollapseMachine(RuleBasedStateMachine):
    """Random faults, forks, pins, limits and collapses in lockstep on L0, L1 and the implementation."""

    name = "collapse_machine"

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
    def collapse_start(self) -> None:
        """THP in madvise mode, a running process with the region mapped private, writable and not advised, a small
        page written in each 2 MiB, and a fork's child sharing them."""
        self.run(ThpSetting("enabled", "madvise"))
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        self.pids.append(result["pid"])
        self.running[0] = result["pid"]
        self.run(Switch(0, result["pid"]))
        self.run(Mmap(result["pid"], BASE, REGION_PAGES, "rw-", False))
        self.run(Store(0, BASE, 1))
        self.run(Store(0, BASE + HUGE + 0x1000, 2))
        child = self.run(Fork(result["pid"]))
        assert child is not None and "pid" in child
        self.pids.append(child["pid"])

    @rule(which=st.integers(0, len(SETTINGS) + len(LIMITS) - 1))
    def policy(self, which: int) -> None:
        """Write a THP sysfs setting or a khugepaged limit."""
        if which < len(SETTINGS):
            self.run(ThpSetting(*SETTINGS[which]))
        else:
            self.run(KhugepagedLimit(*LIMITS[which - len(SETTINGS)]))

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
    @rule(
        store=st.booleans(),
        cpu=st.integers(0, 1),
        page=st.sampled_from(PAGES),
        count=st.sampled_from(FILLS),
        value=st.integers(1, 3),
    )
    def access(self, store: bool, cpu: int, page: int, count: int, value: int) -> None:
        """Stores (or loads) by a CPU's process to ``count`` pages from ``page`` on."""
        if not self.running[cpu]:
            cpu = 1 - cpu
        for p in range(page, min(page + count, REGION_PAGES)):
            va = BASE + 0x1000 * p
            self.run(Store(cpu, va, value + p) if store else Load(cpu, va))

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        kind=st.sampled_from(("scan", "scan", "madvise", "madvise")),
        undo=st.booleans(),
        va=st.sampled_from(STARTS),
        pages=st.sampled_from(LENGTHS),
    )
    def collapse(self, i: int, kind: str, undo: bool, va: int, pages: int) -> None:
        """A khugepaged scan of a process after MADV_HUGEPAGE on the region, and MADV_NOHUGEPAGE after it when
        ``undo`` (as the selftest's khugepaged context runs it), or MADV_COLLAPSE over a range."""
        pid = self.pid(i)
        if kind == "scan":
            self.run(Madvise(pid, BASE, REGION_PAGES, "hugepage"))
            self.run(Khugepaged(pid))
            if undo:
                self.run(Madvise(pid, BASE, REGION_PAGES, "nohugepage"))
        else:
            self.run(Madvise(pid, va, pages, "collapse"))

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("munmap", "mprotect", "dontneed", "hugepage", "hugepage", "nohugepage")),
        i=st.integers(0, MAX_PROCS),
        va=st.sampled_from(STARTS),
        pages=st.sampled_from(LENGTHS),
    )
    def change(self, kind: str, i: int, va: int, pages: int) -> None:
        """munmap, mprotect read-only, DONTNEED or MADV_[NO]HUGEPAGE over a range on or off the 2 MiB boundaries."""
        pid = self.pid(i)
        op: Op
        if kind == "munmap":
            op = Munmap(pid, va, pages)
        elif kind == "mprotect":
            op = Mprotect(pid, va, pages, "r--")
        else:
            op = Madvise(pid, va, pages, kind)
        self.run(op)

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), page=st.sampled_from(PINNED), read=st.booleans())
    def pin(self, i: int, page: int, read: bool) -> None:
        """Pin a page (get_user_pages; mostly the pages written at the start), or read a pin taken before."""
        if read and self.pins:
            self.run(ReadPin(self.pins[-1]))
            return
        result = self.run(PinOp(self.pid(i), BASE + 0x1000 * page))
        if result and "pin" in result:
            self.pins.append(result["pin"])

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS))
    def observe(self, i: int) -> None:
        """smaps_rollup (AnonHugePages, Rss, Pss)."""
        self.run(SmapsOp(self.pid(i)))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


# As the THP machine: minimised by replay, not shrunk; a step checks 2048 frames, so half of the profile's
# programs keeps the ci run within its share of verify's time.
machinery.run_as(CollapseMachine, shrink_phase=False, examples_divisor=2)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The collapse refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(CollapseMachine))
