"""The refinement machine of NUMA: memory policies, first touch, fallback, migration and numastat on four nodes.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` on a machine of four nodes of 8 frames and
one CPU each, at the distances ``10 20 30 40 / 20 10 20 30 / 30 20 10 20 / 40 30 20 10`` (the four-node boot of
``docs/numa-oracle.md``), so zonelists differ from node to node.  Each program starts with one process on every
CPU, an eight-page region whose first four pages each CPU writes (node 0, which holds the boot frames, fills up
at once and the rest spill along the zonelists), and a second region of four pages interleaved over nodes 1-3
by ``mbind``.  Programs then set process policies (``set_mempolicy``: every mode, node sets with offline nodes
and the mode flags, the EINVAL cases too; one-node bind and preferred followed by a write) and VMA policies
(``mbind`` over parts of the region, holes and misaligned starts included), touch pages from every CPU, fork
(the child inherits both), exit, unmap and map again (the new VMA has no policy), move pages to other nodes
(``move_pages`` with a node: unmap, shootdown, copy, remap; at once or one step at a time), and read
``numastat``, ``numastat -p``, ``numa_maps``, ``get_mempolicy`` and ``move_pages``.

After every operation the lockstep runner has checked that the implementation (per-node free lists, zonelists
built at boot, policies in dicts and range lists, counters in arrays) and the L1 spec agree in results and
state, the node of every frame included, that its TLBs hold only what the spec allows, and that L1 refines L0
(a migration changes nothing a program reads); the machine then checks the L1 invariants
(:mod:`spec.mm.invariants`, with :mod:`spec.numa.invariants`, on the settled state) and the shootdown
invariants, and the step's allocations: each user page on a node its policy allows (or the documented
fallback), each migrated page on its target, and the counters grown by exactly the pages allocated.  A
failure is saved as ``counterexamples/numa_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Load, Mmap, Munmap, Spawn, Step, Store, Switch
from lang.numa_ops import GetMempolicy, Mbind, MovePages, NumaMaps, Numastat, NumastatP, SetMempolicy
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.mm.kernel import Kernel
from spec.numa import invariants as numa_invariants
from spec.smp import shootdown

DISTANCES = ((10, 20, 30, 40), (20, 10, 20, 30), (30, 20, 10, 20), (40, 30, 20, 10))
CONFIG = Config(frames=32, cpus=4, max_order=3, nodes=4, distances=DISTANCES)
BASE = 0x7F0000001000  # its page number is 1 modulo 12 in its low 32 bits: interleave offsets show
REGION_PAGES = 8
IL_BASE = BASE + 0x100000  # a second region, interleaved over nodes 1-3 from the start
IL_PAGES = 4
MODES = ("default", "preferred", "preferred", "bind", "bind", "interleave", "interleave", "local", "preferred_many")
NODE_SETS = ((0,), (0,), (1,), (3,), (0, 1), (1, 2, 3), (0, 3), (0, 1, 2, 3), (), (2, 5))  # node 0 is the full one
FLAG_SETS = ((), (), (), ("static",), ("relative",), ("static", "relative"))
MAX_PROCS = 3
NOT_ALLOCATIONS = frozenset({"tlb", "lru", "slot"})  # the effects that report a TLB hit or a reclaim pick
CHECK_NAME = "numa: memory policies on four nodes, impl refines L1 refines L0 (placement, fallback, numastat)"


class NumaMachine(RuleBasedStateMachine):
    """Random policy, touch, fork, unmap and observation operations in lockstep on L0, L1 and impl."""

    name = "numa_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.running = [0, 0, 0, 0]
        self.flights: list[int] = []

    def spec_kernel(self) -> Kernel | None:
        return self.recorder.lockstep.spec.kernel.kernel

    def run(self, op: Op) -> Result | None:
        """Run ``op`` on every side, then check its allocations; refused input (the same on both sides) is None."""
        before = self.spec_kernel()
        try:
            result = self.recorder.apply(op)
        except DivergenceError:
            raise
        except MMCheckError:
            return None
        after = self.spec_kernel()
        if before is not None and after is not None:
            choices = self.recorder.lockstep.impl.kernel.choices().items()
            allocs = {r: p for r, p in choices if r[0] not in NOT_ALLOCATIONS}
            problems = numa_invariants.placement_violations(before, after, allocs)
            problems += numa_invariants.allocation_count_violations(before, after, allocs)
            if problems:
                path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
                raise AssertionError(
                    f"the step's allocations break the NUMA rules: {problems} (counterexample: {path})"
                )
        return result

    def pid(self, i: int) -> int:
        return self.pids[i % len(self.pids)]

    @initialize()
    def numa_start(self) -> None:
        """A process running on every CPU with the region mapped private and writable, its first pages written, and
        a second region interleaved over nodes 1-3 by ``mbind``."""
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        pid = result["pid"]
        self.pids.append(pid)
        for cpu in range(4):
            self.run(Switch(cpu, pid))
            self.running[cpu] = pid
        self.run(Mmap(pid, BASE, REGION_PAGES, "rw-", False))
        for cpu in range(4):  # first touch of pages 0..3 from each CPU: node 0 fills up at once, the rest spill
            self.run(Store(cpu, BASE + cpu * 0x1000, cpu + 1))
        self.run(Mmap(pid, IL_BASE, IL_PAGES, "rw-", False))
        self.run(Mbind(pid, IL_BASE, IL_PAGES, "interleave", (1, 2, 3)))

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        mode=st.sampled_from(MODES),
        nodes=st.sampled_from(NODE_SETS),
        flags=st.sampled_from(FLAG_SETS),
    )
    def set_policy(self, i: int, mode: str, nodes: tuple[int, ...], flags: tuple[str, ...]) -> None:
        """``set_mempolicy`` with any mode, node set and flags."""
        self.run(SetMempolicy(self.pid(i), mode, nodes, flags))

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        preferred=st.booleans(),
        node=st.integers(0, 3),
        cpu=st.integers(0, 3),
        page=st.integers(0, REGION_PAGES - 1),
    )
    def one_node(self, i: int, preferred: bool, node: int, cpu: int, page: int) -> None:
        """``set_mempolicy`` to one node, bind or preferred, then a write by a CPU: with node 0 full, ENOMEM or the
        fallback."""
        pid = self.pid(i)
        self.run(SetMempolicy(pid, "preferred" if preferred else "bind", (node,)))
        if self.running[cpu] == pid:
            self.run(Store(cpu, BASE + page * 0x1000, node + 1))

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        vma=st.booleans(),
        nodes=st.sampled_from(((1, 2, 3), (0, 1, 2, 3), (0, 3))),
    )
    def interleave(self, i: int, vma: bool, nodes: tuple[int, ...]) -> None:
        """Interleave the whole region (``mbind``) or the process (``set_mempolicy``) over two, three or four nodes."""
        pid = self.pid(i)
        self.run(Mbind(pid, BASE, REGION_PAGES, "interleave", nodes) if vma else SetMempolicy(pid, "interleave", nodes))

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        first=st.integers(0, REGION_PAGES - 1),
        count=st.integers(0, REGION_PAGES),
        mode=st.sampled_from(MODES),
        nodes=st.sampled_from(NODE_SETS),
        misaligned=st.sampled_from((False, False, False, True)),
    )
    def bind_range(self, i: int, first: int, count: int, mode: str, nodes: tuple[int, ...], misaligned: bool) -> None:
        """``mbind`` over part of the region (past its end: EFAULT; a misaligned start: EINVAL)."""
        va = BASE + first * 0x1000 + (8 if misaligned else 0)
        self.run(Mbind(self.pid(i), va, count, mode, nodes))

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("fork", "exit", "switch", "switch")), i=st.integers(0, MAX_PROCS), cpu=st.integers(0, 3)
    )
    def process(self, kind: str, i: int, cpu: int) -> None:
        """Fork, exit, or run a process on a CPU."""
        pid = self.pid(i)
        if kind == "fork" and len(self.pids) < MAX_PROCS:
            result = self.run(Fork(pid))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "exit" and len(self.pids) > 1 and not self.flights:
            self.run(Exit(pid))
            self.pids.remove(pid)
            self.running = [0 if r == pid else r for r in self.running]
        else:
            self.run(Switch(cpu, pid))
            self.running[cpu] = pid

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        first=st.integers(0, REGION_PAGES - 1),
        count=st.integers(1, 4),
        unmap=st.booleans(),
    )
    def change(self, i: int, first: int, count: int, unmap: bool) -> None:
        """Unmap part of the region, or map it afresh (either way that part's VMA policy goes)."""
        pid = self.pid(i)
        va = BASE + first * 0x1000
        self.run(Munmap(pid, va, count) if unmap else Mmap(pid, va, count, "rw-", False))

    @precondition(lambda self: any(self.running))
    @rule(
        store=st.booleans(),
        cpu=st.integers(0, 3),
        page=st.integers(0, REGION_PAGES + IL_PAGES - 1),
        value=st.integers(1, 3),
    )
    def touch(self, store: bool, cpu: int, page: int, value: int) -> None:
        """A CPU's process stores to (first touch) or loads from a page of the region or the interleaved one."""
        while not self.running[cpu]:
            cpu = (cpu + 1) % 4
        va = BASE + page * 0x1000 if page < REGION_PAGES else IL_BASE + (page - REGION_PAGES) * 0x1000
        self.run(Store(cpu, va, value) if store else Load(cpu, va))

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        first=st.integers(0, REGION_PAGES - 1),
        count=st.integers(1, 4),
        node=st.integers(0, 4),
    )
    def migrate(self, i: int, first: int, count: int, node: int) -> None:
        """``move_pages`` of part of the region to a node (node 4 is not online: ENODEV), at once or (with no other
        change in flight) only its first step, the shootdown under way."""
        background = not self.flights and node % 2 == 1
        result = self.run(MovePages(self.pid(i), BASE + first * 0x1000, count, node, background))
        if result and "pending" in result:
            self.flights.append(result["pending"])

    @precondition(lambda self: bool(self.flights))
    @rule()
    def step(self) -> None:
        """One more step of the migration in flight."""
        result = self.run(Step(self.flights[0]))
        if result is not None and "stage" not in result:
            self.flights.pop()

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), which=st.integers(0, 5), page=st.integers(0, REGION_PAGES))
    def observe(self, i: int, which: int, page: int) -> None:
        """numastat, numastat -p, numa_maps, get_mempolicy (of the process or at an address), move_pages."""
        pid = self.pid(i)
        va = BASE + page * 0x1000
        ops: tuple[Op, ...] = (
            Numastat(),
            NumastatP(pid),
            NumaMaps(pid),
            GetMempolicy(pid),
            GetMempolicy(pid, va),
            MovePages(pid, BASE, REGION_PAGES),
        )
        self.run(ops[which])

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.spec_kernel()
        if state is None:
            return
        problems = kernel_invariants.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


# A migration runs a shootdown; half the profile's programs keep the ci run near its share of verify's time.
machinery.run_as(NumaMachine, examples_divisor=2)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The NUMA refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(NumaMachine))
