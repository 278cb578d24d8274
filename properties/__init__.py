"""The harness: abstraction functions, lockstep drivers, Hypothesis strategies and refinement machines.

This floor (with the ones above it) is the only one that sees both ``spec``
and ``impl``.  It imports the ground (``lang``), the spec and the
implementation, never ``proofs``, ``oracles`` or ``mmcheck``: the explorers,
``verify`` and the mutant hunt sit above it and use it.
"""
