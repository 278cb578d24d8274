"""The memory-pressure harness: its refinement machine."""
