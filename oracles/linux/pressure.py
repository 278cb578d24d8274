"""The live Linux kernel as an oracle for memory pressure: file mappings, MADV_PAGEOUT, swap, fault counts.

A pressure scenario runs on the models and on the kernel, as ``oracles.linux.oracle`` runs a COW one, with the
machine set up by :class:`~oracles.linux.pressure_host.PressureHost` (workers in a memory cgroup, a swap file,
swap readahead off).  The files are real files on disk; ``file_create`` writes the words, ``fsync``s and drops
the file's page cache (``POSIX_FADV_DONTNEED``, mm/fadvise.c: clean pages leave the cache), so the file is on
disk only, as the model's new file is; each file descriptor has ``POSIX_FADV_RANDOM`` (no readahead on
``pread``: mm/readahead.c ``page_cache_sync_ra``) and each file mapping ``MADV_RANDOM`` (none on a fault).
``file_read``, ``file_write``, ``truncate`` and ``fsync`` are ``pread``, ``pwrite``, ``ftruncate`` and ``fsync``
by the driver; ``mmap_file`` and ``msync`` are made by the worker.  ``swapoff`` turns the swap file off.

After every step, for every live process, both sides are compared in:

- the op's result (every load and ``file_read`` value exact; signals; errors);
- ``minflt`` and ``majflt``: the faults the scenario's accesses took, counted around each access by the
  helper (getrusage, mm/memory.c ``mm_account_fault``), so the Python worker's own faults are left out;
- VmRSS, RssAnon, RssFile, RssShmem, VmSwap, of the scenario window only (the worker's own memory is left
  out): sums over the window's VMAs in /proc/PID/smaps, Anonymous for RssAnon, Rss less Anonymous of a
  file mapping for RssFile and of a shared anonymous one for RssShmem, Swap for VmSwap;
- every page any mmap of the scenario touched: present (pagemap bit 63) and swapped (bit 62).

Refused (:class:`OracleUnsupported`): ``reclaim`` (the kernel chooses what reclaim takes; ``madvise
pageout`` is the deterministic way), ``meminfo`` and ``vmstat`` (machine-wide on the kernel; the
MemAvailable formula is checked on its own, ``oracles.linux.meminfo``), and what the COW oracle refuses.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lang import ops
from lang import pressure_ops as pops
from lang.errors import MMCheckError, OracleError, OracleUnavailable, OracleUnsupported
from lang.scenario import Config, Op, Result, Scenario
from oracles.linux.host import ADVICE, PAGE, PAGE_SHIFT, PM_PRESENT, PM_SWAP, TASK_SIZE, WINDOW, libc, read_pagemap
from oracles.linux.live import LinuxRun, prot_bits
from oracles.linux.oracle import check_supported, range_outside_window
from oracles.linux.pressure_host import LIMIT, PressureHost, unavailable_pressure
from properties.drivers import ImplRunner, SpecRunner
from properties.replay import ReplayInputError

POSIX_FADV_RANDOM, POSIX_FADV_DONTNEED = 1, 4  # include/uapi/linux/fadvise.h
STATUS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmSwap", "minflt", "majflt")
QUANTITIES = ("contents", "result", *STATUS, "present", "swapped", "VmRSS+VmSwap")
REFUSED = (pops.Reclaim, pops.MeminfoOp, pops.VmstatOp)
MODELS = ("spec", "impl")


def touched_pages(program: Sequence[Op]) -> list[int]:
    """Every page an ``mmap`` or ``mmap_file`` of the scenario maps."""
    pages: set[int] = set()
    for op in program:
        if isinstance(op, ops.Mmap | pops.MmapFile) and op.va % PAGE == 0 and 0 < op.pages <= 4096:
            pages.update(range(op.va >> PAGE_SHIFT, (op.va >> PAGE_SHIFT) + op.pages))
    return sorted(p for p in pages if (p << PAGE_SHIFT) < TASK_SIZE)


def check_pressure_supported(scenario: Scenario) -> None:
    """Raise :class:`OracleUnsupported` for the first op the pressure oracle cannot run faithfully."""
    kernel_ops = []
    for index, op in enumerate(scenario.ops):
        where = f"ops[{index}] ({op.name})"
        if isinstance(op, REFUSED):
            why = (
                "the kernel chooses what reclaim takes: use madvise pageout"
                if isinstance(op, pops.Reclaim)
                else "machine-wide on the live kernel; MemAvailable is checked on its own (mmcheck oracle pressure)"
            )
            raise OracleUnsupported(f"{where}: {why}")
        if isinstance(op, ops.Mmap) and op.huge:
            raise OracleUnsupported(f"{where}: the pressure oracle maps base pages only")
        if isinstance(op, pops.MmapFile | pops.Msync) and range_outside_window(op.va, op.pages):
            lo, hi = WINDOW
            raise OracleUnsupported(f"{where}: the range must lie in the scenario window {lo:#x}..{hi:#x}")
        if not isinstance(op, pops.PressureOp):
            kernel_ops.append(op)
    check_supported(Scenario(scenario.config, tuple(kernel_ops)))


@dataclass(frozen=True, slots=True)
class View:
    """One side after a step: per pid its status fields, per (pid, vpn) present and swapped."""

    status: Mapping[int, Mapping[str, int]]
    pages: Mapping[tuple[int, int], tuple[bool, bool]]

    def render(self) -> list[str]:
        lines = []
        for pid in sorted(self.status):
            counters = " ".join(f"{k} {v}" for k, v in self.status[pid].items())
            cells = [
                f"{vpn << PAGE_SHIFT:#x}={'P' if p else ''}{'S' if s else ''}"
                for (q, vpn), (p, s) in sorted(self.pages.items())
                if q == pid and (p or s)
            ]
            lines.append(f"pid {pid}: {counters}; pages {' '.join(cells) or 'none'}")
        return lines


def window_status(real_pid: int, folder: str) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem, VmSwap (kB) of the window VMAs of ``real_pid`` from its smaps."""
    out = dict.fromkeys(STATUS[:5], 0)
    kind = ""
    inside = False
    with open(f"/proc/{real_pid}/smaps") as f:
        for line in f:
            words = line.split()
            head = words[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo < WINDOW[1] and hi > WINDOW[0]
                path = words[5] if len(words) > 5 else ""
                kind = "file" if path.startswith(folder) else "shmem" if words[1][3] == "s" else "anon"
                continue
            if not inside or head[:-1] not in ("Rss", "Anonymous", "Swap"):
                continue
            name, value = head[:-1], int(words[1])
            if name == "Rss":
                out["VmRSS"] += value
                if kind != "anon":
                    out["RssFile" if kind == "file" else "RssShmem"] += value
            elif name == "Anonymous":
                out["RssAnon"] += value
                if kind != "anon":
                    out["RssFile" if kind == "file" else "RssShmem"] -= value
            elif name == "Swap":
                out["VmSwap"] += value
    return out


class PressureRun(LinuxRun):
    """The live processes of one pressure scenario, in the host's cgroup, with its files and swap file."""

    def __init__(self, config: Config, pages: Iterable[int], host: PressureHost) -> None:
        super().__init__(config, pages)
        self.host = host
        self.fds: dict[str, int] = {}
        self.lib = libc()

    def __enter__(self) -> PressureRun:
        return self

    def close(self) -> None:
        super().close()
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def spawn(self) -> Result:
        result = super().spawn()
        self.host.enter(self.procs[result["pid"]].real_pid)
        return result

    def fd(self, name: str) -> int:
        if name not in self.fds:
            raise OracleError(f"file {name!r} was not created")
        return self.fds[name]

    def apply(self, op: Op) -> Result:
        if isinstance(op, ops.Madvise):
            answer = self.ask(self.proc(op.pid), ("madvise", op.va, op.pages * PAGE, advice_bits(op.advice)))
            return {"ok": True} if answer[0] == "ok" else {"error": answer[1]}
        if isinstance(op, ops.PagemapOp):
            return self.pagemap(op.pid, op.va)
        if isinstance(op, pops.PressureOp):
            return self.apply_pressure(op)
        return super().apply(op)

    def apply_pressure(self, op: pops.PressureOp) -> Result:
        if isinstance(op, pops.FileCreate):
            return self.create(op)
        if isinstance(op, pops.FileRead):
            data = os.pread(self.fd(op.file), 8, op.offset)
            return {"value": int.from_bytes(data.ljust(8, b"\0"), "little")}
        if isinstance(op, pops.FileWrite):
            os.pwrite(self.fd(op.file), op.value.to_bytes(8, "little"), op.offset)
            return {"ok": True}
        if isinstance(op, pops.Truncate):
            os.ftruncate(self.fd(op.file), op.pages * PAGE)
            return {"ok": True}
        if isinstance(op, pops.Fsync):
            os.fsync(self.fd(op.file))
            return {"ok": True}
        if isinstance(op, pops.MmapFile):
            self.fd(op.file)
            message: tuple[Any, ...] = (
                "mmap_file",
                op.va,
                op.pages * PAGE,
                prot_bits(op.prot),
                op.shared,
                self.host.file_path(op.file),
                op.offset * PAGE,
            )
            answer = self.ask(self.proc(op.pid), message)
            return {"ok": True} if answer[0] == "ok" else {"error": answer[1]}
        if isinstance(op, pops.Msync):
            answer = self.ask(self.proc(op.pid), ("msync", op.va, op.pages * PAGE))
            return {"ok": True} if answer[0] == "ok" else {"error": answer[1]}
        if isinstance(op, pops.Swapoff):
            if not self.host.swap_on:
                return {"error": "EINVAL"}
            self.host.swapoff()
            return {"ok": True}
        if isinstance(op, pops.StatusOp):
            return self.status(op.pid)
        raise OracleUnsupported(f"the pressure oracle has no counterpart for {op.name!r}")

    def create(self, op: pops.FileCreate) -> Result:
        """The file on disk with its words, and none of its pages in the page cache."""
        if op.file in self.fds:
            return {"error": "EEXIST"}
        if any(offset >= op.pages * PAGE for offset, _ in op.words):
            return {"error": "EINVAL"}
        fd = os.open(self.host.file_path(op.file), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.fds[op.file] = fd
        os.ftruncate(fd, op.pages * PAGE)
        for offset, value in op.words:
            os.pwrite(fd, value.to_bytes(8, "little"), offset)
        os.fsync(fd)
        for advice in (POSIX_FADV_DONTNEED, POSIX_FADV_RANDOM):
            if self.lib.posix_fadvise(fd, 0, 0, advice):
                raise OracleError(f"posix_fadvise({advice}) of {op.file!r} failed")
        return {"ok": True}

    def status(self, pid: int) -> Result:
        proc = self.proc(pid)
        faults = self.ask(proc, ("faults",))
        return {**window_status(proc.real_pid, str(self.host.folder)), "minflt": faults[1], "majflt": faults[2]}

    def pagemap(self, pid: int, va: int) -> Result:
        vpn = va >> PAGE_SHIFT
        entry = read_pagemap(self.proc(pid).real_pid, [vpn])[vpn] if va < TASK_SIZE else 0
        return {"present": bool(entry & PM_PRESENT), "swapped": bool(entry & PM_SWAP)}

    def view(self) -> View:
        status = {pid: self.status(pid) for pid in sorted(self.procs)}
        pages: dict[tuple[int, int], tuple[bool, bool]] = {}
        for pid, proc in sorted(self.procs.items()):
            for vpn, entry in read_pagemap(proc.real_pid, self.pages).items():
                pages[pid, vpn] = (bool(entry & PM_PRESENT), bool(entry & PM_SWAP))
        return View(status, pages)


def advice_bits(advice: str) -> int:
    return ADVICE[advice]


class PressureModel:
    """The spec or the implementation answering the same questions (``status`` and ``pagemap`` ops)."""

    def __init__(self, config: Config, model: str, pages: Iterable[int]) -> None:
        self.runner: SpecRunner | ImplRunner = SpecRunner(config) if model == "spec" else ImplRunner(config)
        self.pages = sorted(set(pages))
        self.live: list[int] = []

    def apply(self, index: int, op: Op) -> Result:
        try:
            result = self.runner.apply(op)
        except MMCheckError as exc:
            raise ReplayInputError(index, op.name, exc) from exc
        if isinstance(op, ops.Spawn | ops.Fork) and "pid" in result:
            self.live.append(result["pid"])
        if isinstance(op, ops.Exit) and result == {"ok": True}:
            self.live.remove(op.pid)
        return result

    def view(self) -> View:
        status = {pid: dict(self.runner.apply(pops.StatusOp(pid))) for pid in sorted(self.live)}
        pages: dict[tuple[int, int], tuple[bool, bool]] = {}
        for pid in sorted(self.live):
            for vpn in self.pages:
                got = self.runner.apply(ops.PagemapOp(pid, vpn << PAGE_SHIFT))
                pages[pid, vpn] = (bool(got["present"]), bool(got.get("swapped", False)))
        return View(status, pages)


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    op: Op
    results: Mapping[str, Result]
    views: Mapping[str, View]


@dataclass
class PressureVerdict:
    """Every step, the first disagreement of each model, and per quantity how many comparisons agreed."""

    steps: list[Step] = field(default_factory=list)
    disagreements: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)
    agreed: dict[str, Counter[str]] = field(default_factory=lambda: {m: Counter() for m in MODELS})
    compared: dict[str, Counter[str]] = field(default_factory=lambda: {m: Counter() for m in MODELS})
    # Per model, how many steps differed only as a documented abstraction (:data:`ABSTRACTIONS`) explains.
    abstractions: dict[str, Counter[str]] = field(default_factory=lambda: {m: Counter() for m in MODELS})

    @property
    def agree(self) -> bool:
        return not self.disagreements

    def describe(self, index: int, model: str, what: Sequence[str]) -> str:
        step = self.steps[index]
        lines = [f"op {index} {step.op.to_json()}: {model} and linux differ in {', '.join(what)}"]
        for side in ("linux", model):
            lines.append(f"  {side:5} -> {step.results[side]}")
            lines.extend(f"          {line}" for line in step.views[side].render())
        return "\n".join(lines)


def result_key(op: Op) -> str:
    """Which tally an op's own result counts in: contents for loads and file reads, else result."""
    return "contents" if isinstance(op, ops.Load | pops.FileRead) else "result"


def result_agrees(model: Result, kernel: Result) -> bool:
    """Exact, but that the model's SIGBUS carries no error code (the kernel's does, from the fault that raised it)."""
    if model == {"signal": "SIGBUS"}:
        return kernel.get("signal") == "SIGBUS"
    return model == kernel


def compare(
    op: Op, model: Result, kernel: Result, mv: View, kv: View, agreed: Counter[str], compared: Counter[str]
) -> tuple[str, ...]:
    """Every quantity after one step; each comparison is tallied.  The names of those that differ."""
    differ: list[str] = []

    def check(name: str, same: bool) -> None:
        compared[name] += 1
        agreed[name] += same
        if not same and name not in differ:
            differ.append(name)

    if isinstance(op, ops.PagemapOp):
        check("present", model.get("present") == kernel.get("present"))
        check("swapped", model.get("swapped", False) == kernel.get("swapped"))
    elif isinstance(op, pops.StatusOp):
        for name in STATUS:
            check(name, model.get(name) == kernel.get(name))
    else:
        check(result_key(op), result_agrees(model, kernel))
    check("result", set(mv.status) == set(kv.status))
    for pid in sorted(set(mv.status) & set(kv.status)):
        for name in STATUS:
            check(name, mv.status[pid][name] == kv.status[pid][name])
    for key in sorted(set(mv.pages) & set(kv.pages)):
        check("present", mv.pages[key][0] == kv.pages[key][0])
        check("swapped", mv.pages[key][1] == kv.pages[key][1])
    return tuple(differ)


def swap_cache_after_pageout(mv: View, kv: View) -> bool:
    """The documented abstraction ``swap-cache-after-pageout``: the kernel counted as minor some faults the model
    counted as major, and nothing else about the faults differs (each process's total is the same)."""
    return any(mv.status[p]["majflt"] > kv.status[p]["majflt"] for p in mv.status if p in kv.status) and all(
        mv.status[p]["majflt"] >= kv.status[p]["majflt"]
        and mv.status[p]["minflt"] + mv.status[p]["majflt"] == kv.status[p]["minflt"] + kv.status[p]["majflt"]
        for p in mv.status
        if p in kv.status
    )


ABSTRACTIONS = {
    "swap-cache-after-pageout": (
        "a page MADV_PAGEOUT wrote to an asynchronous swap device (a swap file on disk) stays in the swap cache"
        " until a later reclaim, so the next fault on it is minor; the model frees it at once, as on a"
        " synchronous device (zram), so that fault is major"
    ),
}


def classify(what: Sequence[str], mv: View, kv: View) -> str | None:
    """The documented abstraction a disagreement is an instance of, if it is one."""
    if set(what) <= {"minflt", "majflt"} and swap_cache_after_pageout(mv, kv):
        return "swap-cache-after-pageout"
    return None


def compare_chosen(
    op: Op, model: Result, kernel: Result, mv: View, kv: View, agreed: Counter[str], compared: Counter[str]
) -> tuple[str, ...]:
    """Under real pressure which pages are resident is each side's own choice: compare the op's result (contents
    exact) and, per process, what it holds in memory or in swap (VmRSS + VmSwap), nothing else."""
    differ: list[str] = []

    def check(name: str, same: bool) -> None:
        compared[name] += 1
        agreed[name] += same
        if not same and name not in differ:
            differ.append(name)

    if isinstance(op, pops.StatusOp):
        check("VmRSS+VmSwap", model["VmRSS"] + model["VmSwap"] == kernel["VmRSS"] + kernel["VmSwap"])
    elif not isinstance(op, ops.PagemapOp):
        check(result_key(op), result_agrees(model, kernel))
    check("result", set(mv.status) == set(kv.status))
    for pid in sorted(set(mv.status) & set(kv.status)):
        m, k = mv.status[pid], kv.status[pid]
        check("VmRSS+VmSwap", m["VmRSS"] + m["VmSwap"] == k["VmRSS"] + k["VmSwap"])
    return tuple(differ)


def run(scenario: Scenario, models: Sequence[str] = MODELS, limit: int | None = None) -> PressureVerdict:
    """Run a pressure scenario on the live kernel (set up by :class:`PressureHost`) and on each model.

    ``limit`` (bytes) replaces the cgroup's default limit; below the scenario's footprint the kernel reclaims on
    its own, and only what does not depend on its choice is compared (:func:`compare_chosen`)."""
    reason = unavailable_pressure()
    if reason:
        raise OracleUnavailable(reason)
    check_pressure_supported(scenario)
    # Under real pressure no page is compared, so none is observed.
    pages = touched_pages(scenario.ops) if limit is None else []
    sides = {m: PressureModel(scenario.config, m, pages) for m in models}
    model_steps = {m: [(s.apply(i, op), s.view()) for i, op in enumerate(scenario.ops)] for m, s in sides.items()}
    verdict = PressureVerdict()
    comparison = compare if limit is None else compare_chosen
    with PressureHost(LIMIT if limit is None else limit) as host, PressureRun(scenario.config, pages, host) as linux:
        for index, op in enumerate(scenario.ops):
            result = linux.apply(op)
            view = linux.view()
            results = {"linux": result, **{m: model_steps[m][index][0] for m in models}}
            views = {"linux": view, **{m: model_steps[m][index][1] for m in models}}
            verdict.steps.append(Step(index, op, results, views))
            for model in models:
                what = comparison(
                    op, results[model], result, views[model], view, verdict.agreed[model], verdict.compared[model]
                )
                known = classify(what, views[model], view) if what else None
                if known:
                    verdict.abstractions[model][known] += 1
                elif what and not any(d[1] == model for d in verdict.disagreements):
                    verdict.disagreements.append((index, model, what))
    return verdict


def pressure_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))
