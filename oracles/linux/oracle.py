"""The live Linux kernel as an oracle for COW, the zero page and accounting.

Each model process of a kernel-level scenario is a real process: ``spawn``
forks a fresh worker from the driver (this process), ``fork`` makes the
worker itself call ``fork()``, ``exit`` makes it exit.  Workers obey
commands sent over a ``SOCK_SEQPACKET`` socket pair; a forked worker gets its
own socket, passed to it with ``SCM_RIGHTS`` before the fork.  Memory is
mapped with ``mmap`` at the scenario's fixed addresses (anonymous, private or
shared), with transparent huge pages turned off for each mapping
(``MADV_NOHUGEPAGE``, mm/khugepaged.c ``hugepage_madvise``) so every fault
maps one base page, as the model does; a ``huge`` mapping is ``MAP_HUGETLB``
(2 MiB pages from the kernel's hugetlb pool), observed 4 KiB page by page.  ``munmap``, ``mprotect`` and
``madvise(MADV_DONTNEED)`` are the real system calls, through ctypes.

Loads and stores are made for real, 8 bytes at the address, in the model
process itself.  A faulting access cannot be made from Python, and it cannot
be made in a helper process either: a fork would change the very COW state
under test.  So a tiny C helper (``oracles/linux/access.c``, compiled with
gcc into a cache folder on first use and loaded with ctypes) makes the access
between ``sigsetjmp`` and a SIGSEGV/SIGBUS handler that ``siglongjmp``s back
with the signal and the hardware error code the kernel passes in the signal
frame (``uc_mcontext.gregs[REG_ERR]``; arch/x86/mm/fault.c
``set_signal_archinfo``).  Checking the protection in advance (from
``/proc/self/maps`` or the model's VMAs) would not be an oracle.

After every step the driver reads, for every live process, ``/proc/PID/smaps``
(summing Rss, Pss, Private_Clean + Private_Dirty and Anonymous over the VMAs
inside the scenario window) and ``/proc/PID/pagemap`` for every page any
``mmap`` of the scenario touched (present bit 63, exclusively mapped bit 56,
PFN bits 0-54, readable as root: fs/proc/task_mmu.c ``pagemap_read``).  The
model (the spec and the implementation, each on its own) answers the same
questions with ``stat`` and ``pagemap`` operations after every step, and
:func:`compare` checks, step by step: the op's result (load values, signals
with their error codes, errors), which pages are present, which map the zero
page (the kernel's zero PFN is found by reading a never-written private page),
the partition of present (process, page) pairs into groups that share one
frame (partitions are compared, never PFN values), the exclusive bit, and
Rss, Pss, USS and Anonymous in kB.

Pss: the kernel prints each VMA's Pss rounded down to a kB
(fs/proc/task_mmu.c ``__show_smap``), the model rounds the process total.
They can differ only when a VMA holds a page mapped by a number of PTEs that
does not divide 4 (a kB is a quarter page), by less than one kB per such VMA:
:func:`pss_agrees` allows exactly that and no more.

A pin is a read-only ``get_user_pages`` reference, as ``vmsplice`` takes one
(fs/splice.c ``vmsplice_to_pipe`` → ``iov_iter_get_pages2``, no FOLL_WRITE):
the worker vmsplices the word into a new pipe and hands the pipe to the
driver, so the pin outlives the process; ``read_pin`` ``tee``s the pipe into
another and reads that (the pin stays), ``unpin`` closes it.

``switch`` has no live counterpart (each model process runs when it is sent a
command; one CPU is enough).  What the oracle refuses
(:class:`OracleUnsupported`) rather than answer wrongly: supervisor-mode
accesses, ``fetch`` (it would execute the page's bytes), huge mappings when the kernel's hugetlb pool is
empty (``HugePages_Total`` in /proc/meminfo; fill it with ``echo 8 > /proc/sys/vm/nr_hugepages``), changes
in flight (``"async": true`` and ``step``: the live kernel runs each syscall at once), operations outside the kernel
layer,
ranges in user space outside the scenario window (they could hit the worker's
own memory), and scenarios in which the model runs out of frames (the live
kernel has far more memory than a scenario's config).

Workers are killed, by pid, when the run ends, whatever happened; every reply
is awaited with a timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lang import ops
from lang.errors import (
    IdleCpu,
    MMCheckError,
    OracleError,
    OracleUnavailable,
    OracleUnsupported,
    UnknownCpu,
    UnknownPid,
    UnknownPin,
)
from lang.kernel_ops import Step as StepOp
from lang.scenario import Config, Op, Result, Scenario
from properties.drivers import ImplRunner, SpecRunner
from properties.replay import ReplayInputError

ROOT = Path(__file__).resolve().parents[2]
HELPER_SOURCE = Path(__file__).resolve().parent / "access.c"
CFLAGS = ["-O2", "-shared", "-fPIC", "-Wall", "-Werror"]

PAGE = 4096
PAGE_SHIFT = 12
# x86-64 TASK_SIZE_MAX with 4-level paging (arch/x86/include/asm/page_64_types.h).
TASK_SIZE = (1 << 47) - PAGE
# Every user-space range a scenario touches must lie here: 16 TiB .. 32 TiB,
# far from where the dynamic loader, Python's heap and mmap_base put things.
WINDOW = (0x100000000000, 0x200000000000)

PROT_BITS = {"r": 1, "w": 2, "x": 4}  # PROT_READ, PROT_WRITE, PROT_EXEC
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
MAP_HUGETLB = 0x40000
MADV_DONTNEED, MADV_NOHUGEPAGE = 4, 15
MAP_FAILED = (1 << 64) - 1

PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_MMAP_EXCLUSIVE = 1 << 56
PM_PFN_MASK = (1 << 55) - 1

REPLY_TIMEOUT = float(os.environ.get("MMCHECK_LINUX_TIMEOUT", "10"))
ALLOCATING = (ops.Spawn, ops.Fork, ops.Load, ops.Store, ops.Fetch, ops.PinOp)
SMAPS_FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "uss", "Private_Dirty": "uss", "Anonymous": "anon"}


# --- availability and the helper ------------------------------------------------------------------


def unavailable() -> str | None:
    """Why the live-kernel oracle cannot run here, or None when it can."""
    if os.uname().sysname != "Linux":
        return f"the Linux oracle needs Linux, this is {os.uname().sysname}"
    if os.uname().machine != "x86_64":
        return f"the Linux oracle needs x86-64, this is {os.uname().machine}"
    if os.geteuid() != 0:
        return "the Linux oracle needs root: /proc/PID/pagemap shows PFNs only to CAP_SYS_ADMIN"
    if not Path("/proc/self/pagemap").exists():
        return "/proc/self/pagemap is missing (kernel built without CONFIG_PROC_PAGE_MONITOR)"
    if subprocess.run(["gcc", "--version"], capture_output=True, check=False).returncode:
        return "gcc not found: the oracle compiles its access helper (apt-get install gcc)"
    return None


def cache_folder() -> Path:
    """Where the compiled helper goes: ``$MMCHECK_CACHE`` or ``.cache/`` at the project root (not in git)."""
    return Path(os.environ.get("MMCHECK_CACHE", ROOT / ".cache")) / "linux-oracle"


def build_helper() -> Path:
    """The access helper as a shared object, compiled once per source version."""
    digest = hashlib.sha256(" ".join(CFLAGS).encode() + HELPER_SOURCE.read_bytes()).hexdigest()[:16]
    target = cache_folder() / digest / "access.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / "access.so"
        done = subprocess.run(
            ["gcc", *CFLAGS, "-o", str(built), str(HELPER_SOURCE)], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise OracleError(f"building the access helper failed:\n{done.stderr}")
        os.replace(built, target)
    return target


def libc() -> ctypes.CDLL:
    """libc with the memory-management calls typed."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.vmsplice.restype = ctypes.c_ssize_t
    lib.vmsplice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
    lib.tee.restype = ctypes.c_ssize_t
    lib.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    for name in ("munmap", "mprotect", "madvise"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + ([ctypes.c_int] if name != "munmap" else [])
    return lib


_ZERO_PFN: int | None = None


def kernel_zero_pfn() -> int:
    """The kernel's zero page: what a read of a never-written private anonymous page maps."""
    global _ZERO_PFN
    if _ZERO_PFN is None:
        lib = libc()
        address = lib.mmap(None, PAGE, PROT_BITS["r"], MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if address is None or address == MAP_FAILED:
            raise OracleError(f"mmap of a probe page failed: {os.strerror(ctypes.get_errno())}")
        try:
            lib.madvise(address, PAGE, MADV_NOHUGEPAGE)
            ctypes.c_uint64.from_address(address).value  # noqa: B018 - the read is the point
            entry = read_pagemap(os.getpid(), [address >> PAGE_SHIFT])[address >> PAGE_SHIFT]
        finally:
            lib.munmap(address, PAGE)
        if not entry & PM_PRESENT or not entry & PM_PFN_MASK:
            raise OracleError(f"a read page is not mapped with a PFN (pagemap entry {entry:#x}): are we root?")
        _ZERO_PFN = entry & PM_PFN_MASK
    return _ZERO_PFN


# --- /proc readers --------------------------------------------------------------------------------


def read_pagemap(pid: int, vpns: Iterable[int]) -> dict[int, int]:
    """The raw pagemap entries of pages ``vpns`` of process ``pid``."""
    out: dict[int, int] = {}
    wanted = sorted(set(vpns))
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for start, count in runs(wanted):
            data = os.pread(fd, 8 * count, 8 * start)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                out[start + i] = entry
    finally:
        os.close(fd)
    return out


def runs(sorted_vpns: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Contiguous runs ``(first, length)`` of sorted page numbers."""
    i = 0
    while i < len(sorted_vpns):
        j = i
        while j + 1 < len(sorted_vpns) and sorted_vpns[j + 1] == sorted_vpns[j] + 1:
            j += 1
        yield sorted_vpns[i], j - i + 1
        i = j + 1


@dataclass(frozen=True, slots=True)
class SmapsVma:
    """One VMA of ``/proc/PID/smaps`` inside the window: its page range and its counters in kB."""

    start: int
    end: int
    counters: Mapping[str, int]


def read_smaps(pid: int) -> list[SmapsVma]:
    """The VMAs of ``pid`` inside the scenario window, with Rss, Pss, USS and Anonymous in kB."""
    vmas: list[SmapsVma] = []
    current: dict[str, int] | None = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                current = None
                if hi <= WINDOW[0] or lo >= WINDOW[1]:
                    continue
                if lo < WINDOW[0] or hi > WINDOW[1]:
                    raise OracleError(f"pid {pid} has a VMA {lo:#x}-{hi:#x} crossing the scenario window's edge")
                current = {"rss": 0, "pss": 0, "uss": 0, "anon": 0}
                vmas.append(SmapsVma(lo >> PAGE_SHIFT, hi >> PAGE_SHIFT, current))
            elif current is not None and head[:-1] in SMAPS_FIELDS:
                current[SMAPS_FIELDS[head[:-1]]] += int(line.split()[1])
    return vmas


def start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def process_state(pid: int) -> str | None:
    """The state letter of ``/proc/PID/stat`` (R, S, Z, ...), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[0]


# --- the worker (runs in each model process) ------------------------------------------------------


def send(sock: socket.socket, message: object, fds: Sequence[int] = ()) -> None:
    """One pickled message, with file descriptors attached if any."""
    data = pickle.dumps(message)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def receive(sock: socket.socket) -> tuple[Any, list[int]]:
    """One message and the file descriptors that came with it."""
    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
    if not data:
        raise EOFError("the other end closed its socket")
    return pickle.loads(data), fds


class Worker:
    """The command loop of one model process: memory calls, accesses, fork, exit."""

    def __init__(self, sock: socket.socket, helper: Path) -> None:
        self.sock = sock
        self.lib = libc()
        self.helper = ctypes.CDLL(str(helper))
        self.helper.mmc_load.argtypes = [ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p]
        self.helper.mmc_store.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
        if self.helper.mmc_install() != 0:
            raise OSError("sigaction failed")

    def serve(self) -> None:
        """Answer commands until told to exit."""
        while True:
            message, fds = receive(self.sock)
            command, *args = message
            if command == "exit":
                send(self.sock, ("bye",))
                os._exit(0)
            if command == "fork":
                self.fork(fds[0])
                continue
            if command == "pin":
                self.pin(*args)
                continue
            send(self.sock, getattr(self, f"do_{command}")(*args))

    def fork(self, fd: int) -> None:
        """Fork for real; the child serves on the socket it was given, the parent reports the child's pid."""
        child_sock = socket.socket(fileno=fd)
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            self.sock = child_sock
            send(self.sock, ("ready", os.getpid()))
            return
        child_sock.close()
        send(self.sock, ("forked", pid))

    def pin(self, va: int) -> None:
        """vmsplice the word at ``va`` into a new pipe (a read-only GUP reference) and hand the pipe to the driver."""
        r, w = os.pipe()
        iov = (ctypes.c_uint64 * 2)(va, 8)  # struct iovec {iov_base, iov_len}
        done = self.lib.vmsplice(w, iov, 1, 0)
        code = ctypes.get_errno()
        os.close(w)
        if done < 0:
            os.close(r)
            send(self.sock, ("error", errno.errorcode.get(code, str(code))))
            return
        send(self.sock, ("pinned",), [r])
        os.close(r)

    def syscall_result(self, ret: int) -> tuple[str, ...]:
        """``("ok",)`` or ``("error", "EINVAL")``."""
        if ret == 0:
            return ("ok",)
        return ("error", errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())))

    def do_mmap(self, va: int, length: int, prot: int, shared: bool, huge: bool) -> tuple[str, ...]:
        """``mmap`` at ``va``: MAP_FIXED_NOREPLACE, then MAP_FIXED over what the scenario mapped there before."""
        flags = MAP_ANONYMOUS | (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_HUGETLB if huge else 0)
        got = self.lib.mmap(va, length, prot, flags | MAP_FIXED_NOREPLACE, -1, 0)
        if (got is None or got == MAP_FAILED) and ctypes.get_errno() == errno.EEXIST:
            got = self.lib.mmap(va, length, prot, flags | MAP_FIXED, -1, 0)
        if got is None or got == MAP_FAILED:
            return self.syscall_result(-1)
        if got != va:
            return ("error", f"mapped at {got:#x}, not {va:#x}")
        if not huge and self.lib.madvise(va, length, MADV_NOHUGEPAGE):
            return ("error", f"MADV_NOHUGEPAGE failed: {errno.errorcode.get(ctypes.get_errno())}")
        return ("ok",)

    def do_munmap(self, va: int, length: int) -> tuple[str, ...]:
        return self.syscall_result(self.lib.munmap(va, length))

    def do_mprotect(self, va: int, length: int, prot: int) -> tuple[str, ...]:
        return self.syscall_result(self.lib.mprotect(va, length, prot))

    def do_madvise(self, va: int, length: int) -> tuple[str, ...]:
        return self.syscall_result(self.lib.madvise(va, length, MADV_DONTNEED))

    def do_load(self, va: int) -> tuple[Any, ...]:
        value = ctypes.c_uint64()
        info = (ctypes.c_int64 * 4)()
        sig = self.helper.mmc_load(va, ctypes.byref(value), info)
        return ("value", value.value) if sig == 0 else ("signal", sig, info[3])

    def do_store(self, va: int, value: int) -> tuple[Any, ...]:
        info = (ctypes.c_int64 * 4)()
        sig = self.helper.mmc_store(va, value, info)
        return ("ok",) if sig == 0 else ("signal", sig, info[3])

    def do_ping(self) -> tuple[str, ...]:
        return ("pong",)


def worker_main(sock: socket.socket, helper: Path, others: Iterable[socket.socket]) -> None:
    """The body of a freshly spawned worker; never returns."""
    code = 1
    try:
        for other in others:
            other.close()
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked workers are reaped by the kernel
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        foreign = [v for v in read_smaps(os.getpid()) if v.end > v.start]
        if foreign:
            raise OracleError(f"the scenario window is not empty in a fresh process: {foreign}")
        worker = Worker(sock, helper)
        send(sock, ("ready", os.getpid()))
        worker.serve()
        code = 0
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            send(sock, ("crashed", f"{type(exc).__name__}: {exc}"))
    finally:
        os._exit(code)


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
            message = ("madvise", op.va, op.pages * PAGE)
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


# --- checking a scenario before it runs -----------------------------------------------------------


def hugetlb_pool() -> int:
    """``HugePages_Total`` of /proc/meminfo: the 2 MiB pages the kernel keeps for MAP_HUGETLB (0 if unknown)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("HugePages_Total:"):
                return int(line.split()[1])
    return 0


def touched_pages(program: Sequence[Op]) -> list[int]:
    """Every page an ``mmap`` of the scenario maps: the pages observed after each step."""
    pages: set[int] = set()
    for op in program:
        if isinstance(op, ops.Mmap) and op.va % PAGE == 0 and 0 < op.pages <= 4096:
            pages.update(range(op.va >> PAGE_SHIFT, (op.va >> PAGE_SHIFT) + op.pages))
    return sorted(p for p in pages if (p << PAGE_SHIFT) < TASK_SIZE)


def outside_window(va: int, length: int) -> bool:
    """The byte range reaches user space outside the window (where the worker's own memory lives)."""
    lo, hi = max(va, 0), min(va + length, TASK_SIZE)
    return lo < hi and (lo < WINDOW[0] or hi > WINDOW[1])


def range_outside_window(va: int, pages: int) -> bool:
    """A syscall range the kernel would act on (aligned, not empty) that reaches outside the window."""
    return va % PAGE == 0 and pages > 0 and outside_window(va, pages * PAGE)


def check_supported(scenario: Scenario) -> None:
    """Raise :class:`OracleUnsupported` for the first op the live kernel cannot run faithfully or safely."""
    for index, op in enumerate(scenario.ops):
        where = f"ops[{index}] ({op.name})"
        if not isinstance(op, ops.KernelOp):
            raise OracleUnsupported(f"{where}: the Linux oracle runs kernel-layer operations only")
        if isinstance(op, ops.Fetch):
            raise OracleUnsupported(f"{where}: a fetch would execute the page's bytes; not run on the live kernel")
        if isinstance(op, StepOp) or getattr(op, "background", False):
            raise OracleUnsupported(f"{where}: the live kernel runs each syscall at once; a change in flight has none")
        if isinstance(op, ops.PinOp) and outside_window(op.va, 8):
            raise OracleUnsupported(f"{where}: {op.va:#x} is in user space outside the scenario window")
        if isinstance(op, ops.Load | ops.Store) and op.mode != "user":
            raise OracleUnsupported(f"{where}: a user process cannot make a supervisor-mode access")
        if isinstance(op, ops.Load | ops.Store) and outside_window(op.va, 8):
            raise OracleUnsupported(f"{where}: {op.va:#x} is in user space outside the scenario window")
        if isinstance(op, ops.Mmap) and op.huge and not hugetlb_pool():
            raise OracleUnsupported(
                f"{where}: the kernel's hugetlb pool is empty (HugePages_Total 0): echo 8 > /proc/sys/vm/nr_hugepages"
            )
        if isinstance(op, ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise) and range_outside_window(op.va, op.pages):
            lo, hi = WINDOW
            raise OracleUnsupported(f"{where}: the range must lie in the scenario window {lo:#x}..{hi:#x}")


# --- running and comparing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One op on every side: results and snapshots by side name (``linux``, ``spec``, ``impl``)."""

    index: int
    op: Op
    results: Mapping[str, Result]
    snapshots: Mapping[str, Snapshot]


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One step where a model and the kernel differ, and in what."""

    index: int
    op: Op
    model: str
    what: tuple[str, ...]
    step: Step

    def describe(self) -> str:
        """A paragraph: the op, what differs, both sides' results and observations."""
        lines = [f"op {self.index} {self.op.to_json()}: {self.model} and linux differ in {', '.join(self.what)}"]
        for side in ("linux", self.model):
            lines.append(f"  {side:5} -> {self.step.results[side]}")
            lines.extend(f"          {line}" for line in self.step.snapshots[side].render())
        return "\n".join(lines)


@dataclass
class Verdict:
    """All steps run, and the first disagreement of each model with the kernel."""

    steps: list[Step] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.disagreements

    def observations(self, side: str) -> list[dict[str, Any]]:
        """One side's results and snapshots, JSON-ready, to store with a saved scenario."""
        return [{"result": s.results[side], "observed": s.snapshots[side].render()} for s in self.steps]


MODELS = ("spec", "impl")


def run(scenario: Scenario, models: Sequence[str] = MODELS) -> Verdict:
    """Run ``scenario`` on the live kernel and on each model, step by step, and compare after every step.

    Raises :class:`ReplayInputError` for an op a model refuses as bad input,
    :class:`OracleUnsupported` for a scenario the oracle cannot run, and
    :class:`OracleUnavailable` when not root / not Linux.
    """
    reason = unavailable()
    if reason:
        raise OracleUnavailable(reason)
    check_supported(scenario)
    pages = touched_pages(scenario.ops)
    sides: dict[str, ModelRun] = {m: ModelRun(scenario.config, m, pages) for m in models}
    model_steps = {
        m: [(side.apply(i, op), side.snapshot()) for i, op in enumerate(scenario.ops)] for m, side in sides.items()
    }
    check_frames(scenario, model_steps)
    verdict = Verdict()
    with LinuxRun(scenario.config, pages) as linux:
        for index, op in enumerate(scenario.ops):
            result = linux.apply(op)
            results = {"linux": result, **{m: model_steps[m][index][0] for m in models}}
            snapshots = {"linux": linux.snapshot(), **{m: model_steps[m][index][1] for m in models}}
            step = Step(index, op, results, snapshots)
            verdict.steps.append(step)
            for model in models:
                if any(d.model == model for d in verdict.disagreements):
                    continue
                what = differences(op, results[model], result, snapshots[model], snapshots["linux"])
                if what:
                    verdict.disagreements.append(Disagreement(index, op, model, what, step))
    return verdict


def check_frames(scenario: Scenario, model_steps: Mapping[str, list[tuple[Result, Snapshot]]]) -> None:
    """Refuse a scenario whose model ran out of frames: the live kernel would not."""
    for steps in model_steps.values():
        for index, (op, (result, _)) in enumerate(zip(scenario.ops, steps, strict=True)):
            if isinstance(op, ALLOCATING) and result == {"error": "ENOMEM"}:
                raise OracleUnsupported(
                    f"ops[{index}] ({op.name}): the model ran out of its {scenario.config.frames} frames; "
                    "the live kernel would not: give the config more frames"
                )


def pss_agrees(model_kb: int, kernel_kb: int, fractional: int) -> bool:
    """Model Pss (total rounded down) against the sum of the kernel's per-VMA figures (each rounded down).

    Each VMA with a fractional kB loses less than one kB, so the kernel's sum
    is at most the model's and at most ``fractional - 1`` kB below it.
    """
    return 0 <= model_kb - kernel_kb <= max(0, fractional - 1)


def stats_agree(model: Mapping[str, int], kernel: Mapping[str, int], fractional: int) -> bool:
    """Rss, USS and Anonymous equal; Pss as :func:`pss_agrees` allows."""
    same = all(model[k] == kernel[k] for k in ("rss_kb", "uss_kb", "anon_kb"))
    return same and pss_agrees(model["pss_kb"], kernel["pss_kb"], fractional)


def result_agrees(op: Op, model: Result, kernel: Result, fractional: Mapping[int, int], zeros: tuple[int, int]) -> bool:
    """The op's own result: exact, but for Pss rounding, and for pagemap PFNs (only zero-page-ness compared)."""
    if isinstance(op, ops.StatOp) and "rss_kb" in model and "rss_kb" in kernel:
        return stats_agree(model, kernel, fractional.get(op.pid, 0))
    if isinstance(op, ops.PagemapOp):
        keys = ("present", "exclusive")
        on_zero = (model["present"] and model["pfn"] == zeros[0], kernel["present"] and kernel["pfn"] == zeros[1])
        return all(model[k] == kernel[k] for k in keys) and on_zero[0] == on_zero[1]
    return model == kernel


def differences(op: Op, model: Result, kernel: Result, ms: Snapshot, ks: Snapshot) -> tuple[str, ...]:
    """What differs after one step, by name; empty when the two agree."""
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("result", lambda: result_agrees(op, model, kernel, ks.fractional_vmas, (ms.zero_pfn, ks.zero_pfn))),
        ("live processes", lambda: set(ms.stats) == set(ks.stats)),
        ("present pages", lambda: ms.present() == ks.present()),
        ("zero-page mappings", lambda: ms.zero() == ks.zero()),
        ("exclusive bits", lambda: ms.exclusive() == ks.exclusive()),
        ("frame sharing", lambda: ms.sharing() == ks.sharing()),
        (
            "rss/pss/uss/anon",
            lambda: all(
                stats_agree(ms.stats[p], ks.stats[p], ks.fractional_vmas.get(p, 0)) for p in ms.stats if p in ks.stats
            ),
        ),
    ]
    return tuple(name for name, check in checks if not check())


# --- divergences already reported -----------------------------------------------------------------

# Each reported divergence: its name (the stem of its scenario under tests/scenarios/linux-divergences/),
# why Linux differs, and a narrow recogniser of its instances.  None is open: the last one
# (fork copying the zero-page entries of a merged VMA) is modelled now (spec.mm.vma.merge_at) and its
# scenario became the regression scenario tests/scenarios/linux-vma-merge-fork.json.
KNOWN_DIVERGENCES: dict[str, str] = {}
RECOGNISERS: dict[str, Callable[[Disagreement], bool]] = {}


def known_divergence(d: Disagreement) -> str | None:
    """The name of the reported divergence ``d`` is an instance of, if any (see :data:`KNOWN_DIVERGENCES`)."""
    return next((name for name, recognise in RECOGNISERS.items() if recognise(d)), None)
