"""The optimized, mutable implementation.

Real x86-64 entry encodings in a simulated physical memory, a hardware-style
walker that sets accessed and dirty bits, Linux-style buddy free lists, a
kernel with real page tables, and per-CPU TLBs with an mmu_gather-style
shootdown.  Nothing in this package imports ``spec``: the harness checks that
this code refines the specification, which only means something if the two
were written apart.

Which spec modules each implementation module refines, and the abstraction
function (in ``properties``) that maps its state to theirs:

- ``impl.paging.physmem``: ``spec.paging.physmem``; ``abstraction.abstract_memory``
- ``impl.paging.mmu``: ``spec.paging.mmu``, ``walk``, ``permissions``, ``pte``; ``abstraction.abstract_mmu``
- ``impl.paging.tlb``: ``spec.paging.tlb``; ``smp.abstraction.abstract_smp``
- ``impl.alloc.buddy``: ``spec.alloc.buddy``; ``abstraction.abstract_buddy``
- ``impl.mm.vma``: ``spec.mm.vma``; ``abstraction.abstract_vma``
- ``impl.mm.kernel``: ``spec.mm.kernel``, ``aspace``, ``fault``, ``cow``, ``pagetable``, ``accounting``;
  ``abstraction.abstract_kernel``
- ``impl.pressure.pressure``: ``spec.pressure.files``, ``lru``, ``swap``, ``meminfo``; ``abstraction.abstract_pressure``
  and ``abstraction.abstract_pages`` (LRU, dirty, referenced, swap slot)
- ``impl.smp.shootdown``: ``spec.smp.state``, ``spec.smp.shootdown``; ``smp.abstraction.abstract_smp``
- ``impl.ualloc.ptmalloc``: ``spec.ualloc.contract`` (the allowed answers, not one state);
  ``ualloc.abstraction.answer_of`` and ``owned_ranges``, with the model's own invariants in ``heap_problems``
"""
