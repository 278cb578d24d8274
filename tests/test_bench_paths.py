"""docs/bench-paths.txt names exactly the impl/ functions the quick bench calls (the coverage gate then requires
verify to run each of them: tests/test_coverage_gate.py).  benchmarks/ is not installed: it is imported from the
project root, as ``python -m benchmarks.paths`` runs."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from proofs import coverage_gate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import paths

    return paths


def test_the_listing_is_what_the_quick_bench_calls(paths: ModuleType) -> None:
    found = paths.bench_functions()
    listed = paths.read_listing()
    assert (set(), set()) == (found - listed, listed - found), "run: python -m benchmarks.paths --write"


def test_the_gate_reads_the_same_listing(paths: ModuleType) -> None:
    assert paths.LISTING.relative_to(paths.ROOT) == coverage_gate.BENCH_PATHS
    assert paths.read_listing() == coverage_gate.load_bench_paths(paths.LISTING)
    assert "impl/smp/shootdown.py::Smp.access" in paths.read_listing()


def test_the_trace_names_impl_methods_as_coverage_does(paths: ModuleType) -> None:
    from impl.paging.physmem import PhysMem

    called = paths.impl_functions_called(lambda: PhysMem(1).write(0, 5))
    assert {"impl/paging/physmem.py::PhysMem.__init__", "impl/paging/physmem.py::PhysMem.write"} <= called
