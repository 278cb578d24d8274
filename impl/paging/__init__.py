"""Paging in the implementation: simulated physical memory, a hardware-style walker, per-CPU TLBs."""
