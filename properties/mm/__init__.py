"""The kernel layer's harness: the lockstep driver (spec, impl and L0) and the kernel and hugetlb machines."""
