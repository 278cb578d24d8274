"""Virtual memory areas: the ranges of an address space and their protection.

A VMA covers the virtual pages ``start .. end-1`` (page numbers, not
addresses) with one protection, private or shared.  A shared anonymous VMA
is backed by a shmem-like object (``obj``) whose page ``pgoff + (vpn -
start)`` it maps; a private one may hold anonymous pages, and ``anon``
names its ``anon_vma`` (0 for none), which it gets with its first anonymous
page (``vmf_anon_prepare`` / ``__anon_vma_prepare``, mm/rmap.c): fork copies
page-table entries only for VMAs that have one (``vma_needs_copy``,
mm/memory.c).  ``anon`` labels tell anon_vmas of one address space apart;
they mean nothing across processes.  ``forked`` says the VMA's
``anon_vma_chain`` also links a parent's anon_vma: fork gave it its anon_vma
(``anon_vma_fork``), and mm/vma.c calls that ``vma_had_uncowed_parents``.

A split keeps both halves' ``anon`` and object offset, as ``__split_vma``
does (mm/vma.c).  Adjacent compatible VMAs are merged where ``mmap`` and
``mprotect`` change the VMA list (mm/vma.c ``vma_merge_new_range``,
``vma_merge_existing_range``): see :func:`mergeable` and :func:`merge_at`.

A ``huge`` VMA is a hugetlb mapping (``MAP_HUGETLB``, 2 MiB pages on
x86-64): it is backed by its own hugetlbfs file (``obj``, shared or
private), starts and ends on 2 MiB boundaries, splits only there
(``hugetlb_vm_op_split``, mm/hugetlb.c) and never merges
(``hugetlbfs_file_mmap`` sets ``VM_DONTEXPAND``, part of ``VM_SPECIAL``,
which ``vma_merge_new_range`` and ``vma_merge_existing_range`` refuse, mm/vma.c).

``thp`` is the VMA's transparent-huge-page advice (``madvise``, mm/khugepaged.c ``hugepage_madvise``):
``"hugepage"`` for ``VM_HUGEPAGE``, ``"nohugepage"`` for ``VM_NOHUGEPAGE``, ``""`` for neither; they are
flags like any other, so VMAs that differ in them do not merge (``is_mergeable_vma`` compares ``vm_flags``)
and a split keeps them on both halves.

Syscall argument rules shared by both views of memory are here too: the
errors Linux returns for a bad address range (mm/mmap.c ``do_mmap``,
``do_vmi_munmap``; mm/mprotect.c; mm/madvise.c).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from lang.errors import InvalidArgument
from lang.records import replace
from spec.paging.address import PAGE_SHIFT, PAGE_SIZE

# x86-64 TASK_SIZE_MAX with 4-level paging: the user half minus its last page
# (arch/x86/include/asm/page_64_types.h).
TASK_SIZE = (1 << 47) - PAGE_SIZE
TASK_PAGES = TASK_SIZE >> PAGE_SHIFT
# The default vm.mmap_min_addr (mm/Kconfig DEFAULT_MMAP_MIN_ADDR on x86).
MMAP_MIN_ADDR = 0x10000
# The kernel half: one read-only, supervisor-only, global page at the start of
# the kernel text mapping (__START_KERNEL_map, Documentation/arch/x86/x86_64/mm.rst),
# present in every address space; its first word holds KERNEL_WORD.
KERNEL_VA = 0xFFFFFFFF80000000
KERNEL_WORD = 0x4C494E5558
# A hugetlb page: 2 MiB (PMD_SIZE, arch/x86/include/asm/pgtable_64_types.h), an order-9 block of frames.
HUGE_PAGES = 512
HUGE_SIZE = HUGE_PAGES * PAGE_SIZE
HUGE_ORDER = 9


@dataclass(frozen=True, slots=True)
class Prot:
    """``PROT_READ``, ``PROT_WRITE``, ``PROT_EXEC``, written like ``"rw-"``."""

    read: bool = False
    write: bool = False
    exec: bool = False

    @classmethod
    def parse(cls, text: str) -> Prot:
        """``"rwx"`` with ``-`` for a missing right, e.g. ``"r--"`` or ``"rw-"``."""
        if len(text) != 3 or any(c not in (want, "-") for c, want in zip(text, "rwx", strict=True)):
            raise InvalidArgument(f"protection {text!r} is not like 'rw-': three places r, w, x, each may be '-'")
        return cls(text[0] == "r", text[1] == "w", text[2] == "x")

    def __str__(self) -> str:
        return ("r" if self.read else "-") + ("w" if self.write else "-") + ("x" if self.exec else "-")

    def __repr__(self) -> str:
        return f"Prot.parse({str(self)!r})"

    @property
    def accessible(self) -> bool:
        """Any right at all (``vma_is_accessible``); on x86 write or execute implies read."""
        return self.read or self.write or self.exec


NO_ACCESS = Prot()


@dataclass(frozen=True, slots=True)
class Vma:
    """Pages ``start .. end-1`` with protection ``prot``; see the module docstring for the rest."""

    start: int
    end: int
    prot: Prot
    shared: bool = False
    obj: int = 0
    pgoff: int = 0
    anon: int = 0
    forked: bool = False
    huge: bool = False
    thp: str = ""

    def __repr__(self) -> str:
        return (
            f"Vma(start={self.start:#x}, end={self.end:#x}, prot={self.prot!r}, shared={self.shared}, "
            f"obj={self.obj}, pgoff={self.pgoff}, anon={self.anon}, forked={self.forked}"
            + (", huge=True" if self.huge else "")
            + (f", thp={self.thp!r})" if self.thp else ")")
        )

    @property
    def account(self) -> bool:
        """``VM_ACCOUNT``: a private VMA is charged while writable, and stays charged once it has an anon_vma.

        ``mmap_region`` sets it on a private writable mapping (``accountable_mapping``);
        ``mprotect_fixup`` (mm/mprotect.c) sets it when a private VMA becomes
        writable and clears it when it stops being writable only while the VMA
        has no anon_vma.  A private VMA gets an anon_vma only while writable, so
        the flag is always ``write or anon``.
        """
        return not self.shared and (self.prot.write or self.anon != 0)

    def contains(self, vpn: int) -> bool:
        """True when page ``vpn`` lies in the VMA."""
        return self.start <= vpn < self.end

    def index_of(self, vpn: int) -> int:
        """The page of the backing object that ``vpn`` maps (``linear_page_index``)."""
        return self.pgoff + vpn - self.start


def find(vmas: tuple[Vma, ...], vpn: int) -> Vma | None:
    """The VMA containing page ``vpn``, if any (``vma_lookup``)."""
    i = bisect.bisect_right([v.start for v in vmas], vpn) - 1
    return vmas[i] if i >= 0 and vmas[i].contains(vpn) else None


def clip(vma: Vma, lo: int, hi: int) -> Vma:
    """The part of ``vma`` inside pages ``lo .. hi-1`` (which must overlap it)."""
    start, end = max(vma.start, lo), min(vma.end, hi)
    return replace(vma, start=start, end=end, pgoff=vma.index_of(start))


def cut(vmas: tuple[Vma, ...], lo: int, hi: int) -> tuple[Vma, ...]:
    """The VMAs with pages ``lo .. hi-1`` removed; a VMA straddling an edge is split (``__split_vma``)."""
    kept: list[Vma] = []
    for vma in vmas:
        if vma.end <= lo or vma.start >= hi:
            kept.append(vma)
            continue
        if vma.start < lo:
            kept.append(clip(vma, vma.start, lo))
        if vma.end > hi:
            kept.append(clip(vma, hi, vma.end))
    return tuple(sorted(kept, key=lambda v: v.start))


def inside(vmas: tuple[Vma, ...], lo: int, hi: int) -> tuple[Vma, ...]:
    """The parts of the VMAs that lie inside pages ``lo .. hi-1``."""
    return tuple(clip(v, lo, hi) for v in vmas if v.end > lo and v.start < hi)


def insert(vmas: tuple[Vma, ...], new: tuple[Vma, ...]) -> tuple[Vma, ...]:
    """``vmas`` plus ``new`` (which overlap nothing in ``vmas``), sorted by start."""
    return tuple(sorted((*vmas, *new), key=lambda v: v.start))


# --- merging (mm/vma.c, Linux 6.18) ---------------------------------------------------------------


def anon_compatible(a: Vma, b: Vma) -> bool:
    """``is_mergeable_anon_vma``: both without an anon_vma, the same one, or one joining the other's unforked one."""
    if a.anon and b.anon:
        return a.anon == b.anon
    holder = a if a.anon else b
    return not holder.anon or not holder.forked


def mergeable(a: Vma, b: Vma) -> bool:
    """``b`` starts where ``a`` ends and one VMA can cover both (``can_vma_merge_after`` / ``_before``).

    ``is_mergeable_vma``: the same flags (protection, shared, ``VM_ACCOUNT``, ``VM_HUGEPAGE``/``VM_NOHUGEPAGE``)
    and the same file (the object of a shared VMA or of a file mapping) at consecutive offsets; a
    private anonymous VMA's offset is its start (``do_mmap``), always
    consecutive.  Then :func:`anon_compatible`.
    """
    if a.huge or b.huge:
        return False  # VM_DONTEXPAND is in VM_SPECIAL: hugetlb VMAs never merge
    if a.end != b.start or a.prot != b.prot or a.shared != b.shared or a.account != b.account or a.thp != b.thp:
        return False
    if (a.shared or a.obj or b.obj) and (a.obj != b.obj or a.index_of(a.end) != b.pgoff):
        return False
    return anon_compatible(a, b)


def joined(a: Vma, b: Vma) -> Vma:
    """The merged VMA: ``a``'s start and offset, ``b``'s end, the anon_vma either had (``dup_anon_vma``)."""
    holder = a if a.anon else b
    return replace(a, end=b.end, anon=holder.anon, forked=holder.forked)


def merge_at(vmas: tuple[Vma, ...], lo: int, hi: int) -> tuple[Vma, ...]:
    """Merge, left to right, the neighbours that meet at a page ``lo .. hi`` (both ends included).

    This is where ``mmap`` and ``mprotect`` try to merge: the new or changed
    range with its neighbours, and its pieces with each other.  Going left to
    right gives ``vma_merge_new_range``'s order: the left neighbour first, then
    the right one only if it is also compatible with the left one's anon_vma
    (``can_vma_merge_right``).
    """
    out: list[Vma] = []
    for vma in vmas:
        if out and lo <= vma.start <= hi and mergeable(out[-1], vma):
            out[-1] = joined(out[-1], vma)
        else:
            out.append(vma)
    return tuple(out)


def fresh_anon(vmas: tuple[Vma, ...]) -> int:
    """The least label no VMA of this address space uses: a new anon_vma."""
    used = {v.anon for v in vmas}
    return next(n for n in range(1, len(used) + 2) if n not in used)


def reusable_anon(vmas: tuple[Vma, ...], vma: Vma) -> int:
    """The anon_vma ``vma`` takes from a neighbour, or 0 (``find_mergeable_anon_vma``, mm/rmap.c).

    The next VMA first, then the previous one: it must touch ``vma``, be
    private with the same flags apart from the access rights
    (``anon_vma_compatible``: here ``VM_ACCOUNT``, ``VM_HUGETLB`` and the THP flags) and the
    same file (a hugetlb VMA's object; none for anonymous memory), and have
    an anon_vma not inherited at fork (``reusable_anon_vma``: a singular
    ``anon_vma_chain``).
    """
    for other in (v for v in vmas if v.start == vma.end), (v for v in vmas if v.end == vma.start):
        for n in other:
            compatible = n.account == vma.account and n.huge == vma.huge and n.obj == vma.obj and n.thp == vma.thp
            if not n.shared and n.anon and not n.forked and compatible:
                return n.anon
    return 0


def anon_prepare(vmas: tuple[Vma, ...], vpn: int) -> tuple[Vma, ...]:
    """The VMA holding ``vpn`` gets an anon_vma if it has none: a neighbour's reusable one, else a new one."""
    vma = find(vmas, vpn)
    if vma is None or vma.anon:
        return vmas
    label = reusable_anon(vmas, vma) or fresh_anon(vmas)
    return tuple(replace(v, anon=label, forked=False) if v is vma else v for v in vmas)


def forked_copy(vmas: tuple[Vma, ...]) -> tuple[Vma, ...]:
    """The child's VMAs after fork (``dup_mmap``): each anon_vma holder gets a new anon_vma of its own.

    ``anon_vma_fork`` gives every child VMA whose parent VMA has an anon_vma a
    new one (so pieces that shared one in the parent no longer do) chained to
    the parent's: the child's VMA is ``forked``.
    """
    out: list[Vma] = []
    for vma in vmas:
        out.append(replace(vma, anon=len([v for v in out if v.anon]) + 1, forked=True) if vma.anon else vma)
    return tuple(out)


def covered_until(vmas: tuple[Vma, ...], lo: int, hi: int) -> int:
    """The first page at or after ``lo`` (at most ``hi``) that no VMA covers: the end of the mapped run at ``lo``."""
    page = lo
    for vma in vmas:
        if vma.end <= page:
            continue
        if vma.start > page or page >= hi:
            break
        page = vma.end
    return min(page, hi)


def has_hole(vmas: tuple[Vma, ...], lo: int, hi: int) -> bool:
    """True when some page of ``lo .. hi-1`` lies in no VMA."""
    covered = sum(v.end - v.start for v in inside(vmas, lo, hi))
    return covered < hi - lo


def intersects(vmas: tuple[Vma, ...], lo: int, hi: int) -> bool:
    """True when some VMA has a page in ``lo .. hi-1``."""
    return any(v.end > lo and v.start < hi for v in vmas)


# --- Syscall argument checks: the error name, or None when the range is acceptable --------------


def mmap_error(va: int, pages: int) -> str | None:
    """``mmap(MAP_FIXED)``: EINVAL misaligned or empty, ENOMEM past TASK_SIZE, EPERM below mmap_min_addr."""
    if va % PAGE_SIZE or pages <= 0:
        return "EINVAL"
    if va + pages * PAGE_SIZE > TASK_SIZE:
        return "ENOMEM"
    if va < MMAP_MIN_ADDR:
        return "EPERM"
    return None


def munmap_error(va: int, pages: int) -> str | None:
    """``munmap``: EINVAL when misaligned, empty, or past TASK_SIZE (``do_vmi_munmap``)."""
    if va % PAGE_SIZE or pages <= 0 or va + pages * PAGE_SIZE > TASK_SIZE:
        return "EINVAL"
    return None


def huge_pages(pages: int) -> int:
    """A hugetlb mapping's length in pages: rounded *up* to whole 2 MiB pages.

    ``ksys_mmap_pgoff`` (mm/mmap.c) does ``len = ALIGN(len, huge_page_size(hs))``
    for ``MAP_HUGETLB``: the kernel's documented behaviour, not a clamp.
    """
    return -(-pages // HUGE_PAGES) * HUGE_PAGES


def huge_mmap_error(va: int, pages: int) -> str | None:
    """``mmap(MAP_FIXED | MAP_HUGETLB)`` of ``pages`` (before rounding up), in the kernel's order of checks.

    EINVAL for an empty length (``do_mmap``); ENOMEM when the rounded length
    exceeds TASK_SIZE (``__get_unmapped_area``); EINVAL for an address off a
    2 MiB boundary (``generic_hugetlb_get_unmapped_area`` ->
    ``prepare_hugepage_range``, fs/hugetlbfs/inode.c, include/linux/hugetlb.h);
    ENOMEM past TASK_SIZE; EPERM below mmap_min_addr (``security_mmap_addr``).
    """
    size = huge_pages(pages) * PAGE_SIZE
    if pages <= 0:
        return "EINVAL"
    if size > TASK_SIZE:
        return "ENOMEM"
    if va % HUGE_SIZE:
        return "EINVAL"
    if va + size > TASK_SIZE:
        return "ENOMEM"
    if va < MMAP_MIN_ADDR:
        return "EPERM"
    return None


def split_refused(vmas: tuple[Vma, ...], vpn: int) -> bool:
    """Splitting at page ``vpn`` would cut a hugetlb VMA off a 2 MiB boundary (``hugetlb_vm_op_split``: EINVAL)."""
    vma = find(vmas, vpn)
    return vma is not None and vma.huge and vma.start < vpn and vpn % HUGE_PAGES != 0


def split_error(vmas: tuple[Vma, ...], lo: int, hi: int) -> str | None:
    """EINVAL when either edge of pages ``lo .. hi-1`` would split a hugetlb VMA off a 2 MiB boundary.

    ``__split_vma`` (mm/vma.c) asks ``vm_ops->may_split`` first; munmap and
    ``mmap(MAP_FIXED)`` over a mapping split both edges before changing
    anything (``vms_gather_munmap_vmas``).
    """
    return "EINVAL" if split_refused(vmas, lo) or split_refused(vmas, hi) else None


def range_error(va: int) -> str | None:
    """``mprotect``/``madvise``: EINVAL when the start is misaligned; a length of 0 succeeds."""
    return "EINVAL" if va % PAGE_SIZE else None
