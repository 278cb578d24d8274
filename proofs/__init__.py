"""Proofs and exhaustive checks: Z3 lemmas, CrossHair contracts, and ``verify``."""
