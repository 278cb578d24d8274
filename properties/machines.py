"""Hypothesis refinement machines, registered as ``verify`` checks."""
