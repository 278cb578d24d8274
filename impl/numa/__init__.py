"""NUMA nodes, memory policies and the numastat counters, as the kernel keeps them."""
