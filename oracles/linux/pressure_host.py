"""The machine set up for the pressure oracle: a memory cgroup, a swap file, swap readahead off; all undone after.

- The workers run in a memory cgroup of their own with a small limit:
  cgroup v1 ``memory.limit_in_bytes`` under ``/sys/fs/cgroup/memory`` when
  that hierarchy is mounted, else cgroup v2 ``memory.max`` (the memory
  controller enabled in the root's ``cgroup.subtree_control``).  The limit is
  far above what a scenario maps (its pages are few) and above the Python
  worker's own memory, so reclaim never runs on its own and what the kernel
  reclaims is what ``MADV_PAGEOUT`` asks for (mm/madvise.c
  ``madvise_cold_or_pageout_pte_range`` -> ``reclaim_pages``).
- A swap file on a disk file system (ext4, xfs or btrfs: not tmpfs, which
  cannot hold one), made with ``dd``, ``mkswap`` and ``swapon`` in a
  temporary folder under /var/tmp, highest priority so anonymous pages go
  there; ``swapoff`` and removed afterwards.
- ``/proc/sys/vm/page-cluster`` is set to 0 for the run: a major swap fault
  then reads only its own slot (mm/swap_state.c ``swapin_readahead``: the
  window is ``1 << page_cluster`` slots for both the cluster and the VMA-based
  readahead), as the model does; restored afterwards.  A caller may give more
  sysctls to set for the run (the OOM oracle's ``vm.oom_dump_tasks``): they are
  set and restored with page-cluster, under the same lock.
- The driver, and with it every worker it forks, runs on one CPU for the run
  (``sched_setaffinity``; the driver's affinity is restored afterwards).  A
  page just faulted in, or read into the page cache, waits in the CPU's
  ``lru_add`` batch before it is on an LRU list; ``MADV_PAGEOUT`` drains only
  the calling CPU's batch (mm/madvise.c ``madvise_pageout`` ->
  ``lru_add_drain``) and skips a folio it cannot isolate from the LRU
  (``madvise_cold_or_pageout_pte_range``: ``folio_isolate_lru``), so a page
  faulted on another CPU would escape it.  On one CPU every such batch is the
  one drained.
- The files of a scenario are real files in the same folder, on disk: their
  pages are file-backed page cache (not shmem, which is swap-backed), as the
  model's files are.
- One run at a time on the machine: the swap file, page-cluster and the
  cgroup's charges are machine-wide, so a second run beside the first would
  see the other's swap slots and restore the other's page-cluster.  The host
  holds an exclusive ``flock`` on :data:`LOCK` from setup to close; a second
  test process waits for it (two suites run at once on one machine).  The
  lock file holds the sysctl values found at setup (page-cluster and the
  caller's, as a JSON object by path) until close, so a run that was killed is
  undone by the next one: holding the lock, it restores those values, turns
  off the dead run's swap file and removes its cgroup and folder
  (:meth:`PressureHost.undo_stale`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from lang.errors import OracleError
from oracles.linux.host import unavailable

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")
SYSCTLS = Path("/proc/sys")
PAGE_CLUSTER = SYSCTLS / "vm" / "page-cluster"
SWAP_FS = ("ext4", "xfs", "btrfs")
BASE = Path("/var/tmp")
# Bytes: a worker's memory from before its move stays charged where it was (cgroup v1 moves no charges by
# default), so the cgroup holds what the scenario faults in, a few hundred kB; 16 MiB is never reached.
LIMIT = 16 << 20
SWAP_MIB = 16
# Held while a host is set up (see the module docstring): one live-kernel run per machine at a time.
LOCK = BASE / "mmcheck-live-kernel.lock"


def cgroup_kind() -> str | None:
    """``"v1"``, ``"v2"``, or None when no memory cgroup can be made here."""
    if (V1 / "memory.limit_in_bytes").exists():
        return "v1"
    controllers = V2 / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return "v2"
    return None


def filesystem_of(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mounts)."""
    best, kind = "", ""
    real = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        point = fields[1]
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def unavailable_pressure() -> str | None:
    """Why the pressure oracle cannot run here, or None when it can."""
    base = unavailable()
    if base:
        return base
    if cgroup_kind() is None:
        return "no memory cgroup: neither /sys/fs/cgroup/memory (v1) nor the v2 memory controller is available"
    for tool in ("mkswap", "swapon", "swapoff", "dd"):
        if shutil.which(tool) is None:
            return f"{tool} not found: the pressure oracle makes a swap file (apt-get install util-linux coreutils)"
    if not Path("/proc/swaps").exists():
        return "/proc/swaps is missing: the kernel was built without CONFIG_SWAP"
    if filesystem_of(BASE) not in SWAP_FS:
        return f"{BASE} is on {filesystem_of(BASE) or 'an unknown file system'}, not one that holds a swap file"
    if not PAGE_CLUSTER.exists():
        return f"{PAGE_CLUSTER} is missing"
    return None


def run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode:
        raise OracleError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def swaps_used_kb() -> dict[str, int]:
    """Every active swap area by path, with how much of it is in use (/proc/swaps ``Filename`` and ``Used``)."""
    rows = (line.split() for line in Path("/proc/swaps").read_text().splitlines()[1:])
    return {fields[0]: int(fields[3]) for fields in rows if fields}


def saved_sysctls(text: str) -> dict[Path, str]:
    """The sysctl values a lock file holds (see the module docstring): a JSON object of path to value, or, as
    written before other sysctls were kept, page-cluster's value alone; empty when no run is live."""
    text = text.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        return {PAGE_CLUSTER: text}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OracleError(f"{LOCK} holds neither a sysctl value nor a JSON object of them: {text!r}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise OracleError(f"{LOCK} holds {text!r}, not a JSON object of sysctl paths to values")
    saved = {Path(path): value for path, value in data.items()}
    for path in saved:
        if not path.is_relative_to(SYSCTLS):
            raise OracleError(f"{LOCK} names {path}, which is not a sysctl (a file under {SYSCTLS})")
    return saved


def remove_cgroup(cgroup: Path) -> None:
    """rmdir the cgroup once the workers killed a moment ago have left it (a dying task stays a while)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            cgroup.rmdir()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise OracleError(f"cannot remove the cgroup {cgroup}: {exc}") from exc
            time.sleep(0.01)


class PressureHost:
    """The cgroup, the swap file (unless ``swap`` is false), page-cluster and the ``sysctls`` given (path to the
    value for the run) for one run.  A context manager: everything is undone on exit."""

    def __init__(self, limit: int = LIMIT, swap: bool = True, sysctls: Mapping[Path, str] | None = None) -> None:
        self.limit = limit
        self.swap = swap
        why = unavailable_pressure()
        if why:
            raise OracleError(why)
        self.sysctls = {PAGE_CLUSTER: "0", **(sysctls or {})}
        for path in self.sysctls:
            if not path.is_relative_to(SYSCTLS) or not path.is_file():
                raise OracleError(f"{path} is not a sysctl of this kernel (a file under {SYSCTLS})")
        self.kind = cgroup_kind()
        self.folder = Path(tempfile.mkdtemp(prefix="mmcheck-pressure-", dir=BASE))
        self.swapfile = self.folder / "swap"
        self.cgroup = (V1 if self.kind == "v1" else V2) / self.folder.name
        self.swap_on = False
        self.saved: dict[Path, str] | None = None
        self.affinity: set[int] | None = None
        self.lock: int | None = None

    def __enter__(self) -> PressureHost:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def setup(self) -> None:
        self.lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.undo_stale(self.lock)
        if self.swap:
            run("dd", "if=/dev/zero", f"of={self.swapfile}", "bs=1M", f"count={SWAP_MIB}", "status=none")
            self.swapfile.chmod(0o600)
            run("mkswap", str(self.swapfile))
            run("swapon", "--priority", "32767", str(self.swapfile))
            self.swap_on = True
        self.saved = {path: path.read_text().strip() for path in self.sysctls}
        os.ftruncate(self.lock, 0)
        os.pwrite(self.lock, json.dumps({str(path): value for path, value in self.saved.items()}).encode(), 0)
        for path, value in self.sysctls.items():
            path.write_text(value)
        self.affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(self.affinity)})
        if self.kind == "v2":
            control = V2 / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                raise OracleError("the v2 memory controller is not enabled for child cgroups (cgroup.subtree_control)")
        self.cgroup.mkdir()
        limit = "memory.limit_in_bytes" if self.kind == "v1" else "memory.max"
        (self.cgroup / limit).write_text(str(self.limit))

    def undo_stale(self, lock: int) -> None:
        """Undo what a killed run left (called with the lock held, so no other host is live): the sysctl values
        it found (page-cluster and its caller's), its swap file if still on, its cgroup, its folder.

        A folder is a dead run's when its swap file is in /proc/swaps or its cgroup exists; a folder with
        neither may be a host still waiting for the lock, and is left alone.
        """
        for path, value in saved_sysctls(os.pread(lock, 1 << 16, 0).decode()).items():
            path.write_text(value)
        swaps = swaps_used_kb()
        for folder in sorted(BASE.glob("mmcheck-pressure-*")):
            if folder == self.folder:
                continue
            cgroup = self.cgroup.parent / folder.name
            swapfile = folder / "swap"
            if str(swapfile) not in swaps and not cgroup.exists():
                continue
            if str(swapfile) in swaps:
                run("swapoff", str(swapfile))
            if cgroup.exists():
                for pid in (cgroup / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                remove_cgroup(cgroup)
            shutil.rmtree(folder, ignore_errors=True)

    def enter(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup."""
        (self.cgroup / "cgroup.procs").write_text(str(pid))

    def swapoff(self) -> None:
        """Turn the swap file off (the scenario's ``swapoff``)."""
        run("swapoff", str(self.swapfile))
        self.swap_on = False

    def close(self) -> None:
        """Undo what :meth:`setup` did: the cgroup (its processes must be gone), swap, the sysctls, the folder."""
        if self.cgroup.exists():
            remove_cgroup(self.cgroup)
        if self.swap_on:
            self.swapoff()
        if self.saved is not None:
            for path, value in self.saved.items():
                path.write_text(value)
            self.saved = None
            if self.lock is not None:
                os.ftruncate(self.lock, 0)
        if self.affinity is not None:
            os.sched_setaffinity(0, self.affinity)
            self.affinity = None
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def file_path(self, name: str) -> str:
        return str(self.folder / f"file-{name}")

    def swapped_kb(self) -> int:
        """How much of the swap file is in use (/proc/swaps ``Used``)."""
        return swaps_used_kb().get(str(self.swapfile), 0)

    def exists(self) -> bool:
        return os.path.exists(self.folder)
