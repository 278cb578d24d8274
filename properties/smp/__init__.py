"""The SMP layer's harness: the abstraction of per-CPU TLB state and the SMP refinement machine."""
