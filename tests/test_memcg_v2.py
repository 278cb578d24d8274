"""Memory cgroups on cgroup v2: the files and their errors, reclaim inside a group before its OOM, memory.high
reclaiming and never killing, memory.oom.group, memory.min/low through effective_protection, memory.events,
all in lockstep (the implementation's reclaim steps checked against the spec's allowed set)."""

from __future__ import annotations

import pytest

from lang import ops
from lang.memcg_ops import MemcgCreate, MemcgHierarchy, MemcgMove, MemcgRead, MemcgSet
from lang.scenario import Config, Result
from properties.drivers import Lockstep
from spec.memcg.protection import effective_protection
from spec.mm.kernel import Kernel

ANON = 0x10000000
FILE = 0x20000000
PAGE = 4096


def machine(frames: int = 128, swap: int = 0, groups: tuple[str, ...] = ("a", "a/b", "c")) -> Lockstep:
    """A lockstep run on cgroup v2 with init (pid 1) spawned and ``groups`` created."""
    lk = Lockstep(Config(frames=frames, cpus=1, max_order=3, swap=swap))
    assert lk.apply(ops.Spawn()) == {"pid": 1}
    assert lk.apply(MemcgHierarchy(2)) == {"ok": True}
    for group in groups:
        assert lk.apply(MemcgCreate(group)) == {"ok": True}
    return lk


def kernel(lk: Lockstep) -> Kernel:
    k = lk.spec.kernel.kernel
    assert k is not None
    return k


def process(lk: Lockstep, group: str, pages: int = 0, adj: int = 0, region: int = 16) -> int:
    """A new process in ``group`` with a ``region``-page anonymous region and ``pages`` of it stored."""
    pid: int = lk.apply(ops.Spawn())["pid"]
    assert lk.apply(MemcgMove(pid, group)) == {"ok": True}
    lk.apply(ops.Mmap(pid, ANON, region, "rw-", False))
    if adj:
        lk.apply(ops.OomScoreAdj(pid, adj))
    store(lk, pid, range(pages))
    return pid


def store(lk: Lockstep, pid: int, pages: range) -> list[Result]:
    lk.apply(ops.Switch(0, pid))
    results = []
    for i in pages:
        if pid not in kernel(lk).procs:
            break
        results.append(lk.apply(ops.Store(0, ANON + i * PAGE, 1)))
    return results


def files(lk: Lockstep, group: str) -> Result:
    return lk.apply(MemcgRead(group))


def cached(lk: Lockstep, group: str) -> int:
    """The group's page-cache pages (``memory.stat`` ``file``)."""
    value: int = files(lk, group)["memory.stat"]["file"]
    return value // PAGE


def current(lk: Lockstep, group: str) -> int:
    value: int = files(lk, group)["memory.current"]
    return value // PAGE


def test_the_hierarchy_and_the_files_refused_as_the_kernel_refuses_them() -> None:
    lk = machine()
    assert lk.apply(MemcgHierarchy(1)) == {"error": "EBUSY"}  # a group exists: the controller is in use
    assert lk.apply(MemcgSet("a", "memory.limit_in_bytes", 8 * PAGE)) == {"error": "ENOENT"}  # a v1 file
    assert lk.apply(MemcgSet("/", "memory.max", 8 * PAGE)) == {"error": "ENOENT"}  # CFTYPE_NOT_ON_ROOT
    assert lk.apply(MemcgSet("a", "memory.oom.group", 2)) == {"error": "EINVAL"}
    assert lk.apply(MemcgSet("a", "memory.reclaim", -1)) == {"error": "EINVAL"}
    assert lk.apply(MemcgSet("nope", "memory.max", PAGE)) == {"error": "ENOENT"}
    assert lk.apply(MemcgSet("a", "memory.high", 10 * PAGE + 5)) == {"ok": True}
    got = files(lk, "a")
    assert got["memory.high"] == 10 * PAGE and got["memory.max"] == "max" and got["memory.min"] == 0
    assert set(got["memory.events"]) == {"low", "high", "max", "oom", "oom_kill", "oom_group_kill"}
    assert set(files(lk, "/")) == {"memory.stat"}


def test_a_v1_controller_has_no_v2_files() -> None:
    lk = Lockstep(Config(frames=64, cpus=1, max_order=3))
    lk.apply(ops.Spawn())
    assert lk.apply(MemcgCreate("a")) == {"ok": True}
    assert lk.apply(MemcgSet("a", "memory.high", 8 * PAGE)) == {"error": "ENOENT"}
    assert lk.apply(MemcgHierarchy(2)) == {"error": "EBUSY"}


def test_memory_max_reclaims_inside_the_group_before_any_kill() -> None:
    """With swap the group's own pages go to swap at its limit: no OOM, ``max`` events counted, the usage at or
    under the limit; the process outside the group keeps every page."""
    lk = machine(swap=32)
    outside = process(lk, "c", 4)
    pid = process(lk, "a", 0)
    assert lk.apply(MemcgSet("a", "memory.max", 8 * PAGE)) == {"ok": True}
    results = store(lk, pid, range(12))
    assert all("memcg_oom" not in r for r in results), results
    got = files(lk, "a")
    assert got["memory.events"]["oom"] == 0 and got["memory.events"]["max"] > 0
    assert got["memory.current"] <= 8 * PAGE
    assert sum(1 for _ in kernel(lk).procs[outside].leaves) >= 4


def test_memory_max_without_swap_kills_after_the_retries() -> None:
    lk = machine()
    big = process(lk, "a/b", 5)
    pid = process(lk, "a", 1)
    lk.apply(MemcgSet("a", "memory.max", 12 * PAGE))
    results = store(lk, pid, range(1, 8))
    kills = [kill["pid"] for r in results for kill in r.get("memcg_oom", {}).get("kills", [])]
    assert kills == [big]
    local = files(lk, "a")["memory.events.local"]
    assert local["oom"] == 1 and local["max"] == 18  # 1 + drain + MAX_RECLAIM_RETRIES refused attempts
    assert files(lk, "a")["memory.events"]["oom_kill"] == 1  # hierarchical: a/b's kill counts in a
    assert files(lk, "a")["memory.events.local"]["oom_kill"] == 0


def test_memory_high_reclaims_and_never_kills() -> None:
    """Above memory.high the charge succeeds and reclaim follows (``high`` events); without swap the anonymous
    pages stay, above high, and still nobody is killed; with swap the usage comes back to high."""
    for swap, back in ((0, False), (32, True)):
        lk = machine(swap=swap)
        pid = process(lk, "a", 0)
        assert lk.apply(MemcgSet("a", "memory.high", 6 * PAGE)) == {"ok": True}
        results = store(lk, pid, range(12))
        assert all("memcg_oom" not in r and r.get("ok") for r in results), results
        assert pid in kernel(lk).procs
        got = files(lk, "a")
        assert got["memory.events"]["high"] > 0 and got["memory.events"]["oom_kill"] == 0
        assert (got["memory.current"] <= 6 * PAGE) == back, got


def test_writing_memory_max_below_the_usage_reclaims_then_kills() -> None:
    lk = machine()
    small = process(lk, "a", 2)
    big = process(lk, "a", 6)
    result = lk.apply(MemcgSet("a", "memory.max", 6 * PAGE))
    assert result["ok"] is True
    assert [kill["pid"] for kill in result["memcg_oom"]["kills"]] == [big]
    assert small in kernel(lk).procs and files(lk, "a")["memory.max"] == 6 * PAGE


def test_oom_group_kills_the_whole_group_but_the_protected() -> None:
    """memory.oom.group on a/b: the victim in a/b takes every other a/b task with it, but the one at -1000; a
    task in a (outside the oom group) survives; ``oom_group_kill`` counts once; the victim is killed and counted
    a second time in the group's scan, as the kernel does."""
    lk = machine()
    keep = process(lk, "a", 1)
    victim = process(lk, "a/b", 5)
    mate = process(lk, "a/b", 1)
    spared = process(lk, "a/b", 1, adj=-1000)
    assert lk.apply(MemcgSet("a/b", "memory.oom.group", 1)) == {"ok": True}
    pid = process(lk, "a", 0)
    lk.apply(MemcgSet("a", "memory.max", 22 * PAGE))
    results = store(lk, pid, range(8))
    kills = [kill["pid"] for r in results for kill in r.get("memcg_oom", {}).get("kills", [])]
    assert kills[:3] == [victim, victim, mate], results
    procs = kernel(lk).procs
    assert keep in procs and spared in procs and victim not in procs and mate not in procs
    local = files(lk, "a/b")["memory.events.local"]
    assert (local["oom_group_kill"], local["oom_kill"]) == (1, 3)


@pytest.mark.parametrize(
    ("usage", "setting", "parent_effective", "siblings", "expected"),
    [
        (50, 75, 50, 75, 33),  # the selftest's first child: 50 * 50 / 75, rounded down
        (50, 25, 50, 75, 16),
        (50, 0, 50, 75, 0),
        (10, 20, 50, 30, 10),  # within the parent's share: the child's own claim
    ],
)
def test_effective_protection_shares_an_overcommitted_parent(
    usage: int, setting: int, parent_effective: int, siblings: int, expected: int
) -> None:
    assert effective_protection(usage, usage * 3, setting, parent_effective, siblings) == expected


def test_memory_min_shields_a_group_and_low_yields_only_when_nothing_else_can() -> None:
    """Page-cache pages in two children of ``p``; ``p/x`` protected by memory.min, ``p/y`` by memory.low.
    Reclaim of ``p`` takes from the unprotected ``p/z`` first; once only the protected are left it takes from
    ``p/y`` (below its low: ``low`` events) but never from ``p/x``."""
    lk = machine(frames=160, groups=("p", "p/x", "p/y", "p/z"))
    lk.apply(ops.FileCreate("f", 48, {}))
    pids = {}
    for i, group in enumerate(("p/x", "p/y", "p/z")):
        pid = lk.apply(ops.Spawn())["pid"]
        lk.apply(MemcgMove(pid, group))
        pids[group] = pid
        lk.apply(ops.MmapFile(pid, FILE, 8, "r--", "f", False, i * 8))
        lk.apply(ops.Switch(0, pid))
        for page in range(8):
            assert "error" not in lk.apply(ops.Load(0, FILE + page * PAGE))
    # the protection covers the whole usage, page tables included
    assert lk.apply(MemcgSet("p/x", "memory.min", 16 * PAGE)) == {"ok": True}
    assert lk.apply(MemcgSet("p/y", "memory.low", 16 * PAGE)) == {"ok": True}
    assert lk.apply(MemcgSet("p", "memory.reclaim", 4 * PAGE)) == {"ok": True}
    assert (cached(lk, "p/x"), cached(lk, "p/y")) == (8, 8) and cached(lk, "p/z") < 8
    assert files(lk, "p/y")["memory.events.local"]["low"] == 0
    assert lk.apply(MemcgSet("p", "memory.reclaim", 24 * PAGE)) == {"error": "EAGAIN"}
    assert (cached(lk, "p/x"), cached(lk, "p/y"), cached(lk, "p/z")) == (8, 0, 0)
    assert files(lk, "p/y")["memory.events.local"]["low"] > 0
    assert files(lk, "p/x")["memory.events.local"]["low"] == 0


def test_v2_oom_violations_name_a_partial_oom_group_kill_an_outsider_and_a_high_only_group() -> None:
    """The v2 OOM invariants against the state before the OOM: a memory.oom.group kill that spares a member, a
    victim outside the group at its limit, and an OOM for a group with only memory.high are each named."""
    from spec.memcg.v2_invariants import v2_oom_violations
    from spec.outcome import MemcgOom, OomKill

    lk = machine()
    victim = process(lk, "a/b", 5)
    mate = process(lk, "a/b", 1)
    outsider = process(lk, "c", 6)
    assert lk.apply(MemcgSet("a/b", "memory.oom.group", 1)) == {"ok": True}
    assert lk.apply(MemcgSet("a", "memory.max", 64 * PAGE)) == {"ok": True}
    before = kernel(lk)

    def kill(pid: int) -> OomKill:
        return OomKill(pid, 0, 0, 0, 0, 0, 0, 0, "Memory cgroup out of memory")

    whole = MemcgOom("a", (kill(victim), kill(victim), kill(mate)), None)
    assert v2_oom_violations(before, before, whole) == []
    partial = MemcgOom("a", (kill(victim),), None)
    assert any("were to die with it" in p for p in v2_oom_violations(before, before, partial))
    outside = MemcgOom("a", (kill(outsider),), None)
    assert any("outside the group" in p for p in v2_oom_violations(before, before, outside))
    high_only = MemcgOom("c", (kill(outsider),), None)  # group c has no memory.max
    assert any("memory.high never kills" in p for p in v2_oom_violations(before, before, high_only))
