"""The explorer finds every buddy mutant, with a shortest counterexample that replays."""

from __future__ import annotations

from pathlib import Path

import pytest

from lang.scenario import load
from proofs.explore import run_exploration
from proofs.systems import VERIFY_BOUNDS, BuddySystem
from properties.mutants import Mutant
from properties.mutants.buddy import BUDDY_MUTANTS
from properties.replay import replay

pytestmark = pytest.mark.quality


@pytest.mark.parametrize("mutant", BUDDY_MUTANTS, ids=[m.name for m in BUDDY_MUTANTS])
def test_explorer_finds_buddy_mutant(mutant: Mutant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At verify's bound each mutant is found within 6 ops, and the saved scenario diverges under the mutant only."""
    monkeypatch.setenv("MMCHECK_COUNTEREXAMPLES", str(tmp_path))
    with mutant.patch.applied():
        result, saved = run_exploration(BuddySystem(VERIFY_BOUNDS), depth=12, max_states=50_000, name=mutant.name)
        assert saved is not None and result.path is not None
        assert len(result.path) <= 6
        assert replay(load(saved)).divergence is not None
    assert replay(load(saved)).divergence is None
