"""The buddy allocator's refinement machine."""
