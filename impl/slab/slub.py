"""SLUB: caches of objects in slabs taken from the buddy allocator, freelists kept in the free objects.

Each slab is a block of the :class:`~impl.alloc.buddy.BuddyAllocator`; its
objects live in the :class:`~impl.paging.physmem.PhysMem` frames of that
block, addressed through the direct map (``PAGE_OFFSET + pa``).  A free
object holds, at ``s->offset``, the address of the next free object of its
slab, encoded as CONFIG_SLAB_FREELIST_HARDENED does (``freelist_ptr_encode``,
mm/slub.c): ``ptr ^ s->random ^ swab(ptr_addr)``, ``ptr_addr`` being where the
pointer is stored, so a leaked or overwritten pointer is useless without the
cache's secret.  ``s->random`` comes from the configured seed.  With
CONFIG_SLAB_FREELIST_RANDOM (``freelist_random``) a new slab's freelist
follows the cache's random permutation ``s->random_seq`` from a random start
(``shuffle_freelist``), else address order.

The structures are those of mm/slub.c with one node and no per-CPU partial
lists: ``struct slab`` (freelist head, inuse, objects, frozen), ``struct
kmem_cache`` (geometry, the per-CPU active slab, the node's partial list,
the node's slab and object counters) and the frame-to-slab map that
``virt_to_slab`` reads from ``struct page``.

A cache created with slab_debug flags (SLAB_RED_ZONE, SLAB_POISON,
SLAB_STORE_USER) takes SLUB's debug paths: no CPU slab, red zones and
poison written by ``init_object`` on every allocation and free, tracks
zeroed, the requested size kept with SLAB_KMALLOC; ``flip`` XORs bytes of
an object's slot in memory and ``validate_slab_cache`` runs SLUB's checks
on the bytes, counting the reports KUnit counts and repairing as SLUB does.
"""

from __future__ import annotations

import random
from collections import deque

from impl.alloc.buddy import BuddyAllocator
from impl.paging.physmem import PhysMem
from impl.slab import geometry
from lang.errors import (
    BadAlignment,
    BadCacheFlags,
    BadCacheName,
    BadObjectSize,
    CacheInUse,
    CorruptSlab,
    DuplicateCache,
    FlipNotModelled,
    FlipOutsideObject,
    FreelistCycle,
    KmallocCacheDestroy,
    NotObjectStart,
    NotSlabObject,
    ObjectNotAllocated,
    SlabDoubleFree,
    UnknownCache,
    UnknownCpu,
    WrongCache,
)

PAGE_OFFSET = 0xFFFF888000000000
CTOR_MARK = 0xC7C7C7C7C7C7C7C7
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")
MAX_NAME = 32
POISON_INUSE, POISON_FREE, POISON_END = 0x5A, 0x6B, 0xA5  # include/linux/poison.h
SLUB_RED_INACTIVE, SLUB_RED_ACTIVE = 0xBB, 0xCC


def swab64(value: int) -> int:
    """``swab``: the 64-bit value with its bytes reversed."""
    return int.from_bytes(value.to_bytes(8, "little"), "big")


class Slab:
    """``struct slab``: the block, its cache, the freelist head (0 for NULL) and the counts.

    ``free`` is the set of the objects on the freelist, kept with every push and
    pop of the chain in memory, so that the double-free check of a free costs
    the same however many objects are free (SLUB's own ``on_freelist`` walks the
    chain, under slub_debug only; this model checks every free).
    """

    __slots__ = ("cache", "corrupt", "free", "freelist", "frozen", "inuse", "objects", "order", "pfn")

    def __init__(self, cache: KmemCache, pfn: int, order: int, objects: int) -> None:
        self.corrupt = False  # a flip cut the chain or made inuse disagree with it (debug caches)
        self.cache = cache
        self.pfn = pfn
        self.order = order
        self.objects = objects
        self.inuse = 0
        self.freelist = 0
        self.free: set[int] = set()
        self.frozen = False

    @property
    def base(self) -> int:
        """``slab_address``: the address of object 0."""
        return PAGE_OFFSET + (self.pfn << 12)


class KmemCache:
    """``struct kmem_cache`` with its one ``kmem_cache_node``."""

    __slots__ = (
        "align",
        "cpu_slab",
        "ctor",
        "debug",
        "flags",
        "fp_outside",
        "info_end",
        "inuse",
        "keep_orig",
        "kmalloc",
        "min_objects",
        "min_order",
        "min_partial",
        "name",
        "nr_slabs",
        "object_size",
        "objects",
        "offset",
        "order",
        "orig_off",
        "pad_off",
        "partial",
        "poison_object",
        "random",
        "random_seq",
        "red_left_pad",
        "redzone",
        "refcount",
        "size",
        "size_from_object",
        "total_objects",
    )

    def __init__(
        self,
        name: str,
        object_size: int,
        ctor: bool,
        layout: geometry.Layout,
        cpus: int,
        secret: int,
        kmalloc: bool,
        flags: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        self.object_size = object_size
        self.ctor = ctor
        self.size, self.offset, self.align = layout.size, layout.offset, layout.align
        self.order, self.objects = layout.order, layout.objects
        self.min_order, self.min_objects = layout.min_order, layout.min_objects
        self.min_partial = layout.min_partial
        self.flags = flags
        self.inuse, self.red_left_pad = layout.inuse, layout.red_left_pad
        self.debug = bool(flags & geometry.DEBUG)
        self.redzone = geometry.RED_ZONE in flags
        self.poison_object = geometry.POISON in flags and not ctor
        self.keep_orig = geometry.STORE_USER in flags and geometry.KMALLOC in flags
        self.fp_outside = self.offset >= self.inuse
        self.info_end = self.inuse + 8 if self.fp_outside else self.inuse
        self.orig_off = self.info_end + 2 * geometry.TRACK_SIZE
        self.pad_off = self.info_end
        if geometry.STORE_USER in flags:
            self.pad_off += 2 * geometry.TRACK_SIZE + (8 if geometry.KMALLOC in flags else 0)
        self.size_from_object = self.size - self.red_left_pad
        self.random = secret
        self.random_seq: list[int] = []
        self.refcount = 1
        self.kmalloc = kmalloc
        self.cpu_slab: list[Slab | None] = [None] * cpus
        self.partial: deque[Slab] = deque()  # the node's list_head: taken from the head, added at the tail
        self.nr_slabs = 0
        self.total_objects = 0


class Slub:
    """Every cache, the names that refer to them, and the slab of every slab frame."""

    __slots__ = (
        "buddy",
        "caches",
        "cpus",
        "freelist_random",
        "last_choice",
        "mem",
        "min_objects",
        "names",
        "page_slab",
        "rng",
        "seed",
    )

    def __init__(
        self,
        buddy: BuddyAllocator,
        mem: PhysMem,
        cpus: int,
        seed: int = 0,
        min_objects: int = 0,
        freelist_random: bool = False,
    ) -> None:
        self.buddy = buddy
        self.mem = mem
        self.cpus = cpus
        self.seed = seed
        self.min_objects = min_objects
        self.freelist_random = freelist_random
        self.rng = random.Random(f"{seed}/shuffle")
        self.caches: list[KmemCache] = []
        self.names: dict[str, KmemCache] = {}
        self.page_slab: dict[int, Slab] = {}
        self.last_choice: tuple[int | None, int | None, tuple[int, ...] | None] = (None, None, None)
        for _, name, size in geometry.KMALLOC_INFO:
            cache = KmemCache(
                name, size, False, geometry.kmalloc_layout(size, cpus, min_objects), cpus, self.secret(name), True
            )
            self.init_random_seq(cache)
            self.caches.append(cache)
            self.names[name] = cache

    def secret(self, name: str) -> int:
        """``s->random`` (``get_random_long`` in ``kmem_cache_open``), derived from the seed and the name."""
        return random.Random(f"{self.seed}/{name}").getrandbits(64)

    def init_random_seq(self, s: KmemCache) -> None:
        """``init_cache_random_seq``: a random permutation of the object indices of an ``oo`` slab."""
        if self.freelist_random:
            s.random_seq = list(range(s.objects))
            random.Random(f"{self.seed}/{s.name}/seq").shuffle(s.random_seq)

    def freelist_order(self, s: KmemCache, objects: int) -> list[int]:
        """The object indices of a new slab of ``objects`` in freelist order: ``shuffle_freelist`` walks
        ``random_seq`` from a random position, skipping indices past a smaller (fallback-order) slab."""
        if not s.random_seq or objects < 2:
            return list(range(objects))
        start = self.rng.randrange(len(s.random_seq))
        turned = s.random_seq[start:] + s.random_seq[:start]
        return [i for i in turned if i < objects]

    # --- free pointers in memory (freelist_ptr_encode / freelist_ptr_decode) ---

    def set_freepointer(self, s: KmemCache, obj: int, fp: int) -> None:
        ptr_addr = obj + s.offset
        self.mem.write(ptr_addr - PAGE_OFFSET, fp ^ s.random ^ swab64(ptr_addr))

    def get_freepointer(self, s: KmemCache, obj: int) -> int:
        ptr_addr = obj + s.offset
        return self.mem.read(ptr_addr - PAGE_OFFSET) ^ s.random ^ swab64(ptr_addr)

    # --- caches ---

    def lookup(self, name: str) -> KmemCache:
        cache = self.names.get(name)
        if cache is None:
            raise UnknownCache(f"no cache named {name!r}: create it with kmem_cache_create first")
        return cache

    def create(self, name: str, size: int, align: int, ctor: bool, flag_names: tuple[str, ...] = ()) -> str:
        """``kmem_cache_create``; returns the name of the cache it made or merged with."""
        flags = frozenset(flag_names)
        if not 0 < len(name) <= MAX_NAME or not set(name) <= NAME_CHARS:
            raise BadCacheName(f"cache name {name!r} must be 1..{MAX_NAME} letters, digits or _-.:")
        if name in self.names:
            raise DuplicateCache(f"a cache named {name!r} exists already: pick another name")
        if any(s.name == name for s in self.caches):  # a merged cache keeps its first name (create_cache)
            aliases = ", ".join(sorted(n for n, s in self.names.items() if s.name == name))
            raise DuplicateCache(
                f"the cache {name!r} still lives on as the merged cache of {aliases}: pick another name"
            )
        if not 0 < size <= geometry.KMALLOC_MAX_CACHE_SIZE:
            raise BadObjectSize(f"object size {size} is out of range: allowed 1..{geometry.KMALLOC_MAX_CACHE_SIZE}")
        if align < 0 or align & (align - 1) or align > geometry.PAGE_SIZE:
            raise BadAlignment(f"align {align} must be 0 or a power of two up to {geometry.PAGE_SIZE}")
        for flag in sorted(flags):
            if flag not in geometry.KNOWN_FLAGS:
                raise BadCacheFlags(f"unknown cache flag {flag}: allowed {', '.join(geometry.KNOWN_FLAGS)}")
        if ctor and flags & geometry.DEBUG:
            raise BadCacheFlags(
                "slab_debug flags with a constructor are not modelled: drop the constructor or the flags"
            )
        for s in reversed(self.caches):
            if flags & geometry.NEVER_MERGE or s.kmalloc or s.flags & geometry.NEVER_MERGE:
                continue
            if geometry.can_merge(size, ctor, s.size, s.ctor, align):
                s.refcount += 1
                s.object_size = max(s.object_size, size)
                s.inuse = max(s.inuse, (size + 7) & ~7)  # __kmem_cache_alias
                self.names[name] = s
                return s.name
        layout = geometry.calculate_sizes(size, align, ctor, self.cpus, self.min_objects, flags=flags)
        if layout is None:
            raise BadObjectSize(f"object size {size} fits no slab up to order {geometry.SLUB_MAX_ORDER}")
        cache = KmemCache(name, size, ctor, layout, self.cpus, self.secret(name), False, flags)
        self.init_random_seq(cache)
        self.caches.append(cache)
        self.names[name] = cache
        return name

    # --- slabs ---

    def allocate_slab(self, s: KmemCache) -> Slab | None:
        """``allocate_slab``: a block of ``oo``'s order, else of ``min``'s; objects constructed, all free."""
        order = s.order
        pfn = self.buddy.alloc(order)
        if pfn is None and s.min_order != order:
            order = s.min_order
            pfn = self.buddy.alloc(order)
        if pfn is None:
            return None
        slab = Slab(s, pfn, order, (geometry.PAGE_SIZE << order) // s.size)
        for frame in range(pfn, pfn + (1 << order)):
            self.page_slab[frame] = slab
        base = slab.base + s.red_left_pad
        if s.ctor:
            for i in range(slab.objects):
                self.mem.write(base + i * s.size - PAGE_OFFSET, CTOR_MARK)
        if s.debug:
            if geometry.POISON in s.flags:  # setup_slab_debug
                self.fill(slab.base, POISON_INUSE, geometry.PAGE_SIZE << order)
            for i in range(slab.objects):  # setup_object_debug
                obj = base + i * s.size
                self.init_object(s, obj, SLUB_RED_INACTIVE, s.object_size)
                if geometry.STORE_USER in s.flags:
                    self.fill(obj + s.info_end, 0, 2 * geometry.TRACK_SIZE)
        addresses = tuple(base + i * s.size for i in self.freelist_order(s, slab.objects))
        for i, obj in enumerate(addresses):
            self.set_freepointer(s, obj, addresses[i + 1] if i + 1 < len(addresses) else 0)
        slab.freelist = addresses[0]
        slab.free = set(addresses)
        s.nr_slabs += 1
        s.total_objects += slab.objects
        self.last_choice = (None, pfn, addresses)
        return slab

    def discard_slab(self, s: KmemCache, slab: Slab) -> None:
        """``discard_slab``: forget the slab and return its block to the buddy."""
        for frame in range(slab.pfn, slab.pfn + (1 << slab.order)):
            del self.page_slab[frame]
        s.nr_slabs -= 1
        s.total_objects -= slab.objects
        self.buddy.free(slab.pfn, slab.order)

    # --- allocation ---

    def alloc(self, name: str, cpu: int, orig_size: int | None = None) -> int | None:
        """``kmem_cache_alloc``: an object's address, or None (ENOMEM); ``orig_size``: the bytes asked for when
        kmalloc serves from this cache (``__kmalloc_cache_noprof``)."""
        s = self.lookup(name)
        if not 0 <= cpu < self.cpus:
            raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{self.cpus - 1}")
        if orig_size is not None and not 0 < orig_size <= s.object_size:
            raise BadObjectSize(f"kmalloc size {orig_size} does not fit {s.name}: allowed 1..{s.object_size}")
        self.last_choice = (None, None, None)
        if s.debug:
            return self.alloc_debug(s, orig_size or s.object_size)
        slab = s.cpu_slab[cpu]
        if slab is None or not slab.freelist:
            if slab is not None:
                slab.frozen = False
                s.cpu_slab[cpu] = None
            if s.partial:
                slab = s.partial.popleft()
                self.last_choice = (slab.pfn, None, None)
            else:
                slab = self.allocate_slab(s)
                if slab is None:
                    return None
            slab.frozen = True
            s.cpu_slab[cpu] = slab
        obj = slab.freelist
        slab.freelist = self.get_freepointer(s, obj)
        slab.free.discard(obj)
        slab.inuse += 1
        return obj

    def kmalloc(self, size: int, cpu: int) -> int | None:
        """``kmalloc``: from the kmalloc cache of the size's class."""
        if not 0 < size <= geometry.KMALLOC_MAX_CACHE_SIZE:
            raise BadObjectSize(
                f"kmalloc size {size} is out of range: allowed 1..{geometry.KMALLOC_MAX_CACHE_SIZE} "
                "(larger requests go to the page allocator)"
            )
        return self.alloc(geometry.KMALLOC_NAMES[geometry.kmalloc_index(size)], cpu)

    # --- freeing ---

    def virt_to_slab(self, addr: int) -> Slab:
        slab = self.page_slab.get((addr - PAGE_OFFSET) >> 12) if addr >= PAGE_OFFSET else None
        if slab is None:
            raise NotSlabObject(
                f"address {addr:#x} is in no slab page: only objects from kmalloc or a cache can be freed"
            )
        return slab

    def object_slab(self, addr: int) -> Slab:
        """The slab of the object starting at ``addr``."""
        slab = self.virt_to_slab(addr)
        s = slab.cache
        first = slab.base + s.red_left_pad
        index, rest = divmod(addr - first, s.size)
        if rest or not 0 <= index < slab.objects:
            raise NotObjectStart(
                f"address {addr:#x} is inside a slab of {s.name} but starts no object: objects are "
                f"{s.size} bytes apart from {first:#x}, {slab.objects} of them"
            )
        return slab

    def on_freelist(self, slab: Slab, addr: int) -> bool:
        """``on_freelist``: whether ``addr`` is on the slab's freelist (the set kept with the chain)."""
        return addr in slab.free

    def free(self, name: str | None, addr: int) -> None:
        """``kmem_cache_free`` into cache ``name``, or ``kfree`` (None)."""
        wanted = self.lookup(name) if name is not None else None
        slab = self.virt_to_slab(addr)
        if wanted is not None and slab.cache is not wanted:
            raise WrongCache(f"object {addr:#x} belongs to cache {slab.cache.name}, not {wanted.name}: free it there")
        slab = self.object_slab(addr)
        s = slab.cache
        if addr == slab.freelist:
            raise SlabDoubleFree(f"double free of {addr:#x}: it is the head of its slab's freelist (set_freepointer)")
        if self.on_freelist(slab, addr):
            raise SlabDoubleFree(f"double free of {addr:#x}: it is on its slab's freelist already (on_freelist)")
        if s.debug:
            self.check_sane(s)
            self.init_object(s, addr, SLUB_RED_INACTIVE, s.object_size)  # free_debug_processing
        self.slab_free(s, slab, addr)

    def slab_free(self, s: KmemCache, slab: Slab, addr: int) -> None:
        """``__slab_free``: push the object; list a full slab as partial, discard an empty one if enough are kept."""
        prior = slab.freelist
        self.set_freepointer(s, addr, prior)
        slab.freelist = addr
        slab.free.add(addr)
        slab.inuse -= 1
        if slab.frozen:
            return
        if slab.inuse == 0 and len(s.partial) >= s.min_partial:
            if prior:
                s.partial.remove(slab)
            self.discard_slab(s, slab)
        elif not prior:
            s.partial.append(slab)

    # --- slab_debug (mm/slub.c: init_object, the debug alloc path, check_object, validate_slab_cache) ---

    def read_bytes(self, addr: int, count: int) -> bytes:
        """``count`` bytes of memory from the direct-map address ``addr``."""
        pa = addr - PAGE_OFFSET
        lo, hi = pa & ~7, (pa + count + 7) & ~7
        raw = b"".join(self.mem.read(w).to_bytes(8, "little") for w in range(lo, hi, 8))
        return raw[pa - lo : pa - lo + count]

    def write_bytes(self, addr: int, data: bytes) -> None:
        """Store ``data`` at the direct-map address ``addr`` (whole words read, changed and written back)."""
        pa = addr - PAGE_OFFSET
        lo, hi = pa & ~7, (pa + len(data) + 7) & ~7
        raw = bytearray(b"".join(self.mem.read(w).to_bytes(8, "little") for w in range(lo, hi, 8)))
        raw[pa - lo : pa - lo + len(data)] = data
        for i, w in enumerate(range(lo, hi, 8)):
            self.mem.write(w, int.from_bytes(raw[8 * i : 8 * i + 8], "little"))

    def fill(self, addr: int, value: int, count: int) -> None:
        """``memset``."""
        if count > 0:
            self.write_bytes(addr, bytes([value]) * count)

    def init_object(self, s: KmemCache, obj: int, val: int, poison_size: int) -> None:
        """``init_object``: left red zone, poison of the first ``poison_size`` bytes (the last one
        ``POISON_END``), red zone from there to ``s->inuse``."""
        if s.redzone:
            self.fill(obj - s.red_left_pad, val, s.red_left_pad)
        if s.poison_object:
            self.fill(obj, POISON_FREE, poison_size - 1)
            self.fill(obj + poison_size - 1, POISON_END, 1)
        if s.redzone:
            self.fill(obj + poison_size, val, s.inuse - poison_size)

    def check_sane(self, s: KmemCache) -> None:
        for slab in self.slabs():
            if slab.cache is s and slab.corrupt:
                raise CorruptSlab(
                    f"slab {slab.pfn:#x} of {s.name} has a corrupted freelist or object count: run "
                    "validate_slab_cache to repair it first (the model does not follow a corrupt free pointer)"
                )

    def alloc_debug(self, s: KmemCache, orig_size: int) -> int | None:
        """``alloc_single_from_partial`` / ``alloc_single_from_new_slab`` and ``alloc_debug_processing``."""
        self.check_sane(s)
        fresh = not s.partial
        if fresh:
            new = self.allocate_slab(s)
            if new is None:
                return None
            slab = new
        else:
            slab = s.partial[0]
            self.last_choice = (slab.pfn, None, None)
        obj = slab.freelist
        slab.freelist = self.get_freepointer(s, obj)
        slab.free.discard(obj)
        slab.inuse += 1
        if fresh and slab.inuse < slab.objects:
            s.partial.insert(0, slab)
        elif not fresh and slab.inuse == slab.objects:
            s.partial.remove(slab)
        if s.keep_orig:
            self.mem.write(obj + s.orig_off - PAGE_OFFSET, orig_size)
        self.init_object(s, obj, SLUB_RED_ACTIVE, orig_size if s.keep_orig and s.redzone else s.object_size)
        return obj

    def valid_pointer(self, slab: Slab, ptr: int) -> bool:
        """``check_valid_pointer``."""
        if not ptr:
            return True
        index, rest = divmod(ptr - slab.base - slab.cache.red_left_pad, slab.cache.size)
        return not rest and 0 <= index < slab.objects

    def chain(self, slab: Slab) -> tuple[list[int], bool]:
        """The freelist followed in memory up to NULL or a pointer outside the slab's objects (the bool:
        it ended at such a pointer); :class:`FreelistCycle` if it loops."""
        chain: list[int] = []
        seen: set[int] = set()
        obj = slab.freelist
        while obj:
            if obj in seen:
                raise FreelistCycle(
                    f"the freelist of slab {slab.pfn:#x} would come back to {obj:#x}: validate_slab_cache would "
                    "loop forever (__fill_map follows the chain to NULL)"
                )
            chain.append(obj)
            seen.add(obj)
            obj = self.get_freepointer(slab.cache, obj)
            if not self.valid_pointer(slab, obj):
                return chain, True
        return chain, False

    def flip(self, addr: int, offset: int, mask: int) -> None:
        """XOR ``mask`` (little-endian) into the bytes at ``addr + offset`` of the object at ``addr``."""
        slab = self.object_slab(addr)
        s = slab.cache
        if not s.debug:
            raise FlipNotModelled(f"{s.name} has no slab_debug flags: flips are modelled in debug caches only")
        if not 0 < mask < 1 << 64:
            raise FlipOutsideObject(f"mask {mask:#x} must have bits set within 64: allowed 0x1 .. {(1 << 64) - 1:#x}")
        width = (mask.bit_length() + 7) // 8
        if not -s.red_left_pad <= offset <= s.size_from_object - width:
            raise FlipOutsideObject(
                f"bytes {offset}..{offset + width - 1} from {addr:#x} leave its slot: allowed offsets "
                f"{-s.red_left_pad}..{s.size_from_object - 1} (the left red zone through the padding of a "
                f"{s.size}-byte slot)"
            )
        free = addr == slab.freelist or addr in slab.free
        pointer_bytes = s.fp_outside or free
        masks = mask.to_bytes(width, "little")
        touched = False
        for i, byte in enumerate(masks):
            at = offset + i
            if not byte:
                continue
            if pointer_bytes and s.offset <= at < s.offset + 8:
                if not (s.debug and s.fp_outside) or s.keep_orig:
                    where = "kept beside a requested size" if s.keep_orig else "kept inside the object"
                    raise FlipNotModelled(
                        f"byte {at} of {addr:#x} is in a free pointer the model does not follow through flips ({where})"
                    )
                touched = True
                continue
            if s.keep_orig and s.orig_off <= at < s.orig_off + 8:
                raise FlipNotModelled(f"byte {at} of {addr:#x} is its requested size (get_orig_size): not modelled")
        old = self.read_bytes(addr + offset, width)
        self.write_bytes(addr + offset, bytes(a ^ b for a, b in zip(old, masks, strict=True)))
        if touched:
            try:
                chain, garbage = self.chain(slab)
            except FreelistCycle:
                self.write_bytes(addr + offset, old)
                raise
            slab.free = set(chain)
            slab.corrupt = garbage or slab.inuse != slab.objects - len(chain)

    def objects_of(self, slab: Slab) -> range:
        first = slab.base + slab.cache.red_left_pad
        return range(first, first + slab.objects * slab.cache.size, slab.cache.size)

    def check_bytes(self, start: int, value: int, count: int) -> int:
        """``check_bytes_and_report``: 0, or 2 errors (report and ``restore_bytes``) with the bytes restored."""
        if count <= 0 or self.read_bytes(start, count) == bytes([value]) * count:
            return 0
        self.fill(start, value, count)
        return 2

    def check_object(self, slab: Slab, p: int, val: int) -> int:
        """``check_object``: the errors its checks report on the object at ``p``."""
        s = slab.cache
        errors = 0
        if s.redzone:
            errors += self.check_bytes(p - s.red_left_pad, val, s.red_left_pad)
            errors += self.check_bytes(p + s.object_size, val, s.inuse - s.object_size)
            if s.keep_orig and val == SLUB_RED_ACTIVE:
                orig = self.mem.read(p + s.orig_off - PAGE_OFFSET)
                if s.object_size > orig:
                    errors += self.check_bytes(p + orig, val, s.object_size - orig)
        elif geometry.POISON in s.flags and s.object_size < s.inuse:
            errors += self.check_bytes(p + s.object_size, POISON_INUSE, s.inuse - s.object_size)
        if geometry.POISON in s.flags:
            if val != SLUB_RED_ACTIVE and s.poison_object:
                errors += self.check_bytes(p, POISON_FREE, s.object_size - 1)
                errors += self.check_bytes(p + s.object_size - 1, POISON_END, 1)
            errors += self.check_bytes(p + s.pad_off, POISON_INUSE, s.size_from_object - s.pad_off)
        if (s.fp_outside or val != SLUB_RED_ACTIVE) and not self.valid_pointer(slab, self.get_freepointer(s, p)):
            errors += 1
            self.set_freepointer(s, p, 0)
        return errors

    def validate_slab(self, slab: Slab) -> int:
        """``validate_slab``: ``on_freelist`` (the chain cut at a bad pointer, ``inuse`` fixed), then
        ``check_object`` on each object up to the first that reports."""
        s = slab.cache
        errors, nr, prev, obj = 0, 0, 0, slab.freelist
        while obj and nr <= slab.objects:
            if not self.valid_pointer(slab, obj):
                errors += 1  # object_err "Freechain corrupt"
                self.set_freepointer(s, prev, 0)
                break
            prev, obj = obj, self.get_freepointer(s, obj)
            nr += 1
        if slab.inuse != slab.objects - nr:
            errors += 2  # slab_err "Wrong object count" and slab_fix
            slab.inuse = slab.objects - nr
        chain, _ = self.chain(slab)
        slab.free = set(chain)
        slab.corrupt = False
        for p in self.objects_of(slab):
            found = self.check_object(slab, p, SLUB_RED_INACTIVE if p in slab.free else SLUB_RED_ACTIVE)
            errors += found
            if found:
                break
        return errors

    def validate_slab_cache(self, name: str) -> int:
        """``validate_slab_cache``: flush the CPU slabs, validate the partial slabs and (SLAB_STORE_USER keeps
        the full list) the full ones; the errors KUnit counts."""
        s = self.lookup(name)
        self.flush_all(s)
        listed = {id(slab) for slab in s.partial}
        errors = 0
        for slab in self.slabs():
            if slab.cache is s and (id(slab) in listed or geometry.STORE_USER in s.flags):
                errors += self.validate_slab(slab)
        return errors

    # --- shrink and destroy ---

    def deactivate(self, s: KmemCache, cpu: int) -> None:
        """``deactivate_slab`` of ``cpu``'s slab: discarded if empty and enough are kept, partial if it has
        free objects, else full."""
        slab = s.cpu_slab[cpu]
        if slab is None:
            return
        s.cpu_slab[cpu] = None
        slab.frozen = False
        if slab.inuse == 0 and len(s.partial) >= s.min_partial:
            self.discard_slab(s, slab)
        elif slab.freelist:
            s.partial.append(slab)

    def flush_all(self, s: KmemCache) -> None:
        for cpu in range(self.cpus):
            self.deactivate(s, cpu)

    def shrink(self, name: str) -> None:
        """``kmem_cache_shrink``: flush the CPUs' slabs, discard every empty partial slab."""
        s = self.lookup(name)
        if s.debug:
            self.check_sane(s)
        self.flush_all(s)
        for slab in [p for p in s.partial if p.inuse == 0]:
            s.partial.remove(slab)
            self.discard_slab(s, slab)

    def destroy(self, name: str) -> None:
        """``kmem_cache_destroy``: drop a reference; the last releases the slabs (none may hold objects)."""
        s = self.lookup(name)
        if s.kmalloc:
            raise KmallocCacheDestroy(f"{s.name} is a kmalloc cache: it cannot be destroyed")
        if s.refcount > 1:
            s.refcount -= 1
            del self.names[name]
            return
        if s.debug:
            self.check_sane(s)
        listed = [*(slab for slab in s.cpu_slab if slab is not None), *s.partial]
        live = sum(slab.inuse for slab in listed)
        full = s.nr_slabs - len(listed)
        if live or full:
            raise CacheInUse(
                f"cache {s.name} still has {live + full * s.objects} objects: free them before destroying it"
            )
        self.flush_all(s)
        for slab in list(s.partial):
            s.partial.remove(slab)
            self.discard_slab(s, slab)
        self.caches.remove(s)
        del self.names[name]

    # --- object contents ---

    def allocated_object(self, addr: int) -> int:
        """The physical address of the allocated object at ``addr``."""
        slab = self.object_slab(addr)
        if addr == slab.freelist or self.on_freelist(slab, addr):
            raise ObjectNotAllocated(f"object {addr:#x} is free: allocate it before using it")
        return addr - PAGE_OFFSET

    def write_word(self, addr: int, value: int) -> None:
        """Store ``value`` in the first word of the allocated object at ``addr``."""
        pa = self.allocated_object(addr)
        self.mem.write(pa, value)

    def read_word(self, addr: int) -> int:
        """The first word of the allocated object at ``addr``."""
        return self.mem.read(self.allocated_object(addr))

    # --- observation ---

    def slabs(self) -> list[Slab]:
        """Every slab, by pfn."""
        return sorted({id(slab): slab for slab in self.page_slab.values()}.values(), key=lambda slab: slab.pfn)

    def slabinfo(self) -> str:
        """/proc/slabinfo (version 2.1), newest cache first (``cache_show``, mm/slab_common.c)."""
        lines = [
            "slabinfo - version: 2.1",
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> "
            "<batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>",
        ]
        for s in reversed(self.caches):
            free = sum(slab.objects - slab.inuse for slab in s.partial)
            lines.append(
                f"{s.name:<17} {s.total_objects - free:6} {s.total_objects:6} {s.size:6} {s.objects:4} "
                f"{1 << s.order:4} : tunables {0:4} {0:4} {0:4} : slabdata {s.nr_slabs:6} {s.nr_slabs:6} {0:6}"
            )
        return "\n".join(lines) + "\n"

    def meminfo(self) -> str:
        """The Slab, SReclaimable and SUnreclaim lines of /proc/meminfo."""
        kb = sum(4 << slab.order for slab in self.slabs())
        return f"Slab:           {kb:8} kB\nSReclaimable:   {0:8} kB\nSUnreclaim:     {kb:8} kB\n"
