"""User-space allocators of the simulated process: :mod:`impl.ualloc.ptmalloc` models glibc's malloc."""
