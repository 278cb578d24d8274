"""Scenario operations of memory cgroups (cgroup v1 names): create a group, move a process, set and read its files.

::

    {"op": "memcg_create", "group": "a/b"}                                   -> {"ok": true} or {"error": ...}
    {"op": "memcg_move", "pid": 2, "group": "a"}                             -> {"ok": true}
    {"op": "memcg_set", "group": "a", "knob": "memory.limit_in_bytes", "size": 65536}   -> {"ok": true}
    {"op": "memcg_read", "group": "a"}
        -> {"memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes", "memory.failcnt",
            "memory.memsw.usage_in_bytes", "memory.memsw.max_usage_in_bytes", "memory.memsw.limit_in_bytes",
            "memory.memsw.failcnt", "cache", "rss", "pagetables", "swap", "oom", "oom_kill"}

``group`` is a path below the root ``"/"`` (segments of lowercase letters, digits, ``-`` and ``_``; at most
three deep); its parent must exist (``ENOENT``), a path in use is ``EEXIST``.  ``memcg_move`` writes the pid to
the group's ``cgroup.procs`` (``"/"``: back to the root).  ``memcg_set`` writes ``memory.limit_in_bytes`` or
``memory.memsw.limit_in_bytes`` in bytes (rounded down to pages; ``-1``: no limit); the root's are ``EINVAL``,
a memory limit above the memsw limit (or a memsw limit below the memory limit) is ``EINVAL``, and one below
the group's usage ``EBUSY``.  ``cache``, ``rss``, ``swap`` are the group's own ``memory.stat`` lines (bytes),
``pagetables`` the v2 line (v1 counts page tables only in the usage), ``oom`` and ``oom_kill`` the
``memory.oom_control``/``memory.events`` counters.

Once a group exists, an operation whose charge takes a group past a limit runs the group's OOM killer
(:mod:`spec.memcg.memcg`): its result carries ``"memcg_oom": {"group", "kills": [the "Killed process"
fields...]}`` beside the operation's own result; a fault with nothing to kill answers
``{"memcg_retry": group, "report": "Out of memory and no killable processes..."}`` (retried for ever by the
kernel), a syscall ``{"error": "ENOMEM"}``; an operation whose own process was killed has only ``memcg_oom``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from lang.errors import ScenarioError
from lang.kernel_ops import PARSERS, KernelOp
from lang.scenario import choice, integer, pattern, register, shown

GROUP_PATTERN = re.compile(r"^(/|[a-z0-9_-]{1,16}(/[a-z0-9_-]{1,16}){0,2})$")
LIMIT_FILES = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")


def parse_group(raw: object, where: str) -> str:
    """A memory cgroup path: ``"/"`` or up to three segments like ``"a/b"``."""
    if not isinstance(raw, str) or not GROUP_PATTERN.match(raw):
        raise ScenarioError(
            where,
            f"expected a cgroup path like 'a' or 'a/b' (lowercase letters, digits, - and _; '/' the root), "
            f"got {shown(raw)}",
        )
    return raw


PARSERS.update(
    {
        "group": pattern(
            GROUP_PATTERN.pattern, parse_group, 'a path like `"a/b"`, `"/"` the root', "the memory cgroup"
        ),
        "knob": choice(LIMIT_FILES, "the limit file written"),
        "size": integer(-1, (1 << 63) - 1, "bytes, rounded down to pages; -1 for no limit"),
    }
)


class MemcgOp(KernelOp):
    """Base of the memory cgroup operations (parsed like the kernel ops)."""


@register
@dataclass(frozen=True, slots=True)
class MemcgCreate(MemcgOp):
    """``mkdir`` a memory cgroup: the first one turns charging on."""

    group: str
    name: ClassVar[str] = "memcg_create"


@register
@dataclass(frozen=True, slots=True)
class MemcgMove(MemcgOp):
    """Write ``pid`` to the group's ``cgroup.procs``: the process moves, the charges it made stay."""

    pid: int
    group: str
    name: ClassVar[str] = "memcg_move"


@register
@dataclass(frozen=True, slots=True)
class MemcgSet(MemcgOp):
    """Write the group's ``memory.limit_in_bytes`` or ``memory.memsw.limit_in_bytes``."""

    group: str
    knob: str
    size: int
    name: ClassVar[str] = "memcg_set"


@register
@dataclass(frozen=True, slots=True)
class MemcgRead(MemcgOp):
    """Read the group's usage, watermark, limit, failcnt, ``memory.stat`` lines and OOM counters."""

    group: str
    name: ClassVar[str] = "memcg_read"


MEMCG_OPS = (MemcgCreate, MemcgMove, MemcgSet, MemcgRead)
