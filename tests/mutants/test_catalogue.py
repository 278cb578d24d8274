"""The mutant registry and its hunt: well-formed entries, isolated runs, counterexamples that replay."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import impl.alloc.buddy
import impl.paging.mmu
from lang.errors import UnknownMutant
from lang.verdict import Status
from mmcheck.cli import main
from proofs.hunt import DETECTORS, Catch, Detection, hunt, hunt_each, summary, table
from properties.mutants import LAYERS, MUTANTS, Mutant, by_name, select

pytestmark = pytest.mark.quality


def test_names_are_unique_and_every_layer_is_hunted() -> None:
    """One entry per name, each with a short label, and every layer has checks to hunt it."""
    names = [m.name for m in MUTANTS]
    assert sorted(set(names)) == sorted(names)
    assert all(m.label and m.invariant for m in MUTANTS)
    assert [] == [layer for layer in LAYERS if not DETECTORS.get(layer)]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_patch_applies_and_is_removed(mutant: Mutant) -> None:
    """Each patch still matches the shipped source, and the shipped code is back after the block."""
    before = {
        name: inspect.getsource(module) for name, module in (("mmu", impl.paging.mmu), ("buddy", impl.alloc.buddy))
    }
    owner, attribute = getattr(mutant.patch, "owner"), getattr(mutant.patch, "attribute")  # noqa: B009
    original = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    with mutant.applied():
        patched = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        assert patched is not original
    restored = vars(owner)[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    assert original is restored
    assert before == {
        name: inspect.getsource(module) for name, module in (("mmu", impl.paging.mmu), ("buddy", impl.alloc.buddy))
    }


def test_select_refuses_unknown_names_and_layers() -> None:
    """A misspelt name or layer is an error naming the catalogue, not an empty run."""
    with pytest.raises(UnknownMutant, match="mmcheck mutants --list"):
        by_name("no-such-mutant")
    with pytest.raises(UnknownMutant, match="layers are"):
        select(["no-such-layer"])
    assert ("walk",) == tuple({m.layer for m in select(["walk"])})


@pytest.mark.parametrize("name", ["canonical-off-by-one", "split-keeps-upper"])
def test_hunt_saves_a_counterexample_that_replays_only_with_its_mutant(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Caught with a tagged scenario; ``mmcheck replay`` re-applies the mutant (exit 1) and --no-mutant passes."""
    catch = hunt(by_name(name), tmp_path)
    assert catch.killed and not catch.problems, catch
    shortest = catch.shortest
    assert shortest is not None and shortest.scenario is not None
    assert name == json.loads(Path(shortest.scenario).read_text())["mutant"]
    capsys.readouterr()
    assert 1 == main(["replay", shortest.scenario])
    assert f"applying mutant {name}" in capsys.readouterr().err
    assert 0 == main(["replay", "--no-mutant", shortest.scenario])


def test_hunt_each_runs_mutants_in_their_own_processes(tmp_path: Path) -> None:
    """The forked hunt gives the same verdict, and this process's implementation was never patched."""
    original = impl.alloc.buddy.BuddyAllocator._expand
    (catch,) = list(hunt_each([by_name("split-keeps-upper")], tmp_path, jobs=1))
    assert catch.killed and catch.steps == 1
    assert impl.alloc.buddy.BuddyAllocator._expand is original


def test_cli_ends_with_the_kill_count(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``mmcheck mutants`` prints a table and ``mutants: K killed of N``, exit 0 when all are killed."""
    assert 0 == main(["mutants", "--name", "alloc-skips-max-order", "--jobs", "1", "--output", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert "mutants: 1 killed of 1" == out[-1]
    assert any(line.startswith("alloc-skips-max-order") and "machine, model checker" in line for line in out)


def test_a_survivor_is_reported_and_fails_the_run() -> None:
    """A mutant no check refutes (an unknown verdict included) is listed as survived, and not counted."""
    survivor = Catch("m", "walk", "label", (Detection("proof", "z3", Status.UNKNOWN, 1.0),))
    killed = Catch("k", "walk", "label", (Detection("machine", "mmu-machine", Status.REFUTED, 2.0, 3, "k.json", True),))
    lines = summary([survivor, killed])
    assert "survived: m (walk)" in lines
    assert "mutants: 1 killed of 2" == lines[-1]
    assert "SURVIVED" in table([survivor])[1]
    unreplayable = Catch("u", "walk", "label", (Detection("machine", "mmu-machine", Status.REFUTED, 2.0),))
    assert unreplayable.problems
