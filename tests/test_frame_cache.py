"""The frame cache of the lockstep check: the abstraction read through it is the one read without it, and a
change to the implementation's memory between two checks is still seen by the next one."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from impl.paging.physmem import PhysMem
from lang.errors import MMCheckError
from lang.kernel_ops import KernelOp, Load, Mmap, Spawn, Store, Switch
from lang.scenario import Config, load
from properties.abstraction import abstract_kernel
from properties.drivers import DivergenceError, Lockstep
from properties.frame_cache import FrameCache

SCENARIOS = sorted(Path(__file__).parent.joinpath("scenarios").glob("*.json"))
KERNEL_SCENARIOS = [path for path in SCENARIOS if any(isinstance(op, KernelOp) for op in load(path).ops)]


def test_a_frame_is_read_again_exactly_when_its_bytes_changed() -> None:
    """Unchanged bytes reuse the words; a write, even one putting back an equal-looking value elsewhere, rereads."""
    mem = PhysMem(4)
    mem.write(0x1008, 7)
    cache = FrameCache(mem)
    assert [(1, 7)] == cache.entries(1)
    assert [(1, 7)] == cache.entries(1)
    assert (1, 1) == (cache.hits, cache.misses)
    mem.write(0x1010, 9)
    assert [(1, 7), (2, 9)] == cache.entries(1)
    mem.zero_frame(1)
    assert [] == cache.entries(1)
    mem.copy_frame(2, 1)
    assert [] == cache.entries(1)
    assert 3 == cache.misses


@pytest.mark.parametrize("path", KERNEL_SCENARIOS, ids=lambda p: p.stem)
def test_the_cached_abstraction_is_the_uncached_one(path: Path) -> None:
    """After every op of every kernel scenario, abstracting through the run's cache gives the fresh abstraction."""
    scenario = load(path)
    lockstep = Lockstep(scenario.config)
    for op in scenario.ops:
        with contextlib.suppress(MMCheckError):
            lockstep.apply(op)
        kernel = lockstep.impl.kernel.kernel
        if kernel is not None:
            assert abstract_kernel(kernel) == abstract_kernel(kernel, lockstep.frames)
    assert lockstep.frames.hits, "the scenarios reuse frames between checks"


def test_a_page_table_changed_behind_the_checks_back_is_caught_at_the_next_check() -> None:
    """An entry rewritten directly in the implementation's memory (a frame the cache has seen) is a divergence."""
    lockstep = Lockstep(Config(frames=32, cpus=1, max_order=2))
    for op in (Spawn(), Switch(0, 1), Mmap(1, 0x10000000, 2, "rw-"), Store(0, 0x10000000, 5)):
        lockstep.apply(op)
    kernel = lockstep.impl.kernel.kernel
    assert kernel is not None
    (pte_pa, entry) = next((pa, e) for _, pa, e in kernel.user_ptes(kernel.procs[1]))
    assert lockstep.frames.hits
    kernel.mem.write(pte_pa, entry & ~2)  # the leaf loses R/W without the spec knowing
    with pytest.raises(DivergenceError, match="kernel state differs"):
        lockstep.apply(Load(0, 0x10000000))
