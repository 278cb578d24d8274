"""Collapse (khugepaged and MADV_COLLAPSE): the selftest's verdicts, and what scenario files cannot state."""

from __future__ import annotations

from pathlib import Path

import pytest

from lang.errors import InvalidArgument, NotModelled, ScenarioError
from lang.kernel_ops import Fork, Load, Madvise, Mmap, PinOp, Spawn, Store, Switch
from lang.ops import Khugepaged, KhugepagedLimit, SmapsOp, ThpSetting
from lang.scenario import Config, load, parse_op
from properties.drivers import Lockstep
from properties.replay import replay
from spec.mm import khugepaged

SCENARIOS = Path(__file__).parent / "scenarios"
CONFIG = Config(frames=2048, cpus=2, max_order=10)
H = 0x40000000

# tools/testing/selftests/mm/khugepaged.c: whether each collapse of the test is expected to make a THP
# (c->collapse(..., expect)), in the order the scenario runs them.
SELFTEST_VERDICTS = {
    "khugepaged-khugepaged-full": [True],
    "khugepaged-madvise-full": [True],
    "khugepaged-khugepaged-empty": [False],
    "khugepaged-madvise-empty": [False],
    "khugepaged-khugepaged-single-pte": [True],
    "khugepaged-madvise-single-pte": [True],
    "khugepaged-khugepaged-max-ptes-none": [False, True],
    "khugepaged-madvise-max-ptes-none": [True],
    "khugepaged-khugepaged-fork": [True],
    "khugepaged-madvise-fork": [True],
    "khugepaged-khugepaged-max-ptes-shared": [False, True],
    "khugepaged-madvise-max-ptes-shared": [True],
    "khugepaged-khugepaged-max-ptes-swap": [False],
}


@pytest.mark.parametrize("name", sorted(SELFTEST_VERDICTS))
def test_collapse_decisions_are_the_selftests(name: str) -> None:
    """Each collapse makes a THP exactly where the selftest expects one, and the smaps after it says so."""
    scenario = load(SCENARIOS / f"{name}.json")
    report = replay(scenario)
    assert report.divergence is None
    verdicts = []
    for op, result in zip(scenario.ops, report.results, strict=True):
        if isinstance(op, Khugepaged):
            verdicts.append(result["collapsed"] == 1)
        elif isinstance(op, Madvise) and op.advice == "collapse":
            verdicts.append(result == {"ok": True})
    assert SELFTEST_VERDICTS[name] == verdicts
    smaps = [r["AnonHugePages"] for op, r in zip(scenario.ops, report.results, strict=True) if isinstance(op, SmapsOp)]
    assert [2048 if v else 0 for v in SELFTEST_VERDICTS[name]] == smaps[: len(verdicts)]


def started(*ops: object) -> Lockstep:
    """A lockstep run: THP in madvise mode, pid 1 on CPU 0 with 2 MiB mapped at ``H``, then ``ops``."""
    run = Lockstep(CONFIG)
    for op in (ThpSetting("enabled", "madvise"), Spawn(), Switch(0, 1), Mmap(1, H, 512, "rw-", False), *ops):
        run.apply(op)  # type: ignore[arg-type]
    return run


def written(pages: int) -> list[Store]:
    return [Store(0, H + 0x1000 * i, i + 1) for i in range(pages)]


def test_a_pinned_page_stops_a_collapse_with_eagain() -> None:
    """A GUP pin holds a reference beyond the mappings (is_refcount_suitable): not_suitable_page_count, which
    MADV_COLLAPSE answers EAGAIN (madvise_collapse_errno)."""
    run = started(*written(4), PinOp(1, H + 0x1000))
    assert {"error": "EAGAIN"} == run.apply(Madvise(1, H, 512, "collapse"))
    run.apply(Madvise(1, H, 512, "hugepage"))
    assert {"collapsed": 0, "scan": {hex(H): "not_suitable_page_count"}} == run.apply(Khugepaged(1))


def test_a_read_only_range_does_not_collapse() -> None:
    """Only zero-page entries (read faults): no writable PTE, no_writable_page, EINVAL for MADV_COLLAPSE."""
    run = started(*[Load(0, H + 0x1000 * i) for i in range(3)])
    assert {"error": "EINVAL"} == run.apply(Madvise(1, H, 512, "collapse"))


def test_collapse_flushes_before_it_frees_the_old_pages() -> None:
    """Every CPU of the mm gets its IPI and flushes before an old frame is freed; a page the fork's child still
    maps loses a reference and keeps its frame, the parent's own copy is freed; the PT stays, as the deposit."""
    run = started(*written(3), Fork(1), Switch(1, 1), Store(0, H, 9))
    state = run.spec.kernel.kernel
    assert state is not None
    own = state.procs[1].leaves[H >> 12].pfn
    tables = dict(state.procs[1].tables)
    assert {"ok": True} == run.apply(Madvise(1, H, 512, "collapse"))
    after = run.spec.kernel.kernel
    assert after is not None
    kinds = [e.kind for e in after.events]
    assert "ipi" in kinds and "free" in kinds
    last_flush = max(i for i, kind in enumerate(kinds) if kind in ("ipi", "flush", "invlpg"))
    assert all(i > last_flush for i, kind in enumerate(kinds) if kind == "free")
    assert [own] == [e.value for e in after.events if e.kind == "free"]
    assert tables == dict(after.procs[1].tables)
    assert [{"value": 9}, {"value": 2}] == [run.apply(Load(0, H)), run.apply(Load(0, H + 0x1000))]
    run.apply(Switch(1, 2))
    assert [{"value": 1}, {"value": 2}] == [run.apply(Load(1, H)), run.apply(Load(1, H + 0x1000))]


def test_the_limits_take_0_to_511_only() -> None:
    """khugepaged_limit parses 0 .. 511 and names only the three files; the spec refuses the rest."""
    assert KhugepagedLimit("max_ptes_swap", 0) == parse_op(
        {"op": "khugepaged_limit", "name": "max_ptes_swap", "value": 0}, "op"
    )
    with pytest.raises(ScenarioError, match="out of range"):
        parse_op({"op": "khugepaged_limit", "name": "max_ptes_none", "value": 512}, "op")
    with pytest.raises(ScenarioError, match="max_ptes_none, max_ptes_swap, max_ptes_shared"):
        parse_op({"op": "khugepaged_limit", "name": "pages_to_scan", "value": 1}, "op")
    state = started().spec.kernel.kernel
    assert state is not None
    with pytest.raises(InvalidArgument, match=r"allowed 0 \.\. 511"):
        khugepaged.set_limit(state, "max_ptes_none", 512)


def test_a_collapse_in_the_background_is_refused() -> None:
    """A collapse runs as one whole shootdown: "async" is not modelled, on both sides, and nothing changes."""
    run = started(*written(2))
    before = run.spec.kernel.kernel
    with pytest.raises(NotModelled, match="background"):
        run.apply(Madvise(1, H, 512, "collapse", background=True))
    assert before is run.spec.kernel.kernel


def test_a_collapse_that_would_swap_in_is_refused_unchanged() -> None:
    """Swap entries under the limit would be swapped in (__collapse_huge_page_swapin): not modelled, refused
    before any range changes, on both sides alike."""
    run = Lockstep(Config(frames=2048, cpus=2, max_order=10, swap=16))
    ops = [ThpSetting("enabled", "madvise"), Spawn(), Switch(0, 1), Mmap(1, H, 512, "rw-", False), *written(8)]
    for op in (*ops, Madvise(1, H, 2, "pageout")):
        run.apply(op)
    before = run.spec.kernel.kernel
    with pytest.raises(NotModelled, match="swap pages in"):
        run.apply(Madvise(1, H, 512, "collapse"))
    after = run.spec.kernel.kernel
    assert before is not None and after is not None
    assert (before.procs, before.pages, before.buddy) == (after.procs, after.pages, after.buddy)
    assert {"value": 3} == run.apply(Load(0, H + 0x2000))
