"""Address-space and COW mutants of the kernel layer (``impl.mm.kernel.Kernel``, ``impl.mm.vma.VmaList``).

Each is the shipped method's source with one small edit, swapped in for the
run only; the ``ci`` kernel machine (:mod:`properties.mm.kernel_machine`) must
catch each with a counterexample of at most 8 operations.
"""

from __future__ import annotations

from impl.mm.kernel import Kernel
from impl.mm.vma import VmaList
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = "kernel: impl state, abstracted, equals L1; L1 outcomes are ones L0 allows"
COW = f"{REFINES}; cow: a private frame mapped more than once is read-only in every entry"


def kernel_patch(method: str, *edits: tuple[str, str]) -> SourcePatch:
    """A source patch of one method of :class:`impl.mm.kernel.Kernel`."""
    return SourcePatch(Kernel, method, edits)


REUSE_TEST = "if anon and (self.flags[old] & PG_EXCLUSIVE or self.refcount[old] == 1):"

KERNEL_MUTANTS = (
    Mutant(
        "dirty-cow",
        "CVE-2016-5195 (Dirty COW) in spirit: a write fault on a COW-shared page makes the shared frame writable",
        f"{COW}; isolation: no process writes a frame another maps privately",
        "cow",
        kernel_patch("_wp", (REUSE_TEST, "if anon:")),
    ),
    Mutant(
        "fork-no-wrprotect-parent",
        "B-5 class: copy_present_ptes write-protects the child's entry but not the parent's (__copy_present_ptes)",
        f"{COW}; L0: the child never sees the parent's writes after fork",
        "cow",
        kernel_patch("fork", ("self.mem.write(pa, entry)", "self.mem.write(pa, entry | _RW)")),
    ),
    Mutant(
        "reuse-on-mapcount",
        "CVE-2020-29374: do_wp_page reuses a page on mapcount == 1, so a pinned page is reused (09854ba94c6a)",
        f"{REFINES}; L0: a pin reads the page as its process last wrote it",
        "cow",
        kernel_patch("_wp", ("self.refcount[old] == 1", "self.mapcount[old] == 1")),
    ),
    Mutant(
        "zero-page-writable",
        "textbook error: a write fault on the zero page makes the shared zero page writable instead of copying it",
        f"{REFINES}; the zero page is never writable and always reads zero",
        "cow",
        kernel_patch("_wp", (REUSE_TEST, "if old == self.zero_pfn or " + REUSE_TEST.removeprefix("if "))),
    ),
    Mutant(
        "munmap-leaks-refcount",
        "textbook refcount leak: zap_pte_range drops the map count but not the reference (no folio_put)",
        f"{REFINES}; no leak: refcount = entries + pins + page cache, free + reachable = all frames",
        "cow",
        kernel_patch(
            "_unmap",
            (
                "self._zap(proc, lo, hi)",
                "for vpn, pa, entry in list(self.user_ptes(proc, lo, hi)):\n"
                "        self.set_pte(pa, 0, proc.pid, vpn)\n"
                "        self.mapcount[(entry & _PFN) >> 12] -= (entry & _PFN) >> 12 != self.zero_pfn",
            ),
        ),
    ),
    Mutant(
        "vma-split-off-by-one",
        "off-by-one in __split_vma (mm/vma.c): the lower VMA keeps the page at the split, so the halves overlap",
        f"{REFINES}; VMAs are disjoint and split exactly at the range edge",
        "cow",
        SourcePatch(VmaList, "split_at", (("vma.end = vpn", "vma.end = vpn + 1"),)),
    ),
    Mutant(
        "shared-write-copies",
        "textbook error: a write fault in a MAP_SHARED mapping handled as private (do_anonymous_page, not "
        "shmem_fault; do_wp_page never copies for VM_SHARED), so the other sharers never see the write",
        f"{REFINES}; L0: a shared page reads the last value any sharer stored",
        "cow",
        kernel_patch("_missing", ("if vma.shared:", "if vma.shared and not write:")),
    ),
)
