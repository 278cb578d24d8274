"""Small memory-pressure scenarios for the live-kernel pressure oracle (:mod:`oracles.linux.pressure`).

One or two live processes (a spawn, sometimes a fork), a few mapping slots at
the start of the oracle's window: anonymous mappings, private or shared, of
one to three pages, and file mappings (shared or private) of one to three
pages of one of two files, never past the file's end when made.  A read fault
on a file or shared anonymous mapping of more than one page maps the
neighbours already in the page cache (mm/memory.c ``do_fault_around``, the
default 64 KiB window, as the model's ``fault_around_bytes``), so present
bits, RSS and later fault counts depend on it on both sides.  Then loads, stores, ``madvise`` (pageout, cold,
dontneed) over a slot, ``pread``/``pwrite``, ``fsync``, ``msync``,
``truncate``, ``status``, ``pagemap``, and at most one ``swapoff`` near the
end.  A shared anonymous slot gets ``cold`` where another would get
``pageout``: the model does not reclaim shmem (the documented abstraction
``shmem-pageout``).  Every scenario is valid input, and the model never runs out of frames
or swap slots (its config has plenty), so any difference is one of behaviour.
"""

from __future__ import annotations

from hypothesis import strategies as st

from lang import ops
from lang import pressure_ops as pops
from lang.scenario import Config, Op, Scenario
from oracles.linux.host import PAGE, WINDOW

BASE = WINDOW[0]
SLOTS = 6  # slot n starts at BASE + 4 pages * n
SLOT_PAGES = 4
FILES = {"a": 3, "b": 2}
CONFIG = Config(frames=512, cpus=1, swap=32)
# What each step does, weighted by repetition.
KINDS = ("map",) * 3 + ("access",) * 5 + ("madvise",) * 2 + ("file", "status", "pagemap", "fork", "switch", "swapoff")


def slot_va(slot: int, page: int = 0) -> int:
    return BASE + (slot * SLOT_PAGES + page) * PAGE


@st.composite
def pressure_scenarios(draw: st.DrawFn, max_steps: int = 16) -> Scenario:
    """A valid pressure scenario of up to ``max_steps`` steps after its prelude."""
    program: list[Op] = [ops.Spawn(), ops.Switch(0, 1)]
    for name, pages in FILES.items():
        words = draw(st.dictionaries(st.integers(0, pages * PAGE // 8 - 1), st.integers(1, 99), max_size=3))
        program.append(pops.FileCreate(name, pages, tuple(sorted((8 * w, v) for w, v in words.items()))))
    live, current, swap_on = [1], 1, True
    mapped: dict[int, int] = {}  # slot -> pages mapped there
    shmem: set[int] = set()  # slots holding a shared anonymous mapping
    for _ in range(draw(st.integers(4, max_steps))):
        kind = draw(st.sampled_from(KINDS))
        pid = current
        if kind == "map" or not mapped:
            slot = draw(st.integers(0, SLOTS - 1))
            shape = draw(st.sampled_from(["private", "private", "shared", "file", "file"]))
            if shape == "file":
                name = draw(st.sampled_from(sorted(FILES)))
                shared = draw(st.booleans())
                prot = draw(st.sampled_from(["rw-", "rw-", "r--"]))
                offset = draw(st.integers(0, FILES[name] - 1))
                pages = draw(st.integers(1, min(3, FILES[name] - offset)))
                program.append(pops.MmapFile(pid, slot_va(slot), pages, prot, name, shared, offset))
                mapped[slot] = pages
                shmem.discard(slot)
            else:
                pages = draw(st.integers(1, 3))
                program.append(ops.Mmap(pid, slot_va(slot), pages, "rw-", shape == "shared"))
                mapped[slot] = pages
                if shape == "shared":
                    shmem.add(slot)
                else:
                    shmem.discard(slot)
        elif kind == "access":
            slot = draw(st.sampled_from(sorted(mapped)))
            va = slot_va(slot, draw(st.integers(0, mapped[slot] - 1))) + 8 * draw(st.integers(0, 3))
            if draw(st.booleans()):
                program.append(ops.Load(0, va))
            else:
                program.append(ops.Store(0, va, draw(st.integers(1, 999))))
        elif kind == "madvise":
            slot = draw(st.sampled_from(sorted(mapped)))
            advice = draw(st.sampled_from(["pageout", "pageout", "pageout", "cold", "dontneed"]))
            if advice == "pageout" and slot in shmem:
                advice = "cold"  # the model does not reclaim shmem: docs/linux-oracle.md, shmem-pageout
            program.append(ops.Madvise(pid, slot_va(slot), mapped[slot], advice))
        elif kind == "file":
            name = draw(st.sampled_from(sorted(FILES)))
            offset = 8 * draw(st.integers(0, FILES[name] * PAGE // 8 - 1))
            which = draw(st.sampled_from(["read", "read", "write", "fsync", "msync", "truncate"]))
            if which == "read":
                program.append(pops.FileRead(name, offset))
            elif which == "write":
                program.append(pops.FileWrite(name, offset, draw(st.integers(1, 999))))
            elif which == "fsync":
                program.append(pops.Fsync(name))
            elif which == "msync":
                slot = draw(st.sampled_from(sorted(mapped)))
                program.append(pops.Msync(pid, slot_va(slot), mapped[slot]))
            else:
                program.append(pops.Truncate(name, draw(st.integers(1, FILES[name]))))
        elif kind == "status":
            program.append(pops.StatusOp(draw(st.sampled_from(live))))
        elif kind == "pagemap":
            slot = draw(st.sampled_from(sorted(mapped)))
            program.append(ops.PagemapOp(draw(st.sampled_from(live)), slot_va(slot)))
        elif kind == "fork" and len(live) < 2:
            program.append(ops.Fork(pid))
            live.append(len(live) + 1)
        elif kind == "switch" and len(live) > 1:
            current = draw(st.sampled_from(live))
            program.append(ops.Switch(0, current))
        elif kind == "swapoff" and swap_on and len(program) > 8:
            program.append(pops.Swapoff())
            swap_on = False
    program.extend(pops.StatusOp(p) for p in live)
    return Scenario(CONFIG, tuple(program))


def over_limit(pages: int = 512, frames: int = 320) -> Scenario:
    """One process stores a distinct value in each of ``pages`` pages, then loads every one back, then ``status``.

    Run under a cgroup limit below ``pages`` pages (``oracles.linux.pressure.run`` ``limit``) the kernel must
    reclaim on its own, and with ``frames`` below ``pages`` so must the model (direct reclaim): every load must
    still return what was stored, and each side must hold every page in memory or in swap.
    """
    program: list[Op] = [ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, pages, "rw-")]
    program += [ops.Store(0, BASE + i * PAGE, i + 1) for i in range(pages)]
    program += [pops.StatusOp(1)]
    program += [ops.Load(0, BASE + i * PAGE) for i in range(pages)]
    program += [pops.StatusOp(1)]
    return Scenario(Config(frames=frames, cpus=1, swap=2 * pages), tuple(program))
