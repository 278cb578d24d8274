"""The worker that runs in each model process of the live-Linux oracle.

A worker obeys commands sent over a ``SOCK_SEQPACKET`` socket: it maps, unmaps, protects and advises
memory with the real system calls, makes loads and stores through the C helper (which catches the
SIGSEGV and reports the hardware error code), forks, pins pages with ``vmsplice``, and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pickle
import signal
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lang.errors import (
    OracleError,
)
from oracles.linux.host import (
    MADV_DONTNEED,
    MADV_NOHUGEPAGE,
    MADV_RANDOM,
    MAP_ANONYMOUS,
    MAP_FAILED,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_HUGETLB,
    MAP_PRIVATE,
    MAP_SHARED,
    MS_SYNC,
    libc,
    read_smaps,
)

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
        # The faults the scenario's own accesses took (the helper counts each access's, so the Python worker's
        # own faults are left out); a forked child starts from zero, as copy_mm zeroes min_flt and maj_flt.
        self.minflt = self.majflt = 0

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
            self.minflt = self.majflt = 0
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

    def do_madvise(self, va: int, length: int, advice: int = MADV_DONTNEED) -> tuple[str, ...]:
        return self.syscall_result(self.lib.madvise(va, length, advice))

    def do_mmap_file(self, va: int, length: int, prot: int, shared: bool, path: str, offset: int) -> tuple[str, ...]:
        """``mmap`` of the file at ``path`` from byte ``offset``, as :meth:`do_mmap` places it, then MADV_RANDOM
        (no readahead on a major fault: mm/filemap.c ``do_sync_mmap_readahead``)."""
        fd = os.open(path, os.O_RDWR)
        try:
            flags = MAP_SHARED if shared else MAP_PRIVATE
            got = self.lib.mmap(va, length, prot, flags | MAP_FIXED_NOREPLACE, fd, offset)
            if (got is None or got == MAP_FAILED) and ctypes.get_errno() == errno.EEXIST:
                got = self.lib.mmap(va, length, prot, flags | MAP_FIXED, fd, offset)
        finally:
            os.close(fd)
        if got is None or got == MAP_FAILED:
            return self.syscall_result(-1)
        for advice in (MADV_NOHUGEPAGE, MADV_RANDOM):
            if self.lib.madvise(va, length, advice):
                return ("error", f"madvise {advice} failed: {errno.errorcode.get(ctypes.get_errno())}")
        return ("ok",)

    def do_msync(self, va: int, length: int) -> tuple[str, ...]:
        return self.syscall_result(self.lib.msync(va, length, MS_SYNC))

    def do_faults(self) -> tuple[str, int, int]:
        return ("faults", self.minflt, self.majflt)

    def counted(self, info: ctypes.Array[ctypes.c_int64]) -> None:
        self.minflt += info[4]
        self.majflt += info[5]

    def do_load(self, va: int) -> tuple[Any, ...]:
        value = ctypes.c_uint64()
        info = (ctypes.c_int64 * 6)()
        sig = self.helper.mmc_load(va, ctypes.byref(value), info)
        self.counted(info)
        return ("value", value.value) if sig == 0 else ("signal", sig, info[3])

    def do_store(self, va: int, value: int) -> tuple[Any, ...]:
        info = (ctypes.c_int64 * 6)()
        sig = self.helper.mmc_store(va, value, info)
        self.counted(info)
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
