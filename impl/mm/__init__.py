"""Address spaces on real x86-64 page tables: the VMA index and the kernel (faults, COW fork, syscalls)."""
