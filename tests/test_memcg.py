"""Memory cgroups v1: charges that stay behind a moved process, limits and their errors, the group OOM killer
(only inside the group, with mem_cgroup_get_max as its total), the endless fault retry and the syscall ENOMEM,
and the invariants naming a broken state."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from lang import ops
from lang.errors import ScenarioError
from lang.memcg_ops import MemcgCreate, MemcgMove, MemcgRead, MemcgSet
from lang.scenario import Config, Result, parse_op
from properties.drivers import Lockstep
from spec.memcg import invariants
from spec.memcg.memcg import get_max
from spec.memcg.state import Group
from spec.mm.kernel import Kernel
from spec.oom.badness import memcg_domain_total
from spec.outcome import MemcgOom, OomKill

ANON = 0x10000000
PAGE = 4096


def machine(frames: int = 64, swap: int = 0) -> Lockstep:
    """A lockstep run with init (pid 1) spawned and the groups ``a``, ``a/b`` and ``c``."""
    lk = Lockstep(Config(frames=frames, cpus=1, max_order=3, swap=swap))
    assert lk.apply(ops.Spawn()) == {"pid": 1}
    for group in ("a", "a/b", "c"):
        assert lk.apply(MemcgCreate(group)) == {"ok": True}
    return lk


def process(lk: Lockstep, group: str, pages: int = 0, adj: int = 0) -> int:
    """A new process in ``group`` with an 8-page anonymous region and ``pages`` of it stored; its pid."""
    pid: int = lk.apply(ops.Spawn())["pid"]
    assert lk.apply(MemcgMove(pid, group)) == {"ok": True}
    lk.apply(ops.Mmap(pid, ANON, 8, "rw-", False))
    if adj:
        lk.apply(ops.OomScoreAdj(pid, adj))
    store(lk, pid, range(pages))
    return pid


def store(lk: Lockstep, pid: int, pages: range) -> list[Result]:
    """Store to each page of ``pid``'s region, as ``pid``, while it lives."""
    lk.apply(ops.Switch(0, pid))
    results = []
    for i in pages:
        if pid not in kernel(lk).procs:
            break
        results.append(lk.apply(ops.Store(0, ANON + i * PAGE, 1)))
    return results


def read(lk: Lockstep, group: str, name: str) -> int:
    value: int = lk.apply(MemcgRead(group))[name]
    return value


def kernel(lk: Lockstep) -> Kernel:
    k = lk.spec.kernel.kernel
    assert k is not None
    return k


def test_charges_stay_with_the_group_a_process_leaves() -> None:
    """Three pages and three page tables are charged to ``a``; after the move to ``c`` they stay there, and
    the next page is charged to ``c`` (move_charge_at_immigrate is 0)."""
    lk = machine()
    pid = process(lk, "a", 3)
    assert (read(lk, "a", "rss"), read(lk, "a", "pagetables")) == (3 * PAGE, 3 * PAGE)
    lk.apply(MemcgMove(pid, "c"))
    store(lk, pid, range(3, 4))
    assert read(lk, "a", "memory.usage_in_bytes") == 6 * PAGE
    assert read(lk, "c", "rss") == PAGE
    assert invariants.violations(kernel(lk)) == []


def test_a_child_group_counts_in_its_parent_and_exit_uncharges() -> None:
    lk = machine()
    pid = process(lk, "a/b", 2)
    assert read(lk, "a", "memory.usage_in_bytes") == read(lk, "a/b", "memory.usage_in_bytes") == 5 * PAGE
    assert read(lk, "a", "rss") == 0  # memory.stat's own lines: the pages are the child's
    lk.apply(ops.Exit(pid))
    assert read(lk, "a", "memory.usage_in_bytes") == 0
    assert read(lk, "a", "memory.max_usage_in_bytes") == 5 * PAGE


def test_limit_writes_refused_as_the_kernel_refuses_them() -> None:
    """The root's limit EINVAL, a limit below the usage EBUSY, a memsw limit below the memory limit EINVAL (an
    unlimited memory limit first), a memory limit above memsw EINVAL, a missing group ENOENT; -1 lifts the
    limit; each refusal leaves the limits."""
    lk = machine()
    process(lk, "a", 4)
    assert lk.apply(MemcgSet("/", "memory.limit_in_bytes", 8 * PAGE)) == {"error": "EINVAL"}
    assert lk.apply(MemcgSet("a", "memory.limit_in_bytes", 6 * PAGE)) == {"error": "EBUSY"}
    assert lk.apply(MemcgSet("a", "memory.memsw.limit_in_bytes", 12 * PAGE)) == {"error": "EINVAL"}
    assert lk.apply(MemcgSet("a", "memory.limit_in_bytes", 10 * PAGE + 123)) == {"ok": True}
    assert lk.apply(MemcgSet("a", "memory.memsw.limit_in_bytes", 12 * PAGE)) == {"ok": True}
    assert lk.apply(MemcgSet("a", "memory.limit_in_bytes", 16 * PAGE)) == {"error": "EINVAL"}
    assert lk.apply(MemcgSet("a", "memory.memsw.limit_in_bytes", 9 * PAGE)) == {"error": "EINVAL"}
    assert lk.apply(MemcgSet("d", "memory.limit_in_bytes", 9 * PAGE)) == {"error": "ENOENT"}
    assert read(lk, "a", "memory.limit_in_bytes") == 10 * PAGE
    assert read(lk, "a", "memory.memsw.limit_in_bytes") == 12 * PAGE
    lk.apply(MemcgSet("a", "memory.memsw.limit_in_bytes", -1))
    lk.apply(MemcgSet("a", "memory.limit_in_bytes", -1))
    assert read(lk, "a", "memory.limit_in_bytes") == (((1 << 63) - 1) // PAGE) * PAGE
    assert lk.apply(MemcgCreate("a")) == {"error": "EEXIST"}
    assert lk.apply(MemcgCreate("d/e")) == {"error": "ENOENT"}


@pytest.mark.parametrize("raw", ["A", "a//b", "/a", "a/b/c/d", 3])
def test_a_bad_group_path_is_a_scenario_error(raw: object) -> None:
    with pytest.raises(ScenarioError, match="cgroup path"):
        parse_op({"op": "memcg_create", "group": raw}, "ops[0]")


def test_the_group_oom_kills_only_inside_the_group() -> None:
    """A bigger process outside the group survives; the biggest in ``a`` (its child ``a/b`` included) dies,
    failcnt, oom and oom_kill count, and the fault that needed the page then succeeds."""
    lk = machine()
    outside = process(lk, "c", 6)
    inner = process(lk, "a/b", 3)
    offender = process(lk, "a", 1)
    lk.apply(MemcgSet("a", "memory.limit_in_bytes", 11 * PAGE))
    results = store(lk, offender, range(1, 3))
    assert results[0] == {"ok": True}
    assert results[1]["memcg_oom"]["group"] == "a"
    assert [kill["pid"] for kill in results[1]["memcg_oom"]["kills"]] == [inner]
    assert results[1]["ok"] is True
    procs = kernel(lk).procs
    assert outside in procs and offender in procs and inner not in procs
    assert (read(lk, "a", "memory.failcnt"), read(lk, "a", "oom"), read(lk, "a", "oom_kill")) == (1, 1, 0)
    assert read(lk, "a/b", "oom_kill") == 1  # counted on the victim's own group
    assert invariants.violations(kernel(lk)) == []


def test_the_offender_itself_may_be_the_victim() -> None:
    lk = machine()
    process(lk, "a", 1)
    offender = process(lk, "a", 2)
    lk.apply(MemcgSet("a", "memory.limit_in_bytes", 12 * PAGE))
    results = store(lk, offender, range(2, 8))
    last = results[-1]
    assert set(last) == {"memcg_oom"} and last["memcg_oom"]["kills"][0]["pid"] == offender, results
    assert offender not in kernel(lk).procs


def test_nothing_killable_retries_the_fault_and_fails_the_syscall() -> None:
    """Every process of the group at -1000: the fault is refused with the report (and retried for ever by the
    kernel, so the state stays), and fork's page tables are ENOMEM."""
    lk = machine()
    pid = process(lk, "a", 2, adj=-1000)
    lk.apply(MemcgSet("a", "memory.limit_in_bytes", 5 * PAGE))
    before = read(lk, "a", "memory.usage_in_bytes")
    first, again = store(lk, pid, range(2, 3)) + store(lk, pid, range(2, 3))
    assert first == again == {"memcg_retry": "a", "report": "Out of memory and no killable processes..."}
    assert read(lk, "a", "memory.usage_in_bytes") == before
    assert read(lk, "a", "oom") == 2 and read(lk, "a", "oom_kill") == 0
    assert lk.apply(ops.Fork(pid)) == {"error": "ENOMEM"}
    assert pid in kernel(lk).procs


def test_the_domain_total_is_the_limit_plus_the_swap_it_may_use() -> None:
    """mem_cgroup_get_max: limit + min(memsw - limit, total swap); swappiness 0 the limit alone."""
    lk = machine(swap=8)
    lk.apply(MemcgSet("a", "memory.limit_in_bytes", 20 * PAGE))
    assert get_max(kernel(lk), "a") == 20 + 8
    lk.apply(MemcgSet("a", "memory.memsw.limit_in_bytes", 23 * PAGE))
    assert get_max(kernel(lk), "a") == 23
    assert memcg_domain_total(20, 23, 8, swappiness=0) == 20


def test_oom_score_adj_weighs_by_the_group_total_not_the_machine() -> None:
    """1000 frames and 24 swap slots: the machine's total weighs adj 500 at 500 points, a 20-page group's at
    none (20 / 1000 = 0), so the bigger process dies, as the kernel's group OOM chooses."""
    lk = machine(frames=1000, swap=24)
    big = process(lk, "a", 6)
    process(lk, "a", 2, adj=500)
    offender = process(lk, "a", 0)
    lk.apply(MemcgSet("a", "memory.limit_in_bytes", 20 * PAGE))
    lk.apply(MemcgSet("a", "memory.memsw.limit_in_bytes", 20 * PAGE))
    results = store(lk, offender, range(8))
    kills = [kill["pid"] for r in results for kill in r.get("memcg_oom", {}).get("kills", [])]
    assert kills[0] == big, results


def oom(victim: int, points: int) -> MemcgOom:
    return MemcgOom("a", (OomKill(victim, points, 0, 0, 0, 0, 0, 0, "Memory cgroup out of memory"),), None)


def test_oom_violations_name_a_victim_outside_the_group_and_a_wrong_choice() -> None:
    lk = machine()
    outside = process(lk, "c", 6)
    small = process(lk, "a", 1)
    big = process(lk, "a", 3)
    before = kernel(lk)
    after = replace(before, procs=MappingProxyType({p: s for p, s in before.procs.items() if p != outside}))
    assert "outside the group" in " ".join(invariants.oom_violations(before, after, oom(outside, 9)))
    problems = invariants.oom_violations(before, before, oom(small, 4))
    assert any("chosen over" in p for p in problems) and any("still a process" in p for p in problems)
    assert any("reported 99 points" in p for p in invariants.oom_violations(before, before, oom(big, 99)))


def test_charge_and_group_violations_name_a_leak_and_a_group_past_its_limit() -> None:
    lk = machine()
    process(lk, "a", 2)
    k = kernel(lk)
    free_pfn = next(p for p in range(64) if p not in invariants.chargeable(k))
    leaked = replace(k, memcg=replace(k.memcg, charges=MappingProxyType({**k.memcg.charges, free_pfn: ("a", "anon")})))
    assert any("memcg leak" in p for p in invariants.charge_violations(leaked))
    tight = replace(k, memcg=replace(k.memcg, groups=MappingProxyType({**k.memcg.groups, "a": Group("/", limit=1)})))
    problems = invariants.group_violations(tight)
    assert any("holds 5 pages" in p for p in problems) and any("watermark 0 below" in p for p in problems)
    assert invariants.violations(k) == []
