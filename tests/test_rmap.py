"""The implementation's reverse map (``Kernel.rmap``) equals the one read off the page tables after random runs."""

from __future__ import annotations

import contextlib
import random

import pytest

from lang.errors import MMCheckError
from lang.kernel_ops import Exit, Fork, Load, Madvise, Mmap, Mprotect, Munmap, Spawn, Store, Switch
from lang.pressure_ops import FileCreate, FileRead, MmapFile, Reclaim, Swapoff, Truncate
from lang.scenario import Config, Op
from properties.drivers import ImplRunner

ANON, FILE, PAGE = 0x10000000, 0x40000000, 4096


def random_op(rng: random.Random, pids: list[int]) -> Op:
    pid = rng.choice(pids)
    page = rng.randrange(8)
    base = rng.choice((ANON, FILE))
    pick = rng.randrange(14)
    ops: list[Op] = [
        Store(0, base + page * PAGE, rng.randrange(1, 99)),
        Store(1, ANON + page * PAGE, rng.randrange(1, 99)),
        Load(0, base + page * PAGE),
        Load(1, base + page * PAGE),
        Fork(pid),
        Switch(rng.randrange(2), pid),
        Mmap(pid, ANON + page * PAGE, rng.randrange(1, 5), rng.choice(("rw-", "r--")), rng.random() < 0.3),
        MmapFile(pid, FILE + page * PAGE, rng.randrange(1, 5), rng.choice(("rw-", "r--")), "f", rng.random() < 0.5),
        Munmap(pid, base + page * PAGE, rng.randrange(1, 4)),
        Mprotect(pid, base + page * PAGE, rng.randrange(1, 4), rng.choice(("rw-", "r--", "---"))),
        Madvise(pid, base + page * PAGE, rng.randrange(1, 4), rng.choice(("dontneed", "cold", "pageout"))),
        Reclaim(rng.randrange(1, 6)),
        FileRead("f", page * PAGE) if rng.random() < 0.7 else Truncate("f", rng.randrange(9)),
        Exit(pid) if rng.random() < 0.5 else Swapoff(),
    ]
    return ops[pick]


@pytest.mark.parametrize("seed", range(12))
def test_rmap_equals_the_page_table_scan_after_random_ops(seed: int) -> None:
    rng = random.Random(seed)
    runner = ImplRunner(Config(frames=96, cpus=2, max_order=6, swap=16))
    for op in (Spawn(), Spawn(), Switch(0, 1), Switch(1, 2), FileCreate("f", 8)):
        runner.apply(op)
    kernel = runner.kernel.kernel
    assert kernel is not None
    mapped = 0
    for _ in range(300):
        with contextlib.suppress(MMCheckError):  # bad input leaves the state as it was: checked all the same
            runner.apply(random_op(rng, sorted(kernel.procs) or [1]))
        assert kernel.rmap == kernel.rmap_scan()
        assert kernel.rmap_problem() is None
        mapped = max(mapped, sum(len(users) for users in kernel.rmap.values()))
    assert mapped > 0, "the run mapped pages, so the check compared something"


def test_rmap_problem_names_a_frame_the_map_disagrees_on() -> None:
    runner = ImplRunner(Config(frames=64, cpus=1, max_order=6))
    for op in (Spawn(), Switch(0, 1), Mmap(1, ANON, 2, "rw-"), Store(0, ANON, 5)):
        runner.apply(op)
    kernel = runner.kernel.kernel
    assert kernel is not None and kernel.rmap_problem() is None
    pfn = next(iter(kernel.rmap))
    kernel.rmap[pfn].clear()
    problem = kernel.rmap_problem()
    assert problem is not None and f"{pfn:#x}" in problem
