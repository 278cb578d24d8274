"""The QEMU oracle: a bare-metal guest (``guest.c``, ``boot.S``, ``guest.ld``) and :mod:`~oracles.qemu.oracle`."""
