"""The config knobs at their edges in explorer configurations: every value issue #25 names is drawn by one, and
each such configuration is explored to its depth without a violation."""

from __future__ import annotations

import pytest

from lang.scenario import Config
from proofs import smp_system
from proofs.explore import explore
from proofs.smp_system import SmpBounds, SmpSystem


def explorer_configs() -> list[Config]:
    """The configs of every explorer configuration the project runs: verify's, the hunt's, the kernel-layer
    hunt's and the knob configurations."""
    bounds: list[SmpBounds] = [smp_system.VERIFY_BOUNDS, smp_system.RATE_BOUNDS, smp_system.COW_BOUNDS]
    bounds += [b for b, _ in smp_system.HUNT_BOUNDS] + [b for b, _ in smp_system.COW_HUNT_BOUNDS]
    bounds += [b for b, _ in smp_system.KNOB_BOUNDS]
    return [b.config for b in bounds]


# The edge values: one CPU to four, a one-entry TLB, PCIDs on and off, flush ceilings that flush every range whole
# (0), at the one-page boundary (1), the default, and above the window's page count (every range page by page),
# both ends of MAXPHYADDR, memory near the kernel's minimum, max_order from 0.
REQUIRED: dict[str, set[object]] = {
    "cpus": {1, 2, 3, 4},
    "tlb_entries": {1, 2},
    "pcid": {True, False},
    "flush_ceiling": {0, 1, 3, 33},
    "maxphyaddr": {36, 46, 52},
    "max_order": {0, 2, 3},
}


def test_the_edge_values_are_drawn_by_explorer_configurations() -> None:
    configs = explorer_configs()
    missing = {name: want - {getattr(c, name) for c in configs} for name, want in REQUIRED.items()}
    assert {} == {name: values for name, values in missing.items() if values}
    assert min(c.frames for c in configs) <= 9  # the kernel needs 6 free frames to boot (impl.mm.kernel)
    assert any(b.flush_ceiling > b.pages for b, _ in smp_system.KNOB_BOUNDS)


@pytest.mark.parametrize(
    ("bounds", "depth"),
    smp_system.KNOB_BOUNDS,
    ids=[f"{b.cpus}cpus-ceiling{b.flush_ceiling}" for b, _ in smp_system.KNOB_BOUNDS],
)
def test_each_knob_configuration_explores_without_a_violation(bounds: SmpBounds, depth: int) -> None:
    result = explore(SmpSystem(bounds), max_depth=depth, time_limit=300.0)
    assert result.path is None, result.reason
    assert "time" != result.stats.stopped, result.stats.summary()  # every state to the depth, not a time-cut part
    assert result.stats.distinct > 1
