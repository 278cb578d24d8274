"""Classic COW bugs injected into the kernel implementation; the ``ci`` kernel machine must catch each in <= 8 ops.

Each mutant is a subclass of :class:`impl.kernel.Kernel` whose method is the
shipped method's source with one small edit (so it cannot drift from the
real code), swapped in for the run only.  The run is the one ``verify``
makes (:func:`properties.kernel_machine.run_machine`): Hypothesis finds and
shrinks a failing program, the saved scenario is minimised; it must replay
to a failure under the mutant and pass on the real implementation.
"""

from __future__ import annotations

import inspect
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import settings

import impl.kernel
import properties.kernel_driver
from mmcheck.scenario import load
from proofs.verdict import Status
from properties.kernel_machine import counterexample_path, run_machine
from properties.minimise import failure_kind

MAX_OPS = 8


def mutant(name: str, method: str, old: str, new: str) -> type[impl.kernel.Kernel]:
    """A Kernel subclass whose ``method`` has ``old`` replaced by ``new`` (which must occur exactly once)."""
    source = textwrap.dedent(inspect.getsource(getattr(impl.kernel.Kernel, method)))
    assert source.count(old) == 1, f"{name}: {old!r} must occur once in Kernel.{method}"
    namespace: dict[str, object] = {}
    exec(compile(source.replace(old, new), f"<mutant {name}>", "exec"), vars(impl.kernel), namespace)
    return type(name, (impl.kernel.Kernel,), {method: namespace[method]})


MUTANTS = {
    # CVE-2016-5195 in spirit: a write fault on a COW-shared page makes the shared frame writable.
    "dirty_cow": mutant(
        "dirty_cow",
        "_wp",
        "if anon and (self.flags[old] & PG_EXCLUSIVE or self.refcount[old] == 1):",
        "if anon:",
    ),
    # fork write-protects the child's entry but forgets the parent's.
    "fork_keeps_parent_writable": mutant(
        "fork_keeps_parent_writable",
        "fork",
        "self.mem.write(pa, entry)",
        "self.mem.write(pa, entry | _RW)",
    ),
    # CVE-2020-29374: reuse decided on the map count, so a pinned page is reused and the pin sees later writes.
    "reuse_on_mapcount": mutant(
        "reuse_on_mapcount",
        "_wp",
        "self.refcount[old] == 1",
        "self.mapcount[old] == 1",
    ),
    # A write fault on the zero page makes the zero page itself writable.
    "zero_page_write": mutant(
        "zero_page_write",
        "_wp",
        "if anon and (self.flags[old] & PG_EXCLUSIVE or self.refcount[old] == 1):",
        "if old == self.zero_pfn or anon and (self.flags[old] & PG_EXCLUSIVE or self.refcount[old] == 1):",
    ),
}


def ci_settings() -> settings:
    """The ``ci`` profile, stopping at the first bug (as ``verify`` runs the machine)."""
    return settings(settings.get_profile("ci"), report_multiple_bugs=False)


@pytest.mark.quality
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_ci_kernel_machine_catches_mutant(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refuted, with a counterexample of at most 8 operations that fails with the mutant and passes without."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    start = time.perf_counter()
    with monkeypatch.context() as patch:
        patch.setattr(properties.kernel_driver, "ImplKernel", MUTANTS[name])
        status, detail = run_machine(run_settings=ci_settings())
        saved = counterexample_path()
        assert Status.REFUTED == status, f"{name} survived the ci kernel machine"
        assert saved.exists(), detail
        scenario = load(saved)
        assert failure_kind(scenario) is not None, "the saved scenario must fail under the mutant"
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  {name:28} caught: {len(scenario.ops)} ops, {seconds:.1f}s")
    assert len(scenario.ops) <= MAX_OPS, saved.read_text()
    assert failure_kind(scenario) is None, "the saved scenario must pass on the real implementation"


def test_unmutated_kernel_survives_the_same_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The baseline: without a mutant the same run finds nothing, so the failures above are the mutants'."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    status, detail = run_machine(run_settings=ci_settings())
    assert Status.CONFIRMED == status, detail
