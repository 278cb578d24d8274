"""The refinement machine of memory cgroups: the hierarchy, charges, limits and the group OOM killer.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` on a machine of 1000 frames and 24 swap slots: the
machine's total (1024 pages) weighs ``oom_score_adj`` one page per unit, a group's (its limit, a few dozen pages)
nothing, so a group OOM scaled by the machine shows. Init (pid 1) maps a page; the machine starts with the groups
``a``, ``a/b`` and ``c`` (memory cgroups go on with the first), a process in ``a`` and an 8-page limit on ``a``;
the rules spawn (each new process into a group by its pid: 2 ``a``, 3 ``a/b``, 4 ``c``, 5 ``a``...) and fork up to
five processes with a private anonymous region and a shared one, move them between groups (their charges stay
behind), set ``memory.limit_in_bytes`` between 5 and 20 pages and ``memory.memsw.limit_in_bytes`` (some refused:
below the usage, below the memory limit), store runs of pages into the regions (faults that charge and may take a
group past its limit: the group's OOM killer runs, or with only -1000 tasks left the fault is retried), page them
out to swap, set ``oom_score_adj`` (-1000, 0, 500), read each group's files, and exit. After every operation the
lockstep runner has checked that the implementation (running page_counter-style totals) and the L1 spec (charges
counted from the frames) agree on results and on the abstracted state, the charges included, and that L1 refines
L0; the machine checks the L1 invariants, the memory cgroups' included (:mod:`spec.memcg.invariants`: charges equal
the frames held, no group past its limit), and every group OOM against the state before it
(:func:`spec.memcg.invariants.oom_violations`: the victim inside the group at its limit, eligible, the highest
badness with ``mem_cgroup_get_max`` as the total, its frames freed). A failure is saved as
``counterexamples/memcg_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Madvise, Mmap, Spawn, Store, Switch
from lang.memcg_ops import MemcgCreate, MemcgMove, MemcgRead, MemcgSet
from lang.oom_ops import OomScoreAdj
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.memcg import invariants as memcg_invariants
from spec.mm import invariants as kernel_invariants

CONFIG = Config(frames=1000, cpus=1, max_order=4, swap=24)
ANON = 0x10000000
SHARED = 0x40000000
ANON_PAGES = 6
GROUPS = ("a", "a/b", "c")
KNOBS = ("memory.limit_in_bytes", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
CHECK_NAME = "memcg: charges, limits, failcnt and the group OOM killer; impl refines L1 refines L0"


class MemcgMachine(RuleBasedStateMachine):
    """Processes in memory cgroups under limits, faulting, moving, forking and exiting, in lockstep."""

    name = "memcg_machine"

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

    def sync(self) -> None:
        """Forget the processes a group OOM killed."""
        kernel = self.recorder.lockstep.spec.kernel.kernel
        if kernel is None:
            return
        self.pids = [pid for pid in self.pids if pid in kernel.procs]
        if self.running not in kernel.procs:
            self.running = 0

    def new_process(self) -> None:
        """Spawn a process with a private region and a shared one."""
        result = self.run(Spawn())
        if not result or "pid" not in result:
            return
        pid = result["pid"]
        self.pids.append(pid)
        if pid > 1:
            self.run(MemcgMove(pid, GROUPS[(pid + 1) % len(GROUPS)]))
        self.run(Mmap(pid, ANON, ANON_PAGES, "rw-", False))
        self.run(Mmap(pid, SHARED, 2, "rw-", True))

    @initialize()
    def start(self) -> None:
        """Init (pid 1) with one page stored, the groups, a process in ``a`` and a limit on ``a``."""
        self.new_process()
        self.run(Switch(0, self.pids[0]))
        self.running = self.pids[0]
        self.run(Store(0, ANON, 1))
        for group in GROUPS:
            self.run(MemcgCreate(group))
        self.new_process()
        self.run(MemcgSet("a", "memory.limit_in_bytes", 8 * 4096))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), group=st.sampled_from((*GROUPS, "/")))
    def move(self, i: int, group: str) -> None:
        pid = self.pids[i % len(self.pids)]
        if pid != self.pids[0]:
            self.run(MemcgMove(pid, group))

    @rule(group=st.sampled_from(GROUPS), knob=st.sampled_from(KNOBS), pages=st.integers(5, 20))
    def limit(self, group: str, knob: str, pages: int) -> None:
        self.run(MemcgSet(group, knob, pages * 4096 + 123))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), page=st.integers(0, ANON_PAGES + 1), n=st.integers(1, 4), value=st.sampled_from((1, 7)))
    def store(self, i: int, page: int, n: int, value: int) -> None:
        pid = self.pids[i % len(self.pids)]
        for p in range(page, min(page + n, ANON_PAGES + 2)):
            if pid not in self.pids:
                return
            if self.running != pid:
                self.run(Switch(0, pid))
                self.running = pid
            va = ANON + p * 0x1000 if p < ANON_PAGES else SHARED + (p - ANON_PAGES) * 0x1000
            self.check_oom(Store(0, va, value))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), pages=st.integers(1, ANON_PAGES))
    def pageout(self, i: int, pages: int) -> None:
        self.run(Madvise(self.pids[i % len(self.pids)], ANON, pages, "pageout"))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), adj=st.sampled_from((-1000, 0, 500)))
    def adjust(self, i: int, adj: int) -> None:
        self.run(OomScoreAdj(self.pids[i % len(self.pids)], adj))

    @rule(group=st.sampled_from((*GROUPS, "/")))
    def read(self, group: str) -> None:
        self.run(MemcgRead(group))

    @precondition(lambda self: bool(self.pids))
    @rule(kind=st.sampled_from(("fork", "spawn", "exit")), i=st.integers(0, 4))
    def process(self, kind: str, i: int) -> None:
        pid = self.pids[i % len(self.pids)]
        if kind == "fork" and len(self.pids) < 5:
            result = self.check_oom(Fork(pid))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "spawn" and len(self.pids) < 5:
            self.new_process()
        elif kind == "exit" and pid != self.pids[0]:
            self.run(Exit(pid))
        self.sync()

    def check_oom(self, op: Op) -> Result | None:
        """Run ``op`` and check any group OOM it caused against the state before it."""
        before = self.recorder.lockstep.spec.kernel.kernel
        result = self.run(op)
        after = self.recorder.lockstep.spec.kernel.kernel
        outcome = self.recorder.lockstep.spec.kernel.last
        if result is not None and before is not None and after is not None and outcome is not None:
            problems = memcg_invariants.oom_violations(before, after, outcome)
            if problems:
                path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
                raise AssertionError(f"the group OOM breaks its rules: {problems} (counterexample: {path})")
        self.sync()
        return result

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


MemcgMachine.shrink_phase = False
MemcgMachine.examples_divisor = 2


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The memory cgroups' refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(MemcgMachine))
