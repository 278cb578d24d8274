"""Benchmarks: ``nox -s bench`` runs :mod:`benchmarks.run`."""
