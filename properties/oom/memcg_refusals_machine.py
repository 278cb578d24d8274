"""The memcg machine with the cgroup files' refusals between its programs, in lockstep.

Writing a cgroup v1 file can fail: ``mkdir`` of a group whose parent does not
exist (ENOENT) or that exists (EEXIST, kernel/cgroup/cgroup.c
``cgroup_mkdir``), a task moved to or a file read of a group that does not
exist (ENOENT), a limit written on the root group (EINVAL: the root has no
``memory.limit_in_bytes`` to set, mm/memcontrol-v1.c
``mem_cgroup_write``/``mem_cgroup_resize_max``), and a memsw limit below what
the group already holds (EBUSY, ``mem_cgroup_resize_max`` when reclaim cannot
bring the usage under it).  The memcg machine draws existing groups and
limits above the usage, so it rarely reaches these; this machine runs every
one of them at a point of its program, with
:class:`~properties.oom.memcg_machine.MemcgMachine`'s rules and checks.  A
failure is saved as ``counterexamples/memcg_refusals_machine.json``.
"""

from __future__ import annotations

from hypothesis.stateful import rule

from lang.memcg_ops import MemcgCreate, MemcgMove, MemcgRead, MemcgSet
from lang.scenario import Config, Op
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.oom import memcg_machine
from properties.oom.memcg_machine import MemcgMachine
from properties.recording import RecordingLockstep

CHECK_NAME = "memcg with refused cgroup writes: ENOENT, EEXIST, EINVAL, EBUSY alike, nothing changed"


class MemcgRefusalsMachine(MemcgMachine):
    """:class:`MemcgMachine` with a rule that runs the refused cgroup writes."""

    name = "memcg_refusals_machine"
    config: Config = memcg_machine.CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)

    def refused(self, pid: int) -> tuple[Op, ...]:
        return (
            MemcgCreate("none/child"),  # no parent: ENOENT
            MemcgCreate("a"),  # exists: EEXIST
            MemcgMove(pid, "none"),  # no such group: ENOENT
            MemcgRead("none"),  # no such group: ENOENT
            MemcgSet("/", "memory.limit_in_bytes", 64 * 4096),  # the root's limit: EINVAL
            MemcgSet("none", "memory.limit_in_bytes", 64 * 4096),  # no such group: ENOENT
            MemcgSet("a", "memory.memsw.limit_in_bytes", 4096),  # below what a holds, memory and swap: EBUSY
        )

    @rule()
    def refuse(self) -> None:
        """Every refused cgroup write, in order, at this point of the program."""
        pid = self.pids[-1] if self.pids else 1
        for op in self.refused(pid):
            self.run(op)


machinery.run_as(MemcgRefusalsMachine, shrink_phase=False, examples_divisor=4)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The memcg refusals machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(MemcgRefusalsMachine))
