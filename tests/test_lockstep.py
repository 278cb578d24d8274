"""The lockstep runner can fail: planted divergences in results, memory, A/D bits and bad input are all caught."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from impl.paging.mmu import READ, Mmu, Translated
from impl.paging.physmem import PhysMem
from lang.errors import AddressError, UnknownCpu
from lang.hardware_ops import Access, ReadPhys, SetCpu, WritePhys
from lang.scenario import Config, Op, load
from properties.drivers import DivergenceError, Lockstep
from properties.recording import RecordingLockstep
from properties.replay import replay

CONFIG = Config(frames=4, cpus=1)
# One entry at 0x0 that points at frame 0 with P, R/W, U/S: with CR3=0 the walk of
# address 0 uses it at every level, so address 0 maps frame 0.
SELF_MAP = WritePhys(0x0, 0x7)
READ_ZERO = Access(0, 0x0, "read", "user")


def run(ops: list[Op]) -> Lockstep:
    """A lockstep run of ``ops`` (raises at the first divergence)."""
    lockstep = Lockstep(CONFIG)
    for op in ops:
        lockstep.apply(op)
    return lockstep


def divergence_reason(ops: list[Op]) -> str:
    """The reason the lockstep run of ``ops`` diverges (fails the test if it does not)."""
    with pytest.raises(DivergenceError) as info:
        run(ops)
    return info.value.divergence.reason


def wrap(original: Callable[..., Any], after: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """``original`` followed by ``after(self, result)``, whose value is returned."""

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        return after(self, original(self, *args, **kwargs))

    return wrapped


def test_agreeing_sides_run_without_divergence() -> None:
    """The unplanted baseline: the same operations agree on both sides."""
    lockstep = run([SELF_MAP, READ_ZERO, ReadPhys(0x0)])
    assert 0x27 == lockstep.spec.state.memory.read(0x0)


def test_detects_a_wrong_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """An implementation translating to the wrong physical address is caught by the result comparison."""

    def off_by_eight(self: Mmu, result: Any) -> Any:
        return Translated(result.pa + 8) if isinstance(result, Translated) else result

    monkeypatch.setattr(Mmu, "access", wrap(Mmu.access, off_by_eight))
    assert "results differ" == divergence_reason([SELF_MAP, READ_ZERO])


def test_detects_a_wrong_memory_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that also sets a software bit gives the same result but different memory."""
    original = PhysMem.write

    def sloppy_write(self: PhysMem, pa: int, value: int) -> None:
        original(self, pa, value | 1 << 9)

    monkeypatch.setattr(PhysMem, "write", sloppy_write)
    assert "memory differs" == divergence_reason([SELF_MAP])


def test_detects_dirty_set_on_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A walker that sets D on a read is refused by the A/D check."""

    def dirty_leaf(self: Mmu, result: Any) -> Any:
        self.mem.write_unchecked(0x0, self.mem.read_unchecked(0x0) | 0x40)
        return result

    monkeypatch.setattr(Mmu, "access", wrap(Mmu.access, dirty_leaf))
    assert "A/D bits written are not allowed" == divergence_reason([SELF_MAP, READ_ZERO])


def test_detects_accessed_bit_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A walker that forgets A on a successful walk is refused by the same check."""

    def clear_accessed(self: Mmu, result: Any) -> Any:
        self.mem.write_unchecked(0x0, self.mem.read_unchecked(0x0) & ~0x20)
        return result

    monkeypatch.setattr(Mmu, "access", wrap(Mmu.access, clear_accessed))
    assert "A/D bits written are not allowed" == divergence_reason([SELF_MAP, READ_ZERO])


def test_detects_bad_input_accepted_by_one_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """An implementation that accepts a misaligned store, which the spec refuses, is caught."""
    monkeypatch.setattr(PhysMem, "_check", lambda self, pa: None)
    assert "bad input handled differently" == divergence_reason([WritePhys(0x4, 1)])


def test_detects_bad_input_refused_with_another_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sides refuse an unknown CPU, but with different error classes."""

    def wrong_error(self: Mmu, n: int) -> Any:
        raise AddressError(f"cpu {n}")

    monkeypatch.setattr(Mmu, "cpu", wrong_error)
    assert "bad input handled differently" == divergence_reason([READ_ZERO])


def test_detects_bad_input_half_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusing a misaligned CR3 after loading it leaves the implementation changed: caught."""
    original = Mmu.set_cpu

    def half_applied(self: Mmu, n: int, **bits: Any) -> None:
        self.cpus[n].cr3 = bits["cr3"]
        original(self, n, **bits)

    monkeypatch.setattr(Mmu, "set_cpu", half_applied)
    assert "control registers differ" == divergence_reason([SetCpu(0, 0x1008)])


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (WritePhys(0x3, 1), AddressError),
        (ReadPhys(CONFIG.frames * 4096), AddressError),
        (SetCpu(0, 0x123), AddressError),
        (SetCpu(1, 0x0), UnknownCpu),
        (Access(5, 0x0, "read", "user"), UnknownCpu),
    ],
)
def test_bad_input_refused_alike_is_reraised(op: Op, error: type[Exception]) -> None:
    """Bad input refused the same way by both sides reaches the caller as that error, nothing changed."""
    lockstep = run([SELF_MAP])
    before = lockstep.spec.state
    with pytest.raises(error):
        lockstep.apply(op)
    assert before == lockstep.spec.state


def test_recording_saves_a_replayable_counterexample(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A divergence is saved as a scenario, refused input is left out, and replay reproduces the divergence."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    recorder = RecordingLockstep("planted", CONFIG)
    recorder.apply(SELF_MAP)
    with pytest.raises(AddressError):
        recorder.apply(WritePhys(0x5, 1))
    original = Mmu.access
    monkeypatch.setattr(Mmu, "access", lambda self, n, va, kind, user: Translated(0x8) if kind == READ else None)
    with pytest.raises(DivergenceError):
        recorder.apply(READ_ZERO)
    scenario = load(tmp_path / "planted.json")
    assert (SELF_MAP, READ_ZERO) == scenario.ops
    assert replay(scenario).divergence is not None
    monkeypatch.setattr(Mmu, "access", original)
    assert replay(scenario).divergence is None
