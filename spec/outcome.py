"""What a process-level operation returns, as values shared by both views of memory.

A SIGSEGV, ENOMEM or EINVAL is an outcome, not an exception.  The kernel
view (L1) knows the page-fault error code of a SIGSEGV; the programmer's view
(L0) knows only that the signal happens, so its :class:`Signal` has no code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ok:
    """The operation succeeded and returns nothing."""


@dataclass(frozen=True, slots=True)
class Value:
    """A load, fetch or pinned read returned this 64-bit word."""

    value: int


@dataclass(frozen=True, slots=True)
class OneOf:
    """The programmer's view allows any of these words (a pin of a private page, see :mod:`spec.memory`)."""

    values: frozenset[int]


@dataclass(frozen=True, slots=True)
class Signal:
    """The access raised SIGSEGV; ``error_code`` is the #PF error code (SDM Vol. 3A 4.7), None in L0."""

    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class Errno:
    """The syscall failed with this errno name (``"EINVAL"``, ``"ENOMEM"``, ``"EPERM"``, ``"EFAULT"``)."""

    name: str


@dataclass(frozen=True, slots=True)
class NewPid:
    """``spawn`` or ``fork`` created process ``pid``."""

    pid: int


@dataclass(frozen=True, slots=True)
class NewPin:
    """``pin`` took pin number ``pin``."""

    pin: int


@dataclass(frozen=True, slots=True)
class Stat:
    """``/proc/PID/smaps_rollup`` totals in kB: Rss, Pss, USS (Private_Clean + Private_Dirty), Anonymous."""

    rss_kb: int
    pss_kb: int
    uss_kb: int
    anon_kb: int


@dataclass(frozen=True, slots=True)
class Pagemap:
    """One ``/proc/PID/pagemap`` entry: present (bit 63), the pfn (bits 0-54), exclusive (bit 56)."""

    present: bool
    pfn: int
    exclusive: bool


@dataclass(frozen=True, slots=True)
class Pending:
    """A mapping change started in the background is in flight as number ``flight`` (see :mod:`spec.smp.shootdown`)."""

    flight: int


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a mapping change in flight: CPU ``cpu`` handled its shootdown IPI."""

    cpu: int


Outcome = Ok | Value | OneOf | Signal | Errno | NewPid | NewPin | Stat | Pagemap | Pending | Stage

ENOMEM = Errno("ENOMEM")
EFAULT = Errno("EFAULT")
