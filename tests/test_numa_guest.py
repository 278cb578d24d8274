"""The NUMA oracle: Debian's kernel under QEMU with several nodes, and what it answers.

The unit tests (topology, script, cpio, parsing) need nothing installed.  The
guest tests boot the kernel once per module fixture and assert the kernel's
known answers, each derived in its docstring from the Linux source; the
two-node boot (about 12 s under TCG) runs with the ``qemu`` tests, the
four-node boot with distances and a node filled to its watermark is ``slow``.
Without qemu-system-x86_64, gcc or the kernel package they skip saying why.
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dependencies import requires, skip_without

from lang.errors import ConfigError, OracleError, OracleUnavailable, OracleUnsupported
from oracles.numa import guest
from oracles.numa.guest import Case, Run, Topology, numastat_delta

MISSING = guest.missing_tools()
needs_qemu = requires("qemu", MISSING)
# One worker runs every guest test, so each boot happens once under xdist (module fixtures are per worker).
pytestmark = pytest.mark.xdist_group("numa-guest")
PAGE_SHIFT = 12
TIMES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """One line at the end: the kernel that booted, each topology, and its boot+run wall time."""
    yield
    if TIMES:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\nnuma oracle: " + "; ".join(TIMES))


def boot(cases: list[Case], topology: Topology) -> Run:
    """Run ``cases`` in one boot, or skip when the kernel package cannot be had."""
    started = time.monotonic()
    try:
        result = guest.run(cases, topology)
    except OracleUnavailable as exc:
        skip_without("linux-image-amd64", str(exc))
    total = time.monotonic() - started
    TIMES.append(
        f"kernel {result.release}, {topology.nodes} nodes x {topology.cpus_per_node} CPU x {topology.mib_per_node} MiB:"
        f" {len(cases)} cases, QEMU boot+run {result.seconds:.1f} s ({total:.1f} s in all)"
    )
    return result


def case(name: str, *steps: dict[str, Any]) -> Case:
    return Case(name, steps)


def mmap(region: int, pages: int) -> dict[str, Any]:
    return {"op": "mmap", "region": region, "pages": pages}


def touch(page: int, cpu: int, region: int = 0) -> dict[str, Any]:
    return {"op": "touch", "region": region, "page": page, "cpu": cpu}


def fill(first: int, count: int, cpu: int, region: int = 0) -> dict[str, Any]:
    return {"op": "fill", "region": region, "first": first, "count": count, "cpu": cpu}


def mbind(first: int, count: int, mode: str, nodes: list[int], *flags: str, region: int = 0) -> dict[str, Any]:
    return {
        "op": "mbind", "region": region, "first": first, "count": count, "mode": mode, "nodes": nodes,
        "flags": list(flags),
    }  # fmt: skip


WHERE = {"op": "where", "region": 0}
NUMASTAT = {"op": "numastat"}


def interleave_node(nodes: list[int], start: int, page: int, release: str) -> int:
    """The node the kernel ``release`` interleaves page ``page`` of an anonymous private mapping at ``start`` to.

    The index is the page's offset in its VMA's file space: ``vm_pgoff +
    ((addr - vm_start) >> PAGE_SHIFT)``, and ``do_mmap`` (``mm/mmap.c``) sets
    ``vm_pgoff = addr >> PAGE_SHIFT`` for a private anonymous mapping (a
    split keeps it in step with ``vm_start``), so it is the page's virtual
    page number.  The node is the ``index % weight``-th node of the mask in
    ascending order.  The two kernels differ in the width of the index:

    - Linux 6.1 ``mm/mempolicy.c`` ``interleave_nid`` passes it to
      ``offset_il_node``, which computes ``(unsigned int)n % nnodes``: the
      index is cut to its low 32 bits (a user address's page number has 35);
    - Linux 6.12 ``get_vma_policy`` builds the same index as a ``pgoff_t`` and
      ``interleave_nid`` computes ``ilx % nnodes`` on all of it.

    With two nodes the cut does not matter (only the low bit counts); with three it does.
    """
    version = tuple(int(part) for part in release.split("-")[0].split(".")[:2])
    index = (start >> PAGE_SHIFT) + page
    if version == (6, 1):
        index &= 0xFFFFFFFF
    elif version != (6, 12):
        pytest.skip(f"no interleave index rule recorded for kernel {release} (6.1 and 6.12 are)")
    ordered = sorted(nodes)
    return ordered[index % len(ordered)]


# ---- the two-node boot ---------------------------------------------------------------------------------------------

TWO = Topology(nodes=2, cpus_per_node=1, mib_per_node=128)
TWO_CASES = [
    case("first-touch", mmap(0, 2), touch(0, cpu=1), touch(1, cpu=0), WHERE),
    case("bind", mmap(0, 64), mbind(0, 64, "bind", [0]), NUMASTAT, fill(0, 64, cpu=1), NUMASTAT, WHERE,
         {"op": "get_mempolicy_addr", "region": 0, "page": 3}, {"op": "node_of", "region": 0, "page": 3}),
    case("preferred", mmap(0, 64), mbind(0, 64, "preferred", [0]), NUMASTAT, fill(0, 64, cpu=1), NUMASTAT, WHERE),
    case("local", mmap(0, 64), NUMASTAT, fill(0, 64, cpu=1), NUMASTAT, WHERE),
    case("interleave", mmap(0, 10), mbind(3, 7, "interleave", [0, 1]), NUMASTAT,
         *[touch(i, cpu=0) for i in range(10)], NUMASTAT, WHERE),
    case("migrate", mmap(0, 3), fill(0, 3, cpu=0), WHERE,
         {"op": "migrate", "region": 0, "first": 1, "count": 1, "node": 1},
         WHERE, {"op": "migrate", "region": 0, "first": 0, "count": 1, "node": 7}),
    case("mbind-move", mmap(0, 4), fill(0, 4, cpu=0), mbind(0, 4, "bind", [1]), WHERE, mbind(0, 4, "bind", [1], "move"),
         WHERE),
    case("policies",
         {"op": "get_mempolicy"},
         {"op": "set_mempolicy", "mode": "bind", "nodes": []},
         {"op": "set_mempolicy", "mode": "bind", "nodes": [5]},
         {"op": "set_mempolicy", "mode": "preferred", "nodes": []},
         {"op": "get_mempolicy"},
         {"op": "set_mempolicy", "mode": "preferred", "nodes": [], "flags": ["static"]},
         {"op": "set_mempolicy", "mode": "bind", "nodes": [1], "flags": ["static"]},
         {"op": "get_mempolicy"},
         mmap(0, 2), touch(0, cpu=0), WHERE),
]  # fmt: skip


@pytest.fixture(scope="module")
def two() -> Run:
    return boot(TWO_CASES, TWO)


def answers(run: Run, name: str, op: str) -> list[dict[str, Any]]:
    """Every answer of case ``name`` to steps ``op``, in order; each must be a success."""
    found = [s for s in run.cases[name].steps if s["op"] == op]
    assert found, f"case {name} answered no {op} step"
    return found


@needs_qemu
@pytest.mark.qemu
def test_the_kernel_sees_the_topology(two: Run) -> None:
    """The kernel's nodes, CPUs and distances are QEMU's (``guest.run`` checks them), and each node has its memory."""
    nodes = two.topology["nodes"]
    assert [n["cpulist"] for n in nodes] == ["0", "1"]
    assert [n["distance"] for n in nodes] == ["10 20", "20 10"]
    assert all(64 * 1024 < n["memtotal_kb"] <= 128 * 1024 for n in nodes)
    assert two.release.endswith("-amd64")


@needs_qemu
@pytest.mark.qemu
def test_first_touch_lands_on_the_touching_cpus_node(two: Run) -> None:
    """Default policy: a fault allocates on the faulting CPU's node (``mm/mempolicy.c`` ``alloc_pages_mpol``/6.1
    ``vma_alloc_folio`` with ``numa_node_id()``)."""
    assert answers(two, "first-touch", "where")[0]["nodes"] == [1, 0]
    assert [t["cpu"] for t in answers(two, "first-touch", "touch")] == [1, 0]


@needs_qemu
@pytest.mark.qemu
def test_bind_keeps_pages_on_the_bound_node(two: Run) -> None:
    """MPOL_BIND {0} touched from node 1's CPU: every page on node 0 (``policy_nodemask`` filters the zonelist).

    The counters (``mm/page_alloc.c`` ``zone_statistics``): the preferred zone
    is the first zone of node 1's zonelist inside the mask, node 0's, so each
    page is a ``numa_hit`` on node 0 and, the CPU being on node 1, an
    ``other_node``; no ``numa_miss`` anywhere.
    """
    assert answers(two, "bind", "where")[0]["nodes"] == [0] * 64
    policy = answers(two, "bind", "get_mempolicy_addr")[0]
    assert (policy["mode"], policy["nodes"]) == ("bind", [0])
    assert answers(two, "bind", "node_of")[0]["node"] == 0
    before, after = answers(two, "bind", "numastat")
    delta = numastat_delta(before, after)
    assert 64 <= delta[0]["numa_hit"] <= 64 + 8
    assert 64 <= delta[0]["other_node"] <= 64 + 8
    assert delta[0]["local_node"] + delta[0]["other_node"] == delta[0]["numa_hit"] + delta[0]["numa_miss"]
    assert delta[0]["numa_miss"] == delta[1]["numa_miss"] == 0


@needs_qemu
@pytest.mark.qemu
def test_preferred_with_room_counts_like_bind_and_local_counts_local(two: Run) -> None:
    """MPOL_PREFERRED {0} from node 1 with node 0 free: the same placement and counters as bind.

    ``policy_nodemask`` sets the preferred nid to 0, so the preferred zone is
    node 0's and every page is a hit there, ``other_node`` for a CPU of node 1.
    The default policy from node 1 counts ``numa_hit`` and ``local_node`` on node 1.
    """
    assert answers(two, "preferred", "where")[0]["nodes"] == [0] * 64
    preferred = numastat_delta(*answers(two, "preferred", "numastat"))
    assert 64 <= preferred[0]["numa_hit"] <= 72 and 64 <= preferred[0]["other_node"] <= 72
    assert preferred[0]["numa_miss"] == preferred[1]["numa_miss"] == 0
    assert answers(two, "local", "where")[0]["nodes"] == [1] * 64
    local = numastat_delta(*answers(two, "local", "numastat"))
    assert 64 <= local[1]["numa_hit"] <= 72 and 64 <= local[1]["local_node"] <= 72
    assert local[0]["numa_hit"] <= 8 and local[1]["other_node"] == 0


@needs_qemu
@pytest.mark.qemu
def test_interleave_follows_the_page_offset(two: Run) -> None:
    """MPOL_INTERLEAVE {0,1} on pages 3..9 of a mapping: page i on node ``(vpn) % 2`` (:func:`interleave_node`).

    Pages 0..2 keep the default policy (the touching CPU is on node 0), and
    each interleaved page that lands on its interleave node counts one
    ``interleave_hit`` there (6.1 ``alloc_page_interleave``; 6.12 ``alloc_pages_mpol``).
    """
    start = answers(two, "interleave", "mmap")[0]["start"]
    expected = [0, 0, 0, *[interleave_node([0, 1], start, page, two.release) for page in range(3, 10)]]
    assert answers(two, "interleave", "where")[0]["nodes"] == expected
    delta = numastat_delta(*answers(two, "interleave", "numastat"))
    assert [delta[n]["interleave_hit"] for n in (0, 1)] == [expected[3:].count(0), expected[3:].count(1)]


@needs_qemu
@pytest.mark.qemu
def test_move_pages_migrates_and_reports_the_new_node(two: Run) -> None:
    """``move_pages`` to node 1 moves one page (status 1, return 0); to a node that does not exist, ENODEV.

    ``mm/migrate.c`` ``do_pages_move``: a target node that is not possible or
    has no memory fails the call with -ENODEV.
    """
    first, second = answers(two, "migrate", "where")
    assert first["nodes"] == [0, 0, 0]
    moved, nowhere = answers(two, "migrate", "migrate")
    assert (moved["returned"], moved["status"]) == (0, [1])
    assert second["nodes"] == [0, 1, 0]
    assert nowhere["error"] == "ENODEV"


@needs_qemu
@pytest.mark.qemu
def test_mbind_moves_only_with_mpol_mf_move(two: Run) -> None:
    """mbind without MPOL_MF_MOVE leaves placed pages where they are; with it they move (``do_mbind``)."""
    without, with_move = answers(two, "mbind-move", "where")
    assert without["nodes"] == [0, 0, 0, 0]
    assert with_move["nodes"] == [1, 1, 1, 1]


@needs_qemu
@pytest.mark.qemu
def test_set_mempolicy_answers(two: Run) -> None:
    """``mpol_new`` (``mm/mempolicy.c``): bind with no nodes is EINVAL; a node that is not online is EINVAL
    (``mpol_set_nodemask`` masks it with the allowed nodes, ``mpol_new_nodemask`` refuses the empty result);
    preferred with no nodes becomes local, but not with MPOL_F_STATIC_NODES; a page bound to node 1 lands there."""
    steps = two.cases["policies"].steps
    results = [s.get("error", s.get("mode", "ok")) for s in steps if s["op"] in ("set_mempolicy", "get_mempolicy")]
    assert results == ["default", "EINVAL", "EINVAL", "ok", "local", "EINVAL", "ok", "bind"]
    assert answers(two, "policies", "get_mempolicy")[-1]["static"] is True
    assert answers(two, "policies", "where")[0]["nodes"] == [1, untouched_status(two.release)]


def untouched_status(release: str) -> int:
    """``move_pages``' status for a mapped page never touched.

    Linux 6.1 ``mm/migrate.c`` ``do_pages_stat_array`` passes on the error of
    ``follow_page(vma, addr, FOLL_GET | FOLL_DUMP)``, -EFAULT for an empty
    entry with FOLL_DUMP (``mm/gup.c`` ``no_page_table``); 6.12's finds no folio
    with ``folio_walk_start`` and answers -ENOENT.
    """
    version = tuple(int(part) for part in release.split("-")[0].split(".")[:2])
    if version not in ((6, 1), (6, 12)):
        pytest.skip(f"no move_pages status recorded for an untouched page on kernel {release} (6.1 and 6.12 are)")
    return -14 if version == (6, 1) else -2


@needs_qemu
@pytest.mark.qemu
def test_a_guest_that_does_not_finish_in_time_is_an_error() -> None:
    """QEMU is stopped at the timeout and the error says so (no answer is made up)."""
    try:
        guest.build()
    except OracleUnavailable as exc:
        skip_without("linux-image-amd64", str(exc))
    with pytest.raises(OracleError, match="did not power off within 1 s"):
        guest.run([case("late", NUMASTAT)], TWO, timeout=1.0)


# ---- the four-node boot --------------------------------------------------------------------------------------------

FOUR = Topology(
    nodes=4,
    cpus_per_node=2,
    mib_per_node=128,
    distances=((10, 20, 30, 40), (20, 10, 20, 30), (30, 20, 10, 20), (40, 30, 20, 10)),
)
SPILL = 120 * 256  # 120 MiB of pages preferring node 0, more than node 0 has free
FOUR_CASES = [
    case("first-touch-each-cpu", mmap(0, 8), *[touch(cpu, cpu=cpu) for cpu in range(8)], WHERE),
    case("bind-nearest", mmap(0, 8), mbind(0, 8, "bind", [0, 3]), fill(0, 8, cpu=FOUR.node_cpus(2)[1]), WHERE),
    case("preferred-many", mmap(0, 8), mbind(0, 8, "preferred_many", [0, 3]), fill(0, 8, cpu=FOUR.node_cpus(1)[0]),
         WHERE),
    case("interleave-3", mmap(0, 12), mbind(0, 12, "interleave", [1, 2, 3]), fill(0, 12, cpu=0), WHERE),
    case("task-interleave", {"op": "set_mempolicy", "mode": "interleave", "nodes": [0, 2, 3]}, mmap(0, 9),
         fill(0, 9, cpu=FOUR.node_cpus(1)[1]), WHERE),
    case("spill", {"op": "meminfo"}, mmap(0, SPILL), mbind(0, SPILL, "preferred", [0]), NUMASTAT,
         fill(0, SPILL, cpu=FOUR.node_cpus(0)[1]), NUMASTAT, WHERE),
]  # fmt: skip


@pytest.fixture(scope="module")
def four() -> Run:
    return boot(FOUR_CASES, FOUR)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_four_nodes_with_distances(four: Run) -> None:
    """The SLIT QEMU builds from ``-numa dist`` is what the kernel reports in ``nodeN/distance``; two CPUs a node,
    and a first touch from each CPU lands on that CPU's node."""
    assert [n["distance"] for n in four.topology["nodes"]] == [" ".join(map(str, row)) for row in FOUR.distances]
    assert [n["cpulist"] for n in four.topology["nodes"]] == ["0-1", "2-3", "4-5", "6-7"]
    assert [t["cpu"] for t in answers(four, "first-touch-each-cpu", "touch")] == list(range(8))
    assert answers(four, "first-touch-each-cpu", "where")[0]["nodes"] == [FOUR.node_of_cpu(c) for c in range(8)]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_bind_and_preferred_many_take_the_nearest_allowed_node(four: Run) -> None:
    """Bind {0,3} from node 2 lands on node 3 (distance 20, not 30); preferred-many {0,3} from node 1 on node 0.

    The zonelist of a node lists the others nearest first (``mm/page_alloc.c``
    ``build_zonelists``, ``find_next_best_node``), and the allocation takes the
    first zone inside the mask.
    """
    assert answers(four, "bind-nearest", "where")[0]["nodes"] == [3] * 8
    assert answers(four, "preferred-many", "where")[0]["nodes"] == [0] * 8


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_interleave_over_three_nodes_and_task_interleave(four: Run) -> None:
    """VMA interleave over {1,2,3} and task interleave over {0,2,3} follow the page's offset (32 bits of it on 6.1).

    A fault under the task policy goes through the same offset (6.1
    ``vma_alloc_folio`` calls ``interleave_nid`` with the VMA; 6.12
    ``get_vma_policy`` adds the offset for the task policy too), not the
    per-task round robin ``interleave_nodes``.
    """
    for name, nodes in (("interleave-3", [1, 2, 3]), ("task-interleave", [0, 2, 3])):
        start = answers(four, name, "mmap")[0]["start"]
        pages = answers(four, name, "mmap")[0]["pages"]
        assert answers(four, name, "where")[0]["nodes"] == [
            interleave_node(nodes, start, p, four.release) for p in range(pages)
        ]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_preferred_spills_to_the_nearest_node_and_counts_misses(four: Run) -> None:
    """Preferred {0} for more than node 0 has free: the rest goes to node 1, the next in node 0's zonelist.

    Each page off node 0 is a ``numa_miss`` on the node it lands on and a
    ``numa_foreign`` on node 0 (``zone_statistics``: the preferred zone is
    node 0's); every miss counts one foreign, so the sums agree exactly.  The
    counters may exceed the region's pages by the page-table pages the faults
    allocate once node 0 is full (one per 512 pages, under the default task
    policy, so also spilled) and a few kernel allocations meanwhile.
    """
    free = answers(four, "spill", "meminfo")[0]["meminfo"]
    assert int(free["0"]["free_kb"]) < SPILL * 4
    counts = Counter(answers(four, "spill", "where")[0]["nodes"])
    assert set(counts) == {0, 1} and counts[1] > 0
    delta = numastat_delta(*answers(four, "spill", "numastat"))
    assert sum(d["numa_miss"] for d in delta.values()) == sum(d["numa_foreign"] for d in delta.values())
    slack = SPILL // 512 + 16
    assert counts[1] <= delta[1]["numa_miss"] <= counts[1] + slack
    assert counts[1] <= delta[0]["numa_foreign"] <= counts[1] + slack
    assert counts[0] <= delta[0]["numa_hit"] <= counts[0] + slack


# ---- without QEMU --------------------------------------------------------------------------------------------------


def test_topology_options() -> None:
    args = FOUR.qemu_args()
    assert args[:4] == ["-smp", "8,sockets=4,cores=2,threads=1", "-m", "512M"]
    assert "node,nodeid=2,cpus=4-5,memdev=mem2" in args
    assert "dist,src=0,dst=3,val=40" in args and "dist,src=3,dst=0,val=40" in args
    assert Topology(nodes=2, cpus_per_node=2).node_cpus(1) == range(2, 4)
    assert Topology(nodes=3).matrix()[0] == (10, 20, 20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0}, "nodes=0"),
        ({"cpus_per_node": 5}, "cpus_per_node=5"),
        ({"mib_per_node": 32}, "mib_per_node=32"),
        ({"distances": ((10, 20),)}, "2x2 matrix"),
        ({"distances": ((10, 20), (20, 11))}, "distances[1][1]=11"),
        ({"distances": ((10, 5), (20, 10))}, "distances[0][1]=5"),
    ],
)
def test_bad_topologies_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Topology(**kwargs)


def test_script_lines() -> None:
    text = guest.script(TWO_CASES[:2])
    assert text.splitlines()[:6] == [
        "case first-touch", "mmap 0 2", "touch 0 0 1", "touch 0 1 0", "where 0", "case bind",
    ]  # fmt: skip
    assert "mbind 0 0 64 bind 0" in text
    moving = guest.script([case("m", mmap(0, 4), mbind(1, 3, "interleave", [1, 0], "move", "static"))])
    assert moving.splitlines()[-1] == "mbind 0 1 3 interleave 0,1 move static"
    assert guest.script([case("p", {"op": "set_mempolicy", "mode": "local", "nodes": []})]).endswith("local -\n")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"op": "fork"}], "op 'fork' is not one of"),
        ([touch(0, cpu=0)], "region 0 is not mapped yet"),
        ([mmap(0, 2), mmap(0, 2)], "region 0 is already mapped"),
        ([mmap(0, 2), touch(2, cpu=0)], "page=2 must be an integer 0..1"),
        ([mmap(0, 2), mbind(1, 2, "bind", [0])], "count=2 must be an integer 1..1"),
        ([mmap(0, 2), mbind(0, 2, "weighted", [0])], "mode='weighted' must be one of"),
        ([mmap(0, 2), mbind(0, 2, "bind", [64])], "must be node numbers 0..63"),
        ([{"op": "set_mempolicy", "mode": "bind", "nodes": [0], "flags": ["move"]}], "flags=\\['move'\\]"),
        ([{"op": "numastat", "node": 1}], "unknown keys \\['node'\\]"),
        ([mmap(0, 0)], "pages=0 must be an integer 1..65536"),
    ],
)
def test_bad_steps_are_refused(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(OracleUnsupported, match=message):
        guest.script([case("bad", *steps)])


def test_bad_cases_are_refused() -> None:
    with pytest.raises(OracleUnsupported, match="no cases"):
        guest.script([])
    with pytest.raises(OracleUnsupported, match="case names must differ"):
        guest.script([case("a"), case("a")])
    with pytest.raises(OracleUnsupported, match="case name 'a b'"):
        case("a b")


def test_cpio_newc_layout() -> None:
    """Each header is "070701" and 13 eight-digit hex fields, names and data padded to 4 bytes (``cpio(5)``)."""
    archive = guest.cpio_newc([("dev/console", 0o020600, b"", (5 << 8) | 1), ("script", 0o100644, b"abc", 0)])
    assert len(archive) % 4 == 0
    pos, entries = 0, []
    while True:
        header = archive[pos : pos + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = archive[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        entries.append((name, fields[1], archive[pos : pos + size], fields[9], fields[10]))
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            break
    assert pos == len(archive)
    assert entries[:2] == [("dev/console", 0o020600, b"", 5, 1), ("script", 0o100644, b"abc", 0, 0)]


def test_parse_requires_the_end_and_reports_failures() -> None:
    topology = json.dumps({"topology": {"release": "x", "nodes": []}})
    line = json.dumps({"case": "c", "step": 0, "op": "numastat", "numastat": {}})
    found, cases = guest.parse([topology, "kernel noise", line, '{"case": "c", "exit": 0}', '{"done": true}'], "")
    assert found["release"] == "x" and cases["c"].exit == 0 and cases["c"].step(0)["op"] == "numastat"
    with pytest.raises(OracleError, match="no answer to step 1"):
        cases["c"].step(1)
    with pytest.raises(OracleError, match=r"(?s)did not run to its end.*panic"):
        guest.parse([topology, line], "Kernel panic - not syncing")
    with pytest.raises(OracleError, match="no /script"):
        guest.parse(['{"fatal": "no /script in the initramfs"}'], "")
    with pytest.raises(OracleError, match="not JSON"):
        guest.parse(["{oops"], "")


def test_check_topology_names_the_difference() -> None:
    nodes = [
        {"node": n, "cpulist": str(n), "distance": "10 20" if n == 0 else "20 10", "memtotal_kb": 1000} for n in (0, 1)
    ]
    guest.check_topology({"nodes": nodes}, Topology())
    with pytest.raises(OracleError, match=re.escape("found nodes [0], not 0..1")):
        guest.check_topology({"nodes": nodes[:1]}, Topology())
    with pytest.raises(OracleError, match=re.escape("node 0 has distances '10 20', not [10, 30]")):
        guest.check_topology({"nodes": nodes}, Topology(distances=((10, 30), (30, 10))))
    with pytest.raises(OracleError, match=re.escape("node 0 has CPUs '0', not '0-1'")):
        guest.check_topology({"nodes": nodes}, Topology(cpus_per_node=2))


def test_numastat_delta() -> None:
    before = {"numastat": {"0": {"numa_hit": 5, "numa_miss": 1}}}
    after = {"numastat": {"0": {"numa_hit": 9, "numa_miss": 1}}}
    assert numastat_delta(before, after) == {0: {"numa_hit": 4, "numa_miss": 0}}


def test_missing_tools_name_the_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert guest.missing_tools() == "qemu-system-x86_64 not found on PATH (apt-get install qemu-system-x86)"
    with pytest.raises(OracleUnavailable, match="qemu-system-x86_64 not found"):
        guest.kernel()


def test_the_cached_initramfs_holds_init() -> None:
    """The cached archive is gzip'd newc with /dev, /dev/console and a static /init, keyed by kernel and source."""
    if MISSING:
        skip_without("qemu", MISSING)
    try:
        built = guest.build()
    except OracleUnavailable as exc:
        skip_without("linux-image-amd64", str(exc))
    assert built.initramfs.parent.name.startswith(built.kernel.version + "-")
    archive = gzip.decompress(built.initramfs.read_bytes())
    assert b"dev/console\0" in archive and b"init\0" in archive and b"\x7fELF" in archive
    assert built.kernel.vmlinuz.name == f"vmlinuz-{built.kernel.version}"
    if built.kernel.boot != built.kernel.vmlinuz:
        assert guest.elf_has_pvh_entry(built.kernel.boot.read_bytes())


def elf_with_note(name: bytes, kind: int) -> bytes:
    """A minimal ELF64 file: its header, one PT_NOTE program header, and one note."""
    note = len(name).to_bytes(4, "little") + (4).to_bytes(4, "little") + kind.to_bytes(4, "little")
    note += name + b"\0" * (-len(name) % 4) + b"\0\0\0\1"
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    header[0x20:0x28] = (64).to_bytes(8, "little")
    header[0x36], header[0x38] = 56, 1
    program = bytearray(56)
    program[0:4] = (4).to_bytes(4, "little")
    program[8:16] = (64 + 56).to_bytes(8, "little")
    program[32:40] = len(note).to_bytes(8, "little")
    return bytes(header + program) + note


def bzimage(payload: bytes) -> bytes:
    """A bzImage shell: setup_sects=1, the payload right after the setup sectors (payload_offset 0)."""
    image = bytearray(1024)
    image[0x1F1] = 1
    image[0x24C:0x250] = len(payload).to_bytes(4, "little")
    return bytes(image) + payload


def test_vmlinux_comes_out_of_the_bzimage_with_its_pvh_note() -> None:
    pvh, xen_other, other = elf_with_note(b"Xen\0", 18), elf_with_note(b"Xen\0", 17), elf_with_note(b"GNU\0", 18)
    assert guest.elf_has_pvh_entry(pvh)
    assert not guest.elf_has_pvh_entry(xen_other) and not guest.elf_has_pvh_entry(other)
    assert not guest.elf_has_pvh_entry(b"MZ" + pvh[2:])
    assert guest.vmlinux_of(bzimage(lzma.compress(pvh, format=lzma.FORMAT_XZ))) == pvh
    assert guest.vmlinux_of(bzimage(gzip.compress(pvh))) == pvh
    assert guest.vmlinux_of(bzimage(b"\x28\xb5\x2f\xfd zstd")) is None
    assert guest.vmlinux_of(bzimage(b"\xfd7zXZ\0 broken")) is None


def test_a_kernel_without_the_pvh_note_boots_as_it_is(tmp_path: Path) -> None:
    vmlinuz = tmp_path / "vmlinuz-9.9"
    vmlinuz.write_bytes(bzimage(lzma.compress(elf_with_note(b"GNU\0", 18), format=lzma.FORMAT_XZ)))
    assert guest.boot_image(vmlinuz) == vmlinuz
    assert (tmp_path / "vmlinux-9.9.not-pvh").exists()
    good = tmp_path / "vmlinuz-9.8"
    good.write_bytes(bzimage(gzip.compress(elf_with_note(b"Xen\0", 18))))
    assert guest.boot_image(good) == tmp_path / "vmlinux-9.8"
    assert guest.elf_has_pvh_entry((tmp_path / "vmlinux-9.8").read_bytes())
