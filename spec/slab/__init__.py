"""The SLUB small-object allocator: size classes and slab geometry, the caches as a value, their invariants."""
