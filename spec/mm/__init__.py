"""Address spaces (L1): VMAs, abstract page tables, faults, copy-on-write, syscalls, accounting.

:mod:`~spec.mm.kernel` is the kernel's state; :mod:`~spec.mm.aspace`,
:mod:`~spec.mm.fault` and :mod:`~spec.mm.cow` its rules;
:mod:`~spec.mm.invariants` what must hold after every step.
"""
