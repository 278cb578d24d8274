"""The refinement machine of memory cgroups on cgroup v2: memory.max with reclaim before the group OOM,
memory.high, memory.min/low through effective_protection, memory.oom.group and memory.reclaim.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` on a machine of 400 frames and 4 swap slots
with the memory controller on cgroup v2 and the groups ``a``, ``a/b``, ``a/b/x``, ``a/b/y`` and ``c``
(``memory.max`` 10 pages on ``a``, ``memory.high`` 6 pages on ``c``, ``memory.oom.group`` on ``a/b``). The rules
spawn and fork processes into the groups (each with a private anonymous region), store runs of pages (charges that
reclaim inside the group at its limit, swapping its pages out, then OOM-kill; or above high, reclaim after the
fault), write ``memory.max``, ``memory.high``, ``memory.low``, ``memory.min`` and ``memory.oom.group``, reclaim
through ``memory.reclaim``, set ``oom_score_adj``, read the files and exit. After every operation the lockstep
runner has checked that the implementation agrees with the L1 spec on results and on the abstracted state (its
reclaim steps each allowed by :mod:`spec.memcg.reclaim`: a page of a group the reclaim may take, the protected
groups spared), and the machine checks the L1 invariants (charges equal the pages held, no leak) and every OOM
against the state before it (:func:`spec.memcg.v2_invariants.v2_oom_violations`: never outside the group, never for
memory.high, the highest badness, the whole oom group). A failure is saved as
``counterexamples/memcg_v2_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Mmap, Spawn, Store, Switch
from lang.memcg_ops import MemcgCreate, MemcgHierarchy, MemcgMove, MemcgRead, MemcgSet
from lang.oom_ops import OomScoreAdj
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.memcg.v2_invariants import v2_oom_violations
from spec.mm import invariants as kernel_invariants

CONFIG = Config(frames=400, cpus=1, max_order=4, swap=4)
ANON = 0x10000000
PAGES = 8
GROUPS = ("a", "a/b", "a/b/x", "a/b/y", "c")
HOMES = ("a", "c", "a/b/x", "a/b/y")
KNOBS = ("memory.max", "memory.high", "memory.low", "memory.min")
CHECK_NAME = "memcg v2: memory.max reclaim then OOM, memory.high, min/low protection, oom.group; impl refines L1"


class MemcgV2Machine(RuleBasedStateMachine):
    """Processes in v2 memory cgroups under max, high and protections, faulting, forking and exiting."""

    name = "memcg_v2_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.running = 0

    def run(self, op: Op) -> Result | None:
        try:
            return self.recorder.apply(op)
        except DivergenceError:
            raise
        except MMCheckError:
            return None

    def sync(self) -> None:
        kernel = self.recorder.lockstep.spec.kernel.kernel
        if kernel is None:
            return
        self.pids = [pid for pid in self.pids if pid in kernel.procs]
        if self.running not in kernel.procs:
            self.running = 0

    def new_process(self) -> None:
        result = self.run(Spawn())
        if not result or "pid" not in result:
            return
        pid = result["pid"]
        self.pids.append(pid)
        if pid > 1:
            self.run(MemcgMove(pid, HOMES[pid % len(HOMES)]))
        self.run(Mmap(pid, ANON, PAGES, "rw-", False))

    @initialize()
    def start(self) -> None:
        self.new_process()
        self.run(MemcgHierarchy(2))
        for group in GROUPS:
            self.run(MemcgCreate(group))
        self.run(MemcgSet("a", "memory.max", 10 * 4096))
        self.run(MemcgSet("c", "memory.high", 6 * 4096))
        self.run(MemcgSet("a/b", "memory.oom.group", 1))
        self.new_process()
        self.new_process()

    @rule(group=st.sampled_from(GROUPS), knob=st.sampled_from(KNOBS), pages=st.integers(0, 16))
    def write(self, group: str, knob: str, pages: int) -> None:
        self.check_oom(MemcgSet(group, knob, pages * 4096 if pages else -1))

    @rule(group=st.sampled_from(("a/b", "a/b/x")), on=st.booleans())
    def oom_group(self, group: str, on: bool) -> None:
        self.run(MemcgSet(group, "memory.oom.group", int(on)))

    @rule(group=st.sampled_from(("a", "a/b")), pages=st.integers(1, 8))
    def reclaim(self, group: str, pages: int) -> None:
        self.run(MemcgSet(group, "memory.reclaim", pages * 4096))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 5), page=st.integers(0, PAGES - 1), n=st.integers(1, 5))
    def store(self, i: int, page: int, n: int) -> None:
        pid = self.pids[i % len(self.pids)]
        for p in range(page, min(page + n, PAGES)):
            if pid not in self.pids:
                return
            if self.running != pid:
                self.run(Switch(0, pid))
                self.running = pid
            self.check_oom(Store(0, ANON + p * 0x1000, 3))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, 5), adj=st.sampled_from((-1000, 0, 300)))
    def adjust(self, i: int, adj: int) -> None:
        self.run(OomScoreAdj(self.pids[i % len(self.pids)], adj))

    @rule(group=st.sampled_from(GROUPS))
    def read(self, group: str) -> None:
        self.run(MemcgRead(group))

    @precondition(lambda self: bool(self.pids))
    @rule(kind=st.sampled_from(("fork", "spawn", "exit")), i=st.integers(0, 5))
    def process(self, kind: str, i: int) -> None:
        pid = self.pids[i % len(self.pids)]
        if kind == "fork" and len(self.pids) < 6:
            result = self.check_oom(Fork(pid))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "spawn" and len(self.pids) < 6:
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
            problems = v2_oom_violations(before, after, outcome)
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


MemcgV2Machine.shrink_phase = False
MemcgV2Machine.examples_divisor = 2


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The v2 memory cgroups' refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(MemcgV2Machine))
