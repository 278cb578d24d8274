"""The state of the memory cgroups (cgroup v1 memory controller): groups, their members, the charges.

Kept apart from the rules (:mod:`spec.memcg.memcg`) so the kernel state (:class:`spec.mm.kernel.Kernel`) can hold
it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

PAGE_SIZE = 4096
PAGE_COUNTER_MAX = ((1 << 63) - 1) // PAGE_SIZE
"""include/linux/page_counter.h: ``LONG_MAX / PAGE_SIZE`` on 64-bit, the limit of a group nobody limited."""
ROOT = "/"
KINDS = ("anon", "file", "table")
"""What a charged frame holds: an anonymous page (``rss``), a page-cache page (file or shmem: ``cache``), a
page-table page (charged through ``GFP_PGTABLE_USER``'s ``__GFP_ACCOUNT``: kernel memory, counted in v1's
``memory.usage_in_bytes`` since ``memcg_account_kmem``)."""


@dataclass(frozen=True, slots=True)
class Group:
    """One memory cgroup: its parent (None for the root), its limits in pages and its counters.

    ``limit`` is ``memory.limit_in_bytes`` (``memcg->memory.max``), ``memsw_limit`` is
    ``memory.memsw.limit_in_bytes`` (``memcg->memsw.max``); ``max_usage`` and ``memsw_max_usage`` are the
    counters' watermarks (``memory.max_usage_in_bytes``); ``failcnt`` and ``memsw_failcnt`` count the charges
    that found the counter at its limit (mm/page_counter.c ``page_counter_try_charge``: ``c->failcnt++``);
    ``oom`` and ``oom_kill`` are ``memory_events[MEMCG_OOM]`` and ``[MEMCG_OOM_KILL]``
    (``memory.oom_control``'s ``oom_kill`` in v1), counted on the group itself only (include/linux/memcontrol.h
    ``memcg_memory_event`` stops after the first group outside the default hierarchy).
    """

    parent: str | None
    limit: int = PAGE_COUNTER_MAX
    memsw_limit: int = PAGE_COUNTER_MAX
    max_usage: int = 0
    memsw_max_usage: int = 0
    failcnt: int = 0
    memsw_failcnt: int = 0
    oom: int = 0
    oom_kill: int = 0


@dataclass(frozen=True, slots=True)
class Memcg:
    """Every memory cgroup and what it holds.

    ``enabled`` turns on with the first ``memcg_create``: from then every frame a process or the page cache holds
    is charged.  ``groups`` by path (the root is ``"/"``, a child ``"a"``, a grandchild ``"a/b"``); ``tasks``
    the group of every process not in the root; ``charges`` the group and kind of every charged frame
    (``folio->memcg_data``); ``swap`` the group each swap slot in use is charged to (v1 ``swap_cgroup``,
    ``memory.memsw.usage_in_bytes``): empty until swap charging is modelled.
    """

    enabled: bool = False
    groups: Mapping[str, Group] = field(default_factory=lambda: MappingProxyType({ROOT: Group(None)}))
    tasks: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    charges: Mapping[int, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    swap: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))


NO_MEMCG = Memcg()


def under(group: str, ancestor: str) -> bool:
    """``group`` is ``ancestor`` or below it."""
    return ancestor == ROOT or group == ancestor or group.startswith(ancestor + "/")
