"""The catalogue's machinery lives in :mod:`properties.mutants`; this name stays for tests that import it."""

from properties.mutants.catalogue import Mutant, Patch, Replace, SourcePatch, swapped

__all__ = ["Mutant", "Patch", "Replace", "SourcePatch", "swapped"]
