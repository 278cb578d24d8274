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


def collapse_program(settings: dict[str, str], pin: bool) -> Scenario:
    """Small pages written (the oracle's mappings start MADV_NOHUGEPAGE), then MADV_HUGEPAGE and MADV_COLLAPSE on
    the first 2 MiB, smaps and the pages read back.

    MADV_HUGEPAGE wakes an idle khugepaged, which scans at once (mm/khugepaged.c ``khugepaged_wait_work``), so the
    range must be one khugepaged refuses and MADV_COLLAPSE does not: 300 pages shared with a fork's child (more
    than ``max_ptes_shared``, 256) and one more written by the parent; or, with ``pin``, three pages, one of them
    pinned, which both refuse (``is_refcount_suitable``)."""
    program = [*thp.prelude(settings)[:-1]]
    written = (0, 1, 7) if pin else tuple(range(300))
    program += [ops.Store(0, thp.BASE + 0x1000 * i + 8, i + 1) for i in written]
    if pin:
        program.append(ops.PinOp(1, thp.BASE + 0x1000))
    else:
        program += [ops.Fork(1), ops.Store(0, thp.BASE + 0x1000 * 300 + 8, 301)]
    program += [
        ops.Madvise(1, thp.BASE, 512, "hugepage"),
        ops.Madvise(1, thp.BASE, 512, "collapse"),
        ops.SmapsOp(1),
        *(ops.Load(0, thp.BASE + 0x1000 * i + 8) for i in (0, 1, 7, 299, 300, 301)),
    ]
    if not pin:
        program.append(ops.SmapsOp(2))
    return Scenario(thp.CONFIG, tuple(program))


@needs_thp
@pytest.mark.linux
@pytest.mark.parametrize("pin", [False, True], ids=["collapsed", "pinned"])
def test_madv_collapse_agrees_with_the_kernel(pin: bool) -> None:
    """MADV_COLLAPSE ignoring max_ptes_shared: one THP in the parent on every side (AnonHugePages 2048, contents
    kept, the child's pages untouched); with a page pinned, EAGAIN everywhere and the small pages stay."""
    scenario = collapse_program(thp.live_settings(), pin)
    verdict = assert_agrees(scenario)
    assert verdict.known is None
    collapse = next(s for s in verdict.steps if isinstance(s.op, ops.Madvise) and s.op.advice == "collapse")
    expected = {"error": "EAGAIN"} if pin else {"ok": True}
    assert {side: expected for side in collapse.results} == collapse.results
    smaps = next(s for s in verdict.steps if isinstance(s.op, ops.SmapsOp))
    assert (0 if pin else 2048) == smaps.results["linux"]["AnonHugePages"]
