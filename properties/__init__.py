"""The harness: abstraction functions, runners, Hypothesis strategies and refinement machines.

This is the one place (with ``proofs`` and the CLI) that sees both ``spec``
and ``impl``.
"""
