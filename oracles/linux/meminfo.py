"""MemAvailable of the live kernel against the models' ``si_mem_available``.

``/proc/meminfo`` prints MemAvailable as ``si_mem_available`` (mm/show_mem.c)
computes it: ``NR_FREE_PAGES`` less ``totalreserve_pages``, plus the file LRU
(``Active(file) + Inactive(file)``) less ``min(half, wmark_low)``, plus the
reclaimable kernel memory (``KReclaimable``: ``NR_SLAB_RECLAIMABLE_B`` and
``NR_KERNEL_MISC_RECLAIMABLE``, fs/proc/meminfo.c ``meminfo_proc_show``) less
``min(half, wmark_low)``; ``wmark_low`` is the sum of ``low_wmark_pages`` over
every zone (``for_each_zone``, populated or not).  The models' function
(``spec.pressure.meminfo.si_mem_available`` and the implementation's) is fed
the live counters:

- MemFree, Active(file), Inactive(file), KReclaimable from ``/proc/meminfo``;
- ``wmark_low``: the ``low`` line of every zone in ``/proc/zoneinfo``
  (mm/vmstat.c ``zoneinfo_show_print`` prints ``low_wmark_pages``, boost
  included, as ``si_mem_available`` reads it);
- ``totalreserve_pages`` is not printed; it is rebuilt as
  ``calculate_totalreserve_pages`` (mm/page_alloc.c) computes it: per zone the
  largest ``lowmem_reserve[j]`` for ``j >= i`` (the ``protection:`` line) plus
  the high watermark, at most the zone's managed pages.  The high watermark is
  the one without boost (``high`` less ``boost``): ``__setup_per_zone_wmarks``
  zeroes ``watermark_boost`` before it calls ``calculate_totalreserve_pages``.

Tolerance.  One read of /proc/meminfo samples MemFree and the LRU counters
(``si_meminfo``, ``global_node_page_state``) a moment before
``si_mem_available`` samples them again, and KReclaimable a moment after; the
machine keeps allocating in between.  So a sample is taken as meminfo,
zoneinfo, meminfo, and its tolerance is how far the inputs and MemAvailable
moved between the two meminfo reads (pages, summed): on a quiet sample it is
0 and the comparison is exact.  The quietest of several samples is compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from impl.pressure.pressure import si_mem_available as impl_si_mem_available
from lang.errors import OracleError
from spec.pressure.meminfo import si_mem_available as spec_si_mem_available

INPUTS = ("MemFree", "Active(file)", "Inactive(file)", "KReclaimable", "MemAvailable")
MODELS: Mapping[str, Callable[[int, int, int, int, int], int]] = {
    "spec": spec_si_mem_available,
    "impl": impl_si_mem_available,
}


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone of /proc/zoneinfo: watermarks, boost, managed pages and ``lowmem_reserve`` (pages)."""

    name: str
    low: int
    high: int
    boost: int
    managed: int
    protection: tuple[int, ...]


def read_meminfo(text: str | None = None) -> dict[str, int]:
    """/proc/meminfo as field -> kB (or a count, for the HugePages lines)."""
    text = Path("/proc/meminfo").read_text() if text is None else text
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            out[key] = int(rest.split()[0])
    return out


def read_zoneinfo(text: str | None = None) -> list[Zone]:
    """Every zone of /proc/zoneinfo, in order."""
    text = Path("/proc/zoneinfo").read_text() if text is None else text
    zones: list[Zone] = []
    fields: dict[str, int] = {}
    name = ""
    protection: tuple[int, ...] = ()

    def flush() -> None:
        if name:
            missing = {"low", "high", "managed"} - set(fields)
            if missing or not protection:
                raise OracleError(f"/proc/zoneinfo zone {name} lacks {sorted(missing) or ['protection']}")
            zones.append(
                Zone(name, fields["low"], fields["high"], fields.get("boost", 0), fields["managed"], protection)
            )

    for line in text.splitlines():
        words = line.split()
        if line.startswith("Node "):
            flush()
            name, fields, protection = f"{words[1].rstrip(',')}/{words[3]}", {}, ()
        elif words and words[0] == "protection:":
            protection = tuple(int(w.strip("(),")) for w in words[1:] if w.strip("(),"))
        elif len(words) == 2 and words[0] in ("low", "high", "boost", "managed") and words[0] not in fields:
            # Only the zone's own lines: the per-cpu pagesets below repeat "high:" with a colon.
            fields[words[0]] = int(words[1])
    flush()
    return zones


def total_reserve(zones: Sequence[Zone]) -> int:
    """``totalreserve_pages`` as ``calculate_totalreserve_pages`` computes it (see the module docstring)."""
    total = 0
    for zone in zones:
        # zoneinfo prints lowmem_reserve[0..MAX_NR_ZONES); zone i's own and higher entries are the valid ones,
        # and the lower ones are 0 (setup_per_zone_lowmem_reserve), so the maximum of all of them is the same.
        reserve = max(zone.protection) + zone.high - zone.boost
        total += min(reserve, zone.managed)
    return total


@dataclass(frozen=True, slots=True)
class Sample:
    """One bracketed reading: the inputs (pages), the kernel's MemAvailable and each model's, and the tolerance."""

    free: int
    reserve: int
    file_lru: int
    reclaimable: int
    wmark_low: int
    kernel: int
    models: Mapping[str, int]
    tolerance: int

    def agrees(self, model: str) -> bool:
        return abs(self.models[model] - self.kernel) <= self.tolerance

    def describe(self) -> str:
        got = ", ".join(f"{m} {v}" for m, v in self.models.items())
        return (
            f"MemAvailable {self.kernel} pages on the kernel; {got} from MemFree {self.free}, totalreserve"
            f" {self.reserve}, file LRU {self.file_lru}, KReclaimable {self.reclaimable}, wmark_low {self.wmark_low}"
            f" (tolerance {self.tolerance} pages)"
        )


def sample(before: Mapping[str, int], zones: Sequence[Zone], after: Mapping[str, int]) -> Sample:
    """The models' MemAvailable from the first meminfo read and the zones; the tolerance from the second read."""
    pages = {key: before[key] // 4 for key in INPUTS}
    moved = sum(abs(after[key] - before[key]) // 4 for key in INPUTS)
    free, reclaimable = pages["MemFree"], pages["KReclaimable"]
    file_lru = pages["Active(file)"] + pages["Inactive(file)"]
    reserve, low = total_reserve(zones), sum(z.low for z in zones)
    models = {name: fn(free, reserve, file_lru, reclaimable, low) for name, fn in MODELS.items()}
    return Sample(free, reserve, file_lru, reclaimable, low, pages["MemAvailable"], models, moved)


def live_sample(attempts: int = 20) -> Sample:
    """The quietest of up to ``attempts`` bracketed readings of the live kernel (the first quiet one, if any)."""
    best: Sample | None = None
    for _ in range(attempts):
        before = read_meminfo()
        zones = read_zoneinfo()
        after = read_meminfo()
        missing = [key for key in INPUTS if key not in before]
        if missing:
            raise OracleError(f"/proc/meminfo lacks {missing}")
        got = sample(before, zones, after)
        if best is None or got.tolerance < best.tolerance:
            best = got
        if best.tolerance == 0:
            break
        time.sleep(0.01)
    assert best is not None
    return best
