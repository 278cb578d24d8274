"""The kernel layer: the programmer's view (L0), the kernel spec (L1) and the implementation, on small cases."""

from __future__ import annotations

import pytest

from lang import ops
from lang.errors import AddressError, IdleCpu, UnknownPid, UnknownPin
from lang.scenario import Config, Op
from properties.drivers import Lockstep
from properties.mm.driver import L0Side
from spec import memory as l0
from spec.mm.invariants import violations
from spec.mm.vma import Prot, Vma, covered_until, cut, has_hole
from spec.outcome import Errno, NewPid, Ok, OneOf, Pending, Value
from spec.paging.permissions import Kind, Mode

BASE = 0x10000000


def run(ops: list[Op], frames: int = 64) -> tuple[Lockstep, list[dict[str, object]]]:
    """Run ``ops`` in lockstep (every op checked against L1 and L0) and return the runner and the results."""
    lockstep = Lockstep(Config(frames=frames, cpus=1))
    return lockstep, [lockstep.apply(op) for op in ops]


def l1_state(lockstep: Lockstep):  # type: ignore[no-untyped-def]
    state = lockstep.spec.kernel.kernel
    assert state is not None
    return state


# --- L0 -----------------------------------------------------------------------------------------


def test_l0_fork_copies_private_and_shares_shared_pages() -> None:
    """After fork a private store stays in its process; a shared store is seen by both."""
    mem, _ = l0.spawn(l0.initial(1))
    mem, _ = l0.mmap(mem, 1, BASE, 1, Prot.parse("rw-"), False)
    mem, _ = l0.mmap(mem, 1, BASE + 0x1000, 1, Prot.parse("rw-"), True)
    mem, child = l0.fork(mem, 1)
    assert NewPid(2) == child
    mem, _ = l0.switch(mem, 0, 2)
    mem, _ = l0.access(mem, 0, BASE, Kind.WRITE, Mode.USER, 7)
    mem, _ = l0.access(mem, 0, BASE + 0x1000, Kind.WRITE, Mode.USER, 8)
    mem, _ = l0.switch(mem, 0, 1)
    assert Value(0) == l0.access(mem, 0, BASE, Kind.READ, Mode.USER)[1]
    assert Value(8) == l0.access(mem, 0, BASE + 0x1000, Kind.READ, Mode.USER)[1]


def test_l0_write_or_execute_imply_read_and_nothing_else() -> None:
    """On x86 a write-only or execute-only page is readable; a read-only page is not writable."""
    assert l0.allowed(Prot.parse("-w-"), Kind.READ)
    assert l0.allowed(Prot.parse("--x"), Kind.READ)
    assert not l0.allowed(Prot.parse("r--"), Kind.WRITE)
    assert not l0.allowed(Prot.parse("rw-"), Kind.FETCH)
    assert not l0.allowed(Prot.parse("---"), Kind.READ)


def test_l0_private_pin_allows_only_the_pinning_process_values() -> None:
    """A pin of a private page reads a value its process stored since the pin, never another's."""
    mem, _ = l0.spawn(l0.initial(1))
    mem, _ = l0.mmap(mem, 1, BASE, 1, Prot.parse("rw-"), False)
    mem, _ = l0.switch(mem, 0, 1)
    mem, _ = l0.access(mem, 0, BASE, Kind.WRITE, Mode.USER, 1)
    mem, _ = l0.pin(mem, 1, BASE)
    mem, _ = l0.access(mem, 0, BASE, Kind.WRITE, Mode.USER, 2)
    mem, _ = l0.madvise_dontneed(mem, 1, BASE, 1)
    mem, _ = l0.access(mem, 0, BASE, Kind.WRITE, Mode.USER, 3)
    assert OneOf(frozenset({1, 2})) == l0.read_pin(mem, 1)


def test_l0_mprotect_stops_at_the_first_hole() -> None:
    """mprotect changes the mapped run at the start and reports ENOMEM for the hole after it."""
    mem, _ = l0.spawn(l0.initial(1))
    mem, _ = l0.mmap(mem, 1, BASE, 1, Prot.parse("rw-"), False)
    mem, outcome = l0.mprotect(mem, 1, BASE, 3, Prot.parse("r--"))
    assert Errno("ENOMEM") == outcome
    assert Prot.parse("r--") == mem.procs[1][BASE >> 12].prot


def l0_after_a_fork_returned_last(fork: object) -> tuple[L0Side, str | None]:
    """L0 beside L1 for: spawn, an async fork, an async mmap started after it that returns first, then the fork
    returning ``fork``; returns the L0 side and what it said at the fork's return."""
    side = L0Side(Config(frames=64, cpus=1))
    assert side.check(ops.Spawn(), NewPid(1)) is None
    assert side.check(ops.Fork(1, background=True), Pending(1)) is None
    assert side.check(ops.Mmap(1, BASE, 1, "rw-", background=True), Pending(2)) is None
    assert side.check(ops.Step(2), Ok()) is None, "the mmap returns first: the fork took effect before it"
    return side, side.check(ops.Step(1), fork)  # type: ignore[arg-type]


def test_l0_lets_a_fork_in_flight_fail_with_enomem_after_a_later_change_returned() -> None:
    """The fork may still return ENOMEM (L0 knows no frames), and then it took no pid and made no child; or it
    returns the pid L0 gives it, and no other."""
    side, problem = l0_after_a_fork_returned_last(Errno("ENOMEM"))
    assert problem is None
    assert side.check(ops.Fork(1), NewPid(3)) is not None, "the failed fork took no pid"
    side = l0_after_a_fork_returned_last(Errno("ENOMEM"))[0]
    assert side.check(ops.Fork(1), NewPid(2)) is None
    side, problem = l0_after_a_fork_returned_last(NewPid(2))
    assert problem is None
    assert side.check(ops.Exit(2), Ok()) is None, "the child exists"
    assert l0_after_a_fork_returned_last(NewPid(3))[1] is not None
    assert l0_after_a_fork_returned_last(Errno("EINVAL"))[1] is not None



# --- VMAs ---------------------------------------------------------------------------------------


def test_cut_splits_a_vma_and_keeps_the_object_offset() -> None:
    """Removing the middle of a shared VMA leaves two pieces mapping the right object pages."""
    vma = Vma(0x100, 0x104, Prot.parse("rw-"), True, obj=1)
    assert (
        Vma(0x100, 0x101, Prot.parse("rw-"), True, 1, 0),
        Vma(0x103, 0x104, Prot.parse("rw-"), True, 1, 3),
    ) == cut((vma,), 0x101, 0x103)


def test_covered_until_and_holes() -> None:
    """The mapped run at a page ends at the first gap."""
    vmas = (Vma(0x10, 0x12, Prot()), Vma(0x12, 0x13, Prot()), Vma(0x14, 0x15, Prot()))
    assert 0x13 == covered_until(vmas, 0x10, 0x20)
    assert has_hole(vmas, 0x10, 0x15)
    assert not has_hole(vmas, 0x10, 0x13)


# --- L1 and the implementation in lockstep ------------------------------------------------------


def test_munmap_frees_page_tables_and_exit_frees_everything() -> None:
    """After munmap of the only mapping its tables are gone; after exit only the boot frames stay allocated."""
    program: list[Op] = [ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 2, "rw-", False), ops.Store(0, BASE, 5)]
    lockstep, _ = run([*program, ops.Munmap(1, BASE, 2)])
    assert {} == dict(l1_state(lockstep).procs[1].tables)
    lockstep.apply(ops.Spawn())
    lockstep.apply(ops.Exit(1))
    state = l1_state(lockstep)
    allocated = {b.pfn for b in state.buddy.allocated}
    assert set(state.boot) | {state.procs[2].root} == allocated
    assert [] == violations(state)


def test_enomem_fault_changes_nothing() -> None:
    """A store that needs a frame when none is free returns ENOMEM and leaves every side as it was."""
    lockstep, results = run([ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 8, "rw-", False)], frames=11)
    for i in range(8):
        results.append(lockstep.apply(ops.Store(0, BASE + i * 0x1000, i + 1)))
    assert {"error": "ENOMEM"} in results
    assert {"ok": True} == results[3]


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (ops.Fork(9), UnknownPid),
        (ops.Load(0, BASE + 4), AddressError),
        (ops.Load(0, 0x0000800000000000), AddressError),
        (ops.ReadPin(3), UnknownPin),
        (ops.StatOp(5), UnknownPid),
    ],
)
def test_misuse_raises_the_same_error_on_every_side_and_changes_nothing(op: Op, error: type[Exception]) -> None:
    """Bad input is an exception of the named class; the states stay equal (the lockstep checks them)."""
    lockstep, _ = run([ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 1, "rw-", False)])
    before = l1_state(lockstep)
    with pytest.raises(error):
        lockstep.apply(op)
    assert before == l1_state(lockstep)


def test_access_on_an_idle_cpu_is_misuse() -> None:
    """A CPU that runs no process cannot access memory."""
    lockstep, _ = run([ops.Spawn()])
    with pytest.raises(IdleCpu):
        lockstep.apply(ops.Load(0, BASE))


def test_mprotect_upgrade_only_for_exclusive_pages() -> None:
    """mprotect(rw) makes an exclusive anonymous page writable at once, a COW-shared one not."""
    program: list[Op] = [ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 2, "rw-", False), ops.Store(0, BASE, 1)]
    program += [ops.Store(0, BASE + 0x1000, 2), ops.Fork(1), ops.Store(0, BASE + 0x1000, 3)]
    program += [ops.Mprotect(1, BASE, 2, "r--")]
    lockstep, _ = run([*program, ops.Mprotect(1, BASE, 2, "rw-")])
    leaves = l1_state(lockstep).procs[1].leaves
    assert not leaves[BASE >> 12].writable
    assert leaves[(BASE >> 12) + 1].writable


def test_dontneed_private_reads_zero_again() -> None:
    """MADV_DONTNEED on a private page drops it: the next load reads zero (through the zero page)."""
    program = [ops.Spawn(), ops.Switch(0, 1), ops.Mmap(1, BASE, 1, "rw-", False), ops.Store(0, BASE, 4)]
    lockstep, _ = run([*program, ops.Madvise(1, BASE, 1, "dontneed")])
    assert {"value": 0} == lockstep.apply(ops.Load(0, BASE))


def test_user_mode_never_reaches_the_kernel_half() -> None:
    """The kernel page reads in supervisor mode and faults (P|U) in user mode."""
    lockstep, _ = run([ops.Spawn(), ops.Switch(0, 1)])
    assert {"value": 0x4C494E5558} == lockstep.apply(ops.Load(0, 0xFFFFFFFF80000000, "supervisor"))
    assert {"signal": "SIGSEGV", "error_code": 5} == lockstep.apply(ops.Load(0, 0xFFFFFFFF80000000))


def test_pin_of_a_missing_page_faults_it_in() -> None:
    """GUP on an untouched private page maps the zero page and pins it; it reads zero."""
    _, results = run([ops.Spawn(), ops.Mmap(1, BASE, 1, "r--", False), ops.PinOp(1, BASE), ops.ReadPin(1)])
    assert [{"pid": 1}, {"ok": True}, {"pin": 1}, {"value": 0}] == results
