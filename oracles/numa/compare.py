"""Generated policy scenarios run on the model and in the QEMU NUMA guest, node placement compared exactly.

:func:`generate` draws cases from a seed: one region of 3 to 12 pages, perhaps a process policy
(``set_mempolicy``: any mode, node sets with offline nodes, the mode flags, the EINVAL cases included), perhaps
a VMA policy over part of the region (``mbind``), then writes to some of its pages from chosen CPUs, asks where
every page is (``move_pages`` with no nodes), perhaps moves some of them to a node (``move_pages`` to it: each
page's status) and asks again, and finally reads the process policy back.  The guest runs
them all in one boot (:func:`oracles.numa.guest.run`); then each case becomes a model scenario
(:func:`scenario_of`) with the region mapped at the address the guest's ``mmap`` returned (the interleave node
of a page depends on its page number), on a machine of the guest's nodes, CPUs and distances, and runs in
lockstep on the spec and the implementation (:class:`properties.drivers.Lockstep`, which fails at any
disagreement between them).  :func:`compare` counts the cases whose every answer matches: each call's success or
errno, each page's node (or -EFAULT for a page never written), each migration's statuses, the policy read back.

The cases stay far from a full node (the guest's nodes have 64 MiB and more), so no fallback and no
watermark, which the model does not have, comes into play.

    python -m oracles.numa.compare --seed 1 --cases 40 --nodes 4
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from lang.kernel_ops import Mmap, Spawn, Store, Switch
from lang.numa_ops import GetMempolicy, Mbind, MovePages, SetMempolicy
from lang.scenario import Config, Op, Scenario
from oracles.numa import guest
from oracles.numa.guest import Case, Run, Topology
from properties.drivers import Lockstep

MODES = ("default", "preferred", "bind", "interleave", "local", "preferred_many")
FLAG_SETS = ((), (), (), ("static",), ("relative",))
PAGE = 4096
FOUR_NODE_DISTANCES = ((10, 20, 30, 40), (20, 10, 20, 30), (30, 20, 10, 20), (40, 30, 20, 10))


def node_set(rng: random.Random, nodes: int) -> list[int]:
    """A node set: mostly online nodes, sometimes empty or with a node that is not online."""
    roll = rng.random()
    if roll < 0.08:
        return []
    chosen = sorted(rng.sample(range(nodes), rng.randint(1, nodes)))
    return [*chosen, nodes + 1] if roll > 0.92 else chosen


def generate(seed: int, count: int, topology: Topology) -> list[Case]:
    """``count`` cases drawn from ``seed`` (see the module docstring)."""
    rng = random.Random(seed)
    cpus = topology.nodes * topology.cpus_per_node
    cases = []
    for n in range(count):
        pages = rng.randint(3, 12)
        steps: list[dict[str, Any]] = [{"op": "mmap", "region": 0, "pages": pages}]
        if rng.random() < 0.7:
            mode = rng.choice(MODES)
            flags = list(rng.choice(FLAG_SETS))
            steps.append({"op": "set_mempolicy", "mode": mode, "nodes": node_set(rng, topology.nodes), "flags": flags})
        if rng.random() < 0.6:
            first = rng.randrange(pages)
            mbind = {"op": "mbind", "region": 0, "first": first, "count": rng.randint(1, pages - first)}
            mbind |= {"mode": rng.choice(MODES), "nodes": node_set(rng, topology.nodes), "flags": []}
            steps.append(mbind)
        for page in rng.sample(range(pages), rng.randint(1, pages)):
            steps.append({"op": "touch", "region": 0, "page": page, "cpu": rng.randrange(cpus)})
        steps.append({"op": "where", "region": 0})
        if rng.random() < 0.5:
            first = rng.randrange(pages)
            target = rng.randrange(topology.nodes + (1 if rng.random() < 0.1 else 0))
            steps.append(
                {"op": "migrate", "region": 0, "first": first, "count": rng.randint(1, pages - first), "node": target}
            )
            steps.append({"op": "where", "region": 0})
        steps.append({"op": "get_mempolicy"})
        cases.append(Case(f"gen{seed}-{n}", tuple(steps)))
    return cases


def model_config(topology: Topology) -> Config:
    """A model machine of the guest's nodes, CPUs and distances, 64 frames a node (room for every case)."""
    distances = topology.distances or None
    return Config(
        frames=64 * topology.nodes,
        cpus=topology.nodes * topology.cpus_per_node,
        max_order=4,
        nodes=topology.nodes,
        distances=distances,
    )


def scenario_of(case: Case, start: int, topology: Topology) -> Scenario:
    """The case as a model scenario, its region mapped at ``start`` (where the guest's mmap put it)."""
    config = model_config(topology)
    ops: list[Op] = [Spawn(), *(Switch(cpu, 1) for cpu in range(config.cpus))]
    pages = 0
    for step in case.steps:
        op = step["op"]
        if op == "mmap":
            pages = step["pages"]
            ops.append(Mmap(1, start, pages, "rw-", False))
        elif op == "set_mempolicy":
            ops.append(SetMempolicy(1, step["mode"], tuple(step["nodes"]), tuple(step["flags"])))
        elif op == "mbind":
            va = start + step["first"] * PAGE
            ops.append(Mbind(1, va, step["count"], step["mode"], tuple(step["nodes"]), tuple(step["flags"])))
        elif op == "touch":
            ops.append(Store(step["cpu"], start + step["page"] * PAGE, 1))
        elif op == "where":
            ops.append(MovePages(1, start, pages))
        elif op == "migrate":
            ops.append(MovePages(1, start + step["first"] * PAGE, step["count"], step["node"]))
        elif op == "get_mempolicy":
            ops.append(GetMempolicy(1))
    return Scenario(config, tuple(ops))


def call_result(answer: dict[str, Any]) -> str:
    """A call's answer as ``ok`` or its errno name."""
    return str(answer["error"]) if "error" in answer else "ok"


@dataclass
class Agreement:
    """How many cases, calls and pages agreed, and the first few disagreements."""

    cases: int = 0
    agreed: int = 0
    pages: int = 0
    pages_agreed: int = 0
    calls: int = 0
    calls_agreed: int = 0
    differences: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.agreed} of {self.cases} cases agree exactly; pages {self.pages_agreed} of {self.pages}, "
            f"calls {self.calls_agreed} of {self.calls}"
        )


def compare_case(case: Case, run: Run, topology: Topology, agreement: Agreement) -> None:
    """Run one case on the model and count what agrees with the guest's answers."""
    answers = run.cases[case.name]
    start = int(answers.step(0)["start"])
    scenario = scenario_of(case, start, topology)
    lockstep = Lockstep(scenario.config)
    results = [lockstep.apply(op) for op in scenario.ops]
    model = results[1 + scenario.config.cpus :]  # after spawn and the switches, one result per step
    ok = True
    for i, step in enumerate(case.steps):
        theirs, mine = answers.step(i), model[i]
        if step["op"] in ("set_mempolicy", "mbind"):
            agreement.calls += 1
            same = call_result(theirs) == call_result(mine)
            agreement.calls_agreed += same
        elif step["op"] == "where":
            agreement.pages += len(theirs["nodes"])
            agreement.pages_agreed += sum(a == b for a, b in zip(theirs["nodes"], mine["nodes"], strict=True))
            same = theirs["nodes"] == mine["nodes"]
        elif step["op"] == "migrate":
            agreement.calls += 1
            if "error" in theirs or "error" in mine:
                same = call_result(theirs) == call_result(mine)
            else:
                same = theirs["status"] == mine["nodes"]
            agreement.calls_agreed += same
        elif step["op"] == "get_mempolicy":
            agreement.calls += 1
            same = (theirs["mode"], list(theirs["nodes"])) == (mine["mode"], mine["nodes"])
            agreement.calls_agreed += same
        else:
            continue
        if not same:
            ok = False
            if len(agreement.differences) < 10:
                agreement.differences.append(f"{case.name} step {i} {step}: guest {theirs}, model {mine}")
    agreement.cases += 1
    agreement.agreed += ok


def compare(cases: list[Case], run: Run, topology: Topology) -> Agreement:
    """Every case's agreement (see the module docstring)."""
    agreement = Agreement()
    for case in cases:
        compare_case(case, run, topology, agreement)
    return agreement


def topology_of(nodes: int) -> Topology:
    """The oracle's two-node machine (QEMU's default distances) or four nodes with the distance table above."""
    if nodes == 2:
        return Topology(2, 1, 128)
    if nodes == 4:
        return Topology(4, 1, 128, FOUR_NODE_DISTANCES)
    raise SystemExit(f"--nodes {nodes}: 2 or 4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oracles.numa.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args(argv)
    topology = topology_of(args.nodes)
    cases = generate(args.seed, args.cases, topology)
    print(f"seed {args.seed}, {len(cases)} cases, {topology.nodes} nodes", flush=True)
    run = guest.run(cases, topology)
    agreement = compare(cases, run, topology)
    print(f"kernel {run.release}: {agreement.summary()} (boot+run {run.seconds:.1f} s)")
    for line in agreement.differences:
        print("  " + line)
    return 0 if agreement.agreed == agreement.cases else 1


if __name__ == "__main__":
    sys.exit(main())
