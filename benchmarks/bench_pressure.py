"""Memory pressure throughput: faults per second by kind, and reclaim, on the implementation and the spec.

Each workload is a list of scenario ops run through the same runners
``mmcheck replay`` uses (:class:`properties.drivers.ImplRunner` and
:class:`properties.drivers.SpecRunner`, the SMP TLB layer included); the
setup ops are not timed, the measured ops are:

- faults by kind, one load per page of ``pages`` pages: a *minor* fault on
  a fresh private anonymous page (the shared zero page, ``do_anonymous_page``),
  a *minor* fault on a shared file mapping whose pages ``read()`` brought into
  the page cache (``filemap_fault`` finds them), a *major* fault on a file
  mapping of pages not cached (``filemap_fault`` reads them), a *major*
  swap-in of anonymous pages reclaim wrote to swap (``do_swap_page`` reads
  the slot);
- reclaim of clean page-cache pages no process maps (pages ``read()``
  brought in): one ``reclaim`` op of all of them, which gives each its second
  chance (they are referenced), deactivates and evicts it (mm/vmscan.c
  ``shrink_lruvec``), at 10**3 to 10**5 pages on the implementation;
- reclaim of mapped anonymous pages to swap (``shrink_folio_list`` unmaps
  each through the reverse map, ``try_to_unmap``).

The spec runs the same workloads at the sizes where it finishes in well under
a second: its maps are copied on every step, so its cost per page grows with
the pages it holds.  :mod:`benchmarks.run` reports them (``nox -s bench``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lang.kernel_ops import Load, Mmap, Spawn, Store, Switch
from lang.pressure_ops import FileCreate, FileRead, MmapFile, Reclaim, StatusOp
from lang.scenario import Config, Op
from properties.drivers import ImplRunner, SpecRunner

ANON, FILE = 0x10000000, 0x40000000
PAGE = 4096
KINDS = ("minor, anonymous zero page", "minor, page-cache hit", "major, file read", "major, swap-in")
Runner = ImplRunner | SpecRunner


@dataclass(frozen=True, slots=True)
class Workload:
    """A config, the untimed setup ops, and the timed ops (each op one unit: a fault, or a reclaim of ``units``)."""

    config: Config
    setup: tuple[Op, ...]
    timed: tuple[Op, ...]
    units: int


def config(pages: int, swap: int = 0) -> Config:
    """Frames for the pages, their tables and the kernel, with room to spare (no direct reclaim)."""
    return Config(frames=2 * pages + 64, cpus=1, max_order=10, swap=swap)


def loads(base: int, pages: int) -> tuple[Op, ...]:
    return tuple(Load(0, base + i * PAGE) for i in range(pages))


def fault_workload(kind: str, pages: int) -> Workload:
    """One load per page of ``pages`` pages, each a fault of ``kind`` (one of :data:`KINDS`)."""
    start: tuple[Op, ...] = (Spawn(), Switch(0, 1))
    if kind == KINDS[0]:
        return Workload(config(pages), (*start, Mmap(1, ANON, pages, "rw-")), loads(ANON, pages), pages)
    if kind in KINDS[1:3]:
        setup: tuple[Op, ...] = (*start, FileCreate("f", pages), MmapFile(1, FILE, pages, "r--", "f", True))
        if kind == KINDS[1]:
            setup += tuple(FileRead("f", i * PAGE) for i in range(pages))
        return Workload(config(pages), setup, loads(FILE, pages), pages)
    stores = tuple(Store(0, ANON + i * PAGE, i + 1) for i in range(pages))
    setup = (*start, Mmap(1, ANON, pages, "rw-"), *stores, Reclaim(pages))
    return Workload(config(pages, swap=pages), setup, loads(ANON, pages), pages)


def cache_reclaim_workload(pages: int) -> Workload:
    """``pages`` clean page-cache pages read by ``read()`` and mapped by no one, then one reclaim of them all."""
    reads = tuple(FileRead("f", i * PAGE) for i in range(pages))
    setup = (Spawn(), Switch(0, 1), FileCreate("f", pages), *reads)
    return Workload(config(pages), setup, (Reclaim(pages),), pages)


def anon_reclaim_workload(pages: int) -> Workload:
    """``pages`` written private anonymous pages of one process, then one reclaim of them all to swap."""
    stores = tuple(Store(0, ANON + i * PAGE, i + 1) for i in range(pages))
    setup = (Spawn(), Switch(0, 1), Mmap(1, ANON, pages, "rw-"), *stores)
    return Workload(config(pages, swap=pages), setup, (Reclaim(pages),), pages)


@dataclass(frozen=True, slots=True)
class Measurement:
    side: str
    what: str
    units: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.units / self.seconds

    @property
    def microseconds_per_unit(self) -> float:
        return 1e6 * self.seconds / self.units


class WrongResult(RuntimeError):
    """A measured op did not do what the workload is about (a fault of another kind, a short reclaim)."""


def run(side: str, work: Workload, what: str) -> Measurement:
    """Run the setup, then time the timed ops; check their effect (faults counted, pages reclaimed)."""
    runner: Runner = ImplRunner(work.config) if side == "impl" else SpecRunner(work.config)
    for op in work.setup:
        runner.apply(op)
    apply: Callable[[Op], object] = runner.apply
    start = time.perf_counter()
    results = [apply(op) for op in work.timed]
    seconds = time.perf_counter() - start
    check(runner, work, what, results)
    return Measurement(side, what, work.units, seconds)


def check(runner: Runner, work: Workload, what: str, results: Sequence[object]) -> None:
    """The timed ops did what they are named for, read off the runner's own counters."""
    status = runner.apply(StatusOp(1))
    assert isinstance(status, dict)
    if isinstance(work.timed[0], Reclaim):
        if results != [{"reclaimed": work.units}]:
            raise WrongResult(f"{what}: reclaim freed {results}, not {work.units} pages")
        return
    majors = status["majflt"]
    wanted = work.units if what.startswith("major") else 0
    if majors < wanted or (wanted == 0 and majors):
        raise WrongResult(f"{what}: {majors} major faults, wanted {wanted}")


def best(repeats: int, side: str, work: Workload, what: str) -> Measurement:
    """The fastest of ``repeats`` runs."""
    return min((run(side, work, what) for _ in range(repeats)), key=lambda m: m.seconds)
