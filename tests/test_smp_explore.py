"""The explorer on the SMP kernel layer: clones, rebuilt states, the canonical form, the CLI."""

from __future__ import annotations

import random
import subprocess
import sys

from lang.kernel_ops import KernelThread, Load, Mmap, Mprotect, Munmap, Spawn, Step, Store, Switch, TlbEvict
from proofs.explore import explore
from proofs.smp_system import SmpBounds, SmpSystem, canonical, compress_gaps

SMALL = SmpBounds(procs=2, pages=2, flights=2)
TINY = SmpBounds(procs=1, pages=1, frames=12, fork=False, kernel=False, syscalls=("munmap", "mprotect", "mmap"))


def random_walk(system: SmpSystem, rng: random.Random, length: int) -> list[object]:
    """Walk ``length`` random enabled ops from the start; after each, the parent is unchanged by its clone's step
    and rebuilding the path from scratch gives the same canonical state."""
    state, path = system.initial(), []
    for _ in range(length):
        op = rng.choice(list(system.enabled(state)))
        before = canonical(state)
        successor = system.step(state, op)
        assert before == canonical(state), f"stepping a clone with {op!r} changed its parent"
        if successor is not state:
            path.append(op)
        state = successor
        assert canonical(system.restore(path)) == canonical(state), path
    return path


def test_clones_are_independent_and_paths_rebuild_the_same_state() -> None:
    system = SmpSystem(SMALL)
    rng = random.Random(7)
    lengths = [len(random_walk(system, rng, 12)) for _ in range(12)]
    assert sum(lengths) > 60, lengths  # most ops were accepted: the walks went somewhere


def test_frontier_rebuilt_from_paths_explores_the_same_states() -> None:
    """Keeping no frontier state in memory (each rebuilt from its path) visits exactly what keeping them all does."""
    system = SmpSystem(TINY)
    kept = explore(system, max_depth=5, keep_states=10**6).stats
    rebuilt = explore(system, max_depth=5, keep_states=0).stats
    assert (kept.distinct, kept.transitions) == (rebuilt.distinct, rebuilt.transitions)
    assert kept.distinct > 50


def test_flight_numbers_are_labels() -> None:
    """A state whose change in flight is number 2 has the fingerprint of the same state with it as number 1."""
    system = SmpSystem(TINY)
    first = system.restore([Spawn(), Switch(0, 1), Mprotect(1, 0x10000000, 1, "r--", background=True)])
    unmapped = [Spawn(), Switch(0, 1), Munmap(1, 0x10000000, 1, background=True), Step(1)]
    second = system.restore([*unmapped, Mprotect(1, 0x10000000, 1, "r--", background=True)])
    assert sorted(first.spec.kernel.kernel.flights) == [1]  # type: ignore[union-attr]
    assert sorted(second.spec.kernel.kernel.flights) == [2]  # type: ignore[union-attr]
    assert system.fingerprint(first) == system.fingerprint(second)


def test_a_different_state_has_a_different_fingerprint() -> None:
    """A stored value, a lazy CPU, or an entry in a TLB or not, each make the state a different one."""
    system = SmpSystem(TINY)
    start = [Spawn(), Switch(0, 1), Mmap(1, 0x10000000, 1, "rw-")]
    states = [
        start,
        [*start, Store(0, 0x10000000, 1)],
        [*start, KernelThread(0)],
        [*start, Load(0, 0x10000000)],
        [*start, Store(0, 0x10000000, 1), TlbEvict(0)],
    ]
    prints = [system.fingerprint(system.restore(path)) for path in states]  # type: ignore[arg-type]
    assert len(set(prints)) == len(prints)


def test_generations_keep_order_equality_and_gaps_of_one() -> None:
    assert {3: 0, 4: 1, 9: 3, 10: 4} == compress_gaps([9, 3, 4, 10, 4])
    assert {0: 0} == compress_gaps([0])


def test_cli_explores_the_smp_layer() -> None:
    """``mmcheck explore --lockstep --layer smp`` echoes its arguments and ends with the summary line; exit 0."""
    args = ["explore", "--lockstep", "--layer", "smp", "--procs", "1", "--pages", "1", "--depth", "3"]
    out = subprocess.run(
        [sys.executable, "-m", "mmcheck", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == out.returncode, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ARG layer smp cpus 2 procs 1 frames 16 pages 1 flights 1 tlb_entries 2 depth 3 ")
    assert lines[-1].startswith("explore: ") and "depth 3 (bound reached)" in lines[-1]
