"""The implementation's TLB invalidations against the spec's (Intel SDM Vol. 3A 4.10.4.1): INVPCID of each type,
INVLPG and MOV to CR3 drop the same entries from the same TLB, 2 MiB entries included.

The model's kernel invalidates with INVLPG, INVPCID type 2 and MOV to CR3 (impl/smp/shootdown.py); types 0, 1
and 3 and the no-flush bit have no caller in impl/, so verify does not reach them (docs/uncovered-branches.toml
names this test for them).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl.paging.tlb import GLOBAL, HUGE, Tlb, U, W
from spec.paging import tlb as spec_tlb
from spec.paging.tlb import GLOBAL_PCID, TlbEntry

PCIDS = (1, 2)
entries = st.lists(
    st.tuples(st.sampled_from((*PCIDS, GLOBAL)), st.sampled_from((0, 5, 512, 513)), st.booleans()), max_size=8
)


def both(drawn: list[tuple[int, int, bool]]) -> tuple[Tlb, spec_tlb.Tlb]:
    """One TLB on each side holding the drawn entries (a huge one keyed by its first page)."""
    impl = Tlb(64)
    found = set()
    for pcid, vpn, huge in drawn:
        head = vpn - vpn % 512 if huge else vpn
        impl.entries[(pcid, head)] = (head << 4 | W | U | (HUGE if huge else 0)) | (1 if pcid == GLOBAL else 0)
    for (pcid, head), code in impl.entries.items():
        spec_pcid = GLOBAL_PCID if pcid == GLOBAL else pcid
        found.add(TlbEntry(spec_pcid, head, head, True, True, False, bool(code & HUGE)))
    return impl, spec_tlb.Tlb(frozenset(found))


def keys(tlb: spec_tlb.Tlb) -> set[tuple[int, int]]:
    return {(GLOBAL if e.pcid == GLOBAL_PCID else e.pcid, e.vpn) for e in tlb.entries}


@given(entries, st.sampled_from((0, 1, 2, 3)), st.sampled_from(PCIDS), st.sampled_from((0, 5, 512, 700)))
def test_invpcid_of_each_type_drops_what_the_spec_drops(
    drawn: list[tuple[int, int, bool]], kind: int, pcid: int, vpn: int
) -> None:
    impl, spec = both(drawn)
    impl.invpcid(kind, pcid, vpn)
    assert keys(spec_tlb.invpcid(spec, kind, pcid, vpn)) == set(impl.entries)


@given(entries, st.sampled_from(PCIDS), st.sampled_from((0, 5, 512, 700)))
def test_invlpg_drops_what_the_spec_drops(drawn: list[tuple[int, int, bool]], pcid: int, vpn: int) -> None:
    impl, spec = both(drawn)
    impl.invlpg(pcid, vpn)
    assert keys(spec_tlb.invlpg(spec, pcid, vpn)) == set(impl.entries)


@given(entries, st.sampled_from(PCIDS), st.booleans())
def test_mov_to_cr3_keeps_what_the_spec_keeps(drawn: list[tuple[int, int, bool]], pcid: int, noflush: bool) -> None:
    impl, spec = both(drawn)
    impl.mov_cr3(pcid, noflush)
    assert keys(spec_tlb.mov_cr3(spec, pcid, noflush)) == set(impl.entries)


def test_an_invpcid_type_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="INVPCID type 4 does not exist"):
        Tlb(4).invpcid(4)
