"""The slab layer: geometry against a live kernel's numbers, the spec's rules, the implementation's, lockstep."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.alloc.buddy import BuddyAllocator
from impl.paging.physmem import PhysMem
from impl.slab import geometry as impl_geometry
from impl.slab.slub import Slub, swab64
from lang import errors
from lang.scenario import Config, Scenario
from lang.slab_ops import Kfree, Kmalloc, KmemCacheAlloc, KmemCacheCreate, KmemCacheFree, KmemRead, SlabInfo
from lang.verdict import Status
from properties.drivers import DivergenceError, Lockstep
from properties.machinery import run_machine
from properties.mutants import select
from properties.replay import replay
from properties.slab.abstraction import abstract_slab, count_violations, decode_freelist
from properties.slab.slab_machine import SlabMachine
from spec.alloc import buddy as spec_buddy
from spec.slab import cache as spec_slab
from spec.slab import geometry, invariants

K = spec_slab.PAGE_OFFSET

# Read from /sys/kernel/slab/<cache>/{order,objs_per_slab,object_size,slab_size,align} on a 2-CPU x86-64
# machine (num_present_cpus() == 2), Linux 6.18.44, no slub_debug: (order, objects, object_size, size, align).
SYSFS_FACTS_2_CPUS = {
    "kmalloc-8": (0, 512, 8, 8, 8),
    "kmalloc-16": (0, 256, 16, 16, 16),
    "kmalloc-32": (0, 128, 32, 32, 32),
    "kmalloc-64": (0, 64, 64, 64, 64),
    "kmalloc-96": (0, 42, 96, 96, 32),
    "kmalloc-128": (0, 32, 128, 128, 128),
    "kmalloc-192": (0, 21, 192, 192, 64),
    "kmalloc-256": (0, 16, 256, 256, 256),
    "kmalloc-512": (1, 16, 512, 512, 512),
    "kmalloc-1k": (2, 16, 1024, 1024, 1024),
    "kmalloc-2k": (3, 16, 2048, 2048, 2048),
    "kmalloc-4k": (3, 8, 4096, 4096, 4096),
    "kmalloc-8k": (3, 4, 8192, 8192, 8192),
}
# The same machine's task_struct (object 5840, align 64, no constructor): 5 objects of 5888 in order 3;
# dentry (192, align 8): 21 in order 0.
SYSFS_TASK_STRUCT = (3, 5, 5840, 5888, 64)
SYSFS_DENTRY = (0, 21, 192, 192, 8)


def facts(g: geometry.Geometry) -> tuple[int, int, int, int, int]:
    return g.order, g.objects, g.object_size, g.size, g.align


# --- geometry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", geometry.KMALLOC_INDICES)
def test_kmalloc_geometry_matches_sysfs(index: int) -> None:
    """Each kmalloc cache's order, objects per slab, sizes and alignment are the live kernel's on 2 CPUs."""
    name = geometry.kmalloc_name(index)
    assert SYSFS_FACTS_2_CPUS[name] == facts(geometry.kmalloc_geometry(index, cpus=2))


def test_plain_cache_geometry_matches_sysfs() -> None:
    """task_struct's and dentry's layouts come out of calculate_sizes as the kernel has them."""
    task = geometry.calculate_sizes(5840, 64, False, cpus=2)
    dentry = geometry.calculate_sizes(192, 8, False, cpus=2)
    assert task is not None and dentry is not None
    assert (SYSFS_TASK_STRUCT, SYSFS_DENTRY) == (facts(task), facts(dentry))


def test_live_kmalloc_caches_match_when_readable() -> None:
    """Oracle: this machine's /sys/kernel/slab kmalloc caches, with its present CPU count."""
    root = Path("/sys/kernel/slab")
    present = Path("/sys/devices/system/cpu/present")
    if not (root / "kmalloc-8").is_dir() or not present.exists():
        pytest.skip("no /sys/kernel/slab or no CPU count on this machine")
    cpus = sum(
        int(b) - int(a) + 1 if "-" in part else 1
        for part in present.read_text().strip().split(",")
        for a, _, b in [part.partition("-")]
    )
    for index in geometry.KMALLOC_INDICES:
        folder = root / geometry.kmalloc_name(index)
        if (folder / "sanity_checks").exists() and (folder / "sanity_checks").read_text().strip() == "1":
            pytest.skip("slub_debug is on: the layout has debug metadata")
        live = tuple(
            int((folder / f).read_text()) for f in ("order", "objs_per_slab", "object_size", "slab_size", "align")
        )
        assert live == facts(geometry.kmalloc_geometry(index, cpus)), folder.name


@pytest.mark.parametrize(
    ("size", "index", "roundup"),
    [
        (1, 3, 8),
        (8, 3, 8),
        (9, 4, 16),
        (64, 6, 64),
        (65, 1, 96),
        (96, 1, 96),
        (97, 7, 128),
        (129, 2, 192),
        (192, 2, 192),
        (193, 8, 256),
        (8192, 13, 8192),
        (8193, 14, 12288 + 4096),
    ],
)
def test_kmalloc_index_and_roundup(size: int, index: int, roundup: int) -> None:
    """__kmalloc_index and kmalloc_size_roundup, including the odd classes and a size above the caches."""
    assert index == geometry.kmalloc_index(size)
    assert roundup == geometry.kmalloc_size_roundup(size)


def test_kmalloc_zero() -> None:
    """0 has class 0 and rounds up to 0 (kmalloc(0) returns ZERO_SIZE_PTR)."""
    assert (0, 0) == (geometry.kmalloc_index(0), geometry.kmalloc_size_roundup(0))


def test_min_objects_grows_with_cpus() -> None:
    """4 * (fls(nr_cpus) + 1): 8, 12, 12, 16; slab_min_objects overrides it."""
    assert [8, 12, 12, 16, 5] == [geometry.min_objects_for(c) for c in (1, 2, 3, 4)] + [geometry.min_objects_for(4, 5)]


def test_free_pointer_offset() -> None:
    """In the middle of the object, word-aligned; after the object when there is a constructor."""
    no_ctor = geometry.calculate_sizes(100, 0, False, 1)
    ctor = geometry.calculate_sizes(100, 0, True, 1)
    assert no_ctor is not None and ctor is not None
    assert (48, 104) == (no_ctor.offset, no_ctor.size)
    assert (104, 112) == (ctor.offset, ctor.size)


def test_min_partial_is_clamped() -> None:
    """ilog2(size)/2 clamped to 5..10."""
    assert [5, 5, 6, 10] == [geometry.set_min_partial(s) for s in (8, 2048, 4096, 1 << 22)]


def test_merge_rule() -> None:
    """Same rounded size (or up to a word less), compatible alignment, no constructor on either side."""
    foo = geometry.calculate_sizes(200, 0, False, 1)
    assert foo is not None
    assert geometry.mergeable(foo, 196, 0, False)
    assert not geometry.mergeable(foo, 192, 0, False)  # 8 bytes to spare: a word, too many
    assert not geometry.mergeable(foo, 200, 0, True)
    assert not geometry.mergeable(foo, 200, 16, False)  # 200 is not a multiple of 16
    assert "foo" == geometry.find_mergeable([("foo", foo)], 193, 8, False)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 8192),
    align=st.sampled_from((0, 8, 16, 64, 256, 4096)),
    ctor=st.booleans(),
    cpus=st.integers(1, 64),
    min_objects=st.sampled_from((0, 1, 3, 16)),
    flags=st.frozensets(st.sampled_from(geometry.CACHE_FLAGS)),
)
def test_impl_geometry_agrees_with_spec(
    size: int, align: int, ctor: bool, cpus: int, min_objects: int, flags: frozenset[str]
) -> None:
    """The implementation's own geometry code gives the spec's numbers, slab_debug layouts included."""
    spec = geometry.calculate_sizes(size, align, ctor, cpus, min_objects, flags=flags)
    impl = impl_geometry.calculate_sizes(size, align, ctor, cpus, min_objects, flags=flags)
    if spec is None:
        assert impl is None
        return
    assert impl is not None
    assert (
        spec.size,
        spec.offset,
        spec.align,
        spec.order,
        spec.objects,
        spec.min_order,
        spec.min_objects,
        spec.min_partial,
        spec.inuse,
        spec.red_left_pad,
    ) == tuple(impl)
    assert spec.objects * spec.size <= 4096 << spec.order
    if not flags & geometry.DEBUG_FLAGS:  # no debug areas: the slot is the object (and pointer) aligned
        assert spec.red_left_pad == 0 and spec.size == geometry.align_up(spec.pad_offset, spec.align)


@given(size=st.integers(1, 8192))
def test_impl_kmalloc_index_agrees(size: int) -> None:
    """Both sides pick the same kmalloc class."""
    assert geometry.kmalloc_index(size) == impl_geometry.kmalloc_index(size)


# --- the spec ------------------------------------------------------------------------------------


def fresh(frames: int = 16, cpus: int = 1, min_objects: int = 0) -> tuple[spec_slab.SlabState, spec_buddy.BuddyState]:
    return spec_slab.initial(cpus, min_objects), spec_buddy.initial(frames)


def test_alloc_takes_the_freelist_head_and_free_pushes_it() -> None:
    """LIFO: the object freed last comes back first."""
    state, buddy = fresh()
    state, _ = spec_slab.create(state, "c", 64, 0, False)
    state, buddy, a = spec_slab.alloc(state, buddy, "c", 0)
    state, buddy, b = spec_slab.alloc(state, buddy, "c", 0)
    assert (K, K + 64) == (a, b)
    state, buddy = spec_slab.free(state, buddy, "c", a)
    state, buddy, again = spec_slab.alloc(state, buddy, "c", 0)
    assert a == again
    assert [] == invariants.violations(state, buddy)


def test_new_slab_comes_from_the_buddy_and_goes_back() -> None:
    """A slab is an allocated buddy block; shrink returns the empty one."""
    state, buddy = fresh()
    state, _ = spec_slab.create(state, "c", 1024, 0, False)
    state, buddy, a = spec_slab.alloc(state, buddy, "c", 0)
    assert spec_buddy.Block(0, 1) in buddy.allocated  # 8 objects of 1 KiB: order 1
    state, buddy = spec_slab.free(state, buddy, "c", a)
    state, buddy = spec_slab.shrink(state, buddy, "c")
    assert (frozenset(), {}) == (buddy.allocated, dict(state.slabs))


def test_refill_choice_must_be_a_partial_slab() -> None:
    """Refilling from a slab that is not on the partial list is a disallowed choice."""
    state, buddy = fresh(min_objects=1)
    state, _ = spec_slab.create(state, "c", 2048, 0, False)  # 2 objects per slab
    addrs = []
    for _ in range(4):
        state, buddy, addr = spec_slab.alloc(state, buddy, "c", 0)
        addrs.append(addr)
    state, buddy = spec_slab.free(state, buddy, "c", addrs[0])  # slab 0 was full: now partial
    assert frozenset({0}) == spec_slab.allowed_partials(state, "c", 0)  # the CPU's slab is full
    with pytest.raises(errors.DisallowedChoice):
        spec_slab.alloc(state, buddy, "c", 0, spec_slab.AllocChoice(partial=1))
    with pytest.raises(errors.DisallowedChoice):
        spec_slab.alloc(state, buddy, "c", 0, spec_slab.AllocChoice(pfn=4))


def test_any_permutation_of_a_new_slab_is_allowed() -> None:
    """A shuffled freelist (CONFIG_SLAB_FREELIST_RANDOM) is allowed; one with an object twice is not."""
    state, buddy = fresh(min_objects=1)
    state, _ = spec_slab.create(state, "c", 2048, 0, False)
    shuffled = spec_slab.AllocChoice(pfn=0, freelist=(K + 2048, K))
    _, _, addr = spec_slab.alloc(state, buddy, "c", 0, shuffled)
    assert K + 2048 == addr
    with pytest.raises(errors.DisallowedChoice):
        spec_slab.alloc(state, buddy, "c", 0, spec_slab.AllocChoice(pfn=0, freelist=(K, K)))


def test_out_of_memory() -> None:
    """With no block of the cache's order or its minimum order free, ENOMEM."""
    state, buddy = fresh(frames=1)
    state, _ = spec_slab.create(state, "c", 8192, 0, False)
    _, _, outcome = spec_slab.alloc(state, buddy, "c", 0)
    assert isinstance(outcome, spec_buddy.OutOfMemory)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s, b: spec_slab.free(s, b, "c", K), errors.SlabDoubleFree),
        (lambda s, b: spec_slab.free(s, b, "c", K + 64 * 5), errors.SlabDoubleFree),
        (lambda s, b: spec_slab.free(s, b, "c", K + 8), errors.NotObjectStart),
        (lambda s, b: spec_slab.free(s, b, "c", K + 0x100000), errors.NotSlabObject),
        (lambda s, b: spec_slab.free(s, b, "kmalloc-64", K + 64), errors.WrongCache),
        (lambda s, b: spec_slab.free(s, b, "nope", K + 64), errors.UnknownCache),
        (lambda s, b: spec_slab.kmalloc(s, b, 0, 0), errors.BadObjectSize),
        (lambda s, b: spec_slab.kmalloc(s, b, 8193, 0), errors.BadObjectSize),
        (lambda s, b: spec_slab.alloc(s, b, "c", 1), errors.UnknownCpu),
        (lambda s, b: spec_slab.create(s, "c", 64, 0, False), errors.DuplicateCache),
        (lambda s, b: spec_slab.create(s, "d", 64, 24, False), errors.BadAlignment),
        (lambda s, b: spec_slab.create(s, "bad name", 64, 0, False), errors.BadCacheName),
        (lambda s, b: spec_slab.destroy(s, b, "c"), errors.CacheInUse),
        (lambda s, b: spec_slab.destroy(s, b, "kmalloc-8"), errors.KmallocCacheDestroy),
        (lambda s, b: spec_slab.read_word(s, K), errors.ObjectNotAllocated),
    ],
)
def test_bad_input_is_a_typed_error(call: object, error: type[Exception]) -> None:
    """Each misuse raises its own InvalidArgument subclass."""
    state, buddy = fresh()
    state, _ = spec_slab.create(state, "c", 64, 0, False)
    for _ in range(2):
        state, buddy, _ = spec_slab.alloc(state, buddy, "c", 0)
    state, buddy = spec_slab.free(state, buddy, "c", K)
    assert issubclass(error, errors.InvalidArgument)
    with pytest.raises(error):
        call(state, buddy)  # type: ignore[operator]


def test_constructor_runs_at_slab_creation_only() -> None:
    """Every object of a new slab is constructed; an object written, freed and reallocated keeps its value."""
    state, buddy = fresh()
    state, _ = spec_slab.create(state, "c", 100, 0, True)
    state, buddy, addr = spec_slab.alloc(state, buddy, "c", 0)
    assert 36 == sum(1 for value in state.words.values() if value == spec_slab.CTOR_MARK)
    state = spec_slab.write_word(state, addr, 7)
    state, buddy = spec_slab.free(state, buddy, "c", addr)
    state, buddy, again = spec_slab.alloc(state, buddy, "c", 0)
    assert (addr, 7) == (again, spec_slab.read_word(state, again))


def test_slabinfo_and_meminfo() -> None:
    """One slab of kmalloc-96 with one object: 42 objects, all active (a CPU slab); 4 kB unreclaimable."""
    state, buddy = fresh()
    state, buddy, _ = spec_slab.kmalloc(state, buddy, 70, 0)
    row = next(r for r in spec_slab.slabinfo(state) if r.name == "kmalloc-96")
    assert spec_slab.SlabInfo("kmalloc-96", 42, 42, 96, 42, 1, 1, 1) == row
    assert {"Slab": 4, "SReclaimable": 0, "SUnreclaim": 4} == spec_slab.meminfo(state)


def test_invariants_catch_a_cycle_and_a_leak() -> None:
    """A freelist with an object twice, and a slab whose block the buddy lost, are reported."""
    state, buddy = fresh()
    state, _ = spec_slab.create(state, "c", 2048, 0, False)
    state, buddy, _ = spec_slab.alloc(state, buddy, "c", 0)
    slab = state.slabs[0]
    looped = spec_slab.with_slab(state, spec_slab.replace(slab, freelist=(slab.freelist[0], slab.freelist[0])))
    assert any("twice" in p for p in invariants.freelist_violations(looped))
    leaked = spec_buddy.free(buddy, 0, slab.order)
    assert invariants.buddy_violations(state, leaked)
    assert invariants.buddy_violations(spec_slab.initial(1), buddy)


# --- the implementation --------------------------------------------------------------------------


def impl(frames: int = 16, cpus: int = 1, seed: int = 3, min_objects: int = 0) -> Slub:
    return Slub(BuddyAllocator(frames), PhysMem(frames), cpus, seed, min_objects)


def test_free_pointers_are_encoded_in_the_free_objects() -> None:
    """A free object's word at s->offset is next ^ s->random ^ swab(ptr_addr); the last one encodes NULL."""
    slub = impl()
    slub.create("c", 64, 0, False)
    s = slub.lookup("c")
    first = slub.alloc("c", 0)
    assert first == K
    nxt = K + 64
    ptr_addr = nxt + s.offset
    assert (nxt + 64) ^ s.random ^ swab64(ptr_addr) == slub.mem.read(ptr_addr - K)
    last = K + 63 * 64
    assert s.random ^ swab64(last + s.offset) == slub.mem.read(last + s.offset - K)


def test_secrets_come_from_the_seed() -> None:
    """The same seed gives the same s->random; another seed another."""
    assert impl(seed=1).lookup("kmalloc-8").random == impl(seed=1).lookup("kmalloc-8").random
    assert impl(seed=1).lookup("kmalloc-8").random != impl(seed=2).lookup("kmalloc-8").random


def test_impl_errors_leave_state_unchanged() -> None:
    """Refused frees change neither the abstraction nor memory."""
    slub = impl()
    slub.create("c", 64, 0, False)
    a = slub.alloc("c", 0)
    slub.alloc("c", 0)
    assert a is not None
    slub.free("c", a)
    before = (abstract_slab(slub), dict(slub.mem.nonzero_words()))
    for bad in (
        lambda: slub.free("c", a),
        lambda: slub.free(None, a + 8),
        lambda: slub.free("kmalloc-64", a + 64),
        lambda: slub.destroy("c"),
        lambda: slub.kmalloc(0, 0),
    ):
        with pytest.raises(errors.SlabError):
            bad()
    assert before == (abstract_slab(slub), dict(slub.mem.nonzero_words()))
    assert [] == count_violations(slub, before[0])


def test_impl_discards_beyond_min_partial() -> None:
    """With one object per slab, frees keep min_partial empty slabs and return the rest to the buddy."""
    slub = impl(frames=16, min_objects=1)
    slub.create("big", 4000, 0, False)
    addrs = [slub.alloc("big", 0) for _ in range(8)]
    for addr in addrs[:7]:
        assert addr is not None
        slub.free("big", addr)
    assert (5, 6) == (len(slub.lookup("big").partial), slub.lookup("big").nr_slabs)


def test_decode_follows_the_chain() -> None:
    """The abstraction reads a new slab's freelist in address order from memory."""
    slub = impl()
    slub.create("c", 1024, 0, False)
    slub.alloc("c", 0)
    slab = slub.page_slab[0]
    assert tuple(K + i * 1024 for i in range(1, 8)) == decode_freelist(slub, slab)


# --- lockstep and scenarios ----------------------------------------------------------------------


def test_lockstep_checks_choices_and_state() -> None:
    """Lockstep agrees on a mixed run, and the slab pages' words reach the spec's memory."""
    lockstep = Lockstep(Config(frames=16, cpus=2))
    assert {"ok": True, "cache": "c"} == lockstep.apply(KmemCacheCreate("c", 100, 0, True))
    addr = int(lockstep.apply(KmemCacheAlloc("c", 1))["addr"], 16)
    assert {"value": hex(spec_slab.CTOR_MARK)} == lockstep.apply(KmemRead(addr))
    assert {"error": "EINVAL", "type": "WrongCache"} == lockstep.apply(KmemCacheFree("kmalloc-128", addr))
    assert {"ok": True} == lockstep.apply(Kfree(addr))
    assert lockstep.spec.state.memory.words  # the constructor marks and free pointers
    assert "slabinfo" in lockstep.apply(SlabInfo())


def test_lockstep_catches_a_mutant() -> None:
    """With kmalloc-96 gone from kmalloc_index, kmalloc(70) diverges at once."""
    mutant = select(["slab"], ["slab-kmalloc-no-96-192"])[0]
    with mutant.applied(), pytest.raises(DivergenceError):
        Lockstep(Config(frames=16)).apply(Kmalloc(70, 0))


def test_slab_ops_need_order_3() -> None:
    """A buddy without order 3 cannot hold slabs: a ConfigError on both sides."""
    with pytest.raises(errors.ConfigError):
        Lockstep(Config(frames=16, max_order=2)).apply(Kmalloc(8, 0))


def test_config_fields_written_only_when_set() -> None:
    """slab_seed and slub_min_objects stay out of a scenario that leaves them at 0."""
    assert "slab_seed" not in Config(frames=4).to_json()
    written = Config.from_json({"frames": 4, "slab_seed": 9}).to_json()
    assert (9, False) == (written["slab_seed"], "slub_min_objects" in written)
    assert {"slab_seed", "slub_min_objects"} <= {f.name for f in fields(Config)}


def test_ops_round_trip() -> None:
    """Every slab op writes itself back as it was read."""
    raw = {
        "config": {"frames": 16},
        "ops": [
            {"op": "kmem_cache_create", "cache": "c", "size": 64, "align": 8, "ctor": True},
            {"op": "kmem_cache_alloc", "cache": "c", "cpu": 0},
            {"op": "kmem_cache_free", "cache": "c", "addr": hex(K)},
            {"op": "kmalloc", "size": 5, "cpu": 0},
            {"op": "kfree", "addr": hex(K + 0x1000)},
            {"op": "kmem_write", "addr": hex(K), "value": "0x1"},
            {"op": "kmem_read", "addr": hex(K)},
            {"op": "kmem_cache_shrink", "cache": "c"},
            {"op": "kmem_cache_destroy", "cache": "c"},
            {"op": "slabinfo"},
            {"op": "slab_meminfo"},
        ],
    }
    assert raw["ops"] == Scenario.from_json(raw).to_json()["ops"]
    assert replay(Scenario.from_json(raw)).divergence is None


def test_slab_machine_fast_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A short run of the refinement machine finds nothing on the real implementation."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    fast = settings(max_examples=20, stateful_step_count=20, deadline=None, database=None, derandomize=True)
    status, detail = run_machine(SlabMachine, fast)
    assert Status.CONFIRMED == status, detail


def test_slab_mutants_registered() -> None:
    """At least eight slab mutants, each citing a commit, a CVE or a mailing-list posting (its Message-Id), under
    the slab layer."""
    mutants = select(["slab"])
    assert len(mutants) >= 8
    cited = ("commit", "CVE", "mm/slob.c", "@sgi.com>")
    assert all(any(c in m.mirrors for c in cited) for m in mutants)
    assert len({m.name for m in mutants}) == len(mutants)


def test_docs_slab_example_replays() -> None:
    """The JSON example of docs/scenarios.md's slab section gives the answers it lists."""
    import json

    page = (Path(__file__).parent.parent / "docs" / "scenarios.md").read_text()
    block = page.split("## The slab allocator (SLUB)")[1].split("```json")[1].split("```")[0]
    report = replay(Scenario.from_json(json.loads(block)))
    assert report.ok, report


def test_shuffled_freelist_is_a_checked_choice() -> None:
    """With CONFIG_SLAB_FREELIST_RANDOM the new slab's order is not address order; the spec adopts it."""
    lockstep = Lockstep(Config(frames=16, slab_seed=5, slab_freelist_random=1))
    got = [int(lockstep.apply(Kmalloc(512, 0))["addr"], 16) for _ in range(8)]
    assert sorted(got) == [K + i * 512 for i in range(8)]
    assert got != sorted(got)
    assert lockstep.impl.slab.choice().freelist is None  # the last allocation came off the CPU's slab


def test_a_forged_freelist_order_is_refused() -> None:
    """An implementation that reports one object twice in a new slab's freelist diverges."""
    lockstep = Lockstep(Config(frames=16))
    real = lockstep.impl.slab.choice

    def forged() -> spec_slab.AllocChoice:
        choice = real()
        if choice.freelist:
            return spec_slab.AllocChoice(choice.partial, choice.pfn, (choice.freelist[0], *choice.freelist[:-1]))
        return choice

    lockstep.impl.slab.choice = forged  # type: ignore[method-assign]
    with pytest.raises(DivergenceError, match="slab choice not allowed"):
        lockstep.apply(Kmalloc(512, 0))


def test_a_destroyed_name_whose_cache_lives_on_in_its_aliases_stays_taken() -> None:
    """Destroying the name a cache was made with, while aliases keep it, leaves the cache; creating that name
    again is DuplicateCache on both sides (the counterexample the unmutated slab machine found), state unchanged."""
    from lang.errors import DuplicateCache
    from lang.slab_ops import KmemCacheCreate, KmemCacheDestroy

    lockstep = Lockstep(Config(frames=40, cpus=2, slub_min_objects=1))
    for name in "abc":
        lockstep.apply(KmemCacheCreate(name, 24))
    assert {"ok": True} == lockstep.apply(KmemCacheDestroy("a"))
    assert {"error": "EINVAL", "type": "UnknownCache"} == lockstep.apply(KmemCacheDestroy("a"))
    before = lockstep.spec.slab.state
    result = lockstep.apply(KmemCacheCreate("a", 100))
    assert {"error": "EINVAL", "type": DuplicateCache.__name__} == result
    assert before == lockstep.spec.slab.state
    assert {"ok": True, "cache": "d"} == lockstep.apply(KmemCacheCreate("d", 100))
