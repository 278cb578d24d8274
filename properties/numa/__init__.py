"""The NUMA refinement machine."""
