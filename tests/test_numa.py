"""NUMA in the model: topology and zonelists, policies and their EINVAL cases, placement, numastat, numa_maps,
the invariants, and the generated cases compared with the QEMU guest (skipped without QEMU)."""

from __future__ import annotations

import time

import pytest
from dependencies import requires, skip_without
from hypothesis import given
from hypothesis import strategies as st

from impl.numa.numa import build_zonelists
from lang.errors import MMCheckError, NotModelled, OracleUnavailable, ScenarioError
from lang.kernel_ops import Exit, Fork, Mmap, Munmap, Spawn, Store, Switch
from lang.numa_ops import GetMempolicy, Mbind, MovePages, NumaMaps, Numastat, NumastatP, SetMempolicy
from lang.scenario import Config, parse_op
from oracles.numa import compare as numa_compare
from oracles.numa import guest
from oracles.numa.guest import Case, CaseRun, Run
from properties.drivers import Lockstep
from spec.numa import invariants as numa_invariants
from spec.numa import policy as mp
from spec.numa.topology import zonelists

DISTANCES = ((10, 20, 30, 40), (20, 10, 20, 30), (30, 20, 10, 20), (40, 30, 20, 10))
FOUR = Config(frames=256, cpus=4, max_order=4, nodes=4, distances=DISTANCES)
TWO = Config(frames=64, cpus=2, max_order=4, nodes=2)
VA = 0x7F0000001000


def started(config: Config = FOUR, pages: int = 8) -> Lockstep:
    """A process running on every CPU with ``pages`` pages mapped at :data:`VA`."""
    run = Lockstep(config)
    run.apply(Spawn())
    for cpu in range(config.cpus):
        run.apply(Switch(cpu, 1))
    run.apply(Mmap(1, VA, pages, "rw-", False))
    return run


def where(run: Lockstep, pages: int = 8, pid: int = 1) -> list[int]:
    return list(run.apply(MovePages(pid, VA, pages))["nodes"])


def test_zonelists_follow_find_next_best_node() -> None:
    """Nearest first; at equal distance the higher node first (``val += (n < node)``), then node_load's round robin."""
    assert zonelists(DISTANCES) == ((0, 1, 2, 3), (1, 2, 0, 3), (2, 3, 1, 0), (3, 2, 1, 0))
    flat = tuple(tuple(10 if i == j else 20 for j in range(4)) for i in range(4))
    assert zonelists(flat) == ((0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2))


@given(st.integers(2, 5).flatmap(lambda n: st.lists(st.integers(11, 40), min_size=n * n, max_size=n * n)))
def test_the_implementation_builds_the_spec_zonelists(cells: list[int]) -> None:
    """Spec and implementation build the same zonelists from any symmetric table."""
    n = int(len(cells) ** 0.5)
    table = [[10 if i == j else cells[min(i, j) * n + max(i, j)] for j in range(n)] for i in range(n)]
    assert zonelists(tuple(tuple(row) for row in table)) == tuple(tuple(z) for z in build_zonelists(table))


def test_first_touch_puts_each_page_on_the_writing_cpus_node() -> None:
    """The default policy: the node of the CPU that faults (``numa_node_id()``)."""
    run = started()
    for cpu in range(4):
        run.apply(Store(cpu, VA + cpu * 0x1000, 1))
    assert where(run) == [0, 1, 2, 3, -14, -14, -14, -14]


def test_bind_takes_the_nearest_allowed_node_and_fails_when_full() -> None:
    """Bind {0,3} from node 2's CPU goes to node 3 (20 beats 30), as the four-node guest showed; full: ENOMEM."""
    run = started(Config(frames=64, cpus=4, max_order=2, nodes=4, distances=DISTANCES), pages=30)
    run.apply(SetMempolicy(1, "bind", (0, 3)))
    results = [run.apply(Store(2, VA + i * 0x1000, 1)) for i in range(30)]
    nodes = where(run, 30)
    assert nodes[0] == 3
    assert {"error": "ENOMEM"} in results
    assert all(n in (0, 3) for n in nodes if n >= 0)


def test_preferred_falls_back_and_counts_misses_and_foreigns() -> None:
    """Preferred {0} with node 0 full: the next node of node 0's zonelist, a miss there and a foreign on node 0."""
    run = started(Config(frames=64, cpus=4, max_order=2, nodes=4, distances=DISTANCES), pages=12)
    run.apply(SetMempolicy(1, "preferred", (0,)))
    for i in range(12):
        run.apply(Store(3, VA + i * 0x1000, 1))
    nodes = where(run, 12)
    assert nodes[0] == 0 and 1 in nodes and 3 not in nodes
    stats = run.apply(Numastat())["nodes"]
    assert stats[1]["numa_miss"] > 0 and stats[0]["numa_foreign"] == sum(s["numa_miss"] for s in stats)
    assert all(s["numa_hit"] + s["numa_miss"] == s["local_node"] + s["other_node"] for s in stats[1:])


def test_interleave_goes_by_the_low_32_bits_of_the_page_number() -> None:
    """mbind interleave {1,2,3}: page ``vpn`` on the ``(vpn & 0xffffffff) % 3``-th node (Linux 6.1)."""
    run = started()
    assert run.apply(Mbind(1, VA, 8, "interleave", (1, 2, 3))) == {"ok": True}
    for i in range(8):
        run.apply(Store(0, VA + i * 0x1000, 1))
    expected = [(1, 2, 3)[(((VA >> 12) + i) & 0xFFFFFFFF) % 3] for i in range(8)]
    assert where(run) == expected
    stats = run.apply(Numastat())["nodes"]
    assert [s["interleave_hit"] for s in stats] == [0, *(expected.count(n) for n in (1, 2, 3))]


def test_task_interleave_uses_the_offset_for_pages_and_round_robin_for_tables() -> None:
    """A process interleave policy places a VMA's pages by offset too (the guest's 'task interleave' case)."""
    run = started(pages=4)
    run.apply(SetMempolicy(1, "interleave", (0, 2)))
    for i in range(4):
        run.apply(Store(1, VA + i * 0x1000, 1))
    assert where(run, 4) == [(0, 2)[((VA >> 12) + i) % 2] for i in range(4)]


@pytest.mark.parametrize(
    ("mode", "nodes", "flags", "answer"),
    [
        ("bind", (), (), {"error": "EINVAL"}),
        ("bind", (5,), (), {"error": "EINVAL"}),
        ("preferred", (), ("static",), {"error": "EINVAL"}),
        ("default", (1,), (), {"error": "EINVAL"}),
        ("local", (1,), (), {"error": "EINVAL"}),
        ("bind", (1,), ("static", "relative"), {"error": "EINVAL"}),
        ("bind", (1,), ("static",), {"ok": True}),
        ("preferred", (), (), {"ok": True}),
    ],
)
def test_set_mempolicy_answers_as_linux_does(
    mode: str, nodes: tuple[int, ...], flags: tuple[str, ...], answer: object
) -> None:
    """The guest's set_mempolicy answers (docs/numa-oracle.md), and a failure changes nothing."""
    run = started(TWO)
    before = run.apply(GetMempolicy(1))
    assert run.apply(SetMempolicy(1, mode, nodes, flags)) == answer
    if "error" in answer:  # type: ignore[operator]
        assert run.apply(GetMempolicy(1)) == before


def test_readback_of_preferred_without_nodes_is_local_and_static_keeps_the_flag() -> None:
    run = started(TWO)
    run.apply(SetMempolicy(1, "preferred", ()))
    assert run.apply(GetMempolicy(1)) == {"mode": "local", "nodes": [], "static": False, "relative": False}
    run.apply(SetMempolicy(1, "bind", (1, 7), ("static",)))
    assert run.apply(GetMempolicy(1)) == {"mode": "bind", "nodes": [1, 7], "static": True, "relative": False}


def test_mbind_checks_its_range() -> None:
    """Misaligned: EINVAL; empty: ok; a hole: EFAULT; get_mempolicy at an unmapped address: EFAULT."""
    run = started(TWO, pages=4)
    assert run.apply(Mbind(1, VA + 8, 1, "bind", (0,))) == {"error": "EINVAL"}
    assert run.apply(Mbind(1, VA, 0, "bind", ())) == {"ok": True}
    assert run.apply(Mbind(1, VA, 5, "bind", (0,))) == {"error": "EFAULT"}
    assert run.apply(GetMempolicy(1, VA + 0x10000)) == {"error": "EFAULT"}
    assert run.apply(Mbind(1, VA + 0x1000, 2, "bind", (1,))) == {"ok": True}
    assert run.apply(GetMempolicy(1, VA + 0x1000))["mode"] == "bind"
    assert run.apply(GetMempolicy(1, VA))["mode"] == "default"


def test_mbind_on_a_shared_mapping_is_not_modelled() -> None:
    run = started(TWO, pages=1)
    run.apply(Mmap(1, VA + 0x10000, 1, "rw-", True))
    with pytest.raises(NotModelled):
        run.apply(Mbind(1, VA + 0x10000, 1, "bind", (0,)))


def test_fork_inherits_both_policies_and_a_new_mapping_has_none() -> None:
    run = started(TWO, pages=2)
    run.apply(SetMempolicy(1, "bind", (1,)))
    run.apply(Mbind(1, VA, 1, "preferred", (0,)))
    child = run.apply(Fork(1))["pid"]
    assert run.apply(GetMempolicy(child)) == {"mode": "bind", "nodes": [1], "static": False, "relative": False}
    assert run.apply(GetMempolicy(child, VA))["mode"] == "preferred"
    run.apply(Munmap(1, VA, 1))
    run.apply(Mmap(1, VA, 1, "rw-", False))
    assert run.apply(GetMempolicy(1, VA))["mode"] == "default"
    run.apply(Exit(child))


def test_numa_maps_and_numastat_p() -> None:
    """numa_maps prints the policy and the pages per node as show_numa_map does; numastat -p sums them."""
    run = started(TWO, pages=4)
    run.apply(Store(0, VA, 1))
    run.apply(Store(1, VA + 0x1000, 1))
    run.apply(SetMempolicy(1, "interleave", (0, 1)))
    assert run.apply(NumaMaps(1)) == {
        "lines": [f"{VA:08x} interleave:0-1 anon=2 dirty=2 active=0 N0=1 N1=1 kernelpagesize_kB=4"]
    }
    assert run.apply(NumastatP(1)) == {"pages": [1, 1]}


def test_one_node_keeps_every_counter_on_node_zero() -> None:
    """The default config has one node: every allocation is a local hit."""
    run = started(Config(frames=64, cpus=2), pages=2)
    run.apply(Store(1, VA, 1))
    (stats,) = run.apply(Numastat())["nodes"]
    assert stats["numa_hit"] == stats["local_node"] > 0 and stats["numa_miss"] == stats["other_node"] == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"frames": 48, "nodes": 2, "max_order": 4, "cpus": 2}, "multiple of 2**max_order"),
        ({"frames": 64, "nodes": 2, "max_order": 4, "cpus": 3}, "CPUs do not split"),
        ({"frames": 64, "nodes": 2, "max_order": 4, "cpus": 2, "distances": [[10, 20], [20, 11]]}, "distances[1][1]"),
        ({"frames": 64, "nodes": 2, "max_order": 4, "cpus": 2, "distances": [[10, 20]]}, "2 rows"),
        ({"frames": 64, "nodes": 9}, "allowed 0x1 .. 0x8"),
    ],
)
def test_bad_node_configs_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("*", r"\*").replace("[", r"\[").replace("]", r"\]")):
        Config.from_json(config)


def test_a_config_with_nodes_round_trips() -> None:
    raw = {"frames": 64, "cpus": 2, "max_order": 4, "nodes": 2, "distances": [[10, 21], [21, 10]]}
    assert Config.from_json(Config.from_json(raw).to_json()) == Config.from_json(raw)
    assert Config.from_json(raw).to_json()["distances"] == raw["distances"]
    assert "nodes" not in Config(frames=16).to_json()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"op": "set_mempolicy", "pid": 1, "policy": "nope"}, "policy"),
        ({"op": "set_mempolicy", "pid": 1, "policy": "bind", "nodes": [1024]}, "nodes[0]"),
        ({"op": "set_mempolicy", "pid": 1, "policy": "bind", "nodes": [0], "flags": ["move"]}, "flags[0]"),
        ({"op": "mbind", "pid": 1, "va": "0x1000", "policy": "bind"}, "pages"),
    ],
)
def test_bad_numa_ops_name_the_field(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ScenarioError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_op(raw, "ops[0]")


def test_unknown_pid_changes_nothing() -> None:
    run = started(TWO, pages=1)
    with pytest.raises(MMCheckError):
        run.apply(SetMempolicy(9, "bind", (0,)))


def test_the_counter_invariant_sees_a_swap() -> None:
    """counter_violations reports counters that do not add up (a numa_miss without its numa_foreign)."""
    run = started(TWO, pages=1)
    k = run.spec.kernel.kernel
    assert k is not None and numa_invariants.violations(k) == []
    from dataclasses import replace

    stats = (replace(k.numa.stats[0], numa_miss=1), *k.numa.stats[1:])
    broken = replace(k, numa=replace(k.numa, stats=stats))
    assert any("numa_foreign" in v for v in numa_invariants.violations(broken))


def test_placement_invariant_sees_a_bound_page_outside_its_nodes() -> None:
    run = started(TWO, pages=1)
    run.apply(SetMempolicy(1, "bind", (1,)))
    before = run.spec.kernel.kernel
    run.apply(Store(0, VA, 1))
    after = run.spec.kernel.kernel
    assert before is not None and after is not None
    pfn = run.impl.kernel.choices()[("page", 1, VA >> 12, 0)]
    assert numa_invariants.placement_violations(before, after, {("page", 1, VA >> 12, 0): pfn}) == []
    assert numa_invariants.placement_violations(before, after, {("page", 1, VA >> 12, 0): 6})


def test_policy_helpers() -> None:
    assert mp.relative_nodes((0, 2, 5), (1, 3)) == (1, 3)
    assert mp.next_node_in(1023, (1, 3)) == 1 and mp.next_node_in(3, (1, 3)) == 1
    assert mp.new_policy("preferred", (3, 1), (), 4) == mp.Policy("preferred", (1,))


def test_compare_counts_a_disagreement() -> None:
    """The guest comparison is not vacuous: a node the model does not give is counted against it."""
    topology = numa_compare.topology_of(2)
    case = Case("c", ({"op": "mmap", "region": 0, "pages": 2}, {"op": "touch", "region": 0, "page": 0, "cpu": 1},
                      {"op": "where", "region": 0}, {"op": "get_mempolicy"}))  # fmt: skip
    answers = [{"step": 0, "start": VA, "pages": 2}, {"step": 1, "cpu": 1}, {"step": 2, "nodes": [1, -14]},
               {"step": 3, "mode": "default", "nodes": []}]  # fmt: skip
    good = Run({}, {"c": CaseRun("c", answers)}, 0.0, "")
    assert numa_compare.compare([case], good, topology).agreed == 1
    answers[2] = {"step": 2, "nodes": [0, -14]}
    bad = Run({}, {"c": CaseRun("c", answers)}, 0.0, "")
    found = numa_compare.compare([case], bad, topology)
    assert (found.agreed, found.pages_agreed, found.pages) == (0, 1, 2)


def test_generated_cases_are_ones_the_guest_takes() -> None:
    cases = numa_compare.generate(5, 20, numa_compare.topology_of(4))
    assert guest.script(cases).count("\ncase ") == 19


@requires("qemu", guest.missing_tools())
@pytest.mark.qemu
@pytest.mark.slow
def test_generated_policy_cases_agree_with_the_guest() -> None:
    """Forty generated cases on four nodes: every page's node, call result and policy as the 6.1 guest answers."""
    topology = numa_compare.topology_of(4)
    cases = numa_compare.generate(11, 40, topology)
    started_at = time.monotonic()
    try:
        run = guest.run(cases, topology)
    except OracleUnavailable as exc:
        skip_without("linux-image-amd64", str(exc))
    agreement = numa_compare.compare(cases, run, topology)
    assert agreement.agreed == agreement.cases == 40, agreement.differences
    print(f"numa guest comparison: {agreement.summary()} in {time.monotonic() - started_at:.1f} s")


@pytest.mark.parametrize("seed", range(12))
def test_the_which_node_quiz_rule_matches_the_run(seed: int) -> None:
    """Every worked answer's rule gives the node spec and implementation put the page on."""
    from mmcheck.views import quiz_numa

    quiz = quiz_numa.generate(seed, 4)
    assert [placed for _, placed, _, _ in quiz_numa.solve(quiz)] == [node for _, _, node, _ in quiz_numa.solve(quiz)]
    assert any("node" in line for line in quiz_numa.render(quiz, True))
