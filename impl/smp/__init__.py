"""Several CPUs: cpu_tlbstate, ASIDs, lazy TLB, mmu_gather and IPIs over the kernel of :mod:`impl.mm`."""
