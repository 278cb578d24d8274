"""Scenario kinds: a starting scenario of each (``mmcheck new KIND``) and the list of the shipped ones (``mmcheck
scenarios``).

A scenario's kind is read from its ops (:func:`kind_of`): the module that defines them (machine, slab or
memory-pressure ops) and, for kernel ops, whether it runs several CPUs.  Each template is a scenario that
replays as it is, its ``about`` the comment a JSON file cannot carry: what it does and what to change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lang import ops
from lang.errors import InvalidArgument, MMCheckError
from lang.scenario import Scenario, load

KINDS = ("hardware", "buddy", "kernel", "smp", "slab", "pressure", "malloc")
"""The kinds of scenario, one template each."""

BUDDY_OPS = (ops.AllocPages, ops.FreePages, ops.BuddyInfo)


def kind_of(scenario: Scenario) -> str:
    """The kind of a scenario, from its ops (see the module docstring)."""
    modules = {type(op).__module__ for op in scenario.ops}
    if "lang.ualloc_ops" in modules:
        return "malloc"
    if "lang.pressure_ops" in modules:
        return "pressure"
    if "lang.slab_ops" in modules:
        return "slab"
    if "lang.kernel_ops" in modules:
        return "smp" if runs_on_several_cpus(scenario) else "kernel"
    if scenario.ops and all(isinstance(op, BUDDY_OPS) for op in scenario.ops):
        return "buddy"
    return "hardware"


def runs_on_several_cpus(scenario: Scenario) -> bool:
    """Whether a kernel scenario runs accesses on two CPUs or more, or a mapping change in flight."""
    cpus = {op.cpu for op in scenario.ops if isinstance(op, (ops.Load, ops.Store, ops.Fetch, ops.TlbEvict))}
    in_flight = any(getattr(op, "background", False) or isinstance(op, ops.Step) for op in scenario.ops)
    return len(cpus) > 1 or in_flight


def _op(name: str, **fields: Any) -> dict[str, Any]:
    return {"op": name, **fields}


BASE = "0x100000000000"
TEMPLATES: dict[str, dict[str, Any]] = {
    "hardware": {
        "about": "Hardware layer (Intel SDM Vol. 3A 4.5): four page tables at 0x1000..0x4000 map the linear page "
        "0x0 to the frame 0x5000, user and writable; set_cpu loads CR3; then a user read and a user write of "
        "0x10, and a fetch, which faults with NXE on because the PTE sets XD (bit 63). Change a write_phys value "
        "(bit 0 present, 1 writable, 2 user, 63 XD) or a control bit and replay to see another rule fire; "
        "mmcheck walk FILE --va 0x10 shows the walk. expected_results lists what each op gives ({} matches any).",
        "config": {"frames": 16, "cpus": 1},
        "ops": [
            _op("write_phys", pa="0x1000", value="0x2007"),
            _op("write_phys", pa="0x2000", value="0x3007"),
            _op("write_phys", pa="0x3000", value="0x4007"),
            _op("write_phys", pa="0x4000", value="0x8000000000005007"),
            _op("set_cpu", cpu=0, cr3="0x1000", wp=True, smep=True, smap=True, ac=False, nxe=True, la57=False),
            _op("access", cpu=0, va="0x10", kind="read", mode="user"),
            _op("access", cpu=0, va="0x10", kind="write", mode="user"),
            _op("access", cpu=0, va="0x10", kind="fetch", mode="user"),
        ],
    },
    "buddy": {
        "about": "Buddy allocator (mm/page_alloc.c): on 8 frames with max_order 3, allocate one frame (the "
        "order-3 block splits), allocate two, free both, and read /proc/buddyinfo after each step that matters. "
        "Change the orders and replay; mmcheck buddy FILE shows the free lists, mmcheck plot FILE -o out.png "
        "draws them.",
        "config": {"frames": 8, "cpus": 1, "max_order": 3},
        "ops": [
            _op("buddyinfo"),
            _op("alloc_pages", order=0),
            _op("alloc_pages", order=1),
            _op("buddyinfo"),
            _op("free_pages", pfn="0x0", order=0),
            _op("free_pages", pfn="0x2", order=1),
            _op("buddyinfo"),
        ],
    },
    "kernel": {
        "about": "Kernel layer: a process maps two private pages, writes one, forks; the child's write copies "
        "the page (copy-on-write), each side reads its own value, and stat shows RSS/PSS (kB). Process ids are "
        "what spawn and fork answered; ops are checked spec against implementation as they run. Add ops (munmap, "
        "mprotect, madvise, pin, pagemap) and replay; mmcheck draw FILE draws the page tables, mmcheck plot FILE "
        "-o out.png the memory over the steps.",
        "config": {"frames": 64, "cpus": 1},
        "ops": [
            _op("spawn"),
            _op("mmap", pid=1, va=BASE, pages=2, prot="rw-"),
            _op("switch", cpu=0, pid=1),
            _op("store", cpu=0, va=BASE, value=7),
            _op("fork", pid=1),
            _op("switch", cpu=0, pid=2),
            _op("store", cpu=0, va=BASE, value=9),
            _op("load", cpu=0, va=BASE),
            _op("switch", cpu=0, pid=1),
            _op("load", cpu=0, va=BASE),
            _op("stat", pid=1),
            _op("stat", pid=2),
        ],
    },
    "smp": {
        "about": "Several CPUs and a TLB shootdown: CPUs 0 and 1 run pid 1, CPU 1 caches the page's translation, "
        'then munmap runs with "async": true, so only its first atomic step happens (page table cleared, IPIs '
        "sent) and it answers its number; each step op is one more atomic step (an IPI handled, then the frame "
        "freed). CPU 1 still reads the old value through its stale TLB entry before its flush, and faults after "
        "it. Move the loads between the steps and replay.",
        "config": {"frames": 64, "cpus": 2},
        "ops": [
            _op("spawn"),
            _op("switch", cpu=0, pid=1),
            _op("switch", cpu=1, pid=1),
            _op("mmap", pid=1, va="0x10000000", pages=1, prot="rw-"),
            _op("store", cpu=0, va="0x10000000", value=7),
            _op("load", cpu=1, va="0x10000000"),
            _op("munmap", pid=1, va="0x10000000", pages=1, **{"async": True}),
            _op("load", cpu=1, va="0x10000000"),
            _op("step", pending=1),
            _op("step", pending=1),
            _op("load", cpu=1, va="0x10000000"),
            _op("step", pending=1),
        ],
    },
    "slab": {
        "about": "The slab allocator (mm/slub.c): create a cache of 96-byte objects, allocate two on CPU 0, write "
        "and read the second, kmalloc(100) (from the kmalloc-128 class), read /proc/slabinfo, free the first "
        "object twice (the second free is refused: EINVAL), kfree the kmalloc'd one and read the Slab lines of "
        "/proc/meminfo. Object addresses are direct-map addresses, as the allocations answered. mmcheck slab FILE "
        "shows each cache's slabs and freelists.",
        "config": {"frames": 64, "cpus": 1},
        "ops": [
            _op("kmem_cache_create", cache="demo", size=96),
            _op("kmem_cache_alloc", cache="demo", cpu=0),
            _op("kmem_cache_alloc", cache="demo", cpu=0),
            _op("kmem_write", addr="0xffff888000000060", value=5),
            _op("kmem_read", addr="0xffff888000000060"),
            _op("kmalloc", size=100, cpu=0),
            _op("slabinfo"),
            _op("kmem_cache_free", cache="demo", addr="0xffff888000000000"),
            _op("kmem_cache_free", cache="demo", addr="0xffff888000000000"),
            _op("kfree", addr="0xffff888000001000"),
            _op("slab_meminfo"),
        ],
    },
    "pressure": {
        "about": "Memory pressure: a file of two pages mapped shared, one page written through the mapping, an "
        "anonymous page written; reclaim writes back or swaps out what it takes (second chance on the LRU), "
        "the loads fault the pages back in, and meminfo, status and vmstat show the counts (kB, faults). "
        "Change swap, the reclaim target or the order of the ops and replay.",
        "config": {"frames": 32, "cpus": 1, "max_order": 3, "swap": 4},
        "ops": [
            _op("file_create", file="data", pages=2, words={"0x8": 5}),
            _op("spawn"),
            _op("switch", cpu=0, pid=1),
            _op("mmap_file", pid=1, va="0x20000000", pages=2, prot="rw-", file="data", shared=True),
            _op("load", cpu=0, va="0x20000008"),
            _op("store", cpu=0, va="0x20001000", value=3),
            _op("mmap", pid=1, va="0x10000000", pages=1, prot="rw-"),
            _op("store", cpu=0, va="0x10000000", value=7),
            _op("reclaim", pages=4),
            _op("load", cpu=0, va="0x10000000"),
            _op("meminfo"),
            _op("status", pid=1),
            _op("vmstat"),
        ],
    },
    "malloc": {
        "about": "User-space malloc (glibc 2.36's ptmalloc, checked against the allocator's contract): a 4-byte "
        "block from the heap, whose first sbrk grew the break by 132 KiB; a 200,000-byte block in a mapping of "
        "its own (at or above M_MMAP_THRESHOLD, 128 KiB); its free unmaps it and raises the threshold to its "
        "size, so the same request next comes from the heap and grows the break; a double free aborts as glibc "
        "does. Change a size or the order of the ops and replay; mmcheck oracle glibc runs it in real glibc.",
        "config": {"frames": 64},
        "ops": [
            _op("malloc", size=4),
            _op("malloc", size=200000),
            _op("free", call=1),
            _op("malloc", size=200000),
            _op("free", call=0),
            _op("free", call=0),
        ],
    },
}


OK = {"ok": True}
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "hardware": [OK] * 5 + [{"pa": "0x5010"}, {"pa": "0x5010"}, {"fault": {"vector": 14, "error_code": 21}}],
    "buddy": [
        {"free": [0, 0, 0, 1]}, {"pfn": 0}, {"pfn": 2}, {"free": [1, 0, 1, 0]}, OK, OK, {"free": [0, 0, 0, 1]},
    ],
    "kernel": [
        {"pid": 1}, OK, OK, OK, {"pid": 2}, OK, OK, {"value": 9}, OK, {"value": 7},
        {"rss_kb": 4, "pss_kb": 4, "uss_kb": 4, "anon_kb": 4}, {"rss_kb": 4, "pss_kb": 4},
    ],
    "smp": [
        {"pid": 1}, OK, OK, OK, OK, {"value": 7}, {"pending": 1}, {"value": 7}, {"stage": "flushed", "cpu": 0},
        {"stage": "flushed", "cpu": 1}, {"signal": "SIGSEGV", "error_code": 4}, OK,
    ],
    "slab": [
        {"ok": True, "cache": "demo"}, {"addr": "0xffff888000000000"}, {"addr": "0xffff888000000060"}, OK,
        {"value": "0x5"}, {"addr": "0xffff888000001000"}, {}, OK, {"error": "EINVAL", "type": "SlabDoubleFree"}, OK,
        {"meminfo": {"Slab": 8, "SReclaimable": 0, "SUnreclaim": 8}},
    ],
    "malloc": [
        {"ptr": {"region": "heap", "offset": 672}, "brk": 135168},
        {"ptr": {"region": "mmapped", "offset": 16, "length": 200704}, "brk": 135168},
        {"brk": 135168},
        {"ptr": {"region": "heap", "offset": 704}, "brk": 335872},
        {"ret": 0},
        {"error": "abort", "message": "free(): double free detected in tcache 2"},
    ],
    "pressure": [
        OK, {"pid": 1}, OK, OK, {"value": 5}, OK, OK, OK, {"reclaimed": 3}, {"value": 7},
        {"AnonPages": 4, "SwapTotal": 16, "SwapFree": 12}, {"VmRSS": 4, "VmSwap": 0, "majflt": 3},
        {"pgfault": 4, "pgmajfault": 3},
    ],
}  # fmt: skip
"""What each template's ops give: ``{}`` matches any result, a partial object any result with those values."""


def template(kind: str) -> str:
    """The starting scenario of ``kind`` as the text of a file, with the results its ops give."""
    if kind not in TEMPLATES:
        raise InvalidArgument(f"unknown kind {kind!r}: allowed {', '.join(KINDS)}")
    return json.dumps({**TEMPLATES[kind], "expected_results": EXPECTED[kind]}, indent=1) + "\n"


@dataclass(frozen=True, slots=True)
class Entry:
    """One shipped scenario: where it is, its kind, its op count, what it shows (its about's first sentence)."""

    path: Path
    kind: str
    ops: int
    about: str


ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "tests" / "scenarios",)
"""Where the shipped scenarios are: the project's regression scenarios, in its source tree."""


SENTENCE_END = re.compile(r"(?<!\bVol)(?<!\be\.g)(?<!\bi\.e)\. (?=[A-Z])")


def first_sentence(text: str, limit: int = 100) -> str:
    """The first sentence of ``text`` on one line, cut to ``limit`` characters."""
    line = " ".join(text.split())
    end = SENTENCE_END.search(line)
    line = line if end is None else line[: end.start() + 1]
    return line if len(line) <= limit else line[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def scenario_files(folder: Path) -> Iterator[Path]:
    """The scenario files under ``folder``: JSON objects with ``ops`` or a ``scenario`` wrapper."""
    for path in sorted(folder.rglob("*.json")):
        try:
            raw = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and {"ops", "scenario"} & set(raw):
            yield path


def entries(folders: Sequence[Path] = SHIPPED) -> list[Entry]:
    """Every scenario under ``folders``; a folder that does not exist is an error naming it."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise MMCheckError(
                f"{folder}: no such folder (the scenarios ship in the project's source tree, tests/scenarios)"
            )
        for path in scenario_files(folder):
            scenario = load(path)
            out.append(Entry(path, kind_of(scenario), len(scenario.ops), first_sentence(scenario.about)))
    return out


def listing(found: Sequence[Entry], base: Path) -> list[str]:
    """One line per scenario: path (relative to ``base`` where it can be), kind, op count, description."""
    names = [str(e.path.relative_to(base)) if e.path.is_relative_to(base) else str(e.path) for e in found]
    width = max((len(n) for n in names), default=0)
    return [f"{n:{width}}  {e.kind:8}  {e.ops:3} ops  {e.about}" for n, e in zip(names, found, strict=True)]
