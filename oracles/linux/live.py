"""The driver's view of a run on the live kernel, and the model's view of the same run.

:class:`LinuxRun` starts and commands the workers and reads, after every step, what the kernel shows of
every live process (pagemap and smaps); :class:`ModelRun` answers the same questions on the spec or
the implementation with ``stat`` and ``pagemap`` operations.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lang import ops
from lang.errors import (
    IdleCpu,
    MMCheckError,
    OracleError,
    OracleUnsupported,
    UnknownCpu,
    UnknownPid,
    UnknownPin,
)
from lang.scenario import Config, Op, Result
from oracles.linux.host import (
    ADVICE,
    PAGE,
    PAGE_SHIFT,
    PM_MMAP_EXCLUSIVE,
    PM_PFN_MASK,
    PM_PRESENT,
    PM_SWAP,
    PROT_BITS,
    REPLY_TIMEOUT,
    TASK_SIZE,
    WINDOW,
    SmapsVma,
    build_helper,
    kernel_zero_pfn,
    libc,
    process_state,
    read_pagemap,
    read_smaps,
    start_time,
)
from oracles.linux.worker import receive, send, worker_main
from properties.drivers import ImplRunner, SpecRunner
from properties.replay import ReplayInputError

# --- the driver's view of the live processes ------------------------------------------------------


@dataclass
class Proc:
    """A live model process: its real pid, its start time (to never signal a recycled pid), its socket."""

    real_pid: int
    started: int | None
    sock: socket.socket
    direct: bool
    gone: bool = False


@dataclass(frozen=True, slots=True)
class PageView:
    """One page of one process as pagemap shows it: not present, the zero page, or a frame."""

    present: bool
    pfn: int
    exclusive: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one side shows after a step: per live pid its counters (kB) and its pages."""

    stats: Mapping[int, Mapping[str, int]]
    pages: Mapping[tuple[int, int], PageView]
    zero_pfn: int
    # Kernel side only: per pid, how many window VMAs hold a page whose Pss has a fractional kB.
    fractional_vmas: Mapping[int, int] = field(default_factory=dict)

    def present(self) -> frozenset[tuple[int, int]]:
        return frozenset(k for k, v in self.pages.items() if v.present)

    def zero(self) -> frozenset[tuple[int, int]]:
        return frozenset(k for k, v in self.pages.items() if v.present and v.pfn == self.zero_pfn)

    def exclusive(self) -> frozenset[tuple[int, int]]:
        return frozenset(k for k, v in self.pages.items() if v.present and v.exclusive)

    def sharing(self) -> frozenset[frozenset[tuple[int, int]]]:
        """The present (pid, vpn) pairs grouped by the frame they map, zero page left out."""
        groups: dict[int, set[tuple[int, int]]] = {}
        for key, view in self.pages.items():
            if view.present and view.pfn != self.zero_pfn:
                groups.setdefault(view.pfn, set()).add(key)
        return frozenset(frozenset(g) for g in groups.values())

    def render(self) -> list[str]:
        """One line per process: counters, then each mapped page as Z (zero page) or a frame letter."""
        labels: dict[int, str] = {}
        for key in sorted(self.pages):
            view = self.pages[key]
            if view.present and view.pfn != self.zero_pfn and view.pfn not in labels:
                labels[view.pfn] = frame_label(len(labels))
        lines = []
        for pid in sorted(self.stats):
            s = self.stats[pid]
            cells = []
            for (p, vpn), view in sorted(self.pages.items()):
                if p != pid or not view.present:
                    continue
                label = "Z" if view.pfn == self.zero_pfn else labels[view.pfn]
                cells.append(f"{vpn << PAGE_SHIFT:#x}={label}{'!' if view.exclusive else ''}")
            counters = f"rss {s['rss_kb']} pss {s['pss_kb']} uss {s['uss_kb']} anon {s['anon_kb']}"
            lines.append(f"pid {pid}: {counters}; pages {' '.join(cells) or 'none'}")
        return lines


def frame_label(n: int) -> str:
    """A, B, ..., Z, F26, F27, ..."""
    return chr(ord("A") + n) if n < 25 else f"F{n}"


def stat_of(vmas: Sequence[SmapsVma]) -> dict[str, int]:
    """The scenario mappings' totals as ``stat`` results name them."""
    return {f"{name}_kb": sum(v.counters[name] for v in vmas) for name in ("rss", "pss", "uss", "anon")}


class LinuxRun:
    """The live processes of one scenario run.  Use as a context manager: every worker is killed on exit."""

    def __init__(self, config: Config, pages: Iterable[int]) -> None:
        self.config = config
        self.pages = sorted(set(pages))
        self.helper = build_helper()
        self.zero_pfn = kernel_zero_pfn()
        self.procs: dict[int, Proc] = {}
        self.started: list[Proc] = []
        self.next_pid = 1
        self.current: list[int] = [0] * config.cpus
        self.received: list[int] = []
        self.pins: dict[int, int] = {}
        self.next_pin = 1

    def __enter__(self) -> LinuxRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every worker this run started that is still the process we started, and reap direct children."""
        for proc in self.started:
            # A direct child cannot be recycled before we reap it; a grandchild's pid could be, so check.
            if not proc.gone and (proc.direct or start_time(proc.real_pid) == proc.started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.real_pid, signal.SIGKILL)
            proc.sock.close()
        for fd in self.pins.values():
            os.close(fd)
        self.pins.clear()
        for proc in self.started:
            if proc.direct:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.real_pid, 0)
        self.procs.clear()

    # --- talking to workers

    def ask(self, proc: Proc, message: tuple[Any, ...], fds: Sequence[int] = ()) -> tuple[Any, ...]:
        """Send a command and wait (with a timeout) for the reply."""
        send(proc.sock, message, fds)
        return self.reply(proc, message[0])

    def reply(self, proc: Proc, what: str) -> tuple[Any, ...]:
        proc.sock.settimeout(REPLY_TIMEOUT)
        try:
            answer, self.received = receive(proc.sock)
        except (TimeoutError, OSError, EOFError) as exc:
            raise OracleError(f"worker {proc.real_pid} gave no answer to {what!r}: {exc}") from exc
        if answer[0] == "crashed":
            raise OracleError(f"worker {proc.real_pid} failed on {what!r}: {answer[1]}")
        return tuple(answer)

    def register(self, proc: Proc) -> int:
        """A worker that answered ``ready`` becomes the next model pid."""
        pid = self.next_pid
        self.next_pid += 1
        self.procs[pid] = proc
        return pid

    def proc(self, pid: int) -> Proc:
        if pid not in self.procs:
            raise UnknownPid(f"pid {pid} is not a live process: allowed {sorted(self.procs)}")
        return self.procs[pid]

    def spawn(self) -> Result:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        others = [p.sock for p in self.started] + [ours]
        real = os.fork()
        if real == 0:
            worker_main(theirs, self.helper, others)
        theirs.close()
        proc = Proc(real, start_time(real), ours, True)
        self.started.append(proc)
        self.reply(proc, "spawn")
        return {"pid": self.register(proc)}

    def fork(self, pid: int) -> Result:
        parent = self.proc(pid)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            forked = self.ask(parent, ("fork",), [theirs.fileno()])
        finally:
            theirs.close()
        child = Proc(forked[1], start_time(forked[1]), ours, False)
        self.started.append(child)
        self.reply(child, "fork")
        return {"pid": self.register(child)}

    def exit(self, pid: int) -> Result:
        proc = self.proc(pid)
        self.ask(proc, ("exit",))
        deadline = time.monotonic() + REPLY_TIMEOUT
        while process_state(proc.real_pid) not in (None, "Z", "X"):
            if proc.direct:
                done, _ = os.waitpid(proc.real_pid, os.WNOHANG)
                if done:
                    break
            if time.monotonic() > deadline:
                raise OracleError(f"worker {proc.real_pid} did not exit")
            time.sleep(0.0005)
        proc.gone = True
        del self.procs[pid]
        self.current = [0 if c == pid else c for c in self.current]
        return {"ok": True}

    def running(self, cpu: int) -> Proc:
        if not 0 <= cpu < len(self.current):
            raise UnknownCpu(f"cpu {cpu} does not exist: allowed 0..{len(self.current) - 1}")
        if not self.current[cpu]:
            raise IdleCpu(f"cpu {cpu} runs no process: switch it to a pid first")
        return self.proc(self.current[cpu])

    def apply(self, op: Op) -> Result:
        """Run one op on the live kernel and return its result in the model's shape."""
        if isinstance(op, ops.Spawn):
            return self.spawn()
        if isinstance(op, ops.Fork):
            return self.fork(op.pid)
        if isinstance(op, ops.Exit):
            return self.exit(op.pid)
        if isinstance(op, ops.Switch):
            self.proc(op.pid)
            if not 0 <= op.cpu < len(self.current):
                raise UnknownCpu(f"cpu {op.cpu} does not exist: allowed 0..{len(self.current) - 1}")
            self.current[op.cpu] = op.pid
            return {"ok": True}
        if isinstance(op, ops.Load | ops.Store):
            proc = self.running(op.cpu)
            answer = self.ask(proc, ("load", op.va) if isinstance(op, ops.Load) else ("store", op.va, op.value))
            if answer[0] == "signal":
                return {"signal": signal.Signals(answer[1]).name, "error_code": answer[2]}
            return {"value": answer[1]} if answer[0] == "value" else {"ok": True}
        if isinstance(op, ops.PinOp | ops.ReadPin | ops.Unpin):
            return self.apply_pin(op)
        if isinstance(op, ops.StatOp):
            return stat_of(read_smaps(self.proc(op.pid).real_pid))
        if isinstance(op, ops.PagemapOp):
            vpn = op.va >> PAGE_SHIFT
            entry = read_pagemap(self.proc(op.pid).real_pid, [vpn])[vpn] if op.va < TASK_SIZE else 0
            present = bool(entry & PM_PRESENT)
            pfn = entry & PM_PFN_MASK if present else 0
            return {"present": present, "pfn": pfn, "exclusive": bool(entry & PM_MMAP_EXCLUSIVE)}
        return self.apply_mapping(op)

    def apply_pin(self, op: ops.PinOp | ops.ReadPin | ops.Unpin) -> Result:
        """A pin is a pipe holding a vmsplice'd word; reading it tees the pipe (so it stays), unpinning closes it."""
        if isinstance(op, ops.PinOp):
            answer = self.ask(self.proc(op.pid), ("pin", op.va))
            if answer[0] == "error":
                return {"error": answer[1]}
            number = self.next_pin
            self.next_pin += 1
            self.pins[number] = self.received[0]
            return {"pin": number}
        if op.pin not in self.pins:
            raise UnknownPin(f"pin {op.pin} is not held: allowed {sorted(self.pins)}")
        if isinstance(op, ops.Unpin):
            os.close(self.pins.pop(op.pin))
            return {"ok": True}
        r, w = os.pipe()
        try:
            if libc().tee(self.pins[op.pin], w, 8, 0) != 8:
                raise OracleError(f"tee of pin {op.pin} failed: {os.strerror(ctypes.get_errno())}")
            return {"value": int.from_bytes(os.read(r, 8), "little")}
        finally:
            os.close(r)
            os.close(w)

    def apply_mapping(self, op: Op) -> Result:
        """mmap, munmap, mprotect, madvise: the real system call in the worker."""
        if isinstance(op, ops.Mmap):
            message: tuple[Any, ...] = ("mmap", op.va, op.pages * PAGE, prot_bits(op.prot), op.shared, op.huge)
        elif isinstance(op, ops.Munmap):
            message = ("munmap", op.va, op.pages * PAGE)
        elif isinstance(op, ops.Mprotect):
            message = ("mprotect", op.va, op.pages * PAGE, prot_bits(op.prot))
        elif isinstance(op, ops.Madvise):
            message = ("madvise", op.va, op.pages * PAGE, ADVICE[op.advice])
        else:
            raise OracleUnsupported(f"the Linux oracle has no counterpart for {op.name!r}")
        answer = self.ask(self.proc(op.pid), message)
        return {"ok": True} if answer[0] == "ok" else {"error": answer[1]}

    def snapshot(self) -> Snapshot:
        """Counters and pages of every live process, from smaps and pagemap."""
        stats: dict[int, Mapping[str, int]] = {}
        pages: dict[tuple[int, int], PageView] = {}
        vmas_of: dict[int, list[SmapsVma]] = {}
        for pid, proc in sorted(self.procs.items()):
            vmas_of[pid] = read_smaps(proc.real_pid)
            stats[pid] = stat_of(vmas_of[pid])
            for vpn, entry in read_pagemap(proc.real_pid, self.pages).items():
                if entry & PM_SWAP:
                    raise OracleError(f"page {vpn << PAGE_SHIFT:#x} of pid {pid} was swapped out: memory pressure")
                present = bool(entry & PM_PRESENT)
                pages[pid, vpn] = PageView(
                    present, entry & PM_PFN_MASK if present else 0, bool(entry & PM_MMAP_EXCLUSIVE)
                )
        snap = Snapshot(stats, pages, self.zero_pfn)
        return Snapshot(stats, pages, self.zero_pfn, fractional_vmas(snap, vmas_of))


def fractional_vmas(snap: Snapshot, vmas_of: Mapping[int, Sequence[SmapsVma]]) -> dict[int, int]:
    """Per pid, the window VMAs holding a page mapped by a number of PTEs that does not divide 4."""
    size = {key: len(group) for group in snap.sharing() for key in group}
    out: dict[int, int] = {}
    for pid, vmas in vmas_of.items():
        out[pid] = sum(
            any(4 % size.get((pid, vpn), 1) for vpn in range(v.start, v.end) if (pid, vpn) in size) for v in vmas
        )
    return out


def prot_bits(prot: str) -> int:
    """``"rw-"`` as PROT_READ | PROT_WRITE."""
    return sum(PROT_BITS[c] for c in prot if c != "-")


# --- the model's side -----------------------------------------------------------------------------


class ModelRun:
    """The spec or the implementation, answering the same questions as :class:`LinuxRun`."""

    def __init__(self, config: Config, model: str, pages: Iterable[int]) -> None:
        self.model = model
        self.runner: SpecRunner | ImplRunner = SpecRunner(config) if model == "spec" else ImplRunner(config)
        self.pages = sorted(set(pages))
        self.live: list[int] = []
        self.zero_pfn = model_zero_pfn(config, model)

    def apply(self, index: int, op: Op) -> Result:
        """Run ``op``; bad input raises :class:`ReplayInputError`."""
        try:
            result = self.runner.apply(op)
        except MMCheckError as exc:
            raise ReplayInputError(index, op.name, exc) from exc
        if "pid" in result:
            self.live.append(result["pid"])
        if isinstance(op, ops.Exit):
            self.live.remove(op.pid)
        return result

    def snapshot(self) -> Snapshot:
        stats: dict[int, Mapping[str, int]] = {}
        pages: dict[tuple[int, int], PageView] = {}
        for pid in sorted(self.live):
            stats[pid] = self.runner.apply(ops.StatOp(pid))
            for vpn in self.pages:
                got = self.runner.apply(ops.PagemapOp(pid, vpn << PAGE_SHIFT))
                pages[pid, vpn] = PageView(got["present"], got["pfn"], got["exclusive"])
        return Snapshot(stats, pages, self.zero_pfn)


_MODEL_ZERO: dict[tuple[Config, str], int] = {}
PROBE_VA = WINDOW[0]


def model_zero_pfn(config: Config, model: str) -> int:
    """The model's zero page, found as on the kernel: a read of a never-written private page, then pagemap."""
    key = (config, model)
    if key not in _MODEL_ZERO:
        runner: SpecRunner | ImplRunner = SpecRunner(config) if model == "spec" else ImplRunner(config)
        probe: list[ops.KernelOp] = [
            ops.Spawn(),
            ops.Mmap(1, PROBE_VA, 1, "r--"),
            ops.Switch(0, 1),
            ops.Load(0, PROBE_VA),
            ops.PagemapOp(1, PROBE_VA),
        ]
        results = [runner.apply(op) for op in probe]
        _MODEL_ZERO[key] = results[-1]["pfn"]
    return _MODEL_ZERO[key]
