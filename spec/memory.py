"""The programmer's view of memory (L0): what "correct" means for a user.

Each process sees a map from virtual page to a protection and a *cell*, the
page's contents (64-bit words by 8-byte aligned offset, absent words are 0).
Nothing is shared unless mapped shared:

- ``mmap`` adds fresh zero-filled pages (each its own cell), replacing what
  was mapped there; ``munmap`` removes pages; ``mprotect`` changes their
  protection;
- ``fork`` copies the whole map: a private page gets a new cell with a copy of
  the contents, a shared page keeps its cell, so both processes see each
  other's later stores to it;
- ``store`` writes the cell, ``load`` returns the last value stored to it;
- ``madvise(DONTNEED)`` gives private pages a fresh zero cell and leaves
  shared ones alone;
- an access the protection forbids is SIGSEGV; on x86 write or execute
  permission implies read;
- the kernel half is one page that supervisor-mode loads read
  (:data:`~spec.mm.vma.KERNEL_WORD` at offset 0) and everything else faults on.

A *pin* (a read-only ``get_user_pages`` reference, as vmsplice takes) of a
shared page reads the cell as it is now.  A pin of a private page reads one
of the values the pinning process gave that word since the pin, while the
process kept the page mapped: never a value another process stored
(CVE-2020-29374).  Which of them is the kernel's business, so L0 answers
with the set of allowed values.

A *hugetlb* mapping (``huge``, ``MAP_HUGETLB``) is made of 2 MiB pages, and
the programmer sees what Linux documents for it:

- ``mmap`` wants a 2 MiB aligned address and rounds the length *up* to
  2 MiB (mm/mmap.c ``ksys_mmap_pgoff``);
- it can be cut only on 2 MiB boundaries, and its pieces stay apart (they
  never merge): each page remembers where its piece starts (``huge``, 0 for
  a normal page), and an ``munmap``, ``mprotect`` or ``mmap`` whose edge
  falls inside a piece off a 2 MiB boundary is EINVAL (mm/hugetlb.c
  ``hugetlb_vm_op_split``).  munmap and mmap then change nothing; mprotect
  has changed the pieces before the one it could not cut;
- ``madvise(DONTNEED)`` wants the start 2 MiB aligned inside it (EINVAL) and
  drops only the 2 MiB pages wholly inside the range (the end is rounded
  down, mm/madvise.c ``madvise_dontneed_free_valid_vma``); a private one then
  reads zero, a shared one keeps its contents;
- contents, sharing and fork behave as for normal pages (each 4 KiB of it
  is a cell here); pinning one is refused (:class:`~lang.errors.NotModelled`).

*Files* are named arrays of pages, each page a cell (:class:`FileView`):
``file_read`` returns the last value ``file_write`` or a store through a
shared mapping gave the word; a shared file mapping's page *is* the file's
cell; a private one reads the file's cell until the process first stores
to it, then has a copy of its own, so a private store never reaches the
file.  Reclaim, writeback and swap are invisible here: a program reads
after them exactly what it stored.  A page at or past the end of its file
is SIGBUS; ``truncate`` cuts private copies past the end too (they read
the file again if it grows).

Any operation that needs memory may also fail with ENOMEM and change
nothing; that is checked by the harness, not modelled here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lang.errors import (
    AddressError,
    IdleCpu,
    InvalidArgument,
    NotModelled,
    UnknownCpu,
    UnknownFile,
    UnknownPid,
    UnknownPin,
)
from lang.records import replace
from spec.mm.vma import (
    HUGE_PAGES,
    KERNEL_VA,
    KERNEL_WORD,
    TASK_SIZE,
    Prot,
    huge_mmap_error,
    huge_pages,
    mmap_error,
    munmap_error,
    range_error,
)
from spec.outcome import EFAULT, Errno, NewPid, NewPin, Ok, OneOf, Outcome, Signal, Value
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE, WORD_SIZE, is_canonical
from spec.paging.permissions import Kind, Mode

Words = Mapping[int, int]
_EMPTY: Words = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Page:
    """One virtual page: its protection, its cell, whether it was mapped shared, and (``huge``) the first page of
    the hugetlb piece it belongs to (0 for a normal page).

    A page of a file mapping names its ``file`` and page ``index``; a shared one, and a private one not yet
    written (``cow``), reads and writes the file's cell for the index, whatever it is at the time.
    """

    prot: Prot
    cell: int
    shared: bool
    huge: int = 0
    file: str = ""
    index: int = 0
    cow: bool = False


@dataclass(frozen=True, slots=True)
class PinView:
    """A pin of word ``offset`` of page ``vpn`` of process ``pid``.

    For a shared page the pin follows ``cell``.  For a private one,
    ``values`` holds what the word may read, and ``live`` says the pinning
    process still maps the page, so its stores add to ``values``.
    """

    pid: int
    vpn: int
    offset: int
    cell: int
    shared: bool
    values: frozenset[int]
    live: bool


@dataclass(frozen=True, slots=True)
class FileView:
    """A file: its size in pages and the cell of each page."""

    pages: int
    cells: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Memory:
    """Every process's pages, every cell's words, the pins, the files, and which process each CPU runs (0: none)."""

    procs: Mapping[int, Mapping[int, Page]] = field(default_factory=lambda: MappingProxyType({}))
    cells: Mapping[int, Words] = field(default_factory=lambda: MappingProxyType({}))
    pins: Mapping[int, PinView] = field(default_factory=lambda: MappingProxyType({}))
    current: tuple[int, ...] = (0,)
    next_pid: int = 1
    next_cell: int = 1
    next_pin: int = 1
    files: Mapping[str, FileView] = field(default_factory=lambda: MappingProxyType({}))


def initial(cpus: int) -> Memory:
    """No processes; every CPU idle."""
    return Memory(current=(0,) * cpus)


def _pages(mem: Memory, pid: int) -> Mapping[int, Page]:
    if pid not in mem.procs:
        raise UnknownPid(f"pid {pid} is not a live process: allowed {sorted(mem.procs)}")
    return mem.procs[pid]


def _set(mapping: Mapping[int, object], key: int, value: object) -> MappingProxyType[int, object]:
    out = dict(mapping)
    out[key] = value
    return MappingProxyType(out)


def _with_pages(mem: Memory, pid: int, pages: Mapping[int, Page]) -> Memory:
    procs = dict(mem.procs)
    procs[pid] = MappingProxyType(dict(pages))
    return replace(mem, procs=MappingProxyType(procs))


def _detach(mem: Memory, pid: int, vpns: frozenset[int]) -> Memory:
    """Pins of private pages ``vpns`` of ``pid`` stop following the process's stores."""
    pins = {
        n: replace(p, live=False) if p.pid == pid and p.vpn in vpns and not p.shared else p for n, p in mem.pins.items()
    }
    return replace(mem, pins=MappingProxyType(pins))


def spawn(mem: Memory) -> tuple[Memory, Outcome]:
    """A new process with no pages."""
    pid = mem.next_pid
    return replace(mem, procs=_set(mem.procs, pid, _EMPTY), next_pid=pid + 1), NewPid(pid)  # type: ignore[arg-type]


def fork(mem: Memory, pid: int) -> tuple[Memory, Outcome]:
    """A child with a copy of ``pid``'s map: private pages in new cells, shared pages in the same ones."""
    pages = _pages(mem, pid)
    child, cells, next_cell = {}, dict(mem.cells), mem.next_cell
    for vpn, page in pages.items():
        if page.shared or page.cow:
            child[vpn] = page
        else:
            cells[next_cell] = mem.cells[page.cell]
            child[vpn] = replace(page, cell=next_cell)
            next_cell += 1
    new = replace(mem, cells=MappingProxyType(cells), next_cell=next_cell, next_pid=mem.next_pid + 1)
    return _with_pages(new, mem.next_pid, child), NewPid(mem.next_pid)


def exit_process(mem: Memory, pid: int) -> tuple[Memory, Outcome]:
    """``pid`` and its map are gone; CPUs running it become idle."""
    pages = _pages(mem, pid)
    mem = _detach(mem, pid, frozenset(pages))
    procs = {p: v for p, v in mem.procs.items() if p != pid}
    current = tuple(0 if c == pid else c for c in mem.current)
    return replace(mem, procs=MappingProxyType(procs), current=current), Ok()


def _cut_refused(pages: Mapping[int, Page], vpn: int) -> bool:
    """A cut at page ``vpn`` would split a hugetlb piece off a 2 MiB boundary."""
    page = pages.get(vpn)
    return page is not None and 0 < page.huge < vpn and vpn % HUGE_PAGES != 0


def _cut(pages: Mapping[int, Page], vpn: int) -> dict[int, Page]:
    """The pages with the hugetlb piece around ``vpn`` cut there: its pages from ``vpn`` on start a new piece."""
    out = dict(pages)
    page = pages.get(vpn)
    if page is None or not 0 < page.huge < vpn:
        return out
    for v, p in pages.items():
        if v >= vpn and p.huge == page.huge:
            out[v] = replace(p, huge=vpn)
    return out


def _unmap(mem: Memory, pid: int, lo: int, hi: int) -> Memory:
    pages = _pages(mem, pid)
    gone = frozenset(v for v in pages if lo <= v < hi)
    mem = _detach(mem, pid, gone)
    return _with_pages(mem, pid, _cut({v: p for v, p in pages.items() if v not in gone}, hi))


def mmap(
    mem: Memory, pid: int, va: int, pages: int, prot: Prot, shared: bool, huge: bool = False
) -> tuple[Memory, Outcome]:
    """Fresh zero pages at ``va`` (replacing what was there), each with its own cell; ``huge``: a hugetlb mapping."""
    current = _pages(mem, pid)
    error = huge_mmap_error(va, pages) if huge else mmap_error(va, pages)
    pages = huge_pages(pages) if huge else pages
    lo = va >> PAGE_SHIFT
    if not error and (_cut_refused(current, lo) or _cut_refused(current, lo + pages)):
        error = "EINVAL"
    if error:
        return mem, Errno(error)
    mem = _unmap(mem, pid, lo, lo + pages)
    cells = dict(mem.cells)
    new = dict(mem.procs[pid])
    for i in range(pages):
        cells[mem.next_cell + i] = _EMPTY
        new[lo + i] = Page(prot, mem.next_cell + i, shared, lo if huge else 0)
    mem = replace(mem, cells=MappingProxyType(cells), next_cell=mem.next_cell + pages)
    return _with_pages(mem, pid, new), Ok()


def munmap(mem: Memory, pid: int, va: int, pages: int) -> tuple[Memory, Outcome]:
    """The pages of the range are gone; EINVAL (nothing changed) if an edge cuts a hugetlb piece off 2 MiB."""
    current = _pages(mem, pid)
    error = munmap_error(va, pages)
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    if not error and (_cut_refused(current, lo) or _cut_refused(current, hi)):
        error = "EINVAL"
    if error:
        return mem, Errno(error)
    return _unmap(mem, pid, lo, hi), Ok()


def _mapped_run(pages: Mapping[int, Page], lo: int, hi: int) -> int:
    page = lo
    while page < hi and page in pages:
        page += 1
    return page


def mprotect(mem: Memory, pid: int, va: int, pages: int, prot: Prot) -> tuple[Memory, Outcome]:
    """New protection for the mapped run of pages at ``va``; ENOMEM if the range has a hole.

    Linux changes the VMAs in order and stops at the first hole
    (``do_mprotect_pkey``, mm/mprotect.c), so the run before it keeps the change;
    likewise it stops with EINVAL at a hugetlb piece it would have to cut off 2 MiB.
    """
    current = _pages(mem, pid)
    error = range_error(va)
    if error:
        return mem, Errno(error)
    lo = va >> PAGE_SHIFT
    end = _mapped_run(current, lo, lo + pages)
    outcome: Outcome = Ok() if end == lo + pages else Errno("ENOMEM")
    if end > lo and _cut_refused(current, lo):
        return mem, Errno("EINVAL")
    if _cut_refused(current, end):
        end, outcome = max(lo, current[end].huge), Errno("EINVAL")
    pieces = _cut(_cut(current, lo), end)
    new = {v: replace(p, prot=prot) if lo <= v < end else p for v, p in pieces.items()}
    return _with_pages(mem, pid, new), outcome


def madvise_dontneed(mem: Memory, pid: int, va: int, pages: int) -> tuple[Memory, Outcome]:
    """Private pages of the range read zero again; shared ones keep their contents; ENOMEM if the range has a hole.

    Of a hugetlb piece, only the 2 MiB pages wholly inside the range; EINVAL (nothing changed) if the range starts
    inside one off a 2 MiB boundary.
    """
    current = _pages(mem, pid)
    error = range_error(va)
    lo, hi = va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + pages
    first = current.get(lo)
    if not error and pages and first is not None and first.huge and lo % HUGE_PAGES:
        error = "EINVAL"
    if error:
        return mem, Errno(error)
    private = frozenset(
        v
        for v, p in current.items()
        if lo <= v < hi and not p.shared and (not p.huge or v - v % HUGE_PAGES + HUGE_PAGES <= hi)
    )
    mem = _detach(mem, pid, private)
    cells, new, next_cell = dict(mem.cells), dict(current), mem.next_cell
    for vpn in sorted(private):
        if current[vpn].file:
            new[vpn] = replace(current[vpn], cow=True)
            continue
        cells[next_cell] = _EMPTY
        new[vpn] = replace(current[vpn], cell=next_cell)
        next_cell += 1
    mem = replace(mem, cells=MappingProxyType(cells), next_cell=next_cell)
    holes = any(v not in current for v in range(lo, hi))
    return _with_pages(mem, pid, new), Errno("ENOMEM") if holes else Ok()


def switch(mem: Memory, cpu: int, pid: int) -> tuple[Memory, Outcome]:
    """CPU ``cpu`` now runs ``pid``."""
    _pages(mem, pid)
    _check_cpu(mem, cpu)
    current = tuple(pid if i == cpu else c for i, c in enumerate(mem.current))
    return replace(mem, current=current), Ok()


def _check_cpu(mem: Memory, cpu: int) -> None:
    if not 0 <= cpu < len(mem.current):
        raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(mem.current) - 1}")


def check_address(va: int) -> None:
    """Raise :class:`AddressError` unless ``va`` is a canonical, 8-byte aligned 64-bit address."""
    if not 0 <= va < 1 << 64 or not is_canonical(va, 4):
        raise AddressError(f"virtual address {va:#x} is not canonical: bits 63..47 must be equal")
    if va % WORD_SIZE:
        raise AddressError(f"virtual address {va:#x} is not 8-byte aligned: accesses are 64-bit words")


def running(mem: Memory, cpu: int) -> int:
    """The pid ``cpu`` runs; :class:`IdleCpu` if none."""
    _check_cpu(mem, cpu)
    if not mem.current[cpu]:
        raise IdleCpu(f"cpu {cpu} runs no process: switch it to a pid first")
    return mem.current[cpu]


def allowed(prot: Prot, kind: Kind) -> bool:
    """Reads need any right (W or X imply R on x86), writes need W, fetches need X."""
    if kind is Kind.WRITE:
        return prot.write
    if kind is Kind.FETCH:
        return prot.exec
    return prot.accessible


def _kernel_access(kind: Kind, mode: Mode, va: int) -> Outcome:
    if mode is Mode.SUPERVISOR and kind is Kind.READ and va >> PAGE_SHIFT == KERNEL_VA >> PAGE_SHIFT:
        return Value(KERNEL_WORD if va == KERNEL_VA else 0)
    return Signal()


def access(mem: Memory, cpu: int, va: int, kind: Kind, mode: Mode, value: int = 0) -> tuple[Memory, Outcome]:
    """A load, store or fetch by the process ``cpu`` runs."""
    pid = running(mem, cpu)
    check_address(va)
    if va >= TASK_SIZE:
        return mem, _kernel_access(kind, mode, va)
    page = mem.procs[pid].get(va >> PAGE_SHIFT)
    if page is None or not allowed(page.prot, kind):
        return mem, Signal()
    if page.file and page.index >= mem.files[page.file].pages:
        return mem, Signal(bus=True)
    offset = va % PAGE_SIZE
    if kind is not Kind.WRITE:
        return mem, Value(mem.cells[cell_of(mem, page)].get(offset, 0))
    if page.cow:
        mem, page = _copy_file_page(mem, pid, va >> PAGE_SHIFT, page)
    return _store(mem, pid, va >> PAGE_SHIFT, page, offset, value), Ok()


def cell_of(mem: Memory, page: Page) -> int:
    """The cell a page reads: the file's for a shared or not yet written private file page, else its own."""
    if page.file and (page.shared or page.cow):
        return mem.files[page.file].cells[page.index]
    return page.cell


def _copy_file_page(mem: Memory, pid: int, vpn: int, page: Page) -> tuple[Memory, Page]:
    """A private file page's first store: a copy of the file's page, the process's own from now on."""
    cells = dict(mem.cells)
    cells[mem.next_cell] = mem.cells[cell_of(mem, page)]
    page = replace(page, cell=mem.next_cell, cow=False)
    mem = replace(mem, cells=MappingProxyType(cells), next_cell=mem.next_cell + 1)
    return _with_pages(mem, pid, _set(mem.procs[pid], vpn, page)), page  # type: ignore[arg-type]


def _store(mem: Memory, pid: int, vpn: int, page: Page, offset: int, value: int) -> Memory:
    cell = cell_of(mem, page)
    words = dict(mem.cells[cell])
    words[offset] = value
    pins = {
        n: replace(p, values=p.values | {value})
        if p.live and not p.shared and p.pid == pid and p.vpn == vpn and p.offset == offset
        else p
        for n, p in mem.pins.items()
    }
    return replace(mem, cells=_set(mem.cells, cell, MappingProxyType(words)), pins=MappingProxyType(pins))  # type: ignore[arg-type]


def pin(mem: Memory, pid: int, va: int) -> tuple[Memory, Outcome]:
    """Pin the word at ``va``: EFAULT unless mapped with PROT_READ (mm/gup.c ``check_vma_flags``)."""
    pages = _pages(mem, pid)
    check_address(va)
    page = pages.get(va >> PAGE_SHIFT) if va < TASK_SIZE else None
    if page is None or not page.prot.read:
        return mem, EFAULT
    if page.huge:
        raise NotModelled(f"pin of {va:#x}: pinning a hugetlb page is not modelled: pin a page of a normal mapping")
    offset = va % PAGE_SIZE
    if page.file and page.index >= mem.files[page.file].pages:
        return mem, Signal(bus=True)
    now = frozenset({mem.cells[cell_of(mem, page)].get(offset, 0)})
    view = PinView(pid, va >> PAGE_SHIFT, offset, cell_of(mem, page), page.shared or page.cow, now, True)
    return replace(mem, pins=_set(mem.pins, mem.next_pin, view), next_pin=mem.next_pin + 1), NewPin(mem.next_pin)  # type: ignore[arg-type]


def _pin(mem: Memory, number: int) -> PinView:
    if number not in mem.pins:
        raise UnknownPin(f"pin {number} is not held: allowed {sorted(mem.pins)}")
    return mem.pins[number]


def read_pin(mem: Memory, number: int) -> Outcome:
    """The shared cell's word now, or the set of values a private pin may read."""
    view = _pin(mem, number)
    if view.shared:
        return Value(mem.cells[view.cell].get(view.offset, 0))
    return OneOf(view.values)


def unpin(mem: Memory, number: int) -> tuple[Memory, Outcome]:
    """Release the pin."""
    _pin(mem, number)
    return replace(mem, pins=MappingProxyType({n: p for n, p in mem.pins.items() if n != number})), Ok()


def pids(mem: Memory) -> frozenset[int]:
    """The live processes."""
    return frozenset(mem.procs)


# --- files ---------------------------------------------------------------------------------------------------


def _file(mem: Memory, name: str) -> FileView:
    if name not in mem.files:
        raise UnknownFile(f"file {name!r} does not exist: allowed {sorted(mem.files)}; create it first")
    return mem.files[name]


def _with_file(mem: Memory, name: str, view: FileView) -> Memory:
    files = dict(mem.files)
    files[name] = view
    return replace(mem, files=MappingProxyType(files))


def _grown(mem: Memory, name: str, view: FileView, pages: int) -> Memory:
    """The file grown to ``pages`` pages, each new one a fresh zero cell."""
    cells, own = dict(mem.cells), dict(view.cells)
    for index in range(view.pages, pages):
        cells[mem.next_cell] = _EMPTY
        own[index] = mem.next_cell
        mem = replace(mem, next_cell=mem.next_cell + 1)
    mem = replace(mem, cells=MappingProxyType(cells))
    return _with_file(mem, name, FileView(max(pages, view.pages), MappingProxyType(own)))


def file_create(mem: Memory, name: str, pages: int, words: Mapping[int, int]) -> tuple[Memory, Outcome]:
    """A new file of ``pages`` pages holding ``words`` (byte offset -> value)."""
    if any(offset < 0 or offset % WORD_SIZE for offset in words):
        raise AddressError(f"file offsets {sorted(words)} must be non-negative multiples of 8")
    if name in mem.files:
        return mem, Errno("EEXIST")
    if any(offset // PAGE_SIZE >= pages for offset, v in words.items() if v) or not 0 <= pages <= 1 << 20:
        return mem, Errno("EINVAL")
    mem = _grown(mem, name, FileView(0, MappingProxyType({})), pages)
    for offset, value in words.items():
        view = mem.files[name]
        mem = _write_cell(mem, view.cells[offset // PAGE_SIZE], offset % PAGE_SIZE, value)
    return mem, Ok()


def _write_cell(mem: Memory, cell: int, offset: int, value: int) -> Memory:
    words = dict(mem.cells[cell])
    words[offset] = value
    return replace(mem, cells=_set(mem.cells, cell, MappingProxyType(words)))  # type: ignore[arg-type]


def _check_offset(offset: int) -> None:
    if offset < 0 or offset % WORD_SIZE:
        raise InvalidArgument(f"file offset {offset:#x} is not a non-negative multiple of 8: files hold 64-bit words")


def file_read(mem: Memory, name: str, offset: int) -> Outcome:
    """The word at byte ``offset`` of the file: the last value any write or shared store gave it (0 past the end)."""
    view = _file(mem, name)
    _check_offset(offset)
    if offset // PAGE_SIZE >= view.pages:
        return Value(0)
    return Value(mem.cells[view.cells[offset // PAGE_SIZE]].get(offset % PAGE_SIZE, 0))


def file_write(mem: Memory, name: str, offset: int, value: int) -> tuple[Memory, Outcome]:
    """Store into the file; shared mappings of the page and private ones not yet written see it; grows the file."""
    view = _file(mem, name)
    _check_offset(offset)
    if offset // PAGE_SIZE >= 1 << 20:
        return mem, Errno("EFBIG")
    mem = _grown(mem, name, view, offset // PAGE_SIZE + 1)
    cell = mem.files[name].cells[offset // PAGE_SIZE]
    pins = {
        n: replace(p, values=p.values | {value})
        if not p.shared and p.cell == cell and p.offset == offset % PAGE_SIZE
        else p
        for n, p in mem.pins.items()
    }
    mem = replace(mem, pins=MappingProxyType(pins))
    return _write_cell(mem, cell, offset % PAGE_SIZE, value), Ok()


def truncate(mem: Memory, name: str, pages: int) -> tuple[Memory, Outcome]:
    """The file cut (or grown) to ``pages`` pages: past the end, mapped pages are SIGBUS, private copies included; a
    grown file reads zero."""
    view = _file(mem, name)
    if not 0 <= pages <= 1 << 20:
        return mem, Errno("EINVAL")
    kept = {i: c for i, c in view.cells.items() if i < pages}
    mem = _with_file(mem, name, FileView(min(pages, view.pages), MappingProxyType(kept)))
    procs = {}
    for pid, own in mem.procs.items():
        procs[pid] = MappingProxyType(
            {
                v: replace(p, cow=True) if p.file == name and not p.shared and p.index >= pages else p
                for v, p in own.items()
            }
        )
    mem = replace(mem, procs=MappingProxyType(procs))
    return _grown(mem, name, mem.files[name], pages), Ok()


def mmap_file(
    mem: Memory, pid: int, va: int, pages: int, prot: Prot, shared: bool, name: str, offset: int
) -> tuple[Memory, Outcome]:
    """Pages ``offset ..`` of the file at ``va``: shared ones are the file's; private ones read it until written."""
    _file(mem, name)
    current = _pages(mem, pid)
    error = mmap_error(va, pages)
    lo = va >> PAGE_SHIFT
    if not error and (_cut_refused(current, lo) or _cut_refused(current, lo + pages)):
        error = "EINVAL"
    if not error and not 0 <= offset <= 1 << 20:
        error = "EINVAL"
    if error:
        return mem, Errno(error)
    mem = _unmap(mem, pid, lo, lo + pages)
    new = dict(mem.procs[pid])
    for i in range(pages):
        new[lo + i] = Page(prot, 0, shared, 0, name, offset + i, cow=not shared)
    return _with_pages(mem, pid, new), Ok()
