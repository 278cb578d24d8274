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


@pytest.mark.parametrize("seed", range(6))
def test_the_kept_mm_counters_equal_the_page_table_scan_after_random_ops(seed: int) -> None:
    """get_mm_rss, MM_SWAPENTS and mm_pgtables_bytes, kept as leaves and tables change, are what the page tables
    hold after faults, forks, exits, munmap, mprotect, madvise, reclaim, swapoff and truncate."""
    rng = random.Random(seed)
    runner = ImplRunner(Config(frames=96, cpus=2, max_order=6, swap=16))
    for op in (Spawn(), Spawn(), Switch(0, 1), Switch(1, 2), FileCreate("f", 8)):
        runner.apply(op)
    kernel = runner.kernel.kernel
    assert kernel is not None
    seen = [0, 0, 0]
    for _ in range(300):
        with contextlib.suppress(MMCheckError):
            runner.apply(random_op(rng, sorted(kernel.procs) or [1]))
        assert kernel.mm_counters_problem() is None
        for pid, counts in kernel.mm_counters_scan().items():
            assert kernel.mm_counts(pid) == counts
            seen = [max(a, b) for a, b in zip(seen, counts, strict=True)]
    assert seen[0] > 0 and seen[2] > 0, "the run mapped pages and made tables, so the check compared something"


def test_mm_counters_problem_names_the_process_they_disagree_on() -> None:
    runner = ImplRunner(Config(frames=64, cpus=1, max_order=6))
    for op in (Spawn(), Switch(0, 1), Mmap(1, ANON, 2, "rw-"), Store(0, ANON, 5)):
        runner.apply(op)
    kernel = runner.kernel.kernel
    assert kernel is not None and kernel.mm_counters_problem() is None
    assert kernel.mm_counts(1) == (1, 0, 3)  # one page stored; its PDPT, PD and PT
    kernel.mm_counters[1][0] += 1
    problem = kernel.mm_counters_problem()
    assert problem is not None and "process 1's mm counters are (2, 0, 3)" in problem
    kernel.mm_counters[1][0] -= 1
    kernel.mm_counters[99] = [0, 0, 0]
    assert kernel.mm_counters_problem() == "mm counters kept for processes that are gone: [99]"
