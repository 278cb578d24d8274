"""A derandomized machine run draws the same programs whatever the process imported before it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from lang.scenario import Op
from properties import machinery, recording
from properties.mm.kernel_machine import KernelMachine
from properties.profiles import ci_settings


@pytest.fixture
def op_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Every op any recorder applies, in order."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path / "counterexamples"))
    log: list[str] = []
    original = recording.RecordingLockstep.apply

    def apply(self: recording.RecordingLockstep, op: Op) -> object:
        log.append(repr(op))
        return original(self, op)

    monkeypatch.setattr(recording.RecordingLockstep, "apply", apply)
    yield log


def load_module_full_of_constants(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import a new local module whose source holds many integer literals, as a test module would."""
    values = [(n * 2654435761) % (1 << bits) for bits in (4, 8, 12, 16, 24, 32, 48) for n in range(1, 60)]
    source = "\n".join(f"VALUE_{i} = {v}" for i, v in enumerate(values))
    (folder / "many_constants.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("many_constants")
    monkeypatch.setitem(sys.modules, "many_constants", module)  # loaded for the run, gone after the test


def test_a_new_local_module_changes_nothing_a_derandomized_run_draws(
    op_log: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = settings(ci_settings(False), max_examples=40)
    assert machinery.run_machine(KernelMachine, run)[0].value == "confirmed"
    before = list(op_log)
    op_log.clear()
    load_module_full_of_constants(tmp_path, monkeypatch)
    assert machinery.run_machine(KernelMachine, run)[0].value == "confirmed"
    assert len(before) > 500
    assert before == op_log


def test_a_misspelt_run_option_is_an_error_not_ignored() -> None:
    class Probe(KernelMachine):
        pass

    with pytest.raises(TypeError):
        machinery.run_as(Probe, shrink=False)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="examples_divisor must be at least 1"):
        machinery.run_as(Probe, examples_divisor=0)
    machinery.run_as(Probe, shrink_phase=False, examples_divisor=3)
    chosen = machinery.machine_settings(Probe, ci_settings(True))
    assert chosen.max_examples == ci_settings(True).max_examples // 3
    assert all(phase.name != "shrink" for phase in chosen.phases)
