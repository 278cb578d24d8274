"""The pressure machine with bad input between its programs: every system call's refusals, in lockstep.

Each system call checks its arguments before it changes anything, and a
refusal is an errno (``mmap`` below ``mmap_min_addr``: EPERM, past
``TASK_SIZE``: ENOMEM, an unaligned address: EINVAL, ...) or, for input no
system call could express, a typed error (an unknown pid, pin, file or CPU,
a non-canonical or misaligned address, a CPU running no process).  The
lockstep runner checks that spec and implementation refuse alike (the same
errno, or the same error class) and that the state is what the spec says
after it; verify's other machines, drawing sensible arguments, rarely reach
these checks.  The rules and checks are
:class:`~properties.pressure.pressure_machine.PressureMachine`'s, plus one
rule drawing a refused operation from :meth:`BadInputMachine.refused` (each
with the rule it tests: mm/mmap.c ``do_mmap`` and ``get_unmapped_area``,
mm/mprotect.c ``do_mprotect_pkey``, mm/madvise.c ``do_madvise``, mm/msync.c,
mm/filemap.c ``generic_write_check_limits`` and fs/open.c
``do_truncate``/``vfs_truncate`` for EFBIG and EINVAL past ``s_maxbytes``).
A failure is saved as ``counterexamples/bad_input_machine.json``.
"""

from __future__ import annotations

from hypothesis.stateful import invariant, rule

from lang.kernel_ops import KernelThread, Load, Madvise, Mmap, Mprotect, Munmap, ReadPin, Store, Switch, Unpin
from lang.pressure_ops import FileCreate, FileRead, FileWrite, MmapFile, Msync, Truncate
from lang.scenario import Config, Op
from lang.thp_ops import ThpSetting
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.pressure import pressure_machine
from properties.pressure.pressure_machine import ANON, SHARED, PressureMachine
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.mm.vma import MMAP_MIN_ADDR, TASK_SIZE
from spec.pressure.files import MAX_FILE_PAGES

CHECK_NAME = "pressure with refused system calls: errno and typed errors alike, nothing changed"
FREE_VA = 0x50000000  # no mapping of the pressure machine lies here
NON_CANONICAL = 1 << 47  # bits 63..47 differ (Intel SDM Vol. 3A 3.3.7.1)


class BadInputMachine(PressureMachine):
    """:class:`PressureMachine` with a rule that runs refused operations."""

    name = "bad_input_machine"
    config: Config = pressure_machine.CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    def refused(self, pid: int) -> tuple[Op, ...]:
        """Operations both sides must refuse (or, for a zero length, accept doing nothing), by the rule they test."""
        return (
            Mmap(pid, MMAP_MIN_ADDR - 0x1000, 1, "rw-", False),  # below mmap_min_addr: EPERM
            Mmap(pid, TASK_SIZE - 0x1000, 2, "rw-", False),  # past TASK_SIZE: ENOMEM
            Mmap(pid, FREE_VA + 8, 1, "rw-", False),  # unaligned: EINVAL
            Mmap(pid, FREE_VA, 0, "rw-", False),  # no length: EINVAL
            Mmap(pid, 0x40000000, (TASK_SIZE >> 12) + 512, "rw-", False, True),  # hugetlb larger than TASK_SIZE
            Mmap(99, FREE_VA, 1, "rw-", False),  # no such pid: UnknownPid
            Munmap(pid, ANON + 8, 1),  # unaligned: EINVAL
            Munmap(pid, ANON, 0),  # no length: EINVAL
            Mprotect(pid, ANON + 8, 1, "r--"),  # unaligned: EINVAL
            Mprotect(pid, ANON, 0, "r--"),  # no length: 0, nothing changed
            Madvise(pid, ANON + 8, 1, "dontneed"),  # unaligned: EINVAL
            Madvise(pid, ANON, 0, "dontneed"),  # no length: 0
            Madvise(pid, ANON + 8, 1, "hugepage"),  # unaligned: EINVAL
            Madvise(pid, ANON, 0, "hugepage"),  # no length: 0
            Madvise(pid, ANON + 8, 1, "pageout"),  # unaligned: EINVAL
            Madvise(pid, FREE_VA, 1, "pageout"),  # a hole in the range: ENOMEM
            Msync(pid, SHARED + 8, 1),  # unaligned: EINVAL
            MmapFile(pid, FREE_VA, 1, "rw-", "f", False, MAX_FILE_PAGES + 1),  # offset past s_maxbytes: EINVAL
            MmapFile(pid, FREE_VA + 8, 1, "rw-", "f", False, 0),  # unaligned: EINVAL
            MmapFile(pid, FREE_VA, 1, "rw-", "nofile", False, 0),  # no such file: UnknownFile
            FileRead("nofile", 0),  # no such file: UnknownFile
            FileRead("f", 4),  # not a word's offset: InvalidArgument
            FileCreate("f", 1),  # the name is taken: EEXIST
            FileCreate("big", MAX_FILE_PAGES + 1),  # larger than s_maxbytes: EINVAL
            FileCreate("short", 1, ((2 * 4096, 1),)),  # a word past its own size: EINVAL
            FileWrite("f", MAX_FILE_PAGES * 4096, 1),  # past s_maxbytes: EFBIG
            Truncate("f", MAX_FILE_PAGES + 1),  # past s_maxbytes: EINVAL
            Load(0, NON_CANONICAL),  # not canonical: AddressError
            Load(0, ANON + 1),  # not a word: AddressError
            Store(3, ANON, 1),  # no CPU 3: UnknownCpu
            Switch(3, pid),  # no CPU 3: UnknownCpu
            ReadPin(99),  # no such pin: UnknownPin
            Unpin(99),  # no such pin: UnknownPin
            ThpSetting("khugepaged", "always"),  # no such setting: InvalidArgument
            ThpSetting("enabled", "sometimes"),  # no such value: InvalidArgument
        )

    @rule()
    def refuse(self) -> None:
        """Every refused operation, in order, at this point of the program (each is one op of the saved scenario,
        so a failure names it)."""
        pid = self.running or (self.pids[0] if self.pids else 1)
        for op in self.refused(pid):
            self.run(op)

    @rule()
    def idle_cpu(self) -> None:
        """A load on a CPU running a kernel thread (no process): IdleCpu; then the process runs again."""
        self.run(KernelThread(0))
        self.run(Load(0, ANON))
        if self.running:
            self.run(Switch(0, self.running))

    @invariant()
    def l1_invariants_hold(self) -> None:
        state = self.recorder.lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        if problems:
            path = save_counterexample(self.name, self.config, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


machinery.run_as(BadInputMachine, shrink_phase=False, examples_divisor=4)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The bad-input machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(BadInputMachine))
