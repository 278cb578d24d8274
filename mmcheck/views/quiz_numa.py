"""Quiz topic ``which-node``: a NUMA machine, a memory policy, then writes from chosen CPUs: which node gets each page?

Four nodes of one CPU each at the distances ``10 20 30 40 / 20 10 20 30 / 30 20 10 20 / 40 30 20 10``, one
process running on every CPU with a region mapped, and a policy, the process's (``set_mempolicy``) or the
region's (``mbind``).  Each question is a first write to a page of the region by one CPU; the worked answer
gives the rule (:mod:`spec.numa.policy`: first touch, preferred, bind and preferred_many along the writer's
zonelist, interleave by the page offset's low 32 bits) and the node, which is checked against where the spec
and the implementation, run in lockstep, put the page (``move_pages``).  Every node has room, so no page falls
back.
"""

from __future__ import annotations

import random

from lang.kernel_ops import Mmap, Spawn, Store, Switch
from lang.numa_ops import Mbind, MovePages, SetMempolicy
from lang.scenario import Config, Op, Scenario
from mmcheck.views.quizbase import Quiz, echo
from properties.drivers import Lockstep
from spec.numa.topology import zonelists

DISTANCES = ((10, 20, 30, 40), (20, 10, 20, 30), (30, 20, 10, 20), (40, 30, 20, 10))
CONFIG = Config(frames=256, cpus=4, max_order=4, nodes=4, distances=DISTANCES)
BASES = (0x7F0000000000, 0x7F0000001000, 0x7F5A3C002000, 0x10000000)
PAGES = 8
POLICIES = (
    ("default", ()),
    ("preferred", (2,)),
    ("preferred", (3,)),
    ("bind", (0, 3)),
    ("bind", (1, 2)),
    ("preferred_many", (0, 3)),
    ("interleave", (1, 2, 3)),
    ("interleave", (0, 1, 2, 3)),
)


def generate(seed: int, questions: int = 4) -> Quiz:
    """A region, a policy on it or on the process, then ``questions`` first writes from random CPUs."""
    rng = random.Random(f"which-node:{seed}")
    base = rng.choice(BASES)
    mode, nodes = rng.choice(POLICIES)
    ops: list[Op] = [Spawn(), *(Switch(cpu, 1) for cpu in range(4)), Mmap(1, base, PAGES, "rw-", False)]
    if rng.random() < 0.5:
        ops.append(SetMempolicy(1, mode, nodes))
    else:
        ops.append(Mbind(1, base, PAGES, mode, nodes))
    setup = len(ops)
    for page in rng.sample(range(PAGES), min(questions, PAGES)):
        ops.append(Store(rng.randrange(4), base + page * 4096, page + 1))
    return Quiz("which-node", seed, Scenario(CONFIG, tuple(ops)), setup)


def policy_of(quiz: Quiz) -> tuple[str, str, tuple[int, ...]]:
    """Where the policy was set (``process`` or ``region``), its mode and its nodes."""
    op = quiz.scenario.ops[quiz.setup - 1]
    assert isinstance(op, SetMempolicy | Mbind)
    return ("process" if isinstance(op, SetMempolicy) else "region"), op.policy, op.nodes


def rule(mode: str, nodes: tuple[int, ...], cpu: int, vpn: int) -> tuple[int, str]:
    """The node the policy gives a page ``vpn`` first written by ``cpu``, and why."""
    local = cpu  # one CPU a node
    order = zonelists(DISTANCES)[local]
    if mode == "default":
        return local, f"first touch: CPU {cpu} is on node {local}"
    if mode == "preferred":
        return nodes[0], f"preferred node {nodes[0]} has room"
    if mode in ("bind", "preferred_many"):
        node = next(n for n in order if n in nodes)
        return node, f"node {local}'s zonelist {' '.join(map(str, order))} cut to {{{','.join(map(str, nodes))}}}"
    index = vpn & 0xFFFFFFFF
    node = nodes[index % len(nodes)]
    return node, f"offset {vpn:#x}, low 32 bits {index:#x}, % {len(nodes)} = {index % len(nodes)} -> node {node}"


def solve(quiz: Quiz) -> list[tuple[Store, int, int, str]]:
    """Each question's write, the node the run gave it, the node the rule gives, and the rule's words."""
    lockstep = Lockstep(quiz.scenario.config)
    for op in quiz.scenario.ops:
        lockstep.apply(op)
    _, mode, nodes = policy_of(quiz)
    out = []
    for op in quiz.scenario.ops[quiz.setup :]:
        assert isinstance(op, Store)
        placed = lockstep.apply(MovePages(1, op.va, 1))["nodes"][0]
        node, why = rule(mode, nodes, op.cpu, op.va >> 12)
        out.append((op, placed, node, why))
    return out


def render(quiz: Quiz, answers: bool) -> list[str]:
    """The question, or with ``answers`` the worked answer."""
    where, mode, nodes = policy_of(quiz)
    questions = quiz.scenario.ops[quiz.setup :]
    lines = echo(quiz, answers, len(questions))
    start = quiz.scenario.ops[quiz.setup - 2]
    assert isinstance(start, Mmap)
    lines.append("Four nodes, CPU n on node n, distances 10 20 30 40 / 20 10 20 30 / 30 20 10 20 / 40 30 20 10.")
    target = "the process" if where == "process" else f"the region at {start.va:#x} ({PAGES} pages)"
    lines.append(f"Policy of {target}: {mode} {{{','.join(map(str, nodes))}}}; every node has room.")
    lines.append("")
    solved = solve(quiz) if answers else []
    for number, op in enumerate(questions, 1):
        assert isinstance(op, Store)
        lines.append(f"  {number}. CPU {op.cpu} writes {op.va:#x} first: which node gets the page?")
        if answers:
            _, placed, node, why = solved[number - 1]
            assert placed == node, f"the rule says node {node}, the run put the page on node {placed}"
            lines.append(f"     {why}: node {placed}")
    if not answers:
        lines += ["", "Run again with -c to see the answers worked out."]
    return lines


def quiz_json(quiz: Quiz, answers: bool) -> dict[str, object]:
    """The problem as data, and with ``answers`` each page's node."""
    out: dict[str, object] = {
        "topic": quiz.topic,
        "seed": quiz.seed,
        "setup": [op.to_json() for op in quiz.scenario.ops[: quiz.setup]],
        "questions": [op.to_json() for op in quiz.scenario.ops[quiz.setup :]],
    }
    if answers:
        out["nodes"] = [placed for _, placed, _, _ in solve(quiz)]
    return out
