"""Transparent huge pages: the policy, the per-VMA advice, and the facts scenario files cannot state."""

from __future__ import annotations

import pytest

from lang.errors import InvalidArgument, NotModelled, ScenarioError
from lang.kernel_ops import Madvise, Mmap, Spawn, Switch
from lang.ops import ThpSetting, VmstatOp
from lang.scenario import Config, parse_op
from properties.drivers import Lockstep
from spec.mm import thp
from spec.mm.kernel import NO_THP

CONFIG = Config(frames=2048, cpus=2, max_order=10)
H = 0x40000000


def started(*ops: object) -> Lockstep:
    """A lockstep run of pid 1 running on CPU 0 with ``ops`` applied."""
    lockstep = Lockstep(CONFIG)
    for op in (Spawn(), Switch(0, 1), *ops):
        lockstep.apply(op)  # type: ignore[arg-type]
    return lockstep


def vmas(run: Lockstep, pid: int = 1) -> list[tuple[int, int, str]]:
    """The spec's VMAs of ``pid`` as (start, end, THP advice)."""
    state = run.spec.kernel.kernel
    assert state is not None
    return [(v.start, v.end, v.thp) for v in state.procs[pid].vmas]


def test_the_policy_op_parses_only_the_values_of_its_file() -> None:
    """enabled takes always/madvise/never, use_zero_page 0/1: a value of another file is a typed error."""
    assert ThpSetting("enabled", "madvise") == parse_op({"op": "thp", "name": "enabled", "value": "madvise"}, "op")
    with pytest.raises(ScenarioError, match="always, madvise, never"):
        parse_op({"op": "thp", "name": "enabled", "value": "defer"}, "op")
    with pytest.raises(ScenarioError, match="0, 1"):
        parse_op({"op": "thp", "name": "use_zero_page", "value": "always"}, "op")


def test_a_bad_setting_through_the_api_changes_nothing() -> None:
    """set_policy raises on a name or value sysfs refuses, and the state is the value it was."""
    run = started()
    state = run.spec.kernel.kernel
    assert state is not None
    with pytest.raises(InvalidArgument, match="allowed enabled, defrag, use_zero_page"):
        thp.set_policy(state, "khugepaged", "1")
    with pytest.raises(InvalidArgument, match="allowed always"):
        thp.set_policy(state, "defrag", "sometimes")
    assert NO_THP == state.thp


def test_advice_splits_the_vma_and_merges_it_back() -> None:
    """MADV_HUGEPAGE on the middle of a VMA splits it in three; MADV_NOHUGEPAGE there leaves three (the flags
    differ from the neighbours'); clearing the neighbours too merges all of it into one VMA again."""
    page = 0x1000
    run = started(Mmap(1, H, 8, "rw-", False), Madvise(1, H + 2 * page, 2, "hugepage"))
    base = H >> 12
    assert [(base, base + 2, ""), (base + 2, base + 4, "hugepage"), (base + 4, base + 8, "")] == vmas(run)
    run.apply(Madvise(1, H + 2 * page, 2, "nohugepage"))
    assert [(base, base + 2, ""), (base + 2, base + 4, "nohugepage"), (base + 4, base + 8, "")] == vmas(run)
    run.apply(Madvise(1, H, 8, "nohugepage"))
    assert [(base, base + 8, "nohugepage")] == vmas(run)


def test_advice_over_a_hole_is_enomem_after_the_change() -> None:
    """madvise_walk_vmas: the mapped part takes the flag, the call answers ENOMEM."""
    run = started(Mmap(1, H, 4, "rw-", False))
    assert {"error": "ENOMEM"} == run.apply(Madvise(1, H, 5, "hugepage"))
    assert [(H >> 12, (H >> 12) + 4, "hugepage")] == vmas(run)


def test_advice_on_a_hugetlb_mapping_is_not_modelled() -> None:
    """A hugetlb VMA in the range is refused on both sides, naming what to do instead."""
    run = started(Mmap(1, H, 512, "rw-", False, True))
    with pytest.raises(NotModelled, match="advise normal mappings"):
        run.apply(Madvise(1, H, 512, "hugepage"))


def test_vmstat_shows_the_thp_counters_once_thp_is_on() -> None:
    """Before any THP setting vmstat has no thp_ keys; after enabled=always it has the three counters, at 0."""
    run = started()
    assert "thp_fault_alloc" not in run.apply(VmstatOp())
    run.apply(ThpSetting("enabled", "always"))
    counts = run.apply(VmstatOp())
    assert (0, 0, 0) == (counts["thp_fault_alloc"], counts["thp_fault_fallback"], counts["thp_split_pmd"])
