"""The live Linux kernel as an oracle for transparent huge pages (:mod:`oracles.linux.thp`).

Generated THP scenarios (``MMCHECK_LINUX_SCENARIOS`` of them, 5 by default), the example and the THP regression
scenarios run on the kernel in its own THP mode (the oracle never writes sysfs) and on both models; every
compared quantity must agree at every step, a known divergence (:data:`oracles.linux.thp.KNOWN_DIVERGENCES`)
stopping the run where it starts.  What needs no kernel (the policy check, the scenario settling, the
deferred-split classification) is tested offline.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependencies import requires

from lang import ops
from lang.errors import OracleUnsupported
from lang.scenario import Scenario, load
from lang.thp_ops import ThpSetting
from mmcheck.cli import main
from oracles.linux import thp

# The live kernel is shared with the other live-kernel tests: they run on one worker.
pytestmark = pytest.mark.xdist_group("live-kernel")

UNAVAILABLE = thp.unavailable_thp()
needs_thp = requires("root/gcc/THP", UNAVAILABLE)
GENERATED = int(os.environ.get("MMCHECK_LINUX_SCENARIOS", "5"))
MADVISE = {"enabled": "madvise", "defrag": "madvise", "use_zero_page": "1"}
SCENARIOS = Path(__file__).parent / "scenarios"
TOTALS: Counter[tuple[str, str]] = Counter()


def test_a_setting_the_kernel_lacks_is_refused_before_anything_runs() -> None:
    scenario = Scenario(thp.CONFIG, (ThpSetting("enabled", "always"), ops.Spawn()))
    with pytest.raises(OracleUnsupported, match="enabled 'always', but the kernel's is 'madvise'"):
        thp.check_settings(scenario, MADVISE)
    thp.check_settings(Scenario(thp.CONFIG, (ThpSetting("enabled", "madvise"),)), MADVISE)


def test_settling_drops_stores_to_the_huge_zero_page_and_cuts_at_a_refusal() -> None:
    """A store to the huge zero page is left out (Linux 6.13 maps a THP there, 6.12 copies 4 KiB); the write to a
    THP a fork shares is not modelled, so the scenario ends before it."""
    program = [
        *thp.prelude(MADVISE),
        ops.Load(0, thp.BASE + 0x200000),
        ops.Store(0, thp.BASE + 0x200008, 1),
        ops.Store(0, thp.BASE + 8, 2),
        ops.Fork(1),
        ops.Store(0, thp.BASE + 16, 3),
        ops.Load(0, thp.BASE),
    ]
    settled = thp.settle(thp.CONFIG, program, "t")
    assert [*program[:-5], program[-4], program[-3]] == list(settled.ops)


def view(pages: set[tuple[int, int]], thp_pages: set[tuple[int, int]]) -> thp.ThpView:
    return thp.ThpView({1: 0}, frozenset(), frozenset(pages), frozenset(thp_pages))


def test_a_page_only_the_kernel_marks_thp_is_a_deferred_split_only_if_the_model_maps_it() -> None:
    small = {(1, 10), (1, 11)}
    assert "deferred-split" == thp.thp_differences(view(small, set()), view(small, small))["kpageflags THP"]
    assert "differ" == thp.thp_differences(view(set(), set()), view(small, small))["kpageflags THP"]
    assert "differ" == thp.thp_differences(view(small, small), view(small, set()))["kpageflags THP"]
    assert "agree" == thp.thp_differences(view(small, small), view(small, small))["kpageflags THP"]


def generated() -> Iterator[Scenario]:
    settings = thp.live_settings() if UNAVAILABLE is None else MADVISE
    for seed in range(GENERATED):
        yield thp.generate(seed, settings)


def assert_agrees(scenario: Scenario) -> thp.ThpRun:
    verdict = thp.run(scenario)
    assert verdict.agree, "\n".join(thp.report(verdict))
    for (model, quantity, v), n in verdict.counts().items():
        TOTALS[model, quantity] += n if v != "differ" else 0
    return verdict


@needs_thp
@pytest.mark.linux
@pytest.mark.parametrize("seed", range(GENERATED))
def test_generated_thp_scenarios_agree_with_the_kernel(seed: int) -> None:
    scenario = thp.generate(seed, thp.live_settings())
    verdict = assert_agrees(scenario)
    assert len(verdict.steps) + (verdict.known is not None) == len(scenario.ops)


@needs_thp
@pytest.mark.linux
def test_the_example_makes_a_thp_and_the_huge_zero_page_and_agrees() -> None:
    verdict = assert_agrees(thp.example(thp.live_settings()))
    assert any(2048 in step.kernel.anon_huge_kb.values() for step in verdict.steps)
    assert any(step.kernel.huge_zero for step in verdict.steps)


@needs_thp
@pytest.mark.linux
@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("linux-thp-*.json")), ids=lambda p: p.stem)
def test_the_thp_regression_scenarios_agree_with_the_kernel(path: Path) -> None:
    assert_agrees(load(path))


@needs_thp
@pytest.mark.linux
def test_mmcheck_oracle_thp_runs_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["oracle", "thp"])
    out = capsys.readouterr().out
    assert "impl agrees with linux on" in out and "AnonHugePages" in out
