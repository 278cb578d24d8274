"""NUMA mutants (``impl.numa.numa.Numa``): real ways to put pages on the wrong node or count them wrongly.

Each is the shipped method's source with one small edit, swapped in for the run only; the ``ci`` NUMA machine
(:mod:`properties.numa.numa_machine`) must catch each with a short counterexample.  Where no single upstream
commit is the bug, the entry names the kernel function whose rule the edit breaks and the misreading it
models (the seed's NUMA deep dive lists most of them as what goes wrong in practice).
"""

from __future__ import annotations

from impl.numa.numa import Numa
from properties.mutants.catalogue import Mutant, SourcePatch

REFINES = (
    "numa: impl state (nodes of frames, policies, numastat), abstracted, equals L1; L1 outcomes are ones L0 allows"
)

NUMA_MUTANTS = (
    Mutant(
        "numa-first-touch-home-cpu",
        "first touch by the task's home CPU: a default-policy page placed on the node of the first CPU the "
        "process runs on instead of the CPU that faults (alloc_pages_vma's numa_node_id() is the faulting CPU's, "
        "mm/mempolicy.c policy_node), the single-threaded-initialisation trap of the seed seen from the kernel side",
        f"{REFINES}; placement: a default page goes to the faulting CPU's node while it has room",
        "numa",
        SourcePatch(
            Numa,
            "where",
            (
                (
                    "local = self.node_of_cpu(self.cpu)",
                    "local = self.node_of_cpu(k.current.index(self.pid) if self.pid in k.current else self.cpu)",
                ),
            ),
        ),
    ),
    Mutant(
        "numa-interleave-off-by-one",
        "interleave index off by one: offset_il_node (mm/mempolicy.c, 6.1) taking the (n+1)-th node of the mask "
        "for offset n, so every interleaved page lands one node over",
        f"{REFINES}; placement: an interleaved page goes to node index % weight of its mask",
        "numa",
        SourcePatch(
            Numa,
            "where",
            (
                (
                    "target = nodes[(index & IL_MASK) % len(nodes)]",
                    "target = nodes[((index + 1) & IL_MASK) % len(nodes)]",
                ),
            ),
        ),
    ),
    Mutant(
        "numa-interleave-ignores-vma-offset",
        "interleave ignoring the VMA offset: interleave_nid counting pages from vm_start alone, without "
        "vm_pgoff (which do_mmap sets to addr >> PAGE_SHIFT for an anonymous private mapping), so a mapping made "
        "at another address interleaves from its first node again",
        f"{REFINES}; placement: an interleaved page goes by vm_pgoff + its pages from vm_start",
        "numa",
        SourcePatch(Numa, "offset", (("return pgoff + vpn - vma.start", "return vpn - vma.start"),)),
    ),
    Mutant(
        "numa-interleave-full-index",
        "the 6.12 interleave rule on a 6.1 kernel: interleave_nid taking the whole pgoff_t modulo the weight, "
        "where 6.1's offset_il_node cuts it to 32 bits first ((unsigned int)n); the oracle booted 6.1 and found "
        "its pages at nodes 3 1 2 where the full index gives 1 2 3 (docs/numa-oracle.md)",
        f"{REFINES}; placement: an interleaved page goes by the low 32 bits of its offset",
        "numa",
        SourcePatch(
            Numa, "where", (("target = nodes[(index & IL_MASK) % len(nodes)]", "target = nodes[index % len(nodes)]"),)
        ),
    ),
    Mutant(
        "numa-bind-falls-back",
        "MPOL_BIND falling back to nodes outside its mask when they are full: policy_nodemask's mask dropped as "
        "MPOL_PREFERRED_MANY drops it on its second try (alloc_pages_preferred_many), so a bound task spills "
        "instead of failing (or running the OOM killer of its nodes)",
        f"{REFINES}; placement: a bound page is inside its nodes, and a full bind fails with ENOMEM",
        "numa",
        SourcePatch(Numa, "where", (('if mode == "preferred_many":', 'if mode in ("preferred_many", "bind"):'),)),
    ),
    Mutant(
        "numa-preferred-no-fallback",
        "MPOL_PREFERRED never falling back: the preferred node's zonelist cut to that node as if __GFP_THISNODE "
        "were set, so a full preferred node fails the fault with ENOMEM where policy_node's zonelist would go to "
        "the next node by distance",
        f"{REFINES}; a preferred page falls back along its node's zonelist",
        "numa",
        SourcePatch(
            Numa,
            "where",
            (("return zl, zl[0], -1, False", "return zl[:1], zl[0], -1, True"),),
        ),
    ),
    Mutant(
        "numa-miss-foreign-swapped",
        "numa_miss and numa_foreign swapped in zone_statistics (mm/page_alloc.c): the miss counted on the "
        "preferred node and the foreign on the node that got the page, the reverse of what "
        "Documentation/admin-guide/numastat.rst defines",
        f"{REFINES}; numastat: numa_miss on the node allocated from, numa_foreign on the preferred one",
        "numa",
        SourcePatch(
            Numa,
            "alloc",
            (
                ("s[MISS] += pages", "s[FOREIGN] += pages"),
                ("self.stats[preferred][FOREIGN] += pages", "self.stats[preferred][MISS] += pages"),
            ),
        ),
    ),
    Mutant(
        "numa-fork-drops-policy",
        "the task policy not inherited by fork: copy_process without mpol_dup(p->mempolicy) (kernel/fork.c), so "
        "a child of a bound or interleaved parent allocates as a default task",
        f"{REFINES}; fork: the child's policy is the parent's",
        "numa",
        SourcePatch(Numa, "fork", (("self.task[child] = self.task[parent]", "self.task.pop(child, None)"),)),
    ),
    Mutant(
        "numa-local-by-preferred",
        "local_node counted against the preferred node instead of the allocating CPU's (zone_statistics compares "
        "zone_to_nid(z) with numa_node_id()): a bind or preferred allocation off the CPU's node reads as local",
        f"{REFINES}; numastat: local_node and other_node by the allocating CPU's node",
        "numa",
        SourcePatch(
            Numa,
            "alloc",
            (
                (
                    "s[LOCAL if node == self.node_of_cpu(self.cpu) else OTHER]",
                    "s[LOCAL if node == preferred else OTHER]",
                ),
            ),
        ),
    ),
    Mutant(
        "numa-policy-survives-munmap",
        "a VMA policy outliving its VMA: the range's policy kept when it is unmapped (remove_vma's mpol_put), so a "
        "new mapping at the same address comes up with the old mbind policy instead of none",
        f"{REFINES}; a new VMA has no memory policy",
        "numa",
        SourcePatch(Numa, "cut", (("if not ranges:", "if ranges or not ranges:"),)),
    ),
    Mutant(
        "numa-migrate-free-before-flush",
        "migration freeing the source page before the TLB flush: the old frame back in the buddy while another "
        "CPU may still write through its TLB entry (the ordering migrate_folio_unmap / try_to_migrate's flush "
        "and remove_migration_ptes keep; the same class as the free-before-flush bugs of the SMP layer)",
        f"{REFINES}; TLB coherence: no TLB entry points at a free frame",
        "numa",
        SourcePatch(Numa, "move_page", (("k._put(old)", "k.mapcount[old] -= 1\n    k.drop_reference(old)"),)),
    ),
    Mutant(
        "numa-migrate-drops-dirty",
        "a migrated page losing its dirty bit: remove_migration_pte rebuilding the entry without pte_mkdirty "
        "when the migration entry was dirty (is_writable_migration_entry / is_migration_entry_dirty, mm/migrate.c), "
        "so a written page looks clean and reclaim could drop its data",
        f"{REFINES}; migration keeps every bit of the entry",
        "numa",
        SourcePatch(
            Numa,
            "move_page",
            (("(entry & ~PFN_MASK) | (new << 12)", "(entry & ~PFN_MASK & ~D_BIT) | (new << 12)"),),
        ),
    ),
    Mutant(
        "numa-migrate-loses-mapcount",
        "a migrated page losing its map count: the new folio mapped without page_add_anon_rmap / "
        "folio_add_anon_rmap_pte in remove_migration_pte, so smaps, numa_maps and the next unmap see a page mapped "
        "zero times",
        f"{REFINES}; cow: refcount and mapcount equal the references that exist",
        "numa",
        SourcePatch(
            Numa,
            "move_page",
            (
                (
                    "k.refcount[new], k.mapcount[new], k.flags[new] = 1, 1, k.flags[old]",
                    "k.refcount[new], k.mapcount[new], k.flags[new] = 1, 0, k.flags[old]",
                ),
            ),
        ),
    ),
)
