"""The host side of the live-Linux oracle: its constants, whether it can run here, the C helper, and /proc readers.

The helper (``access.c`` beside this module) is compiled with gcc into the cache folder on first use and
loaded with ctypes; the readers parse ``/proc/PID/pagemap`` and ``/proc/PID/smaps`` as
fs/proc/task_mmu.c writes them (``pagemap_read``, ``__show_smap``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lang import ops
from lang.errors import (
    OracleError,
)

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
MADV_RANDOM, MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLD, MADV_PAGEOUT = 1, 4, 14, 15, 20, 21
ADVICE = {
    "dontneed": MADV_DONTNEED,
    "hugepage": MADV_HUGEPAGE,
    "nohugepage": MADV_NOHUGEPAGE,
    "cold": MADV_COLD,
    "pageout": MADV_PAGEOUT,
}  # include/uapi/asm-generic/mman-common.h
MS_SYNC = 4
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


def compiled(source: Path, flags: Sequence[str], name: str, what: str) -> Path:
    """``source`` compiled by gcc with ``flags`` into the cache folder as ``name``, once per source and flags
    (the folder is named by their digest); ``what`` names the program in the error of a failed build."""
    digest = hashlib.sha256(" ".join(flags).encode() + source.read_bytes()).hexdigest()[:16]
    target = cache_folder() / digest / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / name
        done = subprocess.run(
            ["gcc", *flags, "-o", str(built), str(source)], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise OracleError(f"building {what} failed:\n{done.stderr}")
        os.replace(built, target)
    return target


def build_helper() -> Path:
    """The access helper as a shared object, compiled once per source version."""
    return compiled(HELPER_SOURCE, CFLAGS, "access.so", "the access helper")


def libc() -> ctypes.CDLL:
    """libc with the memory-management calls typed."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.vmsplice.restype = ctypes.c_ssize_t
    lib.vmsplice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
    lib.tee.restype = ctypes.c_ssize_t
    lib.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    for name in ("munmap", "mprotect", "madvise", "msync"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + ([ctypes.c_int] if name != "munmap" else [])
    lib.posix_fadvise.restype = ctypes.c_int
    lib.posix_fadvise.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_int]
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
