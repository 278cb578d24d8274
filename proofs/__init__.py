"""Proofs and exhaustive checks above the harness.

Z3 lemmas, CrossHair contracts, the explorers, ``verify``, the fuzzer and the
mutant hunt.  They drive the machines and lockstep drivers of ``properties``,
which never import this package.
"""
