"""The optimized, mutable implementation.

Real x86-64 entry encodings in a simulated physical memory, a hardware-style
walker that sets accessed and dirty bits, and (in later layers) Linux-style
allocators and TLBs.  Nothing in this package imports ``spec``: the harness
checks that this code refines the specification, which only means something
if the two were written apart.
"""
