"""The reference specification: pure, immutable, and written to be read.

Every function here is total on its documented domain, never mutates its
inputs or any global, and performs no I/O.  Each rule cites its source in the
Intel SDM or the Linux kernel.  Nothing in this package imports ``impl``.
"""
