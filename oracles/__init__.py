"""Real implementations to compare with: QEMU's page walker, the live Linux kernel, and Linux with NUMA nodes in QEMU.

Each oracle's folder holds the program that runs on the other side (a
bare-metal guest, a C helper) beside the Python that builds and drives it.
Both are built on first use into ``.cache/``.
"""
