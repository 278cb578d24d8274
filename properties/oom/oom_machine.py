"""The refinement machine of the OOM killer: badness, oom_score, oom_score_adj, the victim and the kill.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` on a machine of 1000 frames and 1008
swap slots, so that the global domain has 2008 pages and ``totalpages / 1000`` is 2: ``oom_score_adj``
weighs two pages per unit, and an adjustment applied unscaled (one) or multiplied before the division
(2.008, truncated once) shows.
Init (pid 1) maps a page, as do up to four more processes (spawned or forked), each over a private
anonymous region and a shared one; the rules store into them, page them out to swap (``MADV_PAGEOUT``),
set ``oom_score_adj`` from the seed's tiers and the edges (-1000, -999, -900, 0, 1, 500, 1000), flip
``vm.oom_kill_allocating_task``, read ``/proc/PID/oom_score``, fork, exit and run ``out_of_memory``
for a live process.  After every operation the lockstep runner has checked that the implementation
and the L1 spec agree (results, and the abstracted state: frames, tables, ``oom_score_adj``) and that
L1 refines L0 (the victim's exit is the programmer's view's exit); the machine checks the L1
invariants, the OOM killer's included (:mod:`spec.oom.invariants`), and every kill against the state
before it (:func:`spec.oom.invariants.kill_violations`: the victim is the last eligible process of the
highest badness, never init or -1000, and every frame only it held is free after).  A failure is saved
as ``counterexamples/oom_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Madvise, Mmap, Spawn, Store, Switch
from lang.oom_ops import OomScoreAdj, OomScoreOp, OutOfMemory, Sysctl
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.oom import invariants as oom_invariants

CONFIG = Config(frames=1000, cpus=1, max_order=4, swap=1008)
ANON = 0x10000000
SHARED = 0x40000000
ANON_PAGES = 4
ADJ = (-1000, -999, -900, 0, 1, 500, 1000)
CHECK_NAME = "oom: badness, oom_score, oom_score_adj, the victim and the kill; impl refines L1 refines L0"


class OomMachine(RuleBasedStateMachine):
    """Processes of chosen sizes and adjustments, swap, forks and exits, and the OOM killer, in lockstep."""

    name = "oom_machine"

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

    def on(self, pid: int) -> None:
        """Run ``pid`` on the CPU."""
        if self.running != pid:
            self.run(Switch(0, pid))
            self.running = pid

    def new_process(self) -> None:
        """Spawn a process with a private region and a shared one."""
        result = self.run(Spawn())
        if not result or "pid" not in result:
            return
        pid = result["pid"]
        self.pids.append(pid)
        self.run(Mmap(pid, ANON, ANON_PAGES, "rw-", False))
        self.run(Mmap(pid, SHARED, 2, "rw-", True))

    @initialize()
    def start(self) -> None:
        """Init (pid 1) with one page stored, and one more process."""
        self.new_process()
        self.on(self.pids[0])
        self.run(Store(0, ANON, 1))
        self.new_process()

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), page=st.integers(0, ANON_PAGES + 1), value=st.sampled_from((1, 7)))
    def store(self, i: int, page: int, value: int) -> None:
        self.on(self.pids[i % len(self.pids)])
        va = ANON + page * 0x1000 if page < ANON_PAGES else SHARED + (page - ANON_PAGES) * 0x1000
        self.run(Store(0, va, value))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), pages=st.integers(1, ANON_PAGES))
    def pageout(self, i: int, pages: int) -> None:
        self.run(Madvise(self.pids[i % len(self.pids)], ANON, pages, "pageout"))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4), adj=st.sampled_from(ADJ))
    def adjust(self, i: int, adj: int) -> None:
        self.run(OomScoreAdj(self.pids[i % len(self.pids)], adj))

    @rule(value=st.sampled_from((1, 1, 0)))
    def kill_allocating(self, value: int) -> None:
        self.run(Sysctl("vm.oom_kill_allocating_task", value))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4))
    def score(self, i: int) -> None:
        self.run(OomScoreOp(self.pids[i % len(self.pids)]))

    @precondition(lambda self: bool(self.pids))
    @rule(kind=st.sampled_from(("fork", "fork", "spawn", "exit")), i=st.integers(0, 4))
    def process(self, kind: str, i: int) -> None:
        pid = self.pids[i % len(self.pids)]
        if kind == "fork" and len(self.pids) < 5:
            result = self.run(Fork(pid))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "spawn" and len(self.pids) < 5:
            self.new_process()
        elif kind == "exit" and pid != self.pids[0]:
            self.run(Exit(pid))
            self.gone(pid)

    def gone(self, pid: int) -> None:
        """``pid`` exited or was killed."""
        self.pids.remove(pid)
        if self.running == pid:
            self.running = 0

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 4))
    def out_of_memory(self, i: int) -> None:
        pid = self.pids[i % len(self.pids)]
        before = self.recorder.lockstep.spec.kernel.kernel
        result = self.run(OutOfMemory(pid))
        after = self.recorder.lockstep.spec.kernel.kernel
        outcome = self.recorder.lockstep.spec.kernel.last
        if result is None or before is None or after is None or outcome is None:
            return
        problems = oom_invariants.kill_violations(before, after, outcome, pid)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the kill breaks the OOM killer's rules: {problems} (counterexample: {path})")
        if "oom_kill" in result:
            self.gone(result["oom_kill"]["pid"])

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


OomMachine.shrink_phase = False
OomMachine.examples_divisor = 2


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The OOM killer's refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(OomMachine))
