"""The memory controller's files on cgroup v2 (Linux 6.12 mm/memcontrol.c ``memory_files``).

- **The hierarchy** (``memcg_hierarchy``): the controller sits on v1 (the model's default, where the v1 files of
  :mod:`spec.memcg.memcg` live) or on the unified hierarchy; it may move only while no group but the root
  exists (``rebind_subsystems`` refuses a controller in use: EBUSY).  A file of the other hierarchy does not
  exist (ENOENT); the root has none of the limit files (``CFTYPE_NOT_ON_ROOT``) but ``memory.reclaim`` and
  ``memory.stat``.
- **memory.max** (``memory_max_write``): the limit is set at once (``xchg``), whatever the usage; while the
  usage is above it, the write drains the stock once, reclaims the excess from the group
  (``try_to_free_mem_cgroup_pages``; ``MAX_RECLAIM_RETRIES`` reclaims that free nothing), then counts an
  ``oom`` event and runs the group's OOM killer (``mem_cgroup_out_of_memory``) until the usage fits or nothing
  is left to kill; the write succeeds either way.
- **memory.high** (``memory_high_write``, ``page_counter_set_high``): set at once; while the usage is above it
  the write reclaims the excess, giving up after ``MAX_RECLAIM_RETRIES`` reclaims that free nothing.  It never
  kills.  A charge that leaves a group above its high is reclaimed after the operation
  (:func:`spec.memcg.memcg.handle_over_high`).
- **memory.low**, **memory.min** (``page_counter_set_low``/``_min``): protection from reclaim, made effective by
  :mod:`spec.memcg.protection`.
- **memory.oom.group** (``memory_oom_group_write``): 0 or 1, else EINVAL.
- **memory.reclaim** (``memory_reclaim``): reclaim ``size`` bytes (rounded down to pages) in batches of a quarter
  of what is left (at least ``SWAP_CLUSTER_MAX`` each); ``MAX_RECLAIM_RETRIES`` batches that free nothing end
  it with EAGAIN, the pages reclaimed so far staying reclaimed.  A negative size does not parse: EINVAL.
- **Reading** (``memcg_read``): ``memory.current`` (``page_counter_read``, bytes), ``memory.peak`` (the
  watermark), ``memory.min``, ``memory.low``, ``memory.high``, ``memory.max`` (bytes, ``"max"`` for none:
  ``seq_puts_memcg_tunable``), ``memory.oom.group``, ``memory.events`` (hierarchical: ``memcg_memory_event``
  counts on every ancestor below the root) and ``memory.events.local`` (the group's own) with ``low``,
  ``high``, ``max``, ``oom``, ``oom_kill``, ``oom_group_kill``, and ``memory.stat``'s ``anon``, ``file``,
  ``kernel``, ``pagetables`` and ``shmem`` (bytes, the subtree's: v2 statistics are hierarchical).  ``kernel``
  is the group's kernel memory (``MEMCG_KMEM``), here its page tables (``GFP_PGTABLE_USER`` has
  ``__GFP_ACCOUNT``).
"""

from __future__ import annotations

from dataclasses import replace

from spec.memcg.memcg import EBUSY, EINVAL, ENOENT, Exit, bump, enable, oom_kill, preorder, usage
from spec.memcg.reclaim import MAX_RECLAIM_RETRIES, try_to_free, with_group
from spec.memcg.state import PAGE_COUNTER_MAX, PAGE_SIZE, ROOT, under
from spec.mm.kernel import Choices, Kernel
from spec.outcome import Errno, MemcgOom, MemcgStat, MemcgValue, Ok, OomKill, Outcome
from spec.pressure.files import file_objects

V2_FILES = ("memory.max", "memory.high", "memory.low", "memory.min", "memory.oom.group", "memory.reclaim")
EVENTS = (("low", "low_events"), ("high", "high_events"), ("max", "max_events"), ("oom", "oom"),
          ("oom_kill", "oom_kill"), ("oom_group_kill", "oom_group_kill"))
EAGAIN = Errno("EAGAIN")


def set_hierarchy(k: Kernel, version: int) -> tuple[Kernel, Outcome]:
    """Put the memory controller on cgroup ``version`` (1 or 2): EBUSY once a group exists."""
    k = enable(k)
    if (version == 2) == k.memcg.v2:
        return k, Ok()
    if len(k.memcg.groups) > 1:
        return k, EBUSY
    return replace(k, memcg=replace(k.memcg, v2=version == 2)), Ok()


def write(k: Kernel, path: str, knob: str, value: int, choices: Choices, kill: Exit) -> tuple[Kernel, Outcome]:
    """Write a v2 file of group ``path``."""
    k = enable(k)
    m = k.memcg
    if path not in m.groups or not m.v2 or (path == ROOT and knob != "memory.reclaim"):
        return k, ENOENT
    pages = PAGE_COUNTER_MAX if value < 0 else min(value // PAGE_SIZE, PAGE_COUNTER_MAX)
    if knob == "memory.oom.group":
        if value not in (0, 1):
            return k, EINVAL
        return with_group(k, path, oom_group=value), Ok()
    if knob in ("memory.low", "memory.min"):
        return with_group(k, path, **{knob.removeprefix("memory."): pages}), Ok()
    if knob == "memory.reclaim":
        return reclaim(k, path, value, choices)
    if knob == "memory.high":
        return with_group_high(k, path, pages, choices), Ok()
    assert knob == "memory.max"
    return max_write(k, path, pages, choices, kill)


def with_group_high(k: Kernel, path: str, high: int, choices: Choices) -> Kernel:
    """``memory_high_write``: set, then reclaim the excess until it fits or reclaim gives up."""
    k = with_group(k, path, high=high)
    retries, drained, call = MAX_RECLAIM_RETRIES, False, 0
    while True:
        used = usage(k.memcg, path)
        if used <= high:
            return k
        if not drained:
            drained = True
            continue
        k, freed = try_to_free(k, path, used - high, choices, call)
        call += 1
        if not freed:
            if not retries:
                return k
            retries -= 1


def max_write(k: Kernel, path: str, limit: int, choices: Choices, kill: Exit) -> tuple[Kernel, Outcome]:
    """``memory_max_write``: set, reclaim the excess, then the group's OOM killer until it fits."""
    k = with_group(k, path, limit=limit)
    retries, drained, call = MAX_RECLAIM_RETRIES, False, 0
    kills: list[OomKill] = []
    while True:
        used = usage(k.memcg, path)
        if used <= limit:
            break
        if not drained:
            drained = True
            continue
        if retries:
            k, freed = try_to_free(k, path, used - limit, choices, call)
            call += 1
            if not freed:
                retries -= 1
            continue
        k = bump(k, path, oom=1)
        done = oom_kill(k, path, kill)
        if done is None:
            break
        k, killed = done
        kills += killed
    return k, MemcgOom(path, tuple(kills), Ok()) if kills else Ok()


def reclaim(k: Kernel, path: str, size: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """``memory_reclaim``: ``size`` bytes in batches of a quarter of what is left; EAGAIN when it gives up."""
    if size < 0:
        return k, EINVAL
    want, done, retries, call = size // PAGE_SIZE, 0, MAX_RECLAIM_RETRIES, 0
    while done < want:
        k, freed = try_to_free(k, path, (want - done) // 4, choices, call)
        call += 1
        if not freed:
            if not retries:
                return k, EAGAIN
            retries -= 1
        done += freed
    return k, Ok()


def tunable(pages: int) -> MemcgValue:
    """``seq_puts_memcg_tunable``: ``"max"`` or bytes."""
    return "max" if pages >= PAGE_COUNTER_MAX else pages * PAGE_SIZE


def stat(k: Kernel, path: str) -> Outcome:
    """The group's v2 files (the root: ``memory.stat`` only)."""
    m = k.memcg
    if path not in m.groups:
        return ENOENT
    shmem_objects = set(k.objects) - set(file_objects(k))
    shmem = {pfn for obj in shmem_objects for pfn in k.objects[obj].values()}
    kinds = [(kind, pfn) for pfn, (group, kind) in m.charges.items() if under(group, path)]
    lines: tuple[tuple[str, int], ...] = (
        ("anon", sum(kind == "anon" for kind, _ in kinds) * PAGE_SIZE),
        ("file", sum(kind == "file" for kind, _ in kinds) * PAGE_SIZE),
        ("kernel", sum(kind == "table" for kind, _ in kinds) * PAGE_SIZE),
        ("pagetables", sum(kind == "table" for kind, _ in kinds) * PAGE_SIZE),
        ("shmem", sum(kind == "file" and pfn in shmem for kind, pfn in kinds) * PAGE_SIZE),
    )
    if path == ROOT:
        return MemcgStat((("memory.stat", lines),))
    g = m.groups[path]
    subtree = [m.groups[p] for p in preorder(m, path)]
    values: tuple[tuple[str, MemcgValue], ...] = (
        ("memory.current", usage(m, path) * PAGE_SIZE),
        ("memory.peak", g.max_usage * PAGE_SIZE),
        ("memory.min", tunable(g.min)),
        ("memory.low", tunable(g.low)),
        ("memory.high", tunable(g.high)),
        ("memory.max", tunable(g.limit)),
        ("memory.oom.group", int(g.oom_group)),
        ("memory.events", tuple((name, sum(getattr(s, field) for s in subtree)) for name, field in EVENTS)),
        ("memory.events.local", tuple((name, getattr(g, field)) for name, field in EVENTS)),
        ("memory.stat", lines),
    )
    return MemcgStat(values)
