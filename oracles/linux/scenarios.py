"""Small kernel-level scenarios for the live-kernel oracle (:mod:`oracles.linux.oracle`).

One to three live processes, a few pages at the start of the oracle's window,
and the operations the oracle can run: spawn, fork, exit, mmap (private or
shared), munmap, mprotect, madvise(MADV_DONTNEED), switch, load, store, stat
and pagemap.  Every scenario is valid input (each op names a live pid, each
access runs on a CPU that runs a process), so any difference the oracle finds
is a difference in behaviour.

Mappings start on a few fixed slots but may overlap and touch each other, so
VMA splits, replacements and adjacency all happen.  Shared mappings are up to
``shared_pages`` long (3 by default): a read fault in one maps the neighbours
already in the page cache (fault-around, modelled at the kernel's 64 KiB).

About one scenario in three begins with a merge prelude (:func:`draw_merge_prelude`):
two touching private mappings, mostly of one protection, each accessed, then a
fork.  Whether Linux merges them (mm/vma.c: equal flags, ``VM_ACCOUNT``
included, and compatible anon_vmas) decides which entries fork copies
(mm/memory.c ``vma_needs_copy``), so this is where a difference in merging
shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from lang import ops
from lang.scenario import Config, Op, Scenario
from oracles.linux.host import PAGE, WINDOW
from properties.drivers import SpecRunner

BASE = WINDOW[0]
PAGES = 8
PROTS = ("rw-", "r--", "---", "-w-", "rwx", "r-x")
MAX_LIVE = 3
CPUS = 2


CONFIG = Config(frames=1024, cpus=CPUS)


@dataclass
class Tracker:
    """What the generator must know to keep a scenario valid: live pids, what each CPU runs, pins held.

    Whether a pin succeeds depends on the mapping, so the spec runs along to
    tell which pin numbers exist.
    """

    live: list[int] = field(default_factory=list)
    next_pid: int = 1
    current: list[int] = field(default_factory=lambda: [0] * CPUS)
    ops: list[Op] = field(default_factory=list)
    pins: list[int] = field(default_factory=list)
    spec: SpecRunner = field(default_factory=lambda: SpecRunner(CONFIG))

    def add(self, op: Op) -> None:
        self.ops.append(op)
        result = self.spec.apply(op)
        if "pin" in result:
            self.pins.append(result["pin"])
        if isinstance(op, ops.Unpin):
            self.pins.remove(op.pin)
        if isinstance(op, ops.Spawn | ops.Fork):
            self.live.append(self.next_pid)
            self.next_pid += 1
        elif isinstance(op, ops.Exit):
            self.live.remove(op.pid)
            self.current = [0 if c == op.pid else c for c in self.current]
        elif isinstance(op, ops.Switch):
            self.current[op.cpu] = op.pid


def prots() -> st.SearchStrategy[str]:
    """Mostly ``rw-`` and ``r--``, so neighbouring mappings often have equal protections (and Linux merges them)."""
    return st.one_of(st.sampled_from(("rw-", "r--")), st.sampled_from(PROTS))


def va(page: int, word: int = 0) -> int:
    """The address of word ``word`` of scenario page ``page``."""
    return BASE + page * PAGE + 8 * word


@st.composite
def linux_scenarios(draw: st.DrawFn, max_steps: int = 14, shared_pages: int = 3, pins: bool = True) -> Scenario:
    """A valid scenario of 1 to ``max_steps`` operations after the first spawn; ``pins`` adds pin ops."""
    t = Tracker()
    t.add(ops.Spawn())
    if draw(st.integers(0, 2)) == 0:
        draw_merge_prelude(draw, t)
    steps = draw(st.integers(1, max_steps))
    kinds: tuple[str, ...] = ("mmap", "mmap", "access", "access", "access", "fork", "exit", "spawn", "unmap")
    kinds += ("protect", "advise", "see")
    kinds += ("pin",) if pins else ()
    for _ in range(steps):
        kind = draw(st.sampled_from(kinds))
        pid = draw(st.sampled_from(t.live))
        if kind == "spawn" and len(t.live) < MAX_LIVE:
            t.add(ops.Spawn())
        elif kind == "fork" and len(t.live) < MAX_LIVE:
            t.add(ops.Fork(pid))
        elif kind == "exit" and len(t.live) > 1:
            t.add(ops.Exit(pid))
        elif kind == "mmap":
            shared = draw(st.booleans())
            pages = draw(st.integers(1, shared_pages if shared else 3))
            start = draw(st.integers(0, PAGES - pages))
            t.add(ops.Mmap(pid, va(start), pages, draw(prots()), shared))
        elif kind in ("unmap", "protect", "advise"):
            pages = draw(st.integers(1, 3))
            start = va(draw(st.integers(0, PAGES - pages)))
            if kind == "unmap":
                t.add(ops.Munmap(pid, start, pages))
            elif kind == "protect":
                t.add(ops.Mprotect(pid, start, pages, draw(prots())))
            else:
                t.add(ops.Madvise(pid, start, pages, "dontneed"))
        elif kind == "pin":
            draw_pin(draw, t, pid)
        elif kind == "see":
            if draw(st.booleans()):
                t.add(ops.StatOp(pid))
            else:
                t.add(ops.PagemapOp(pid, va(draw(st.integers(0, PAGES - 1)))))
        else:
            draw_access(draw, t, pid)
    return Scenario(CONFIG, tuple(t.ops))


def draw_merge_prelude(draw: st.DrawFn, t: Tracker) -> None:
    """Two touching private mappings of pid 1, each accessed, the first maybe re-protected, then a fork."""
    first, second = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    start = draw(st.integers(0, PAGES - first - second))
    prot = draw(st.sampled_from(("rw-", "rw-", "r--", "rwx")))
    t.add(ops.Mmap(1, va(start), first, prot, False))
    draw_access(draw, t, 1, start)
    if draw(st.booleans()):
        prot = draw(st.sampled_from(("rw-", "r--")))
        t.add(ops.Mprotect(1, va(start), first, prot))
    t.add(ops.Mmap(1, va(start + first), second, draw(st.sampled_from((prot, prot, prot, "rw-", "r--"))), False))
    draw_access(draw, t, 1, start + first + draw(st.integers(0, second - 1)))
    t.add(ops.Fork(1))


def draw_pin(draw: st.DrawFn, t: Tracker, pid: int) -> None:
    """Take a pin on a word of ``pid``, or read or release one held."""
    choice = draw(st.sampled_from(("pin", "read", "read", "unpin"))) if t.pins else "pin"
    if choice == "pin":
        t.add(ops.PinOp(pid, va(draw(st.integers(0, PAGES - 1)), draw(st.integers(0, 1)))))
    elif choice == "read":
        t.add(ops.ReadPin(draw(st.sampled_from(t.pins))))
    else:
        t.add(ops.Unpin(draw(st.sampled_from(t.pins))))


def draw_access(draw: st.DrawFn, t: Tracker, pid: int, page: int | None = None) -> None:
    """A load or store by ``pid`` (to ``page`` if given), switching a CPU to it first when none runs it."""
    if pid in t.current:
        cpu = t.current.index(pid)
    else:
        cpu = draw(st.integers(0, CPUS - 1))
        t.add(ops.Switch(cpu, pid))
    page = draw(st.integers(0, PAGES - 1)) if page is None else page
    address = va(page, draw(st.integers(0, 1)))
    if draw(st.booleans()):
        t.add(ops.Load(cpu, address))
    else:
        t.add(ops.Store(cpu, address, draw(st.integers(1, 255))))
