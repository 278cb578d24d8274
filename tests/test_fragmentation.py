"""mm/vmstat.c's fragmentation formulas (:mod:`spec.alloc.fragmentation`) on buddy free counts, and the seed's
'order:4 fails with plenty free' puzzle."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lang.errors import InvalidArgument
from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views.buddyview import buddy_view
from properties.replay import replay
from spec.alloc import buddy
from spec.alloc import fragmentation as frag

SCENARIOS = Path(__file__).parent / "scenarios"
counts_st = st.lists(st.integers(0, 50), min_size=1, max_size=11)


def test_the_indices_by_hand() -> None:
    """Worked with the kernel's integer division: 100 free single pages, order 4."""
    counts = [100, 0, 0, 0, 0]
    assert frag.ContigInfo(100, 100, 0) == frag.contig_info(counts, 4)
    assert 1000 - (1000 + 100 * 1000 // 16) // 100 == 928 == frag.fragmentation_index(counts, 4)
    assert 1000 == frag.unusable_index(counts, 4) and 100 == frag.extfrag_for_order(counts, 4)
    # One order-2 block and four single pages: order 2 can be served, order 3 cannot.
    mixed = [4, 0, 1, 0]
    assert -1000 == frag.fragmentation_index(mixed, 2)
    assert 1000 - (1000 + 8 * 1000 // 8) // 5 == 600 == frag.fragmentation_index(mixed, 3)
    assert (8 - 4) * 1000 // 8 == 500 == frag.unusable_index(mixed, 2)
    assert 0 == frag.fragmentation_index([0, 0, 0], 1) and 1000 == frag.unusable_index([0, 0, 0], 1)


def test_compaction_is_tried_above_the_costly_order_only_for_fragmentation() -> None:
    lack = [2, 0, 0, 0, 0, 0]  # 2 pages for an order-5 request: index 1000 - (1000 + 62) / 2 = 469
    assert 469 == frag.fragmentation_index(lack, 5) and not frag.fragindex_allows_compaction(lack, 5)
    assert frag.fragindex_allows_compaction(lack, 5, threshold=400)
    scattered = [64, 0, 0, 0, 0, 0]  # 64 pages in single frames: index 1000 - 3000 / 64 = 954
    assert 954 == frag.fragmentation_index(scattered, 5) and frag.fragindex_allows_compaction(scattered, 5)
    assert frag.fragindex_allows_compaction(lack, 3)  # at or below PAGE_ALLOC_COSTLY_ORDER: always
    with pytest.raises(InvalidArgument, match=r"extfrag_threshold must be 0\.\.1000"):
        frag.fragindex_allows_compaction(lack, 5, threshold=1001)


def test_the_kernel_print_formats() -> None:
    counts = [4, 0, 1, 0]
    assert "Node 0, zone   Normal -1.000 -1.000 -1.000  0.600 " == frag.extfrag_line(counts)
    assert "Node 0, zone   Normal 0.000 0.500 0.500 1.000 " == frag.unusable_line(counts)


@pytest.mark.parametrize(("counts", "order"), [([], 0), ([1, -1], 0), ([1, 1], 2), ([1], -1)])
def test_bad_counts_or_orders_are_refused(counts: list[int], order: int) -> None:
    with pytest.raises(InvalidArgument):
        frag.fragmentation_index(counts, order)


@given(counts_st, st.data())
def test_the_indices_stay_in_range_and_minus_1000_means_a_block_is_free(counts: list[int], data: st.DataObject) -> None:
    order = data.draw(st.integers(0, len(counts) - 1))
    index = frag.fragmentation_index(counts, order)
    assert (index == -1000) == any(counts[order:])
    assert index == -1000 or 0 <= index <= 1000
    assert 0 <= frag.unusable_index(counts, order) <= 1000
    assert (frag.unusable_index(counts, 0) == 0) == (sum(counts) > 0)


def test_the_seeds_order_4_puzzle() -> None:
    """Half of memory free, an order-4 allocation refused, and buddyinfo and the index say why."""
    scenario = load(SCENARIOS / "buddy-order4-fragmented.json")
    results = replay(scenario).results
    assert {"free": [16, 0, 0, 0, 0, 0]} == results[-4] and {"error": "ENOMEM"} == results[-3]
    counts = results[-4]["free"]
    assert 875 == frag.fragmentation_index(counts, 4) and frag.fragindex_allows_compaction(counts, 4)
    assert buddy.free_counts(buddy.initial(32, 5)) == (0, 0, 0, 0, 0, 1)
    text = "\n".join(buddy_view(scenario, fragmentation_shown=True))
    assert "extfrag_index  Node 0, zone   Normal -1.000  0.438  0.688  0.813  0.875  0.907 " in text
    assert "16 pages free, no block of order 1 or more" in text


def test_mmcheck_buddy_fragmentation(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["buddy", str(SCENARIOS / "buddy-order4-fragmented.json"), "--fragmentation"])
    assert "unusable_index Node 0, zone   Normal 0.000 1.000" in capsys.readouterr().out
