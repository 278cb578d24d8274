"""mmcheck explain: a scenario narrated op by op, and a divergence named where it happens."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.mmu import Mmu
from mmcheck.cli import main
from mmcheck.explain import explain
from mmcheck.scenario import load

SDM = Path(__file__).parent / "scenarios" / "sdm-mmu-walk.json"


def test_every_op_is_narrated_and_the_run_agrees() -> None:
    scenario = load(SDM)
    lines, ok = explain(scenario)
    assert ok
    assert len(scenario.ops) == sum(line.startswith("[") for line in lines)
    assert "changed: [0x4010] 0x8000000000101007 -> 0x8000000000101067 (set A D)" in "\n".join(lines)


def test_a_divergence_is_named_at_its_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an implementation that ignores CR0.WP, the story stops at the supervisor write to a read-only page."""
    original = Mmu._allowed

    def ignore_wp(cpu: object, rights: int, no_exec: int, kind: int, user: bool) -> bool:
        return True if kind == 1 and not user and rights & 4 == 0 else original(cpu, rights, no_exec, kind, user)  # type: ignore[arg-type]

    monkeypatch.setattr(Mmu, "_allowed", staticmethod(ignore_wp))
    lines, ok = explain(load(Path(__file__).parent / "scenarios" / "sdm-permission-rules.json"))
    assert not ok
    assert "DIVERGENCE: results differ" in lines[-4]
    assert lines[-1].startswith("the implementation does not refine the spec at op")


def test_cli_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(SDM)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("spec and implementation agree at every step")
