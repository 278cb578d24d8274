"""The mutant catalogue: realistic defects the harness must catch, applied at run time.

A mutant is a small, named change to the implementation that mirrors a real
bug (a kernel commit, an SDM misreading, a textbook error).  It is applied
only while a check runs, by patching a function or method of ``impl/``; the
shipped implementation contains no bug switches.  Each entry says which
invariant the defect violates and which layer it lives in, so later layers
(buddy, COW, TLB) add entries the same way.

Two ways to apply one:

- :class:`SourcePatch` rewrites the source of one function or method with
  exact text replacements (each must match exactly once, so a patch that no
  longer applies fails loudly instead of testing nothing) and swaps the
  result in;
- :class:`Replace` swaps in a given object (a function or a subclass).

:mod:`proofs.hunt` applies each mutant around the runs
``verify`` makes of its layer's checks and reports which caught it.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


class Patch(Protocol):
    """How a mutant is applied: a context manager that installs it and removes it afterwards."""

    def applied(self) -> contextlib.AbstractContextManager[None]: ...


@contextlib.contextmanager
def swapped(owner: Any, attribute: str, value: Any) -> Iterator[None]:
    """``owner.attribute`` replaced by ``value`` inside the block, restored after it."""
    original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


@dataclass(frozen=True, slots=True)
class SourcePatch:
    """Replace ``owner.attribute`` by its own source with ``edits`` (old text, new text) applied.

    The rewritten source is compiled in the namespace of the module that
    defines ``owner`` (or of ``owner`` itself, a module whose function is patched), so it sees the same
    constants and helpers.
    """

    owner: Any
    attribute: str
    edits: tuple[tuple[str, str], ...]

    def mutated_source(self) -> str:
        """The function's source after the edits; raises if an edit does not match exactly once."""
        source = textwrap.dedent(inspect.getsource(getattr(self.owner, self.attribute)))
        for old, new in self.edits:
            count = source.count(old)
            if count != 1:
                raise ValueError(f"{self.attribute}: expected {old!r} exactly once in the source, found {count}")
            source = source.replace(old, new)
        return source

    def build(self) -> Any:
        """The mutated function (or staticmethod), ready to install."""
        module = self.owner if inspect.ismodule(self.owner) else sys.modules[self.owner.__module__]
        namespace = dict(vars(module))
        exec(compile(self.mutated_source(), f"<mutant of {self.attribute}>", "exec"), namespace)
        return namespace[self.attribute]

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        with swapped(self.owner, self.attribute, self.build()):
            yield


@dataclass(frozen=True, slots=True)
class Replace:
    """Replace ``owner.attribute`` by ``value`` (a function, a subclass)."""

    owner: Any
    attribute: str
    value: Any

    def applied(self) -> contextlib.AbstractContextManager[None]:
        return swapped(self.owner, self.attribute, self.value)


@dataclass(frozen=True, slots=True)
class Mutant:
    """One catalogued defect.

    ``mirrors`` names the real bug or misreading (the text before its first
    colon is the short label tables show), ``invariant`` the property that must
    catch it, ``layer`` where it lives (``walk``, ``buddy``, ``cow``, ``tlb``),
    ``patch`` how to apply it.
    """

    name: str
    mirrors: str
    invariant: str
    layer: str
    patch: Patch

    def applied(self) -> contextlib.AbstractContextManager[None]:
        """Install the defect for the duration of the block."""
        return self.patch.applied()

    @property
    def label(self) -> str:
        """The short name of what it mirrors: ``mirrors`` up to its first colon."""
        return self.mirrors.split(":", 1)[0]
