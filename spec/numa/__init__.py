"""NUMA: nodes with their CPUs, frames and distances, the memory policies, and the numastat counters."""
