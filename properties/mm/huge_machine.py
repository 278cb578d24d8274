"""The refinement machine of hugetlb mappings: 2 MiB pages beside normal ones, on two CPUs.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` with
``mmap`` of hugetlb (``huge``) and normal mappings in one region: two 2 MiB
pages' worth at a 1 GiB boundary (one page directory, where 2 MiB leaves
and a page table can sit side by side) followed by a few normal pages.
Range operations (munmap, mprotect, madvise, mmap over what is there) start
and end on and off the 2 MiB boundaries, so the split rule
(``hugetlb_vm_op_split``), the rounding of ``MADV_DONTNEED`` and the
length rounding of ``mmap`` are all exercised; accesses hit several 4 KiB
subpages of each 2 MiB page, from two CPUs, so a 2 MiB TLB entry must be
shot down with a 2 MiB stride.  Changes run at once: with changes in
flight the programmer's view keeps a candidate state per order of effects,
and comparing candidates of a thousand pages each made the run minutes
long; ``tests/scenarios/hugetlb-stale-read-during-munmap.json`` pins the
stale 2 MiB translation during a background munmap instead.  Memory is
2048 frames with ``max_order`` 10: three 2 MiB pages fit after boot, so a fork's COW copy or a third
mapping runs out and ENOMEM is exercised too.

Every program starts where hugetlb COW starts: a running parent with a
private writable 2 MiB mapping, one word written, and a forked child.
After every operation the lockstep runner has checked that the
implementation (real 4-level tables with PS=1 PD entries, order-9 blocks
from the buddy allocator) and the L1 spec agree in results and state, that
its TLBs hold only what the spec allows, and that L1 refines L0; the
machine's invariant then checks the L1 kernel invariants
(:mod:`spec.mm.invariants`, hugetlb ones included, on the state with
the frames of changes in flight given back) and the shootdown invariants
(:mod:`spec.smp.shootdown`).  A failure is saved as
``counterexamples/huge_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import (
    Exit,
    Fork,
    Load,
    Madvise,
    Mmap,
    Mprotect,
    Munmap,
    PagemapOp,
    PinOp,
    Spawn,
    StatOp,
    Store,
    Switch,
)
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.smp import shootdown

CONFIG = Config(frames=2048, cpus=2, max_order=10)
HUGE = 0x200000
BASE = 0x40000000
# Where range operations start: on a 2 MiB boundary, one page into it, one page short of the next, in the normal
# pages after the two 2 MiB ones, and one page before the region.
STARTS = (BASE, BASE, BASE + HUGE, BASE + 0x1000, BASE + HUGE - 0x1000, BASE + 2 * HUGE, BASE - 0x1000)
LENGTHS = (1, 2, 511, 512, 512, 513, 1024, 1025)
MMAPS = (
    (BASE, 512, True),
    (BASE + HUGE, 512, True),
    (BASE, 3, True),
    (BASE + 0x1000, 1, True),
    (BASE + 2 * HUGE, 2, False),
    (BASE + HUGE - 0x1000, 2, False),
    (BASE, 1024, True),
    (BASE + HUGE, 1, False),
)
PROTS = ("rw-", "rw-", "r--", "---")
VALUES = (1, 2, 0xBEEF)
SUBPAGES = (0, 1, 511)
MAX_PROCS = 2
CHECK_NAME = "huge: hugetlb and normal mappings, impl refines L1 refines L0 (COW, splits, DONTNEED, TLB, accounting)"


class HugeMachine(RuleBasedStateMachine):
    """Random hugetlb and normal mapping, fork, access and observation operations in lockstep on L0, L1 and impl."""

    name = "huge_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.running = [0, 0]

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
    def hugetlb_cow_start(self) -> None:
        """A running parent with a private writable 2 MiB mapping, one word written, and a forked child."""
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        self.pids.append(result["pid"])
        self.running[0] = result["pid"]
        self.run(Switch(0, result["pid"]))
        self.run(Mmap(result["pid"], BASE, 512, "rw-", False, True))
        self.run(Store(0, BASE + 8, VALUES[0]))
        child = self.run(Fork(result["pid"]))
        if child and "pid" in child:
            self.pids.append(child["pid"])

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

    @precondition(lambda self: bool(self.pids))
    @rule(
        i=st.integers(0, MAX_PROCS),
        which=st.integers(0, len(MMAPS) - 1),
        prot=st.sampled_from(PROTS),
        shared=st.sampled_from((False, False, True)),
    )
    def mmap(self, i: int, which: int, prot: str, shared: bool) -> None:
        """A hugetlb or normal mapping, on or off a 2 MiB boundary."""
        va, pages, huge = MMAPS[which]
        self.run(Mmap(self.pid(i), va, pages, prot, shared, huge))

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("munmap", "mprotect", "dontneed", "dontneed")),
        i=st.integers(0, MAX_PROCS),
        va=st.sampled_from(STARTS),
        pages=st.sampled_from(LENGTHS),
        prot=st.sampled_from(PROTS),
    )
    def change(self, kind: str, i: int, va: int, pages: int, prot: str) -> None:
        """munmap, mprotect or madvise(DONTNEED) over a range starting and ending on or off 2 MiB boundaries."""
        pid = self.pid(i)
        op: Op
        if kind == "munmap":
            op = Munmap(pid, va, pages)
        elif kind == "mprotect":
            op = Mprotect(pid, va, pages, prot)
        else:
            op = Madvise(pid, va, pages, "dontneed")
        self.run(op)

    def mapped(self, pid: int) -> list[int]:
        """Addresses to aim at in ``pid``'s mappings: a few subpages of each 2 MiB, every normal page."""
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None or pid not in state.procs:
            return []
        out = []
        for vma in state.procs[pid].vmas:
            if vma.huge:
                out += [(head + sub) << 12 for head in range(vma.start, vma.end, 512) for sub in SUBPAGES]
            else:
                out += [vpn << 12 for vpn in range(vma.start, vma.end)]
        return out

    @precondition(lambda self: any(self.running))
    @rule(
        store=st.booleans(),
        cpu=st.integers(0, 1),
        i=st.integers(0, 64),
        word=st.integers(0, 1),
        value=st.sampled_from(VALUES),
    )
    def access(self, store: bool, cpu: int, i: int, word: int, value: int) -> None:
        """A store or load by a CPU's process, to a page (or a 2 MiB page's subpage) it maps."""
        if not self.running[cpu]:
            cpu = 1 - cpu
        pages = self.mapped(self.running[cpu]) or [BASE]
        va = pages[i % len(pages)] + 8 * word
        self.run(Store(cpu, va, value) if store else Load(cpu, va))

    @precondition(lambda self: any(self.running))
    @rule(cpu=st.integers(0, 1), i=st.integers(0, 8), value=st.sampled_from(VALUES))
    def read_then_write(self, cpu: int, i: int, value: int) -> None:
        """A load, then a store to another subpage of the same 2 MiB page: the load caches the read-only 2 MiB entry,
        and a store that reuses the page (``hugetlb_wp``) makes the PMD writable with no flush, so the stale entry
        must go with the #PF on the store's address."""
        if not self.running[cpu]:
            cpu = 1 - cpu
        pages = [va for va in self.mapped(self.running[cpu]) if va % HUGE == 0] or [BASE]
        va = pages[i % len(pages)]
        self.run(Load(cpu, va))
        self.run(Store(cpu, va + 0x1FF000, value))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), sub=st.sampled_from((0, 1, 511, 512, 1024)), pin=st.booleans())
    def observe(self, i: int, sub: int, pin: bool) -> None:
        """smaps_rollup and pagemap of a subpage; or a pin there (refused alike on a hugetlb page)."""
        pid = self.pid(i)
        if pin:
            self.run(PinOp(pid, BASE + sub * 0x1000))
            return
        self.run(StatOp(pid))
        self.run(PagemapOp(pid, BASE + sub * 0x1000))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


# How the shared runner runs it (properties.machinery.machine_settings): minimised by replay, not shrunk; and a
# lockstep step here checks 2048 frames and copies 2 MiB pages, so a quarter of the profile's programs keeps the ci
# run within its share of verify's time.
machinery.run_as(HugeMachine, shrink_phase=False, examples_divisor=4)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The hugetlb refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(HugeMachine))
