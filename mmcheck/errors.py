"""The one exception hierarchy of mmcheck.

Outcomes of the modelled machine (a page fault, SIGSEGV, ENOMEM) are values,
never exceptions.  An exception means the caller broke the API: it passed an
address that is not aligned, a CPU that does not exist, a scenario file that
does not parse.  Every error names what was wrong and what is allowed, and the
operation that raised it has left the state exactly as it was.

This module imports nothing from the project, so the spec, the implementation
and the harness can all share it without depending on one another.
"""

from __future__ import annotations


class MMCheckError(Exception):
    """Root of every error mmcheck raises on purpose."""


class InvalidArgument(MMCheckError, ValueError):
    """An operation was called with an argument outside its domain."""


class AddressError(InvalidArgument):
    """A physical or virtual address is misaligned or outside memory."""


class UnknownCpu(InvalidArgument, LookupError):
    """A CPU number outside ``0 .. cpus-1``."""


class ConfigError(InvalidArgument):
    """A machine configuration value is outside its allowed range."""


class ScenarioError(InvalidArgument):
    """A scenario file or operation is malformed.

    ``where`` names the place (``ops[3].va``) so a person can find it.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")
