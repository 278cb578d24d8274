"""Memory pressure: fault-around and smaps_rollup, on both sides, against what Linux 6.18 was seen doing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lang.errors import ConfigError, ScenarioError
from lang.kernel_ops import StatOp
from lang.pressure_ops import StatusOp
from lang.scenario import Config, Scenario, load, parse_op
from properties.replay import replay
from spec.alloc import buddy
from spec.mm.kernel import boot
from spec.mm.vma import Prot, Vma
from spec.pressure.files import fault_around_window

BASE = 0x200000000000
PAGE = 4096
FILE_PAGES = 40

# Measured on Linux 6.18 with a C mmap test: a file of 40 pages all in the page cache, mapped MAP_SHARED at
# BASE + start pages, ``pages`` long; one read of page ``read`` of the mapping; the pages /proc/self/pagemap
# then shows present (indexes in the mapping).
LINUX_CASES = [
    pytest.param(0, 32, 5, set(range(16)), id="aligned-window"),
    pytest.param(3, 32, 2, set(range(16)), id="vma-start-clips-then-16-pages"),
    pytest.param(0, 6, 1, set(range(6)), id="vma-end-clips"),
    pytest.param(510, 8, 0, {0, 1}, id="page-table-end-clips"),
    pytest.param(0, 40, 20, set(range(16, 32)), id="second-window"),
]


def ops(*raw: dict[str, Any]) -> list[Any]:
    return [parse_op(r, f"ops[{i}]") for i, r in enumerate(raw)]


def cached_file_mapping(start: int, pages: int, read: int, shared: bool = True, **config: Any) -> Scenario:
    """The measured setup: every page of the file read into the cache, the mapping, one read, then pagemap of
    every page of the mapping."""
    va = BASE + start * PAGE
    steps = [
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "file_create", "file": "f", "pages": FILE_PAGES, "words": {hex(i * PAGE): i + 1 for i in range(40)}},
        *({"op": "file_read", "file": "f", "offset": hex(i * PAGE)} for i in range(FILE_PAGES)),
        {"op": "mmap_file", "pid": 1, "va": hex(va), "pages": pages, "prot": "r--", "shared": shared, "file": "f"},
        {"op": "load", "cpu": 0, "va": hex(va + read * PAGE)},
        *({"op": "pagemap", "pid": 1, "va": hex(va + i * PAGE)} for i in range(pages)),
        {"op": "status", "pid": 1},
    ]
    return Scenario(Config(frames=128, max_order=5, **config), tuple(ops(*steps)))


def present(results: list[dict[str, Any]], pages: int) -> set[int]:
    return {i for i, r in enumerate(results[-1 - pages : -1]) if r["present"]}


@pytest.mark.parametrize(("start", "pages", "read", "linux"), LINUX_CASES)
@pytest.mark.parametrize("model", ["spec", "impl"])
def test_fault_around_maps_what_linux_maps(start: int, pages: int, read: int, linux: set[int], model: str) -> None:
    """Each side, alone, maps the pages Linux mapped, and counts one (minor) fault."""
    results = replay(cached_file_mapping(start, pages, read), model).results
    assert results[-2 - pages] == {"value": read + 1}
    assert present(results, pages) == linux
    assert results[-1]["RssFile"] == 4 * len(linux)
    assert (results[-1]["minflt"], results[-1]["majflt"]) == (1, 0)


@pytest.mark.parametrize(("start", "pages", "read", "linux"), LINUX_CASES)
def test_sides_agree_on_fault_around(start: int, pages: int, read: int, linux: set[int]) -> None:
    """Lockstep: the implementation's page tables, abstracted, are the spec's after every step."""
    report = replay(cached_file_mapping(start, pages, read, shared=False))
    assert report.divergence is None, report.divergence
    assert present(report.results, pages) == linux


@pytest.mark.parametrize("model", ["spec", "impl"])
def test_fault_around_off_maps_only_the_faulting_page(model: str) -> None:
    """``fault_around_bytes`` 4096: one page per fault (``should_fault_around``)."""
    results = replay(cached_file_mapping(0, 32, 5, fault_around_bytes=4096), model).results
    assert present(results, 32) == {5}


@pytest.mark.parametrize(("around", "window"), [(8192, {4, 5}), (131072, set(range(32)))])
def test_the_window_follows_fault_around_bytes(around: int, window: set[int]) -> None:
    """A smaller or larger window, aligned to its own size."""
    results = replay(cached_file_mapping(0, 40, 5, fault_around_bytes=around)).results
    assert present(results, 40) == window


def test_window_function_clips_like_do_fault_around() -> None:
    """The spec's window on its own: aligned start, clipped up to the VMA's start, 16 pages on, clipped to the VMA
    and to the page table."""
    k = boot(buddy.initial(16), 1)
    prot = Prot(True, False, False)
    vma = Vma(0x200000003, 0x200000003 + 32, prot, True, 1, 0)
    assert fault_around_window(k, vma, 0x200000005) == range(0x200000003, 0x200000003 + 16)
    vma = Vma(0x2000001FE, 0x2000001FE + 8, prot, True, 1, 0)
    assert fault_around_window(k, vma, 0x2000001FE) == range(0x2000001FE, 0x200000200)
    assert k.fault_around == 16
    k = boot(buddy.initial(16), 1, fault_around=1)
    assert fault_around_window(k, vma, 0x2000001FE) == range(0)


@pytest.mark.parametrize("model", ["spec", "impl"])
def test_fault_around_leaves_non_empty_entries(model: str) -> None:
    """A private COW copy in the window stays the process's own anonymous page (``pte_none`` only)."""
    steps = ops(
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "file_create", "file": "f", "pages": 4, "words": {"0x3000": 7}},
        *({"op": "file_read", "file": "f", "offset": hex(i * PAGE)} for i in range(4)),
        {"op": "mmap_file", "pid": 1, "va": hex(BASE), "pages": 4, "prot": "rw-", "shared": False, "file": "f"},
        {"op": "store", "cpu": 0, "va": hex(BASE + 3 * PAGE), "value": 9},
        {"op": "load", "cpu": 0, "va": hex(BASE)},
        {"op": "load", "cpu": 0, "va": hex(BASE + 3 * PAGE)},
        {"op": "status", "pid": 1},
        {"op": "file_read", "file": "f", "offset": "0x3000"},
    )
    results = replay(Scenario(Config(frames=64, max_order=4), tuple(steps)), model).results
    assert results[-3] == {"value": 9}
    assert (results[-2]["RssAnon"], results[-2]["RssFile"], results[-2]["minflt"]) == (4, 12, 2)
    assert results[-1] == {"value": 7}


@pytest.mark.parametrize("model", ["spec", "impl"])
def test_shmem_fault_around_maps_writable(model: str) -> None:
    """Shmem has no dirty tracking, so the child's prefaulted entry is writable: its store faults no more (measured
    on Linux 6.18: 0 minor faults for it, 1 for a store to a page not in the cache)."""
    steps = ops(
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "mmap", "pid": 1, "va": hex(BASE), "pages": 4, "prot": "rw-", "shared": True},
        {"op": "store", "cpu": 0, "va": hex(BASE + PAGE), "value": 1},
        {"op": "store", "cpu": 0, "va": hex(BASE + 2 * PAGE), "value": 2},
        {"op": "fork", "pid": 1},
        {"op": "switch", "cpu": 0, "pid": 2},
        {"op": "load", "cpu": 0, "va": hex(BASE)},
        {"op": "status", "pid": 2},
        {"op": "store", "cpu": 0, "va": hex(BASE + PAGE), "value": 3},
        {"op": "status", "pid": 2},
        {"op": "store", "cpu": 0, "va": hex(BASE + 3 * PAGE), "value": 3},
        {"op": "status", "pid": 2},
    )
    results = replay(Scenario(Config(frames=64, max_order=4), tuple(steps)), model).results
    assert [results[i]["minflt"] for i in (-5, -3, -1)] == [1, 1, 2]
    assert results[-5]["RssShmem"] == 12


@pytest.mark.parametrize("value", [0, 3, 12288, 4096 * 1024, "0x3000", True])
def test_config_refuses_what_linux_would_round(value: object) -> None:
    """Only a power of two from 4096 to 2 MiB; the error names the field."""
    with pytest.raises(ScenarioError, match=r"config\.fault_around_bytes"):
        Config.from_json({"frames": 8, "fault_around_bytes": value})


def test_config_keeps_the_default_out_of_the_file() -> None:
    """65536 is the default and is not written; another value round-trips."""
    assert "fault_around_bytes" not in Config(frames=8).to_json()
    config = Config.from_json({"frames": 8, "fault_around_bytes": 4096})
    assert config.to_json()["fault_around_bytes"] == 4096 and config.fault_around_pages == 1
    assert Config.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="fault_around_bytes 12288"):
        Config(frames=8, fault_around_bytes=12288)


# --- smaps_rollup -----------------------------------------------------------------------------------------------

SMAPS = Path(__file__).parent / "scenarios" / "pressure-smaps.json"


def with_observations(path: Path) -> Scenario:
    """The scenario with, after each smaps step, stat and status of the same process."""
    scenario = load(path)
    steps: list[Any] = []
    for op in scenario.ops:
        steps.append(op)
        if op.name == "smaps":
            steps += [StatOp(op.pid), StatusOp(op.pid)]  # type: ignore[attr-defined]
    return Scenario(scenario.config, tuple(steps))


@pytest.mark.parametrize("model", ["spec", "impl"])
def test_stat_and_status_agree_with_smaps(model: str) -> None:
    """stat is smaps_rollup's Rss, Pss, Private_Clean + Private_Dirty and Anonymous; status's VmRSS is RssAnon +
    RssFile + RssShmem, equal to Rss, and VmSwap is Swap."""
    results = replay(with_observations(SMAPS), model).results
    checked = 0
    for smaps, stat, status in zip(results, results[1:], results[2:], strict=False):
        if "SwapPss" not in smaps:
            continue
        uss = smaps["Private_Clean"] + smaps["Private_Dirty"]
        assert stat == {"rss_kb": smaps["Rss"], "pss_kb": smaps["Pss"], "uss_kb": uss, "anon_kb": smaps["Anonymous"]}
        assert status["VmRSS"] == status["RssAnon"] + status["RssFile"] + status["RssShmem"] == smaps["Rss"]
        assert (status["VmSwap"], status["RssAnon"]) == (smaps["Swap"], smaps["Anonymous"])
        assert smaps["Pss"] == smaps["Pss_Anon"] + smaps["Pss_File"] + smaps["Pss_Shmem"]
        assert smaps["Rss"] == sum(smaps[k] for k in ("Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty"))
        checked += 1
    assert checked == 12


@pytest.mark.parametrize("model", ["spec", "impl", "both"])
def test_a_store_dirties_the_entry_of_a_swap_cache_page(model: str) -> None:
    """An exclusive page swapped in by a read is mapped writable and clean and stays in the swap cache
    (do_swap_page: ``pte_mkdirty`` only for a write fault); the store after it goes through the writable entry
    without a fault and sets its dirty bit, so smaps counts it Private_Dirty while the page is not PG_dirty."""
    steps = ops(
        {"op": "spawn"},
        {"op": "switch", "cpu": 0, "pid": 1},
        {"op": "mmap", "pid": 1, "va": hex(BASE), "pages": 1, "prot": "rw-"},
        {"op": "store", "cpu": 0, "va": hex(BASE), "value": 3},
        {"op": "madvise", "pid": 1, "va": hex(BASE), "pages": 1, "advice": "pageout"},
        {"op": "load", "cpu": 0, "va": hex(BASE)},
        {"op": "smaps", "pid": 1},
        {"op": "store", "cpu": 0, "va": hex(BASE), "value": 4},
        {"op": "smaps", "pid": 1},
        {"op": "status", "pid": 1},
        {"op": "meminfo"},
    )
    report = replay(Scenario(Config(frames=64, max_order=4, swap=2), tuple(steps)), model)
    assert report.divergence is None
    results = report.results
    assert (results[6]["Private_Clean"], results[6]["Private_Dirty"]) == (4, 0)
    assert (results[8]["Private_Clean"], results[8]["Private_Dirty"], results[8]["Pss_Dirty"]) == (0, 4, 4)
    assert (results[9]["minflt"], results[9]["majflt"]) == (1, 1)
    assert results[10]["SwapCached"] == 4 and results[10]["Dirty"] == 0


SLAB_AND_KERNEL = (
    {"op": "kmalloc", "size": 64, "cpu": 0},
    {"op": "spawn"},
    {"op": "switch", "cpu": 0, "pid": 1},
    {"op": "mmap", "pid": 1, "va": hex(BASE), "pages": 2, "prot": "rw-"},
    {"op": "store", "cpu": 0, "va": hex(BASE), "value": 3},
    {"op": "kmem_cache_create", "cache": "big", "size": 2000},
    {"op": "kmem_cache_alloc", "cache": "big", "cpu": 0},
    {"op": "store", "cpu": 0, "va": hex(BASE + PAGE), "value": 4},
    {"op": "meminfo"},
)


def test_the_kernel_holds_the_slab_frames_made_before_and_after_it_boots() -> None:
    """A slab made before the kernel boots and one made after are both the kernel's slab frames, on each side;
    the L1 invariants hold, and without the slab frames the no-leak accounting finds them allocated but
    unreachable.  meminfo's Slab is theirs, and MemTotal is the sum of what is free and what is used."""
    from dataclasses import replace as dc_replace

    from properties.drivers import Lockstep
    from spec.mm import invariants
    from spec.slab.cache import slab_frames

    lockstep = Lockstep(Config(frames=64, max_order=3))
    results = [lockstep.apply(op) for op in ops(*SLAB_AND_KERNEL)]
    k, slab = lockstep.spec.kernel.kernel, lockstep.spec.slab.state
    assert k is not None and slab is not None and len(slab.slabs) == 2
    frames = slab_frames(slab)
    assert k.slab == frames and len(frames) == 1 + 4  # an order-0 kmalloc-64 slab, an order-2 slab of "big"
    impl = lockstep.impl.kernel.kernel
    assert impl is not None and impl.slab_frames == set(frames) == set(lockstep.impl.slab.frames())
    assert invariants.violations(k) == []
    assert any("leaked" in p for p in invariants.leak_violations(dc_replace(k, slab=frozenset())))
    info = results[-1]
    assert (info["Slab"], info["SReclaimable"], info["SUnreclaim"]) == (20, 0, 20)
    boot_and_pgd = (6 + 1) * 4
    used = boot_and_pgd + info["PageTables"] + info["AnonPages"] + info["Slab"]
    assert info["MemTotal"] == info["MemFree"] + used
    assert info["MemAvailable"] == info["MemFree"]  # no page cache, no reclaimable slab


def test_a_slab_freed_back_to_the_buddy_leaves_the_kernel() -> None:
    """kmem_cache_destroy of an emptied cache returns its slab to the buddy: the kernel no longer holds those
    frames, meminfo's Slab drops by them and MemFree grows by them."""
    from properties.drivers import Lockstep

    lockstep = Lockstep(Config(frames=64, max_order=3))
    results = [lockstep.apply(op) for op in ops(*SLAB_AND_KERNEL)]
    addr = results[6]["addr"]
    lockstep.apply(ops({"op": "kmem_cache_free", "cache": "big", "addr": addr})[0])
    lockstep.apply(ops({"op": "kmem_cache_destroy", "cache": "big"})[0])
    after = lockstep.apply(ops({"op": "meminfo"})[0])
    k = lockstep.spec.kernel.kernel
    assert k is not None and len(k.slab) == 1
    assert (after["Slab"], after["MemFree"]) == (results[-1]["Slab"] - 16, results[-1]["MemFree"] + 16)
