"""The memory-pressure refinement machine with the slab allocator on the kernel's buddy.

The same programs as :class:`~properties.pressure.pressure_machine.PressureMachine`, on a buddy that reaches
order 3 (``slub_max_order``, which a slab cache needs), with three rules added: ``kmalloc`` of a small size
class, ``kfree`` of a live object and ``kmem_cache_shrink`` of a kmalloc cache.  Slabs then take frames from the
buddy the faults, the page cache and the page tables take them from, and the lockstep runner compares, after
every operation, the kernel's slab frames (``Kernel.slab``, what ``account_slab`` in mm/slab.h counts into
``NR_SLAB_UNRECLAIMABLE_B``), /proc/meminfo's Slab, SReclaimable, SUnreclaim and MemAvailable, and the slab
allocator's own state.  The machine's invariant checks the L1 invariants, whose no-leak accounting counts the
slab frames as used, and that the kernel's slab frames are the slab allocator's.  A failure is saved as
``counterexamples/slab_pressure_machine.json``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from lang.scenario import Config
from lang.slab_ops import Kfree, Kmalloc, KmemCacheShrink
from lang.verdict import Verdict, check, timed
from properties import machinery
from properties.pressure import pressure_machine
from properties.pressure.pressure_machine import PressureMachine
from properties.recording import RecordingLockstep, save_counterexample
from spec.mm import invariants as kernel_invariants
from spec.slab.cache import slab_frames

CONFIG = replace(pressure_machine.CONFIG, frames=32, max_order=3)
SIZES = (8, 64, 192)
CHECK_NAME = "pressure with slab caches on the kernel's buddy (meminfo's Slab): impl refines L1 refines L0"


class SlabPressureMachine(PressureMachine):
    """:class:`PressureMachine` under :data:`CONFIG`, with kmalloc, kfree and shrink."""

    name = "slab_pressure_machine"
    config: Config = CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingLockstep(self.name, self.config)
        self.objects: list[int] = []

    @rule(size=st.sampled_from(SIZES))
    def kmalloc(self, size: int) -> None:
        result = self.run(Kmalloc(size, 0))
        if result is not None and "addr" in result:
            self.objects.append(int(result["addr"], 16))

    @precondition(lambda self: bool(self.objects))
    @rule(data=st.data())
    def kfree(self, data: st.DataObject) -> None:
        addr = self.objects.pop(data.draw(st.integers(0, len(self.objects) - 1), label="object"))
        self.run(Kfree(addr))

    @rule(size=st.sampled_from(SIZES))
    def shrink(self, size: int) -> None:
        self.run(KmemCacheShrink(f"kmalloc-{size}"))

    @invariant()
    def l1_invariants_hold(self) -> None:
        lockstep = self.recorder.lockstep
        state = lockstep.spec.kernel.kernel
        if state is None:
            return
        problems = kernel_invariants.violations(state)
        slab = lockstep.spec.slab.state
        held = frozenset() if slab is None else slab_frames(slab)
        if state.slab != held:
            problems.append(f"the kernel holds slab frames {sorted(state.slab)}, the slabs are {sorted(held)}")
        if problems:
            path = save_counterexample(self.name, self.config, self.recorder.ops, "; ".join(problems))
            raise AssertionError(f"the L1 state breaks its invariants: {problems} (counterexample: {path})")


machinery.run_as(SlabPressureMachine, shrink_phase=False)


@check("machine", CHECK_NAME)
def refinement() -> Verdict:
    """The machine under the loaded profile."""
    return timed(CHECK_NAME, lambda: machinery.run_machine(SlabPressureMachine))
