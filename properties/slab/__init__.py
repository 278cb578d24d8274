"""The slab allocator's abstraction function, its lockstep driver and its refinement machine."""
