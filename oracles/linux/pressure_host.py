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
  readahead), as the model does; restored afterwards.
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
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from lang.errors import OracleError
from oracles.linux.host import unavailable

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")
PAGE_CLUSTER = Path("/proc/sys/vm/page-cluster")
SWAP_FS = ("ext4", "xfs", "btrfs")
BASE = Path("/var/tmp")
# Bytes: a worker's memory from before its move stays charged where it was (cgroup v1 moves no charges by
# default), so the cgroup holds what the scenario faults in, a few hundred kB; 16 MiB is never reached.
LIMIT = 16 << 20
SWAP_MIB = 16


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


class PressureHost:
    """The cgroup, the swap file (unless ``swap`` is false) and page-cluster for one run.  A context manager:
    everything is undone on exit."""

    def __init__(self, limit: int = LIMIT, swap: bool = True) -> None:
        self.limit = limit
        self.swap = swap
        why = unavailable_pressure()
        if why:
            raise OracleError(why)
        self.kind = cgroup_kind()
        self.folder = Path(tempfile.mkdtemp(prefix="mmcheck-pressure-", dir=BASE))
        self.swapfile = self.folder / "swap"
        self.cgroup = (V1 if self.kind == "v1" else V2) / self.folder.name
        self.swap_on = False
        self.page_cluster: str | None = None
        self.affinity: set[int] | None = None

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
        if self.swap:
            run("dd", "if=/dev/zero", f"of={self.swapfile}", "bs=1M", f"count={SWAP_MIB}", "status=none")
            self.swapfile.chmod(0o600)
            run("mkswap", str(self.swapfile))
            run("swapon", "--priority", "32767", str(self.swapfile))
            self.swap_on = True
        self.page_cluster = PAGE_CLUSTER.read_text().strip()
        PAGE_CLUSTER.write_text("0")
        self.affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(self.affinity)})
        if self.kind == "v2":
            control = V2 / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                raise OracleError("the v2 memory controller is not enabled for child cgroups (cgroup.subtree_control)")
        self.cgroup.mkdir()
        limit = "memory.limit_in_bytes" if self.kind == "v1" else "memory.max"
        (self.cgroup / limit).write_text(str(self.limit))

    def enter(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup."""
        (self.cgroup / "cgroup.procs").write_text(str(pid))

    def swapoff(self) -> None:
        """Turn the swap file off (the scenario's ``swapoff``)."""
        run("swapoff", str(self.swapfile))
        self.swap_on = False

    def close(self) -> None:
        """Undo what :meth:`setup` did: the cgroup (its processes must be gone), swap, page-cluster, the folder."""
        if self.cgroup.exists():
            self.remove_cgroup()
        if self.swap_on:
            self.swapoff()
        if self.page_cluster is not None:
            PAGE_CLUSTER.write_text(self.page_cluster)
            self.page_cluster = None
        if self.affinity is not None:
            os.sched_setaffinity(0, self.affinity)
            self.affinity = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def remove_cgroup(self) -> None:
        """rmdir the cgroup once the workers killed a moment ago have left it (a dying task stays a while)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.cgroup.rmdir()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise OracleError(f"cannot remove the cgroup {self.cgroup}: {exc}") from exc
                time.sleep(0.01)

    def file_path(self, name: str) -> str:
        return str(self.folder / f"file-{name}")

    def swapped_kb(self) -> int:
        """How much of the swap file is in use (/proc/swaps ``Used``)."""
        for line in Path("/proc/swaps").read_text().splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == str(self.swapfile):
                return int(fields[3])
        return 0

    def exists(self) -> bool:
        return os.path.exists(self.folder)
