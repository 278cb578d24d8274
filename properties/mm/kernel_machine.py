"""The refinement machine of the kernel layer: processes, mappings, accesses, pins on one CPU.

Hypothesis drives a :class:`~properties.recording.RecordingLockstep` with the
kernel-layer operations over a few pages in two regions (one page table each,
in different page directories, so tables are allocated and freed) on a small
memory, so ENOMEM happens.  Every program starts where COW starts: a running
parent with a private writable mapping, one page written, and a forked child
(five operations); at most two processes live at a time.  Rules are few and
coarse (process, mapping, access, pins, observe) because Hypothesis's swarm
testing switches whole rules off per example, and the draws inside them are
weighted towards private writable mappings and stores to mapped pages.
After every operation the lockstep runner has checked that

- the implementation and the L1 spec gave the same result, or refused bad
  input with the same error class and changed nothing;
- the implementation's frame choices are ones the buddy spec allows;
- the abstraction of the implementation (decoded from its real page tables)
  equals the L1 state;
- L1's outcome is one the programmer's view (L0) allows: loads, signals,
  results, pinned words;

and the machine's invariant checks the L1 state's own invariants
(:mod:`spec.mm.invariants`).  A failure is saved as
``counterexamples/kernel_machine.json`` and minimised.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from lang.errors import MMCheckError
from lang.kernel_ops import (
    Exit,
    Fetch,
    Fork,
    Load,
    Madvise,
    Mmap,
    Mprotect,
    Munmap,
    PagemapOp,
    PinOp,
    ReadPin,
    Spawn,
    StatOp,
    Store,
    Switch,
    Unpin,
)
from lang.scenario import Config, Op, Result
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.drivers import DivergenceError
from properties.memo import LastState
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants

# The L1 invariants, checked in full for every state; a state whose parts are all the ones just checked
# reuses that result (properties.memo).
violations = LastState(kernel_invariants.violations)
CONFIG = Config(frames=18, cpus=1, max_order=2)
# Two regions of a few pages: each in its own page table and page directory.
REGIONS = (0x10000000, 0x40000000)
PAGES = 4
# Repeats weight the draw: most mappings are private and writable, where COW happens.
PROTS = ("rw-", "rw-", "rw-", "r--", "---", "r-x", "-w-")
SHARED = (False, False, False, True)
VALUES = (1, 2, 3, 0xDEAD)
MAX_PROCS = 2
CHECK_NAME = "kernel: implementation refines L1, L1 refines L0 (fork, COW, zero page, munmap, mprotect, pins)"

page_strategy = st.tuples(st.sampled_from(REGIONS), st.integers(0, PAGES - 1))


def address(page: tuple[int, int], word: int = 0) -> int:
    """The address of word ``word`` of page ``page`` (region, index)."""
    return page[0] + page[1] * 4096 + word * 8


class KernelMachine(RuleBasedStateMachine):
    """Random process, mapping, access and pin operations in lockstep on L0, L1 and the implementation."""

    name = "kernel_machine"

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, CONFIG)
        self.pids: list[int] = []
        self.pins_held: list[int] = []
        self.running = 0

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
    def first_process(self) -> None:
        """A running parent with a private writable mapping, one page written, and a forked child: where COW starts."""
        result = self.run(Spawn())
        assert result is not None and "pid" in result
        self.pids.append(result["pid"])
        self.running = result["pid"]
        self.run(Switch(0, self.running))
        self.run(Mmap(self.running, REGIONS[0], 2, "rw-", False))
        self.run(Store(0, REGIONS[0], VALUES[0]))
        child = self.run(Fork(self.running))
        if child and "pid" in child:
            self.pids.append(child["pid"])

    @precondition(lambda self: bool(self.pids))
    @rule(kind=st.sampled_from(("fork", "fork", "exit", "exit", "switch")), i=st.integers(0, MAX_PROCS))
    def process(self, kind: str, i: int) -> None:
        """Fork, exit or run a process (swarm testing turns whole rules off, so these share one)."""
        pid = self.pid(i)
        if kind == "fork" and len(self.pids) < MAX_PROCS:
            result = self.run(Fork(pid))
            if result and "pid" in result:
                self.pids.append(result["pid"])
        elif kind == "exit" and len(self.pids) > 1:
            self.run(Exit(pid))
            self.pids.remove(pid)
            self.running = 0 if self.running == pid else self.running
        else:
            self.run(Switch(0, pid))
            self.running = pid

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("mmap", "munmap", "mprotect", "dontneed")),
        i=st.integers(0, MAX_PROCS),
        page=page_strategy,
        pages=st.integers(1, 3),
        prot=st.sampled_from(PROTS),
        shared=st.sampled_from(SHARED),
    )
    def mapping(self, kind: str, i: int, page: tuple[int, int], pages: int, prot: str, shared: bool) -> None:
        pid, va = self.pid(i), address(page)
        op: Op
        if kind == "mmap":
            op = Mmap(pid, va, pages, prot, shared)
        elif kind == "munmap":
            op = Munmap(pid, va, pages)
        elif kind == "mprotect":
            op = Mprotect(pid, va, pages, prot)
        else:
            op = Madvise(pid, va, pages, "dontneed")
        self.run(op)

    def present(self, pid: int) -> list[int]:
        """The addresses of the pages ``pid`` has entries for (else its mapped pages), by the L1 state."""
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None or pid not in state.procs:
            return []
        return [vpn << 12 for vpn in sorted(state.procs[pid].leaves)] or self.mapped(pid)

    def mapped(self, pid: int) -> list[int]:
        """The addresses of the pages ``pid`` has mapped, by the L1 state (to aim accesses at them)."""
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None or pid not in state.procs:
            return []
        return [vpn << 12 for vma in state.procs[pid].vmas for vpn in range(vma.start, vma.end)]

    @precondition(lambda self: bool(self.running))
    @rule(
        kind=st.sampled_from(("store", "store", "store", "load", "load", "fetch")),
        where=st.sampled_from(("mapped", "mapped", "mapped", "mapped", "anywhere", "kernel")),
        i=st.integers(0, 2 * PAGES),
        page=page_strategy,
        word=st.integers(0, 1),
        value=st.sampled_from(VALUES),
        mode=st.sampled_from(("user", "supervisor")),
    )
    def access(self, kind: str, where: str, i: int, page: tuple[int, int], word: int, value: int, mode: str) -> None:
        """A store, load or fetch, mostly to a page the running process maps."""
        pages = self.mapped(self.running)
        if where == "mapped" and pages:
            va = pages[i % len(pages)] + 8 * word
        elif where == "kernel":
            va = (0xFFFFFFFF80000000, 0xFFFF888000000000)[i % 2]
        else:
            va = address(page, word)
        if kind == "store":
            self.run(Store(0, va, value, mode))
        else:
            self.run(Load(0, va, mode) if kind == "load" else Fetch(0, va, mode))

    @precondition(lambda self: bool(self.pids))
    @rule(
        kind=st.sampled_from(("pin", "pin", "read_pin", "unpin")),
        i=st.integers(0, MAX_PROCS),
        j=st.integers(0, 2 * PAGES),
    )
    def pins(self, kind: str, i: int, j: int) -> None:
        if kind == "pin":
            pages = self.present(self.pid(i))
            result = self.run(PinOp(self.pid(i), pages[j % len(pages)])) if pages else None
            if result and "pin" in result:
                self.pins_held.append(result["pin"])
        elif self.pins_held and kind == "read_pin":
            self.run(ReadPin(self.pins_held[j % len(self.pins_held)]))
        elif self.pins_held:
            self.run(Unpin(self.pins_held.pop(j % len(self.pins_held))))

    @precondition(lambda self: bool(self.pids))
    @rule(i=st.integers(0, MAX_PROCS), page=page_strategy)
    def observe(self, i: int, page: tuple[int, int]) -> None:
        self.run(StatOp(self.pid(i)))
        self.run(PagemapOp(self.pid(i), address(page)))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = violations(state)
        if problems:
            path = save_counterexample(self.name, CONFIG, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


# How the shared runner runs it (properties.machinery.machine_settings): shrinking these programs inside
# Hypothesis took minutes, so the saved scenario is minimised by replay instead.
machinery.run_as(KernelMachine, shrink_phase=False)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The kernel-layer refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(KernelMachine))
