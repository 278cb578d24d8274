"""The kernel-layer operations on each side: the programmer's view (L0), the kernel spec (L1), the implementation.

The kernel boots on the first kernel-layer operation of a run, taking its
frames from the same buddy allocator the ``alloc_pages`` operations use.
On the spec side every operation takes the implementation's frame choices
(its effect records, by role) when there are any; run alone it takes the
buddy's least choice.  :class:`L0Side` checks that an L1 outcome is one the
programmer's view allows (L1 refines L0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from impl.buddy import BuddyAllocator
from impl.kernel import Kernel as ImplKernel
from impl.mmu import FETCH, READ, WRITE, Mmu
from mmcheck.errors import InvalidArgument, MMCheckError
from mmcheck.kernel_ops import (
    Exit,
    Fetch,
    Fork,
    KernelOp,
    Load,
    Madvise,
    Mmap,
    Mprotect,
    Munmap,
    PagemapOp,
    PinOp,
    ReadPin,
    Spawn,
    StatOp,
    Store,
    Switch,
    Unpin,
)
from mmcheck.scenario import Config, Result
from spec import accounting, aspace, cow, fault
from spec import memory as l0
from spec.buddy import BuddyState
from spec.kernel import NO_CHOICES, Choices, Kernel, boot
from spec.outcome import Errno, NewPid, NewPin, Ok, OneOf, Outcome, Pagemap, Signal, Stat, Value
from spec.permissions import Kind, Mode
from spec.vma import Prot

ACCESS_KINDS = {"load": Kind.READ, "store": Kind.WRITE, "fetch": Kind.FETCH}
IMPL_KINDS = {"load": READ, "store": WRITE, "fetch": FETCH}
# Operations that may need a frame: ENOMEM from them is allowed by L0 when it changed nothing.
ALLOCATING = (Spawn, Fork, Load, Store, Fetch, PinOp)


def rwx(prot: str) -> tuple[bool, bool, bool]:
    """``"rw-"`` as three booleans."""
    return prot[0] == "r", prot[1] == "w", prot[2] == "x"


def check_supported(op: KernelOp) -> None:
    """Refuse what this layer does not model yet, the same way on every side."""
    if isinstance(op, Mmap) and op.huge:
        raise InvalidArgument("2 MiB huge mappings are not modelled yet: use huge=false")


def outcome_json(outcome: Outcome) -> Result:
    """The JSON result of a spec outcome."""
    if isinstance(outcome, Ok):
        return {"ok": True}
    if isinstance(outcome, Value):
        return {"value": outcome.value}
    if isinstance(outcome, Signal):
        return {"signal": "SIGSEGV", "error_code": outcome.error_code}
    if isinstance(outcome, Errno):
        return {"error": outcome.name}
    if isinstance(outcome, NewPid):
        return {"pid": outcome.pid}
    if isinstance(outcome, NewPin):
        return {"pin": outcome.pin}
    if isinstance(outcome, Stat):
        return {
            "rss_kb": outcome.rss_kb,
            "pss_kb": outcome.pss_kb,
            "uss_kb": outcome.uss_kb,
            "anon_kb": outcome.anon_kb,
        }
    if isinstance(outcome, Pagemap):
        return {"present": outcome.present, "pfn": outcome.pfn, "exclusive": outcome.exclusive}
    raise AssertionError(f"no JSON form for {outcome!r}")


def spec_step(k: Kernel, op: KernelOp, choices: Choices) -> tuple[Kernel, Outcome]:
    """One kernel-layer operation on the L1 spec."""
    check_supported(op)
    if isinstance(op, Spawn):
        return aspace.spawn(k, choices)
    if isinstance(op, Fork):
        return cow.fork(k, op.pid, choices)
    if isinstance(op, Exit):
        return aspace.exit_process(k, op.pid)
    if isinstance(op, Mmap):
        return aspace.mmap(k, op.pid, op.va, op.pages, Prot.parse(op.prot), op.shared)
    if isinstance(op, Munmap):
        return aspace.munmap(k, op.pid, op.va, op.pages)
    if isinstance(op, Mprotect):
        return aspace.mprotect(k, op.pid, op.va, op.pages, Prot.parse(op.prot))
    if isinstance(op, Madvise):
        return aspace.madvise_dontneed(k, op.pid, op.va, op.pages)
    if isinstance(op, Switch):
        return aspace.switch(k, op.cpu, op.pid)
    if isinstance(op, Load | Store | Fetch):
        value = op.value if isinstance(op, Store) else 0
        return fault.access(k, op.cpu, op.va, ACCESS_KINDS[op.name], Mode(op.mode), value, choices)
    if isinstance(op, PinOp):
        return aspace.pin(k, op.pid, op.va, choices)
    if isinstance(op, ReadPin):
        return k, aspace.read_pin(k, op.pin)
    if isinstance(op, Unpin):
        return aspace.unpin(k, op.pin)
    if isinstance(op, StatOp):
        return k, accounting.stat(k, op.pid)
    if isinstance(op, PagemapOp):
        return k, accounting.pagemap(k, op.pid, op.va)
    raise MMCheckError(f"the kernel spec has no rule for {op.name!r}")


class SpecKernelSide:
    """The L1 kernel state of a spec run; ``None`` until the first kernel-layer op boots it."""

    def __init__(self, config: Config) -> None:
        self.cpus = config.cpus
        self.kernel: Kernel | None = None
        self.last: Outcome | None = None

    def boot_if_needed(self, buddy: BuddyState, choices: Choices) -> BuddyState:
        """Boot on the first use (kept even if the op that triggered it is refused)."""
        if self.kernel is None:
            self.kernel = boot(buddy, self.cpus, choices)
            return self.kernel.buddy
        return buddy

    def apply(self, op: KernelOp, buddy: BuddyState, choices: Choices = NO_CHOICES) -> tuple[BuddyState, Result]:
        """Run ``op`` against the current buddy state; returns the new buddy state and the result."""
        buddy = self.boot_if_needed(buddy, choices)
        assert self.kernel is not None
        k, outcome = spec_step(replace(self.kernel, buddy=buddy), op, choices)
        self.kernel, self.last = k, outcome
        return k.buddy, outcome_json(outcome)


class ImplKernelSide:
    """The implementation kernel of a run, booted on first use."""

    def __init__(self) -> None:
        self.kernel: ImplKernel | None = None

    def choices(self) -> Choices:
        """The frames the last operation allocated, by role."""
        return {} if self.kernel is None else dict(self.kernel.effects)

    def apply(self, op: KernelOp, mmu: Mmu, buddy: BuddyAllocator) -> Result:
        """Run ``op``; bad input raises and changes nothing (but the boot)."""
        if self.kernel is None:
            self.kernel = ImplKernel(mmu, buddy)
        else:
            self.kernel.effects.clear()
        return impl_step(self.kernel, op)


def impl_step(k: ImplKernel, op: KernelOp) -> Result:
    """One kernel-layer operation on the implementation."""
    check_supported(op)
    if isinstance(op, Spawn):
        return k.spawn()
    if isinstance(op, Fork):
        return k.fork(op.pid)
    if isinstance(op, Exit):
        return k.exit(op.pid)
    if isinstance(op, Mmap):
        return k.mmap(op.pid, op.va, op.pages, rwx(op.prot), op.shared)
    if isinstance(op, Munmap):
        return k.munmap(op.pid, op.va, op.pages)
    if isinstance(op, Mprotect):
        return k.mprotect(op.pid, op.va, op.pages, rwx(op.prot))
    if isinstance(op, Madvise):
        return k.madvise_dontneed(op.pid, op.va, op.pages)
    if isinstance(op, Switch):
        return k.switch(op.cpu, op.pid)
    if isinstance(op, Load | Store | Fetch):
        value = op.value if isinstance(op, Store) else 0
        return k.access(op.cpu, op.va, IMPL_KINDS[op.name], op.mode == "user", value)
    if isinstance(op, PinOp):
        return k.pin(op.pid, op.va)
    if isinstance(op, ReadPin):
        return k.read_pin(op.pin)
    if isinstance(op, Unpin):
        return k.unpin(op.pin)
    if isinstance(op, StatOp):
        return k.stat(op.pid)
    if isinstance(op, PagemapOp):
        return k.pagemap(op.pid, op.va)
    raise MMCheckError(f"the kernel implementation has no rule for {op.name!r}")


def l0_step(mem: l0.Memory, op: KernelOp) -> tuple[l0.Memory, Outcome | None]:
    """One op on the programmer's view; None for observations it has no opinion on (stat, pagemap)."""
    if isinstance(op, Spawn):
        return l0.spawn(mem)
    if isinstance(op, Fork):
        return l0.fork(mem, op.pid)
    if isinstance(op, Exit):
        return l0.exit_process(mem, op.pid)
    if isinstance(op, Mmap):
        return l0.mmap(mem, op.pid, op.va, op.pages, Prot.parse(op.prot), op.shared)
    if isinstance(op, Munmap):
        return l0.munmap(mem, op.pid, op.va, op.pages)
    if isinstance(op, Mprotect):
        return l0.mprotect(mem, op.pid, op.va, op.pages, Prot.parse(op.prot))
    if isinstance(op, Madvise):
        return l0.madvise_dontneed(mem, op.pid, op.va, op.pages)
    if isinstance(op, Switch):
        return l0.switch(mem, op.cpu, op.pid)
    if isinstance(op, Load | Store | Fetch):
        value = op.value if isinstance(op, Store) else 0
        return l0.access(mem, op.cpu, op.va, ACCESS_KINDS[op.name], Mode(op.mode), value)
    if isinstance(op, PinOp):
        return l0.pin(mem, op.pid, op.va)
    if isinstance(op, ReadPin):
        return mem, l0.read_pin(mem, op.pin)
    if isinstance(op, Unpin):
        return l0.unpin(mem, op.pin)
    return mem, None


def refines(l1: Outcome, l0_outcome: Outcome) -> bool:
    """An L1 outcome is one L0 allows: signals match whatever their code, a pinned word is one L0 allows."""
    if isinstance(l1, Signal):
        return isinstance(l0_outcome, Signal)
    if isinstance(l0_outcome, OneOf):
        return isinstance(l1, Value) and l1.value in l0_outcome.values
    return l1 == l0_outcome


class L0Side:
    """The programmer's view run beside L1; :meth:`check` steps it and says what L1 got wrong, if anything."""

    def __init__(self, config: Config) -> None:
        self.memory = l0.initial(config.cpus)

    def check(self, op: KernelOp, l1: Outcome) -> str | None:
        """Step L0 with ``op`` and compare with L1's outcome; ENOMEM from an allocating op must change nothing."""
        if l1 == Errno("ENOMEM") and isinstance(op, ALLOCATING):
            return None
        mem, expected = l0_step(self.memory, op)
        self.memory = mem
        if expected is None or refines(l1, expected):
            return None
        return f"L1 gave {l1!r}, the programmer's view allows {expected!r}"


def kernel_difference(expected: Kernel, actual: Kernel) -> tuple[str, str] | None:
    """The first part where two L1 states differ, as (spec's, implementation's); None when equal."""
    if expected == actual:
        return None
    for name in ("buddy", "boot", "current", "objects", "pins", "zero_words", "kernel_words"):
        mine, theirs = getattr(expected, name), getattr(actual, name)
        if mine != theirs:
            return f"{name}: {dict(mine) if hasattr(mine, 'items') else mine}", f"{name}: {theirs}"
    for name in ("next_pid", "next_object", "next_pin"):
        if getattr(expected, name) != getattr(actual, name):
            return f"{name}: {getattr(expected, name)}", f"{name}: {getattr(actual, name)}"
    if set(expected.procs) != set(actual.procs):
        return f"pids {sorted(expected.procs)}", f"pids {sorted(actual.procs)}"
    for pid, sp in expected.procs.items():
        other = actual.procs[pid]
        for name in ("vmas", "root", "tables", "leaves", "kernel"):
            if getattr(sp, name) != getattr(other, name):
                return _mapping_difference(f"pid {pid} {name}", getattr(sp, name), getattr(other, name))
    return _mapping_difference("pages", expected.pages, actual.pages)


def _mapping_difference(what: str, mine: object, theirs: object) -> tuple[str, str]:
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        keys = sorted(set(mine) ^ set(theirs) | {k for k in mine if k in theirs and mine[k] != theirs[k]}, key=repr)
        return (
            f"{what}: " + ", ".join(f"{k!r}: {mine.get(k)!r}" for k in keys),
            f"{what}: " + ", ".join(f"{k!r}: {theirs.get(k)!r}" for k in keys),
        )
    return f"{what}: {mine!r}", f"{what}: {theirs!r}"
