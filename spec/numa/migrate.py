"""``move_pages`` to a node: page migration through unmap, shootdown, copy and remap (Linux 6.1 mm/migrate.c).

For each page of the range (``do_pages_move`` -> ``add_page_for_migration``): no page there, or the zero page,
is -EFAULT (``follow_page(FOLL_DUMP)``); a page already on the node answers the node and stays; a page mapped
more than once is -EACCES (without ``MPOL_MF_MOVE_ALL``, which needs CAP_SYS_NICE); a page with a reference
besides its mapping (a pin, the swap cache, a shmem or file page's cache) cannot have its mapping moved
(``folio_migrate_mapping`` wants ``folio_ref_count == expected_count``, else -EAGAIN and, after the retries, the
page is left where it is): here -EBUSY in its status, where Linux leaves that status unwritten and returns how
many pages it did not move.  A page for which the node has no free frame (``alloc_migration_target`` with
``__GFP_THISNODE``) is -ENOMEM.  A target node that is not online fails the call with ENODEV.

Every other page moves: a frame on the node (role ``("migrate", pid, vpn, node)``), the words copied, the
``struct page`` state kept (anonymous, exclusive, dirty, referenced, its LRU list: ``folio_migrate_flags``), the
entry rewritten to the new frame with all its bits (``remove_migration_pte``; the migration entry in between is
not visible to any other operation here, since the op is one step), and the old page's reference handed to the
gather, so its frame is freed only after the TLB shootdown of the range (:func:`spec.smp.shootdown.run`: the
changed entries are flushed on every CPU of the mm before the gathered frames go back).  A program reads the
same words before and after (L0 does not change).  Huge pages are not modelled (:class:`NotModelled`), nor are
memory cgroups' charges moving with a page (``mem_cgroup_migrate``).
"""

from __future__ import annotations

from dataclasses import replace

from lang.errors import NotModelled
from spec.mm.kernel import Choices, Kernel, leaf_of, new_anon_page, node_blocks, put_page, space, take, with_page
from spec.mm.pagetable import set_leaf
from spec.numa.syscalls import EFAULT, covered
from spec.outcome import Errno, NodeList, Outcome

EACCES, EBUSY, ENOMEM = -13, -16, -12


def check_range(k: Kernel, pid: int, va: int, pages: int) -> None:
    """Raise :class:`NotModelled` for what this model does not migrate: huge pages, memory cgroups."""
    sp = space(k, pid)
    if k.memcg.enabled:
        raise NotModelled("move_pages with memory cgroups: the charge moving with the page is not modelled")
    for vpn in range(va >> 12, (va >> 12) + pages):
        found = leaf_of(sp.leaves, vpn)
        if found is not None and found[1].huge:
            raise NotModelled("move_pages of a huge page (hugetlb or THP) is not modelled")


def status(k: Kernel, pid: int, vpn: int, node: int) -> int | None:
    """The page's status without moving it, or None when it is to move."""
    found = space(k, pid).leaves.get(vpn)
    if found is None or not covered(k, pid, vpn, vpn + 1) or found.pfn == k.zero_pfn:
        return EFAULT
    page = k.pages[found.pfn]
    if k.numa.topology.node_of_pfn(found.pfn) == node:
        return node
    if page.mapcount > 1:
        return EACCES
    if page.refcount != page.mapcount or page.slot or not page.anon:
        return EBUSY
    return None


def migrate_page(k: Kernel, pid: int, vpn: int, node: int, choices: Choices) -> Kernel:
    """Move page ``vpn`` of ``pid`` to a new frame on ``node``; the old one's reference goes to the gather."""
    leaf = space(k, pid).leaves[vpn]
    old = k.pages[leaf.pfn]
    k, pfn = take(k, ("migrate", pid, vpn, node), choices)
    k = new_anon_page(k, pfn, old.words)
    k = with_page(k, pfn, exclusive=old.exclusive, dirty=old.dirty, referenced=old.referenced, lru=old.lru)
    k = set_leaf(k, pid, vpn, replace(leaf, pfn=pfn))
    return put_page(k, leaf.pfn)


def move_pages(k: Kernel, pid: int, va: int, pages: int, node: int, choices: Choices) -> tuple[Kernel, Outcome]:
    """The edit of ``move_pages(pid, ..., nodes = [node] * pages)``: see the module docstring."""
    space(k, pid)
    if node >= k.numa.topology.nodes:
        return k, Errno("ENODEV")
    check_range(k, pid, va, pages)
    answers = []
    for vpn in range(va >> 12, (va >> 12) + pages):
        answer = status(k, pid, vpn, node)
        if answer is None:
            if not node_blocks(k, node, 0):
                answer = ENOMEM
            else:
                k = migrate_page(k, pid, vpn, node, choices)
                answer = node
        answers.append(answer)
    return k, NodeList(tuple(answers))
