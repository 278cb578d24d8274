"""The slab machine with slab_debug caches: red zones, poison, tracking, corrupted bytes and validate_slab_cache.

Every rule of :class:`~properties.slab.slab_machine.SlabMachine`, and on top
of them caches made with slab_debug flags (SLAB_RED_ZONE, SLAB_POISON,
SLAB_STORE_USER, SLAB_KMALLOC: mm/slub.c ``calculate_sizes`` lays them out),
allocations from them (with a requested size, as ``__kmalloc_cache_noprof``
asks), flips of bytes in the places slab_debug guards (each red zone, the
first and last poisoned byte, the free pointer, the padding, and just past
the slot) and of free pointers redirected to other objects, and
``validate_slab_cache``, whose error count and repairs the spec and the
implementation must agree on.  The objects go into the same bundle, so the
inherited rules free them twice, into the wrong cache and after a
corruption.  Compound rules reach each check in a few ops: a fresh object
(live or freed) damaged at every place at once, a slab filled and damaged,
two objects damaged, free chains redirected; the 1920-byte debug caches
hold two objects a slab in every config, so a full slab or a two-object
chain is two allocations away.  A failure is saved as
``counterexamples/slab_debug_machine.json``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, MultipleResults, initialize, multiple, rule

from lang.errors import SlabError
from lang.scenario import Config
from lang.slab_ops import KmallocCache, KmemCacheCreate, KmemFlip, ValidateSlabCache
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.recording import RecordingLockstep
from properties.slab.slab_machine import CONFIGS, NAMES, SlabMachine
from spec.slab import cache as spec_slab

DEBUG_NAMES = ("d", "e")
# The slab machine's configs, the single-CPU one with slub_min_objects=2: its default (eight objects from one
# CPU, calculate_order) makes the 1920-byte caches' slabs order 2 or 3 with 8 or 15 objects, so a full slab
# took 15 allocations; with 2 every config's slabs of them hold two.  The kernel's own geometry stays in the
# slab machine; the small debug caches' slabs are order 0 either way.
DEBUG_CONFIGS = (CONFIGS[0], replace(CONFIGS[1], slub_min_objects=2), CONFIGS[2])
FLAG_SETS = (
    ("SLAB_RED_ZONE",),
    ("SLAB_POISON",),
    ("SLAB_POISON", "SLAB_RED_ZONE"),
    ("SLAB_POISON", "SLAB_STORE_USER"),
    ("SLAB_KMALLOC", "SLAB_RED_ZONE", "SLAB_STORE_USER"),
    ("SLAB_KMALLOC", "SLAB_POISON", "SLAB_RED_ZONE", "SLAB_STORE_USER"),
    ("SLAB_NO_MERGE",),
)
# 1920 first: a slab of it holds two objects under every flag set in each of DEBUG_CONFIGS, so a slab fills
# in two allocations and a free chain runs through both objects; Hypothesis shrinks a draw towards the first
# choice, so a counterexample ends on these short slabs rather than on a 4-byte cache's 128-object ones.
DEBUG_SIZES = (1920, 4, 24, 100)
# Where a flip lands, relative to the object's layout.
PLACES = ("left-redzone", "right-redzone", "first-byte", "last-byte", "freeptr", "padding", "past-slot", "middle")
MASKS = (0xFF, 0x01, 0x6767, 0x10000)
# The most objects a fill allocates: a slab of up to 16 objects fills (the 1920-byte caches' two), a 4-byte
# cache's 128 would cost 128 lockstep ops for what the short slabs already reach.
FILL_LIMIT = 16
CHECK_NAME = "slab_debug: impl refines the spec (red zones, poison, flips, validate_slab_cache and its repairs)"


class SlabDebugMachine(SlabMachine):
    """:class:`SlabMachine` with slab_debug caches, byte flips and ``validate_slab_cache``."""

    name = "slab_debug_machine"
    # The objects of the debug caches, also in ``objects``: flips, redirects and bursts draw from these.
    debug: Bundle[int] = Bundle("debug")

    @initialize(
        config=st.sampled_from(DEBUG_CONFIGS),
        sizes=st.tuples(*(st.sampled_from(DEBUG_SIZES) for _ in NAMES)),
        debug_sizes=st.tuples(*(st.sampled_from(DEBUG_SIZES) for _ in DEBUG_NAMES)),
        flags=st.tuples(*(st.sampled_from(FLAG_SETS) for _ in DEBUG_NAMES)),
    )
    def boot(
        self,
        config: Config,
        sizes: tuple[int, ...],
        debug_sizes: tuple[int, ...],
        flags: tuple[tuple[str, ...], ...],
    ) -> None:
        """Caches a, b, c without flags (as the slab machine makes them), and d, e with slab_debug flags."""
        self.recorder = RecordingLockstep(self.name, config)
        for name, size in zip(NAMES, sizes, strict=True):
            self.run(KmemCacheCreate(name, size))
        for name, size, flag_set in zip(DEBUG_NAMES, debug_sizes, flags, strict=True):
            self.run(KmemCacheCreate(name, size, 0, False, flag_set))

    def state(self) -> spec_slab.SlabState | None:
        return self.recorder.lockstep.spec.slab.state if self.recorder else None

    @rule(targets=(SlabMachine.objects, debug), name=st.sampled_from(DEBUG_NAMES), cpu=st.integers(0, 1))
    def alloc_debug(self, name: str, cpu: int) -> MultipleResults[int] | int:
        return self.alloc_from(name, cpu)

    @rule(targets=(SlabMachine.objects, debug), name=st.sampled_from(DEBUG_NAMES), count=st.sampled_from((4, 16)))
    def debug_burst(self, name: str, count: int) -> MultipleResults[int]:
        """Many objects of one debug cache: slabs fill up (full slabs, which only SLAB_STORE_USER lists)."""
        got = [self.alloc_from(name, 0) for _ in range(count)]
        return multiple(*(a for a in got if isinstance(a, int)))

    @rule(addr=debug)
    def free_debug(self, addr: int) -> None:
        self.free(addr)

    @rule(
        targets=(SlabMachine.objects, debug),
        name=st.sampled_from(DEBUG_NAMES),
        size=st.sampled_from((1, 3, 18, 64, 200)),
    )
    def kmalloc_cache(self, name: str, size: int) -> MultipleResults[int] | int:
        result = self.run(KmallocCache(name, size, 0))
        if "addr" not in result:
            return multiple()
        self.allocated.append(int(result["addr"], 16))
        return self.allocated[-1]

    @rule(name=st.sampled_from(DEBUG_NAMES), size=st.sampled_from(DEBUG_SIZES), flag_set=st.sampled_from(FLAG_SETS))
    def create_debug(self, name: str, size: int, flag_set: tuple[str, ...]) -> None:
        """Create a debug cache again under a name (refused while the name is taken)."""
        self.run(KmemCacheCreate(name, size, 0, False, flag_set))

    def offset_of(self, addr: int, place: str) -> int:
        """The offset of ``place`` in the layout of the cache holding ``addr`` (0 when it is in no slab)."""
        state = self.state()
        if state is None:
            return 0
        try:
            cache, _ = spec_slab.object_of(state, addr)
        except SlabError:
            return 0
        g = cache.geometry
        return {
            "left-redzone": -g.red_left_pad,
            "right-redzone": g.object_size,
            "first-byte": 0,
            "last-byte": g.object_size - 1,
            "freeptr": g.offset,
            "padding": g.pad_offset,
            "past-slot": g.size_from_object,
            "middle": g.object_size // 2,
        }[place]

    @rule(addr=debug, place=st.sampled_from(PLACES), mask=st.sampled_from(MASKS))
    def flip(self, addr: int, place: str, mask: int) -> None:
        self.run(KmemFlip(addr, self.offset_of(addr, place), mask))

    @rule(addr=debug, place=st.sampled_from(PLACES), mask=st.sampled_from(MASKS), again=st.booleans())
    def flip_and_validate(self, addr: int, place: str, mask: int, again: bool) -> None:
        """A flip, then ``validate_slab_cache`` on the cache of the object: the check right after the damage,
        and with ``again`` a second one (what the first repaired is not reported twice)."""
        self.run(KmemFlip(addr, self.offset_of(addr, place), mask))
        self.run(ValidateSlabCache(self.owner(addr)))
        if again:
            self.run(ValidateSlabCache(self.owner(addr)))

    @rule(addr=debug, place=st.sampled_from(PLACES), mask=st.sampled_from(MASKS))
    def free_flip_and_validate(self, addr: int, place: str, mask: int) -> None:
        """Free an object, damage it, validate: a free object's poison and red zone (SLUB_RED_INACTIVE)."""
        self.free(addr)
        self.flip_and_validate(addr, place, mask, False)

    @rule(
        targets=(SlabMachine.objects, debug),
        name=st.sampled_from(DEBUG_NAMES),
        place=st.sampled_from(PLACES),
        mask=st.sampled_from(MASKS),
    )
    def fill_flip_and_validate(self, name: str, place: str, mask: int) -> MultipleResults[int]:
        """Allocate a slab's worth of objects of a debug cache (at most :data:`FILL_LIMIT`: the first one's slab
        is full after them when its slabs hold no more), damage the first, validate: a full slab, listed only
        under SLAB_STORE_USER."""
        state = self.state()
        real = state.names.get(name) if state is not None else None
        cache = next((c for c in state.caches if c.name == real), None) if state is not None else None
        count = min(cache.geometry.objects, FILL_LIMIT) if cache is not None else 1
        got = [a for a in (self.alloc_from(name, 0) for _ in range(count)) if isinstance(a, int)]
        if got:
            self.flip_and_validate(got[0], place, mask, False)
        return multiple(*got)

    @rule(
        targets=(SlabMachine.objects, debug),
        name=st.sampled_from(DEBUG_NAMES),
        count=st.sampled_from((1, 2)),
        free=st.booleans(),
        mask=st.sampled_from(MASKS),
        again=st.booleans(),
    )
    def damage_everywhere(self, name: str, count: int, free: bool, mask: int, again: bool) -> MultipleResults[int]:
        """``count`` new objects of a debug cache (two fill a slab of the 1920-byte caches), the last one freed
        again with ``free``, flipped at every place of :data:`PLACES`, then validated (with ``again`` twice):
        each byte range ``check_object`` checks is damaged at once, on a live or a free object, in a partial
        or a full slab, whatever the objects of the bundle went through before; the error count is the sum
        over the ranges of the object (and the next one's left red zone)."""
        got = [a for a in (self.alloc_from(name, 0) for _ in range(count)) if isinstance(a, int)]
        if not got:
            return multiple()
        if free:
            self.free(got[-1])
        for place in PLACES:
            self.run(KmemFlip(got[-1], self.offset_of(got[-1], place), mask))
        self.run(ValidateSlabCache(self.owner(got[-1])))
        if again:
            self.run(ValidateSlabCache(self.owner(got[-1])))
        return multiple(*got)

    @rule(first=debug, second=debug, place=st.sampled_from(PLACES), mask=st.sampled_from(MASKS))
    def two_flips_and_validate(self, first: int, second: int, place: str, mask: int) -> None:
        """Damage in two objects, then one ``validate_slab_cache``: a slab's walk stops at its first bad object."""
        self.run(KmemFlip(first, self.offset_of(first, place), mask))
        self.run(KmemFlip(second, self.offset_of(second, place), mask))
        self.run(ValidateSlabCache(self.owner(first)))

    @rule(addr=debug, other=SlabMachine.objects, validate=st.sampled_from((0, 1, 2)))
    def redirect(self, addr: int, other: int, validate: int) -> None:
        """Point the stored free pointer of ``addr`` at ``other`` (a flip by the XOR of the two targets)."""
        state = self.state()
        target = state.freeptrs.get(addr) if state is not None else None
        if target is None or target == other:
            return
        self.run(KmemFlip(addr, self.offset_of(addr, "freeptr"), target ^ other))
        for _ in range(validate):  # the second sees whether the first repaired the chain and the count
            self.run(ValidateSlabCache(self.owner(addr)))

    @rule(first=debug, second=debug, other=SlabMachine.objects)
    def free_two_and_redirect(self, first: int, second: int, other: int) -> None:
        """Free two objects, point the later one's free pointer at ``other`` (outside the chain, often outside
        the slab), validate twice: the chain cut and the count fixed by the first, nothing left for the second."""
        self.free(first)
        self.free(second)
        self.redirect(second, other, 2)

    @rule(name=st.sampled_from((*DEBUG_NAMES, NAMES[0], "kmalloc-96", "nope")))
    def validate(self, name: str) -> None:
        self.run(ValidateSlabCache(name))


machinery.run_as(SlabDebugMachine, examples_divisor=3)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The slab_debug refinement machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(SlabDebugMachine))
