"""Address translation throughput: loads per second through the implementation's TLB and walker, and the spec's walk.

:func:`measure_translation` builds the same page tables on both sides (4- or
5-level paging, user-readable 4 KiB pages, A already set so no load writes
the tables) and runs user-mode loads on CPU 0 for a given time:

- implementation: :meth:`impl.paging.mmu.Mmu.load`, the word at the address
  :meth:`impl.paging.mmu.Mmu.translate` gives through an :class:`impl.paging.tlb.Tlb` of
  :data:`TLB_ENTRIES` entries, read from :class:`impl.paging.physmem.PhysMem`.  With ``hits`` the loads cycle over
  :data:`HIT_PAGES` pages, which the TLB holds after the first round: every
  later load is a hit and does not walk.  Without, they cycle over
  :data:`MISS_PAGES` pages (more than the TLB holds, in LRU order), so every
  load misses and walks;
- spec: :func:`spec.paging.mmu.access` (the walk of :mod:`spec.paging.walk` and the A/D
  bits it requires) then :func:`spec.paging.mmu.read_phys`, over the same pages.
  The spec layer has no caching TLB (:mod:`spec.paging.tlb` is the set of what a CPU
  *may* hold), so every spec load walks whether or not the implementation's
  TLB would hit.

Each side's loads are checked against the other's before timing: the same
physical address and the same word.  The two sides are timed in alternating
slices, so that a change in the machine's load falls on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from impl.paging.mmu import Fault, Mmu
from impl.paging.physmem import PhysMem
from impl.paging.tlb import Tlb
from spec.paging import mmu as spec_mmu
from spec.paging.permissions import Control, Kind, Mode
from spec.paging.walk import Translation

TLB_ENTRIES = 64
HIT_PAGES = 16
MISS_PAGES = 2 * TLB_ENTRIES
PCID = 1
SLICE = 0.05
FRAMES = 512
# Where the pages start: canonical, with a non-zero index at every level.
BASE = 0x0000_4080_4020_1000
BASE_LA57 = 0x0081_0080_4020_1000
_P, _RW, _US, _A = 1, 2, 4, 0x20
TABLE = _P | _RW | _US | _A


def page_tables(levels: int, pages: int) -> tuple[int, dict[int, int], list[int]]:
    """(CR3, the non-zero words of memory, the addresses loaded): ``pages`` consecutive 4 KiB pages from the base.

    Each page is user-readable and writable, with A set in every entry, and
    holds its own number in its first word.
    """
    if levels not in (4, 5):
        raise ValueError(f"levels must be 4 or 5 (CR4.LA57), got {levels}")
    base = BASE_LA57 if levels == 5 else BASE
    words: dict[int, int] = {}
    frames = iter(range(1, FRAMES))
    cr3 = next(frames) << 12
    tables: dict[tuple[int, int], int] = {}
    addresses = []
    for page in range(pages):
        va = base + page * 4096
        table = cr3
        for level in range(levels, 1, -1):
            index = (va >> (12 + 9 * (level - 1))) & 0x1FF
            key = (table, index)
            if key not in tables:
                tables[key] = next(frames) << 12
                words[table + index * 8] = tables[key] | TABLE
            table = tables[key]
        data = next(frames) << 12
        words[table + ((va >> 12) & 0x1FF) * 8] = data | TABLE
        words[data] = page + 1
        addresses.append(va)
    return cr3, words, addresses


def impl_loader(levels: int, pages: int) -> tuple[Callable[[int], int], list[int]]:
    """A load function of the implementation (TLB, then walk on a miss) and the addresses to load."""
    cr3, words, addresses = page_tables(levels, pages)
    mem = PhysMem(FRAMES)
    for pa, value in words.items():
        mem.write(pa, value)
    mmu = Mmu(mem, 1)
    mmu.set_cpu(0, cr3=cr3, wp=True, smep=False, smap=False, ac=False, nxe=True, la57=levels == 5)
    tlb = Tlb(TLB_ENTRIES)
    mmu_load = mmu.load

    def load(va: int) -> int:
        word = mmu_load(0, va, True, tlb, PCID)
        assert not isinstance(word, Fault), word
        return word

    return load, addresses


def spec_loader(levels: int, pages: int) -> tuple[Callable[[int], int], list[int]]:
    """A load function of the spec (the walk, the A/D bits, the read) and the addresses to load."""
    cr3, words, addresses = page_tables(levels, pages)
    state = spec_mmu.initial(FRAMES, 1)
    for pa, value in words.items():
        state = spec_mmu.write_phys(state, pa, value)
    state = spec_mmu.set_cpu(state, 0, Control(cr3=cr3, wp=True, nxe=True, la57=levels == 5))
    current = [state]

    def load(va: int) -> int:
        state, outcome = spec_mmu.access(current[0], 0, va, Kind.READ, Mode.USER)
        assert isinstance(outcome, Translation), outcome
        current[0] = state
        return spec_mmu.read_phys(state, outcome.pa)

    return load, addresses


def loads_per_second(load: Callable[[int], int], addresses: list[int], seconds: float) -> tuple[float, int]:
    """Run ``load`` over ``addresses`` round after round for about ``seconds``; (loads per second, loads run)."""
    rate, count, _ = timed_rounds(load, addresses, seconds)
    return rate, count


def timed_rounds(load: Callable[[int], int], addresses: list[int], seconds: float) -> tuple[float, int, float]:
    """Rounds over ``addresses`` for at least ``seconds``: (loads per second, loads run, seconds taken)."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for va in addresses:
            load(va)
        count += len(addresses)
        now = time.perf_counter()
    return count / (now - start), count, now - start


def interleaved(
    impl: Callable[[int], int], spec: Callable[[int], int], addresses: list[int], seconds: float
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Both sides timed for about ``seconds`` each, in alternating slices of :data:`SLICE` seconds, so a change in
    the machine's load while measuring falls on both alike: ((impl loads/s, loads), (spec loads/s, loads))."""
    totals = {"impl": [0, 0.0], "spec": [0, 0.0]}
    slices = max(1, round(seconds / SLICE))
    for _ in range(slices):
        for name, load in (("impl", impl), ("spec", spec)):
            _, count, taken = timed_rounds(load, addresses, seconds / slices)
            totals[name][0] += count
            totals[name][1] += taken
    (impl_count, impl_time), (spec_count, spec_time) = totals["impl"], totals["spec"]
    return (impl_count / impl_time, int(impl_count)), (spec_count / spec_time, int(spec_count))


def measure_translation(levels: int, hits: bool, seconds: float) -> dict[str, float | int | bool]:
    """Loads per second of the implementation (with its TLB) and of the spec, each timed for about ``seconds``.

    Returns ``levels``, ``hits``, ``pages`` (the working set), ``impl_loads_per_s``,
    ``spec_loads_per_s``, ``ratio`` (implementation over spec) and the loads each side ran.
    """
    pages = HIT_PAGES if hits else MISS_PAGES
    impl_load, addresses = impl_loader(levels, pages)
    spec_load, _ = spec_loader(levels, pages)
    for va in addresses:  # both sides agree; this round also fills the TLB
        if impl_load(va) != spec_load(va):
            raise AssertionError(f"implementation and spec load different words at {va:#x}")
    (impl_rate, impl_count), (spec_rate, spec_count) = interleaved(impl_load, spec_load, addresses, seconds)
    return {
        "levels": levels,
        "hits": hits,
        "pages": pages,
        "impl_loads_per_s": impl_rate,
        "spec_loads_per_s": spec_rate,
        "ratio": impl_rate / spec_rate,
        "impl_loads": impl_count,
        "spec_loads": spec_count,
    }


def main() -> None:
    for levels in (4, 5):
        for hits in (True, False):
            r = measure_translation(levels, hits, 1.0)
            print(
                f"{levels}-level, {'hits' if hits else 'misses'} ({r['pages']} pages): "
                f"impl {r['impl_loads_per_s']:,.0f} loads/s, spec {r['spec_loads_per_s']:,.0f} loads/s, "
                f"{r['ratio']:.1f}x"
            )


if __name__ == "__main__":
    main()
