"""Hypothesis strategies for MMU scenarios over generated page tables.

A scenario builds a small tree of paging structures under one top-level
table (PML4, or PML5 with CR4.LA57), with 4 KiB, 2 MiB and 1 GiB leaves,
every combination of R/W, U/S, XD, PWT, PCD, A, D, G and ignored bits, and
now and then a reserved bit (above MAXPHYADDR, PS in a PML4E/PML5E, the low
address bits of a large leaf; SDM Vol. 3A 4.5.4) or a clear P bit.  It then
loads control bits (CR0.WP, CR4.SMEP/SMAP, RFLAGS.AC, EFER.NXE) a few times
and accesses the mapped addresses, their neighbours and non-canonical
addresses in every kind and mode, and finally reads back every word written,
so the A/D bits the walker set are compared too.

The layout keeps scenarios inside what the QEMU oracle can run faithfully
(:func:`oracles.qemu.oracle.plan`): tables in frames below the PC's legacy
hole, data pages at 2-4 MiB, nothing that points at the top-level table, and
top-level slot 511 left alone.  Instruction fetches only target data pages
(zero bytes) at page offsets up to 0xff0, so the one instruction the fetch
probe runs cannot reach into the next page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from lang.scenario import Scenario

FRAMES = 1024
DATA_BASE = 0x200000
DATA_END = 0x400000
# The top table sits at frame 0x9f, where no large leaf's address field (PAT in
# bit 12, maybe one reserved bit above it) can point.
TOP_FRAME = 0x9F
FIRST_TABLE_FRAME = 1
LAST_TABLE_FRAME = 0x9E
FETCH_MAX_OFFSET = 0xFF0
MAXPHYADDRS = (36, 40, 46, 52)

P, RW, US, PWT, PCD, A, D, PS, G = (1 << bit for bit in range(9))
XD = 1 << 63
IGNORED_BITS = (9, 10, 11, 52, 53, 54, 55, 56, 57, 58)


def level_shift(level: int) -> int:
    """Bits of linear address below the index of ``level`` (1 = PT ... 5 = PML5)."""
    return 12 + 9 * (level - 1)


@dataclass
class Builder:
    """Page tables under construction: frames handed out, words written, what each slot holds."""

    levels: int
    maxphyaddr: int
    next_frame: int = FIRST_TABLE_FRAME
    words: dict[int, int] = field(default_factory=dict)
    tables: dict[int, int] = field(default_factory=dict)
    ops: list[dict[str, Any]] = field(default_factory=list)

    def alloc(self) -> int | None:
        """A fresh table frame below the legacy hole, or None when they are used up."""
        if self.next_frame > LAST_TABLE_FRAME:
            return None
        frame = self.next_frame * 4096
        self.next_frame += 1
        return frame

    def write(self, pa: int, value: int) -> None:
        self.words[pa] = value
        self.ops.append({"op": "write_phys", "pa": hex(pa), "value": hex(value)})


@dataclass(frozen=True)
class Target:
    """A linear address some path maps (or tries to), and whether fetching from it is safe."""

    va: int
    fetchable: bool


@st.composite
def flag_bits(draw: st.DrawFn, leaf: bool) -> int:
    """Rights, caching, accessed/dirty, global, XD and maybe one ignored bit of an entry.

    R/W and U/S are set three times in four, XD once in eight, so that deep
    paths still grant something often enough for successful accesses.
    """
    bits = draw(st.integers(0, (1 << 6) - 1))
    word = sum(flag for i, flag in enumerate((PWT, PCD, A, D, G)) if bits >> i & 1)
    if leaf and bits >> 5 & 1:
        word |= D
    rights = draw(st.integers(0, 15))
    word |= (RW if rights & 3 else 0) | (US if rights & 12 else 0)
    if draw(st.integers(0, 7)) == 0:
        word |= XD
    if draw(st.integers(0, 4)) == 0:
        word |= 1 << draw(st.sampled_from(IGNORED_BITS))
    return word


@st.composite
def reserved_bit(draw: st.DrawFn, level: int, leaf: bool, maxphyaddr: int) -> int:
    """One bit this entry must keep clear (SDM Vol. 3A 4.5.4), or 0 most of the time."""
    if draw(st.integers(0, 19)) != 0:
        return 0
    choices: list[int] = []
    if maxphyaddr < 52:
        choices.append(1 << draw(st.integers(maxphyaddr, 51)))
    if leaf and level == 2:
        choices.append(1 << draw(st.integers(13, 20)))
    if leaf and level == 3:
        # Bits 29:22 too are reserved in a 1 GiB leaf, but a word with one of
        # them set also reads as a 4 KiB frame beyond the oracle's memory.
        choices.append(1 << draw(st.integers(13, 21)))
    if not choices:
        return 0
    return draw(st.sampled_from(choices))


@st.composite
def present_bit(draw: st.DrawFn) -> int:
    """P, clear about one time in twenty."""
    return 0 if draw(st.integers(0, 19)) == 0 else P


@st.composite
def build_path(draw: st.DrawFn, b: Builder, top: int) -> Target:
    """Walk down from the top table, reusing entries already there, adding new ones to a leaf."""
    leaf_level = draw(st.sampled_from((1, 1, 2, 3)))
    table, va, fetchable = top, 0, True
    level = b.levels
    while level >= 1:
        index = draw(st.integers(0, 510 if level == b.levels else 511))
        va |= index << level_shift(level)
        slot = table + 8 * index
        if slot in b.tables:
            table = b.tables[slot]
            level -= 1
            continue
        if slot in b.words:
            break
        if level == leaf_level:
            word, offset, fetchable = draw(leaf_entry(b, level))
            b.write(slot, word)
            return Target(va | offset, fetchable)
        nxt = b.alloc()
        if nxt is None:
            break
        ps_reserved = level >= 4 and draw(st.integers(0, 19)) == 0
        rsvd = PS if ps_reserved else draw(reserved_bit(level, False, b.maxphyaddr))
        word = nxt | draw(flag_bits(False)) | draw(present_bit()) | rsvd
        b.write(slot, word)
        if not word & P or rsvd:
            break
        b.tables[slot] = nxt
        table = nxt
        level -= 1
    low = draw(st.integers(0, (1 << level_shift(max(level, 1))) - 1))
    return Target(va | low, False)


@st.composite
def leaf_entry(draw: st.DrawFn, b: Builder, level: int) -> tuple[int, int, bool]:
    """A leaf word at ``level``, the page offset an access uses, and whether a fetch there is safe."""
    rsvd = draw(reserved_bit(level, True, b.maxphyaddr))
    flags = draw(flag_bits(True)) | draw(present_bit()) | rsvd
    if level == 1:
        aliased = b.next_frame > FIRST_TABLE_FRAME and draw(st.integers(0, 7)) == 0
        if aliased:
            frame = draw(st.integers(FIRST_TABLE_FRAME, b.next_frame - 1)) * 4096
        else:
            frame = draw(st.integers(DATA_BASE // 4096, DATA_END // 4096 - 1)) * 4096
        if draw(st.booleans()):
            flags |= PS
        offset = draw(st.integers(0, FETCH_MAX_OFFSET))
        return frame | flags, offset, not aliased
    if level == 2:
        if draw(st.booleans()):
            flags |= 1 << 12
        page = draw(st.integers(0, 511)) * 4096
        return DATA_BASE | PS | flags, page | draw(st.integers(0, FETCH_MAX_OFFSET)), True
    if draw(st.booleans()):
        flags |= 1 << 12
    page = draw(st.integers(DATA_BASE // 4096, DATA_END // 4096 - 1)) * 4096
    return PS | flags, page | draw(st.integers(0, FETCH_MAX_OFFSET)), True


def canonical(va: int, levels: int) -> int:
    """``va`` sign-extended from bit 47 (4 levels) or 56 (5 levels)."""
    bits = 48 if levels == 4 else 57
    va &= (1 << bits) - 1
    if va >> (bits - 1):
        va |= ((1 << 64) - 1) ^ ((1 << bits) - 1)
    return va


@st.composite
def neighbour(draw: st.DrawFn, target: Target, levels: int) -> Target:
    """An address that shares a prefix of ``target``'s walk and then changes one index."""
    level = draw(st.integers(1, levels))
    index = draw(st.integers(0, 510 if level == levels else 511))
    va = target.va & ~(0x1FF << level_shift(level)) | index << level_shift(level)
    return Target(va, False)


@st.composite
def mmu_scenarios(draw: st.DrawFn, maxphyaddr: int | None = None) -> Scenario:
    """A page-table scenario for the MMU layer: tables, control bits, accesses, final reads."""
    la57 = draw(st.booleans())
    levels = 5 if la57 else 4
    b = Builder(levels, maxphyaddr or draw(st.sampled_from(MAXPHYADDRS)))
    top = TOP_FRAME * 4096
    targets = [draw(build_path(b, top)) for _ in range(draw(st.integers(2, 5)))]
    targets += [draw(neighbour(t, levels)) for t in targets if draw(st.booleans())]
    for _ in range(draw(st.integers(1, 4))):
        bits = {name: draw(st.booleans()) for name in ("wp", "smep", "smap", "ac")}
        bits["nxe"] = draw(st.integers(0, 3)) != 0
        b.ops.append({"op": "set_cpu", "cpu": 0, "cr3": hex(top), "la57": la57, **bits})
        for _ in range(draw(st.integers(3, 10))):
            b.ops.append(draw(access(targets, levels)))
    b.ops.extend({"op": "read_phys", "pa": hex(pa)} for pa in sorted(b.words))
    config = {"frames": FRAMES, "maxphyaddr": b.maxphyaddr, "levels": levels}
    return Scenario.from_json({"config": config, "ops": b.ops})


@st.composite
def access(draw: st.DrawFn, targets: list[Target], levels: int) -> dict[str, Any]:
    """One access to a target, or now and then to a non-canonical address."""
    mode = draw(st.sampled_from(("user", "supervisor")))
    if draw(st.integers(0, 15)) == 0:
        va = canonical(draw(st.integers(0, (1 << 64) - 1)), levels) ^ (1 << (48 if levels == 4 else 57))
        kind = draw(st.sampled_from(("read", "write", "fetch")))
    else:
        target = draw(st.sampled_from(targets))
        va = canonical(target.va, levels)
        kind = draw(st.sampled_from(("read", "write", "fetch") if target.fetchable else ("read", "write")))
    return {"op": "access", "cpu": 0, "va": hex(va), "kind": kind, "mode": mode}


@st.composite
def mmu_batches(draw: st.DrawFn, size: int) -> list[Scenario]:
    """``size`` scenarios sharing one MAXPHYADDR, so QEMU runs them in two boots (4- and 5-level)."""
    maxphyaddr = draw(st.sampled_from(MAXPHYADDRS))
    return draw(st.lists(mmu_scenarios(maxphyaddr), min_size=size, max_size=size))
