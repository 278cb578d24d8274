"""mmcheck explain on slab scenarios: where each object came from and went, read off the spec's states."""

from __future__ import annotations

from pathlib import Path

from lang import ops
from lang.scenario import Config, Scenario, load
from mmcheck.views.explain import explain, narrate
from mmcheck.views.slabstory import swab

SCENARIOS = Path(__file__).parent / "scenarios"
BASE = 0xFFFF888000000000


def rules(scenario: Scenario) -> list[str]:
    return [step.rule for step in narrate(scenario)]


def test_the_three_sources_of_an_object_are_named_with_their_functions() -> None:
    """A new slab from the buddy, the CPU's freelist head, then a partial slab after the active one filled."""
    scenario = Scenario(
        Config(frames=16, slub_min_objects=1),
        (
            ops.KmemCacheCreate("big", 4000),
            ops.KmemCacheAlloc("big", 0),
            ops.KmemCacheAlloc("big", 0),
            ops.KmemCacheFree("big", BASE),
            ops.KmemCacheAlloc("big", 0),
        ),
    )
    told = rules(scenario)
    assert "new_slab, allocate_slab" in told[1] and "order-0 block at pfn 0x0" in told[1]
    assert "drops it as full" in told[2] and "new slab" in told[2]
    assert "goes on the partial list (it was full)" in told[3]
    assert "off the node's partial list (get_partial)" in told[4] and "slab 0x0" in told[4]


def test_the_fast_path_and_a_frozen_slab() -> None:
    scenario = load(SCENARIOS / "slab-double-free.json")
    told = rules(scenario)
    assert "fast path" in told[2] and "slab_alloc_node" in told[2]
    assert "cpu 0's (frozen), so no list changes" in told[3]
    assert "SlabDoubleFree" in told[4] and "set_freepointer" in told[4]
    assert "NotObjectStart" in told[7]


def test_an_empty_slab_above_min_partial_is_discarded() -> None:
    lines, ok = explain(load(SCENARIOS / "slab-min-partial-discard.json"))
    assert ok
    discards = [line for line in lines if "discard_slab returns its order-0 block" in line]
    assert 2 == len(discards), discards
    kept = [line for line in lines if "fewer than min_partial (5) partial slabs, so it goes on" in line]
    assert ["[9]", "[10]", "[11]", "[12]", "[13]"] == [line.split()[0] for line in kept][:5]


def test_the_hardened_pointer_decodes_to_the_spec_next_object() -> None:
    """The word after a free is next ^ s->random ^ swab(ptr_addr): decoded with the cache's secret it is the
    object the spec says comes next, and the raw pointer is not what memory holds."""
    scenario = load(SCENARIOS / "slab-double-free.json")
    steps = list(narrate(scenario))
    pointer = next(line for line in steps[3].changes if "freelist_ptr_encode" in line)
    stored = int(pointer.split(" holds ")[1].split()[0], 16)
    ptr_addr = BASE + 32
    assert "decoded: 0xffff888000000080" in pointer
    assert stored != BASE + 0x80
    assert "but the spec" not in pointer
    assert stored ^ swab(ptr_addr) != BASE + 0x80


def test_a_first_slab_op_that_is_not_a_create_is_told() -> None:
    """The allocator is made at the first slab op: a kmalloc first is told against the empty kmalloc caches."""
    told = rules(Scenario(Config(frames=16), (ops.Kmalloc(64, 0), ops.Kfree(BASE))))
    assert "kmalloc-class kmalloc-64" in told[0] and "new slab (new_slab, allocate_slab)" in told[0]
    assert told[1].startswith("kfree(")


def test_meminfo_in_a_kernel_with_slabs_tells_the_slab_frames() -> None:
    """In a kernel scenario meminfo's Slab is the slab allocator's frames, and none of it is available."""
    lines, ok = explain(load(SCENARIOS / "meminfo-slab-in-the-kernel.json"))
    assert ok
    told = [line for line in lines if line.strip().startswith("Slab ") and "kB: the slab" in line]
    assert len(told) == 2 and "Slab 20 kB: the slab allocator's 5 frame(s)" in told[0]
    assert all("MemAvailable counts none of it" in line for line in told)
