"""Scenario operations of NUMA: memory policies, where pages are, and the per-node counters.

::

    {"op": "set_mempolicy", "pid": 1, "policy": "bind", "nodes": [0], "flags": []}   -> {"ok": true} or EINVAL
    {"op": "mbind", "pid": 1, "va": "0x...", "pages": 4, "policy": "interleave", "nodes": [0, 1]}
                                                                -> {"ok": true}, EINVAL or EFAULT
    {"op": "get_mempolicy", "pid": 1}                    -> {"mode", "nodes", "static", "relative"}
    {"op": "get_mempolicy", "pid": 1, "va": "0x..."}     -> the VMA's policy at va (MPOL_F_ADDR), or EFAULT
    {"op": "move_pages", "pid": 1, "va": "0x...", "pages": 4}   -> {"nodes": [node or -errno per page]}
    {"op": "move_pages", "pid": 1, "va": "0x...", "pages": 4, "node": 1}   -> the same, after moving them to node 1
    {"op": "numastat"}                                   -> {"nodes": [{"numa_hit": N, ...} per node]}
    {"op": "numastat_p", "pid": 1}                       -> {"pages": [pages mapped on each node]}
    {"op": "numa_maps", "pid": 1}                        -> {"lines": ["<start> <policy> anon=N ... N0=x ..."]}

``policy`` is ``default``, ``preferred``, ``bind``, ``interleave``, ``local`` or ``preferred_many``
(include/uapi/linux/mempolicy.h); ``flags`` holds ``static`` (MPOL_F_STATIC_NODES) or ``relative``
(MPOL_F_RELATIVE_NODES).  Nodes are 0..1023 (MAX_NUMNODES); ones not online are dropped as the kernel does, and
a policy left with none is EINVAL.  ``move_pages`` without target nodes reports where each page is
(``do_pages_stat``): a page never touched, the zero page or an address outside every VMA is -14 (EFAULT,
Linux 6.1).  ``numastat`` is ``/sys/devices/system/node/nodeN/numastat``, ``numastat_p`` is ``numastat -p``'s
per-node total, ``numa_maps`` is ``/proc/PID/numa_maps``.  See :mod:`spec.numa`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import DEFAULTS, PARSERS, KernelOp
from lang.scenario import Field, choice, integer, register, shown

POLICIES = ("default", "preferred", "bind", "interleave", "local", "preferred_many")
POLICY_FLAGS = ("static", "relative")
MAX_NUMNODES = 1024


def parse_nodes(raw: object, where: str) -> tuple[int, ...]:
    """A node set: a list of node numbers 0..1023."""
    if not isinstance(raw, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in raw):
        raise ScenarioError(where, f"expected a list of node numbers 0..{MAX_NUMNODES - 1}, got {shown(raw)}")
    for i, n in enumerate(raw):
        if not 0 <= n < MAX_NUMNODES:
            raise ScenarioError(f"{where}[{i}]", f"node {n} is out of range: allowed 0..{MAX_NUMNODES - 1}")
    return tuple(raw)


def parse_flags(raw: object, where: str) -> tuple[str, ...]:
    """Mode flags: a list of ``static`` and ``relative``."""
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        raise ScenarioError(where, f"expected a list of flags ({', '.join(POLICY_FLAGS)}), got {shown(raw)}")
    for i, f in enumerate(raw):
        if f not in POLICY_FLAGS:
            raise ScenarioError(f"{where}[{i}]", f"unknown flag {f!r}: allowed {', '.join(POLICY_FLAGS)}")
    return tuple(raw)


PARSERS.update(
    {
        "policy": choice(POLICIES, "the memory policy mode (MPOL_DEFAULT .. MPOL_PREFERRED_MANY)"),
        "nodes": Field(
            parse_nodes,
            {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_NUMNODES - 1}},
            f"a list of node numbers 0 .. {MAX_NUMNODES - 1}",
            "the policy's nodes (nodes not online are dropped)",
        ),
        "flags": Field(
            parse_flags,
            {"type": "array", "items": {"enum": list(POLICY_FLAGS)}},
            'a list of `"static"`, `"relative"`',
            "MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES",
        ),
        "node": integer(0, MAX_NUMNODES - 1, "the node to move every page to (absent: only report where they are)"),
        "at": integer(meaning="an address: the policy of the VMA there (MPOL_F_ADDR); absent: the process's"),
    }
)
DEFAULTS.update({"nodes": (), "flags": (), "at": None, "node": None})


class NumaOp(KernelOp):
    """Base of the NUMA operations (parsed like the kernel ops)."""

    def to_json(self) -> dict[str, Any]:
        out = KernelOp.to_json(self)
        for key in ("nodes", "flags"):
            if key in out:
                out[key] = list(out[key])
        if "at" in out:
            at = out.pop("at")
            if at is not None:
                out["at"] = hex(at)
        if out.get("node", 0) is None:
            del out["node"]
        return out


@register
@dataclass(frozen=True, slots=True)
class SetMempolicy(NumaOp):
    """``set_mempolicy(mode | flags, nodes)``: process ``pid``'s policy."""

    pid: int
    policy: str
    nodes: tuple[int, ...] = ()
    flags: tuple[str, ...] = ()
    name: ClassVar[str] = "set_mempolicy"


@register
@dataclass(frozen=True, slots=True)
class Mbind(NumaOp):
    """``mbind(va, pages * 4096, mode | flags, nodes, 0)``: the policy of the VMAs in the range."""

    pid: int
    va: int
    pages: int
    policy: str
    nodes: tuple[int, ...] = ()
    flags: tuple[str, ...] = ()
    name: ClassVar[str] = "mbind"


@register
@dataclass(frozen=True, slots=True)
class GetMempolicy(NumaOp):
    """``get_mempolicy``: process ``pid``'s policy, or with ``at`` the policy of the VMA there."""

    pid: int
    at: int | None = None
    name: ClassVar[str] = "get_mempolicy"


@register
@dataclass(frozen=True, slots=True)
class MovePages(NumaOp):
    """``move_pages(pid, pages, addresses, nodes, status, 0)``: with ``node``, move each page from ``va`` there
    (:mod:`spec.numa.migrate`; ``async``: only its first step, as the other mapping changes); without, ``nodes ==
    NULL``: report the node of each page."""

    pid: int
    va: int
    pages: int
    node: int | None = None
    background: bool = False
    name: ClassVar[str] = "move_pages"


@register
@dataclass(frozen=True, slots=True)
class Numastat(NumaOp):
    """Every node's ``numastat`` counters."""

    name: ClassVar[str] = "numastat"


@register
@dataclass(frozen=True, slots=True)
class NumastatP(NumaOp):
    """``numastat -p PID``: the process's pages on each node."""

    pid: int
    name: ClassVar[str] = "numastat_p"


@register
@dataclass(frozen=True, slots=True)
class NumaMaps(NumaOp):
    """``/proc/PID/numa_maps``."""

    pid: int
    name: ClassVar[str] = "numa_maps"


NUMA_OPS = (SetMempolicy, Mbind, GetMempolicy, MovePages, Numastat, NumastatP, NumaMaps)
