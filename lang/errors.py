"""The one exception hierarchy of mmcheck.

Outcomes of the modelled machine (a page fault, SIGSEGV, ENOMEM) are values,
never exceptions.  An exception means the caller broke the API: it passed an
address that is not aligned, a CPU that does not exist, a scenario file that
does not parse.  Every error names what was wrong and what is allowed, and the
operation that raised it has left the state exactly as it was.

This module imports nothing from the project, so the spec, the implementation
and the harness can all share it without depending on one another.
"""

from __future__ import annotations


class MMCheckError(Exception):
    """Root of every error mmcheck raises on purpose."""


class InvalidArgument(MMCheckError, ValueError):
    """An operation was called with an argument outside its domain."""


class AddressError(InvalidArgument):
    """A physical or virtual address is misaligned or outside memory."""


class UnknownCpu(InvalidArgument, LookupError):
    """A CPU number outside ``0 .. cpus-1``."""


class ConfigError(InvalidArgument):
    """A machine configuration value is outside its allowed range."""


def _shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut in the middle to ``limit`` characters so its start and its end both show."""
    text = " ".join(text.splitlines())
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}\N{HORIZONTAL ELLIPSIS}{text[len(text) - (limit - 1 - half) :]}"


class ScenarioError(InvalidArgument):
    """A scenario file or operation is malformed.

    ``where`` names the place (``ops[3].va``) so a person can find it.  Both
    parts are kept to one line and a bounded length (:data:`WHERE_LIMIT`,
    :data:`PROBLEM_LIMIT`), cut in the middle, so the path's start and the
    allowed range at the end of the problem always show.
    """

    WHERE_LIMIT = 120
    PROBLEM_LIMIT = 600

    def __init__(self, where: str, problem: str) -> None:
        self.where = _shorten(where, self.WHERE_LIMIT)
        self.problem = _shorten(problem, self.PROBLEM_LIMIT)
        super().__init__(f"{self.where}: {self.problem}")


class BuddyError(InvalidArgument):
    """A buddy allocator call with an order or block outside its domain.

    Linux treats these as kernel bugs (``VM_BUG_ON_PAGE`` in ``__free_one_page``,
    a ``WARN`` for an order above ``MAX_PAGE_ORDER`` in ``__alloc_pages``); here
    they are refused and the allocator is left as it was.
    """


class OrderOutOfRange(BuddyError):
    """An order outside ``0 .. max_order``."""


class BlockOutOfRange(BuddyError):
    """A block that does not lie inside memory (``pfn + 2**order > frames``)."""


class MisalignedBlock(BuddyError):
    """A block whose pfn is not a multiple of ``2**order``."""


class DoubleFree(BuddyError):
    """Freeing frames that are already free."""


class WrongOrder(BuddyError):
    """Freeing an allocated block with an order other than the one it was allocated with."""


class NotAllocated(BuddyError):
    """Freeing a pfn that is inside an allocated block but is not its first frame."""


class OutputRefused(InvalidArgument):
    """An output file a command will not write: it exists (and ``--force`` was not given), it lies under
    ``/dev``, ``/proc`` or ``/sys``, it is a folder, or its format is unknown."""


class OracleError(MMCheckError):
    """An external oracle (QEMU) failed to give an answer: a build error, a crash, a timeout."""


class OracleUnavailable(OracleError):
    """A program the oracle needs (qemu-system-x86_64, gcc, ld, objcopy) is not installed."""


class OracleUnsupported(InvalidArgument):
    """The scenario lies outside what the oracle can run faithfully; the message says which op and why."""


class UnknownPid(InvalidArgument, LookupError):
    """A pid that names no live process: pids are numbered 1, 2, 3 in order of creation."""


class UnknownPin(InvalidArgument, LookupError):
    """A pin number that names no pin taken (or one already released)."""


class IdleCpu(InvalidArgument):
    """A CPU that runs no process was asked to access memory: ``switch`` it to a pid first."""


class DisallowedChoice(MMCheckError):
    """The implementation made a free choice (a frame to allocate) that the spec does not allow.

    Not a misuse of the API: a refinement failure the harness reports as a divergence.
    """


class UnknownMutant(InvalidArgument, LookupError):
    """A mutant name or layer that the catalogue does not hold."""


class UnknownFlight(InvalidArgument, LookupError):
    """A ``pending`` number that names no mapping change in flight (``step`` it only until it returns)."""


class NotModelled(InvalidArgument):
    """The operation is valid in Linux but outside what the model covers; the message says what and why."""


class UnknownTopic(InvalidArgument, LookupError):
    """A quiz topic that does not exist."""


class SlabError(InvalidArgument):
    """A slab allocator call outside its domain (mm/slub.c).

    Linux meets most of these with a ``WARN`` or a ``BUG`` (``cache_from_obj``,
    ``set_freepointer``'s double-free check, ``free_consistency_checks`` under
    ``slub_debug``); here they are refused and the allocator is left as it was.
    """


class UnknownCache(SlabError, LookupError):
    """A cache name that no ``kmem_cache_create`` made (or that was destroyed)."""


class BadCacheName(SlabError):
    """A cache name that is empty, too long, or has characters other than letters, digits and ``_-.:``."""


class DuplicateCache(SlabError):
    """``kmem_cache_create`` with a name already in use."""


class BadObjectSize(SlabError):
    """An object size of 0, or above the largest kmalloc class (8192) or cache size allowed."""


class BadAlignment(SlabError):
    """An alignment that is not 0 or a power of two up to the page size."""


class NotSlabObject(SlabError):
    """An address outside every slab page (``virt_to_slab`` finds no slab)."""


class NotObjectStart(SlabError):
    """An address inside a slab that is not the first byte of one of its objects."""


class WrongCache(SlabError):
    """``kmem_cache_free`` of an object of another cache (``cache_from_obj``: "Wrong slab cache")."""


class SlabDoubleFree(SlabError):
    """Freeing an object that is already on its slab's freelist."""


class ObjectNotAllocated(SlabError):
    """Reading or writing an object that is free: only allocated objects belong to the caller."""


class CacheInUse(SlabError):
    """``kmem_cache_destroy`` of a cache with live objects ("Slab cache still has objects")."""


class KmallocCacheDestroy(SlabError):
    """``kmem_cache_destroy`` of a kmalloc cache: those live as long as the kernel."""


class BadCacheFlags(SlabError):
    """``kmem_cache_create`` flags the model does not know, or slab_debug flags with a constructor."""


class FlipOutsideObject(SlabError):
    """A byte flip outside the object's slot (its left red zone through its padding), or with no bits."""


class FlipNotModelled(SlabError):
    """A byte flip the model cannot follow: into a cache without slab_debug flags, a free pointer kept in
    the object or beside a requested size, or the requested size itself."""


class FreelistCycle(SlabError):
    """A flip that would make a slab's freelist loop: ``validate_slab_cache`` would never end (``__fill_map``)."""


class CorruptSlab(SlabError):
    """An allocation, free, shrink or destroy in a cache whose freelist or object count was corrupted and not
    yet repaired by ``validate_slab_cache``: Linux would follow the corrupt pointer; the model does not."""


class UnknownFile(InvalidArgument, LookupError):
    """A file operation named a file that does not exist."""
