"""The refinement machine of transparent huge pages: THP faults, the huge zero page, splits, fork, on two CPUs.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` over one region: two 2 MiB ranges at a
1 GiB boundary (one page directory, where PMD leaves and page tables sit side by side) and a few pages after
them.  Programs write the THP policy (``enabled``, ``use_zero_page``), advise ranges ``hugepage`` and
``nohugepage``, fault 4 KiB subpages of each 2 MiB (loads: the huge zero page; stores: a THP, or 4 KiB pages
where the policy, the advice or the buddy's order-9 blocks say no), and change ranges starting and ending on
and off the 2 MiB boundaries (munmap, mprotect, ``MADV_DONTNEED``, an ``mmap`` over what is there), so PMDs
are zapped whole and split at the edges; fork copies the PMDs write-protected and exit drops them.  A split
or COW of a THP a fork shares is refused on both sides alike (:func:`spec.mm.thp.split_pmd`), and the
program goes on.  Memory is 2048 frames with ``max_order`` 10: three order-9 blocks after boot, so the
fallback to 4 KiB pages happens too.

After every operation the lockstep runner has checked that the implementation (real PD entries with PS=1,
deposited PTs, order-9 blocks from the buddy allocator) and the L1 spec agree in results and state, that its
TLBs hold only what the spec allows, and that L1 refines L0 (a THP fault or a split changes nothing a program
reads); the machine's invariant then checks the L1 kernel invariants (:mod:`spec.mm.invariants`, the THP
ones included) and the shootdown invariants (:mod:`spec.smp.shootdown`).  A failure is saved as
``counterexamples/thp_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Load, Madvise, Mmap, Mprotect, Munmap, PagemapOp, Spawn, StatOp, Store, Switch
from lang.pressure_ops import MeminfoOp, SmapsOp, VmstatOp
from lang.scenario import Config, Op, Result
from lang.thp_ops import ThpSetting
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
STARTS = (BASE, BASE, BASE + HUGE, BASE + 0x1000, BASE + HUGE - 0x1000, BASE + 2 * HUGE, BASE + 0x100000)
LENGTHS = (1, 2, 511, 512, 512, 513, 1024, 1028)
SETTINGS = (
    ("enabled", "always"),
    ("enabled", "always"),
    ("enabled", "madvise"),
    ("enabled", "never"),
    ("use_zero_page", "0"),
    ("use_zero_page", "1"),
)
PROTS = ("rw-", "rw-", "r--", "---")
VALUES = (1, 2, 0xBEEF)
SUBPAGES = (0, 1, 255, 511)
MAX_PROCS = 2
CHECK_NAME = "thp: transparent huge pages, impl refines L1 refines L0 (faults, zero page, splits, fork, accounting)"


class ThpMachine(RuleBasedStateMachine):
    """Random THP policy, advice, fault, split, fork and observation operations in lockstep on L0, L1 and impl."""

    name = "thp_machine"

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
    def thp_start(self) -> None:
        """THP always on, a running process with the region mapped private and writable, one THP written."""
        self.run(ThpSetting("enabled", "always"))
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        self.pids.append(result["pid"])
        self.running[0] = result["pid"]
        self.run(Switch(0, result["pid"]))
        self.run(Mmap(result["pid"], BASE, REGION_PAGES, "rw-", False))
        self.run(Store(0, BASE + 8, VALUES[0]))

    @rule(which=st.integers(0, len(SETTINGS) - 1))
    def policy(self, which: int) -> None:
        """Write a THP sysfs setting."""
        self.run(ThpSetting(*SETTINGS[which]))

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
        kind=st.sampled_from(("munmap", "mprotect", "dontneed", "hugepage", "nohugepage", "mmap")),
        i=st.integers(0, MAX_PROCS),
        va=st.sampled_from(STARTS),
        pages=st.sampled_from(LENGTHS),
        prot=st.sampled_from(PROTS),
    )
    def change(self, kind: str, i: int, va: int, pages: int, prot: str) -> None:
        """munmap, mprotect, DONTNEED, MADV_[NO]HUGEPAGE or mmap over a range on or off the 2 MiB boundaries."""
        pid = self.pid(i)
        op: Op
        if kind == "munmap":
            op = Munmap(pid, va, pages)
        elif kind == "mprotect":
            op = Mprotect(pid, va, pages, prot)
        elif kind == "mmap":
            op = Mmap(pid, va, pages, prot, False)
        else:
            op = Madvise(pid, va, pages, kind)
        self.run(op)

    def mapped(self, pid: int) -> list[int]:
        """Addresses to aim at in ``pid``'s region: a few subpages of each 2 MiB, and the pages after them."""
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None or pid not in state.procs:
            return []
        out = [BASE + head * HUGE + sub * 0x1000 for head in range(2) for sub in SUBPAGES]
        return out + [BASE + 2 * HUGE + 0x1000 * i for i in range(REGION_PAGES - 1024)]

    @precondition(lambda self: any(self.running))
    @rule(
        store=st.booleans(),
        cpu=st.integers(0, 1),
        i=st.integers(0, 16),
        word=st.integers(0, 1),
        value=st.sampled_from(VALUES),
    )
    def access(self, store: bool, cpu: int, i: int, word: int, value: int) -> None:
        """A store or load by a CPU's process to a subpage of a 2 MiB range or a page after them."""
        if not self.running[cpu]:
            cpu = 1 - cpu
        pages = self.mapped(self.running[cpu]) or [BASE]
        va = pages[i % len(pages)] + 8 * word
        self.run(Store(cpu, va, value) if store else Load(cpu, va))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), sub=st.sampled_from((0, 1, 511, 512, 1024)), which=st.integers(0, 3))
    def observe(self, i: int, sub: int, which: int) -> None:
        """smaps_rollup, pagemap of a subpage, meminfo or vmstat."""
        pid = self.pid(i)
        ops: tuple[Op, ...] = (SmapsOp(pid), PagemapOp(pid, BASE + sub * 0x1000), MeminfoOp(), VmstatOp())
        self.run(ops[which])
        if which == 0:
            self.run(StatOp(pid))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(shootdown.settled(state)) + shootdown.violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


# As the hugetlb machine: minimised by replay, not shrunk; a step checks 2048 frames and 2 MiB folios, so a twelfth
# of the profile's programs keeps the ci run within its share of verify's time.
machinery.run_as(ThpMachine, shrink_phase=False, examples_divisor=12)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The THP refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(ThpMachine))
