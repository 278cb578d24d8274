"""The spec explorer (proofs/spec_explore.py), its systems and the lockstep replay of its paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lang.scenario import load
from proofs import smp_system
from proofs.spec_explore import deepest, explore_spec
from proofs.spec_replay import explore_and_replay, first_divergence, replay_path
from proofs.spec_systems import SpecBuddySystem, SpecSmpSystem
from proofs.systems import BuddyBounds
from properties.mutants import by_name, recorded_mutant
from properties.replay import replay
from spec.alloc.buddy import BuddyState


@pytest.mark.parametrize("pairs", [1, 2, 3])
def test_buddy_states_are_every_tiling_of_the_pairs(pairs: int) -> None:
    """With ``max_order`` 1 each aligned pair of frames is one block (free or allocated) or two single frames, not
    both free (they would merge): 5 ways a pair, ``5**pairs`` states in all, every one reached."""
    result = explore_spec(SpecBuddySystem(BuddyBounds(frames=2 * pairs, max_order=1, max_alloc_order=1)), 50)
    assert result.path is None and result.stats.exhausted
    assert 5**pairs == result.stats.distinct


def test_a_depth_bound_that_cuts_states_off_is_not_exhausted() -> None:
    result = explore_spec(SpecBuddySystem(BuddyBounds(frames=6, max_order=1, max_alloc_order=1)), 2)
    assert not result.stats.exhausted and "bound reached" == result.stats.bound and 2 == result.stats.depth


class FullIsBad(SpecBuddySystem):
    """The buddy spec with one more 'invariant': not every frame allocated."""

    def check(self, state: BuddyState) -> list[str]:
        return ["every frame allocated"] if not state.free else []


def test_the_first_violation_is_a_shortest_path() -> None:
    """Four frames in two pairs: two order-1 allocations fill memory, nothing shorter does."""
    result = explore_spec(FullIsBad(BuddyBounds(frames=4, max_order=1, max_alloc_order=1)), 10)
    assert result.path is not None and 2 == len(result.path)
    assert "every frame allocated" in result.reason


def test_deepest_draws_from_the_deepest_level_first() -> None:
    levels: list[list[object]] = [["root"], ["a", "b", "c"], ["x"]]
    chosen = deepest(levels, 3, seed=1)  # type: ignore[arg-type]
    assert "x" == chosen[0] and 3 == len(chosen) and set(chosen[1:]) <= {"a", "b", "c"}
    assert chosen == deepest(levels, 3, seed=1)  # type: ignore[arg-type]
    assert ["x", "a", "b", "c", "root"] == sorted(deepest(levels, 10, seed=1), key=["x", "a", "b", "c", "root"].index)  # type: ignore[arg-type]


def test_buddy_paths_replay_with_the_implementations_blocks(tmp_path: Path) -> None:
    """The spec branches over every allowed block; the replay renames each free to the block the implementation
    handed out, so no op of a replayed path is refused and every scenario replays clean."""
    system = SpecBuddySystem(BuddyBounds(frames=8, max_order=2, max_alloc_order=1))
    checked = explore_and_replay(system, 12, "buddy", sample=10, folder=tmp_path)
    assert checked.ok and 10 == len(checked.replays)
    for _, replayed, file in checked.replays:
        assert 0 == replayed.refused
        assert replay(load(file)).ok


def test_a_buddy_mutant_is_caught_by_the_replay_and_its_scenario_replays_the_failure(tmp_path: Path) -> None:
    mutant = by_name("split-keeps-upper")
    system = SpecBuddySystem(BuddyBounds(frames=10, max_order=2, max_alloc_order=1))
    with mutant.applied():
        checked = explore_and_replay(system, 40, "buddy", folder=tmp_path, mutant=mutant.name)
    assert checked.result.path is None and checked.diverged
    _, _, file = checked.diverged[0]
    scenario = load(file)
    assert recorded_mutant(scenario) is mutant
    assert replay(scenario).ok  # the real implementation agrees with the spec along the path
    with mutant.applied():
        assert not replay(scenario).ok


def test_smp_spec_exhausts_verifys_bound_and_its_paths_agree_in_lockstep(tmp_path: Path) -> None:
    system = SpecSmpSystem(smp_system.VERIFY_BOUNDS)
    checked = explore_and_replay(system, smp_system.VERIFY_DEPTH, "smp", sample=5, folder=tmp_path)
    assert checked.result.path is None and checked.result.stats.exhausted, checked.result.reason
    assert checked.ok and 5 == len(checked.replays)
    scenario = load(checked.replays[0][2])
    assert scenario.ops[: len(smp_system.SETUP)] == smp_system.SETUP  # the setup starts every scenario


def test_smp_replay_catches_a_shootdown_mutant() -> None:
    system = SpecSmpSystem(smp_system.HUNT_BOUNDS[0][0])
    result = explore_spec(system, 4, sample=40)
    assert result.path is None
    assert all(replay_path(system, path).ok for path in result.deepest)
    with by_name("free-before-flush").applied():
        caught = first_divergence(system, result.deepest)
    assert caught is not None and caught.divergence is not None


def run_cli(*args: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {"MMCHECK_COUNTEREXAMPLES": str(folder), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "mmcheck", "explore", *args], capture_output=True, text=True, check=False, env=env
    )


def test_cli_default_is_the_spec_explorer_with_its_paths_replayed(tmp_path: Path) -> None:
    out = run_cli("--frames", "6", "--max-order", "1", folder=tmp_path)
    assert 0 == out.returncode, out.stderr
    lines = out.stdout.splitlines()
    assert "ARG layer buddy frames 6 max_order 1 alloc_order 1 depth 20 max_states None mode spec sample 20" == lines[0]
    assert lines[1].startswith("explore: 125 distinct states") and "(exhausted)" in lines[1]
    assert lines[2].startswith("replay: 20 paths (20 of the deepest) replayed in lockstep") and "20 agree" in lines[2]
    assert 20 == len(list((tmp_path / "explore-buddy-spec").glob("deepest-*.json")))


def test_cli_json_is_one_object(tmp_path: Path) -> None:
    out = run_cli(
        "--layer", "smp", "--procs", "1", "--pages", "1", "--depth", "2", "--sample", "3", "--json", folder=tmp_path
    )
    assert 0 == out.returncode, out.stderr
    report = json.loads(out.stdout)
    assert "spec" == report["mode"] and 2 == report["depth"] and report["violation"] is None
    assert 3 == len(report["replays"]) and all(r["agrees"] for r in report["replays"])
    assert Path(report["replays"][0]["scenario"]).is_file()
    lockstep = json.loads(run_cli("--lockstep", "--frames", "4", "--depth", "3", "--json", folder=tmp_path).stdout)
    assert "lockstep" == lockstep["mode"] and lockstep["distinct"] > 0


def test_cli_refuses_a_sample_with_lockstep(tmp_path: Path) -> None:
    out = run_cli("--lockstep", "--sample", "3", folder=tmp_path)
    assert 2 == out.returncode and "--sample" in out.stderr


def test_equal_forms_have_one_digest_however_their_parts_are_shared() -> None:
    """marshal's later versions write a part met twice as a reference, so equal forms, one with a part shared and
    one with it built twice, gave two fingerprints (the same state counted twice)."""
    part = tuple(range(300, 310))
    shared = (part, part)
    apart = (part, tuple(list(part)))
    assert shared == apart and shared[1] is not apart[1]
    assert smp_system.digest(shared) == smp_system.digest(apart)


def test_a_state_rebuilt_elsewhere_has_its_key() -> None:
    """A state pickled and unpickled (as the parallel search sends it to its owner) keeps its key."""
    import pickle

    from proofs.spec_parallel import register_pickling

    register_pickling()
    system = SpecSmpSystem(smp_system.VERIFY_BOUNDS)
    level = [system.initial()]
    for _ in range(3):
        level = [s for state in level for _, s in system.successors(state)]
    copies = pickle.loads(pickle.dumps(level))
    assert [system.key(s) for s in level] == [system.key(s) for s in copies]


def test_cli_workers_search_the_same_states(tmp_path: Path) -> None:
    out = run_cli("--frames", "6", "--max-order", "1", "--workers", "2", "--sample", "2", folder=tmp_path)
    assert 0 == out.returncode, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(" mode spec sample 2 workers 2")
    assert lines[1].startswith("explore: 125 distinct states") and "(exhausted)" in lines[1]
    assert lines[2].startswith("replay: 2 paths") and "2 agree" in lines[2]
    refused = run_cli("--lockstep", "--workers", "2", folder=tmp_path)
    assert 2 == refused.returncode and "--workers" in refused.stderr
