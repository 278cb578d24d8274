"""Paging: addresses, entries, permissions, the walk, physical memory, the MMU and what a TLB may hold.

Intel SDM Vol. 3A chapter 4.  :mod:`~spec.paging.walk` is the walk itself;
:mod:`~spec.paging.tlb` is the TLB as the set of translations a CPU may still
hold, shared by the kernel's SMP layer.
"""
