"""Workingset detection: the refault distance of file pages (mm/workingset.c, Linux 6.x, the two-list LRU:
no ``CONFIG_LRU_GEN``, or ``lru_gen_enabled()`` false).

On only with the config's ``workingset`` (1); off, nothing here changes the state.  What is modelled, exactly:

- The node's ``nonresident_age`` (:attr:`~spec.mm.kernel.Workingset.age`) advances by one on every eviction
  by reclaim or ``MADV_PAGEOUT``, anonymous or file (``workingset_eviction`` ->
  ``workingset_age_nonresident``, called from ``__remove_mapping`` for page-cache and swap-cache folios), on
  every activation by reclaim (``move_folios_to_lru`` ages once for each folio it puts back active), on every
  activation by ``folio_mark_accessed`` (``read``/``write`` of a referenced inactive page:
  ``workingset_activation``), and on every refault it activates (``workingset_refault``).  Deactivation and
  ``MADV_COLD`` do not age it.  One node, no memory cgroups: one ``lruvec``, and the eviction timestamp is
  exact (``bucket_order`` is 0 for memories this small, ``workingset_init``).
- Evicting a file page leaves a shadow entry at its (object, index) holding the age read before that eviction's
  own increment (``workingset_eviction`` reads ``nonresident_age``, then ages it).  Anonymous pages' shadows
  (kept in the swap cache) are not modelled: a swap-in is never a refault here.
- A ``read`` or a page fault that brings the page back from the file while a shadow is there is a refault
  (``filemap_add_folio`` -> ``workingset_refault``): ``workingset_refault_file`` counts it; its refault distance
  is ``age - eviction`` (``workingset_test_recent``), and if that is at most the workingset size, the pages on
  the active file list, plus both anonymous lists when a swap slot is free (``mem_cgroup_get_nr_swap_pages``
  > 0), counted before the page is added, the page goes straight on the active list (``folio_set_active``),
  ``workingset_activate_file`` counts it and the age advances; otherwise it goes on the inactive list as any
  new page.  A ``write`` that brings the page in replaces the shadow without a refault
  (``filemap_add_folio`` skips ``workingset_refault`` under ``__GFP_WRITE``: rewritten data is not a workingset).
- ``truncate`` drops the shadows past the new end with the pages (mm/truncate.c ``truncate_inode_pages_range``
  -> ``truncate_folio_batch_exceptionals`` -> ``clear_shadow_entries``).  The shadow-node shrinker
  (``count_shadow_nodes``) is not modelled: shadows stay until refault or truncation; ``PG_workingset`` and the
  ``workingset_restore`` counters are not modelled.
"""

from __future__ import annotations

from lang.records import replace
from spec.mm.kernel import Kernel, Shadow, updated, without
from spec.pressure.swap import free_slots


def age_nonresident(k: Kernel) -> Kernel:
    """``workingset_age_nonresident(lruvec, 1)``: one eviction or activation more."""
    ws = k.workingset
    return replace(k, workingset=replace(ws, age=ws.age + 1)) if ws.enabled else k


def eviction(k: Kernel, at: Shadow | None) -> Kernel:
    """``workingset_eviction`` for a page reclaim frees: a file page (``at``, its object and index) leaves a shadow
    with the age before the eviction; every eviction ages."""
    ws = k.workingset
    if not ws.enabled:
        return k
    shadows = ws.shadows if at is None else updated(ws.shadows, at, ws.age)
    return replace(k, workingset=replace(ws, age=ws.age + 1, shadows=shadows))


def workingset_size(k: Kernel) -> int:
    """The pages a refaulting file page competes with (``workingset_test_recent`` for a file folio): the active file
    list, and both anonymous lists if a swap slot is free."""
    size = sum(1 for p in k.pages.values() if not p.anon and p.lru == "active")
    if free_slots(k):
        size += sum(1 for p in k.pages.values() if p.anon and p.lru)
    return size


def refault(k: Kernel, obj: int, index: int, write: bool) -> tuple[Kernel, bool]:
    """A page of object ``obj`` at ``index`` about to be read into the cache (before it is on a list): its shadow
    is consumed; unless ``write``, a refault, counted; True if it is activated (``workingset_refault``)."""
    ws = k.workingset
    eviction_age = ws.shadows.get((obj, index))
    if not ws.enabled or eviction_age is None:
        return k, False
    ws = replace(ws, shadows=without(ws.shadows, [(obj, index)]))
    if write:
        return replace(k, workingset=ws), False
    ws = replace(ws, refault_file=ws.refault_file + 1)
    if ws.age - eviction_age > workingset_size(k):
        return replace(k, workingset=ws), False
    ws = replace(ws, age=ws.age + 1, activate_file=ws.activate_file + 1)
    return replace(k, workingset=ws), True


def truncated(k: Kernel, obj: int, pages: int) -> Kernel:
    """The shadows of object ``obj`` at ``pages`` or past it dropped (the file truncated to ``pages``)."""
    ws = k.workingset
    gone = [key for key in ws.shadows if key[0] == obj and key[1] >= pages]
    return replace(k, workingset=replace(ws, shadows=without(ws.shadows, gone))) if gone else k
