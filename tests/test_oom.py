"""The OOM killer: badness arithmetic, oom_score, oom_score_adj and fork, the victim, the kill, bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lang import ops
from lang.errors import ScenarioError, UnknownPid
from lang.scenario import Config, Result, parse_op
from properties.drivers import Lockstep
from spec.oom import invariants
from spec.oom.badness import badness, total_pages
from spec.outcome import OomKill

ANON = 0x10000000


def process(lk: Lockstep, pages: int, adj: int = 0) -> int:
    """A new process with ``pages`` anonymous pages stored, and ``adj``; its pid."""
    pid = lk.apply(ops.Spawn())["pid"]
    lk.apply(ops.Mmap(pid, ANON, pages, "rw-", False))
    lk.apply(ops.Switch(0, pid))
    for i in range(pages):
        lk.apply(ops.Store(0, ANON + i * 0x1000, 1))
    if adj:
        lk.apply(ops.OomScoreAdj(pid, adj))
    return pid


def machine(frames: int = 64, swap: int = 0) -> Lockstep:
    """A lockstep run with init (pid 1) spawned."""
    lk = Lockstep(Config(frames=frames, cpus=1, max_order=3, swap=swap))
    assert lk.apply(ops.Spawn()) == {"pid": 1}
    return lk


def killed(result: Result) -> int:
    """The victim of an ``out_of_memory`` result."""
    assert "oom_kill" in result, result
    victim: int = result["oom_kill"]["pid"]
    return victim


def test_adj_is_scaled_with_the_division_first() -> None:
    """2999 pages: totalpages / 1000 is 2 (not 2.999), so adj 500 adds 1000 points, not 1499."""
    lk = machine(frames=1000, swap=1999)
    pid = process(lk, 2, 500)
    kernel = lk.spec.kernel.kernel
    assert kernel is not None and total_pages(kernel) == 2999
    assert badness(kernel, pid, 2999) == 2 + 3 + 1000
    assert killed(lk.apply(ops.OutOfMemory(1))) == pid
    assert lk.spec.kernel.last is not None and lk.spec.kernel.last.points == 1005  # type: ignore[union-attr]


def test_adj_weighs_nothing_below_1000_pages() -> None:
    """64 pages: totalpages / 1000 is 0, so the bigger process dies whatever the adjustments."""
    lk = machine()
    big = process(lk, 4, -999)
    process(lk, 1, 1000)
    assert killed(lk.apply(ops.OutOfMemory(1))) == big


def test_swap_entries_count_as_much_as_resident_pages() -> None:
    """Paging a process out moves its pages to swap: its badness stays, and it is still the victim."""
    lk = machine(swap=8)
    big = process(lk, 4)
    process(lk, 3)
    before = lk.apply(ops.OomScoreOp(big))
    lk.apply(ops.Madvise(big, ANON, 4, "pageout"))
    assert lk.apply(ops.StatusOp(big))["VmSwap"] == 16
    assert lk.apply(ops.OomScoreOp(big)) == before
    result = lk.apply(ops.OutOfMemory(1))
    assert killed(result) == big and result["oom_kill"]["anon_rss_kb"] == 0 and result["oom_kill"]["points"] == 7


def test_a_tie_goes_to_the_later_task() -> None:
    """oom_evaluate_task skips only a task with fewer points: of two equal, the later pid dies."""
    lk = machine()
    process(lk, 2)
    later = process(lk, 2)
    assert killed(lk.apply(ops.OutOfMemory(1))) == later


def test_fork_inherits_oom_score_adj_and_exit_drops_it() -> None:
    lk = machine()
    parent = process(lk, 1, -900)
    child = lk.apply(ops.Fork(parent))["pid"]
    assert lk.apply(ops.OomScoreOp(child))["oom_score_adj"] == -900
    lk.apply(ops.Exit(child))
    kernel = lk.spec.kernel.kernel
    assert kernel is not None and child not in kernel.oom_score_adj
    assert invariants.violations(kernel) == []


def test_the_kill_gives_back_every_frame_the_victim_alone_held() -> None:
    lk = machine()
    free_before = lk.apply(ops.MeminfoOp())["MemFree"]
    victim = process(lk, 5)
    assert killed(lk.apply(ops.OutOfMemory(1))) == victim
    assert lk.apply(ops.MeminfoOp())["MemFree"] == free_before
    with pytest.raises(UnknownPid):
        lk.apply(ops.Switch(0, victim))


def test_a_child_sharing_its_pages_frees_only_its_tables() -> None:
    """The COW-shared pages stay with the parent; the child's PGD and three tables go back."""
    lk = machine()
    parent = process(lk, 3)
    lk.apply(ops.OomScoreAdj(parent, -1000))
    child = lk.apply(ops.Fork(parent))["pid"]
    lk.apply(ops.OomScoreAdj(child, 0))
    free_before = lk.apply(ops.MeminfoOp())["MemFree"]
    assert killed(lk.apply(ops.OutOfMemory(parent))) == child
    assert lk.apply(ops.MeminfoOp())["MemFree"] == free_before + 4 * 4
    assert lk.apply(ops.OomScoreOp(parent)) == {"oom_score": 0, "oom_score_adj": -1000}


def test_kill_violations_name_a_wrong_victim() -> None:
    """The kill invariant is not vacuous: a smaller victim than the biggest eligible is reported."""
    lk = machine()
    small = process(lk, 1)
    process(lk, 3)
    kernel = lk.spec.kernel.kernel
    assert kernel is not None
    wrong = OomKill(small, 4, 4, 4, 0, 0, 12, 0, "Out of memory")
    problems = invariants.kill_violations(kernel, kernel, wrong, 1)
    assert any("chosen over" in p for p in problems) and any("still a process" in p for p in problems)
    protected = replace(kernel, oom_score_adj={small: -1000})
    assert any("not eligible" in p for p in invariants.kill_violations(protected, kernel, wrong, 1))


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"op": "oom_score_adj", "pid": 1, "value": 1001}, "value"),
        ({"op": "oom_score_adj", "pid": 1, "value": -1001}, "value"),
        ({"op": "oom_score_adj", "pid": 1}, "value"),
        ({"op": "oom_score_adj", "pid": 1, "value": 0, "adj": 3}, "adj"),
        ({"op": "sysctl", "name": "vm.overcommit_memory", "value": 0}, "name"),
        ({"op": "sysctl", "name": "vm.panic_on_oom", "value": 3}, "value"),
        ({"op": "sysctl", "name": "vm.oom_kill_allocating_task", "value": 2}, "value"),
        ({"op": "out_of_memory"}, "pid"),
    ],
)
def test_bad_input_is_a_typed_error_naming_the_field(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ScenarioError, match=rf"op\.{where}"):
        parse_op(raw, "op")


def test_an_unknown_pid_changes_nothing() -> None:
    lk = machine()
    process(lk, 1, 500)
    before = lk.spec.kernel.kernel
    for op in (ops.OomScoreAdj(9, 1), ops.OomScoreOp(9), ops.OutOfMemory(9)):
        with pytest.raises(UnknownPid):
            lk.apply(op)
    assert lk.spec.kernel.kernel == before


def test_the_ops_round_trip_through_json() -> None:
    for op in (ops.OomScoreAdj(2, -900), ops.OomScoreOp(2), ops.Sysctl("vm.panic_on_oom", 2), ops.OutOfMemory(3)):
        assert parse_op(op.to_json(), "op") == op
