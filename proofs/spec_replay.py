"""The implementation checked along the spec explorer's paths: each replayed in lockstep and saved as a scenario.

The spec explorer (:mod:`proofs.spec_explore`) runs the L1 spec alone.  Every
path it reports, the shortest one to a violation and a seeded sample of the
deepest ones, is replayed here through :class:`properties.drivers.Lockstep`
exactly as ``mmcheck replay`` replays a scenario: the implementation first,
then the spec with the implementation's choices, results and abstract states
compared, every TLB entry one the spec allows, L1 refining L0.  Where the
spec picked a frame the implementation did not (the buddy explorer branches
over every allowed block), later frees name the block the implementation
handed out instead (:meth:`lockstep_op`), so the path stays one of valid ops.

Each replayed path is written as a scenario: ``mmcheck replay`` passes on one
that agreed and reproduces the divergence of one that did not (with the
mutant it ran under recorded, so the replay re-applies it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from lang.errors import MMCheckError
from lang.scenario import Config, Op, Result, Scenario, dump
from proofs.explore import Stats
from proofs.spec_explore import SpecResult, SpecSystem, explore_spec
from properties.drivers import Divergence, DivergenceError, Lockstep
from properties.recording import counterexample_folder

S = TypeVar("S")
Move = TypeVar("Move")
Move_contra = TypeVar("Move_contra", contravariant=True)


class Replayable(Protocol[Move_contra]):
    """What replaying a spec path needs from a spec system."""

    config: Config
    setup: tuple[Op, ...]

    def start(self) -> Lockstep:
        """The lockstep run after the setup ops."""
        ...

    def lockstep_op(self, move: Move_contra, renaming: dict[int, int]) -> Op:
        """The op a move of the spec path runs as in lockstep."""
        ...

    def observe(self, move: Move_contra, result: Result, renaming: dict[int, int]) -> None:
        """Learn from the lockstep result of a move (the frame the implementation chose)."""
        ...


@dataclass
class Replayed(Generic[Move]):
    """One path replayed: the ops run (setup first), the divergence if any, the ops refused alike and left out."""

    ops: list[Op]
    divergence: Divergence | None
    refused: int = 0

    @property
    def ok(self) -> bool:
        return self.divergence is None


def replay_path(system: Replayable[Move], path: Sequence[Move]) -> Replayed[Move]:
    """Run ``path`` in lockstep; stop at the first divergence (the op that diverged is the last one kept).

    An op both sides refuse alike (bad input) changed nothing and is left out of the ops, so the scenario is one
    ``mmcheck replay`` runs without a bad-input error.
    """
    try:
        state = system.start()
    except DivergenceError as exc:
        return Replayed(list(system.setup), exc.divergence)
    ran = list(system.setup)
    renaming: dict[int, int] = {}
    refused = 0
    for move in path:
        op = system.lockstep_op(move, renaming)
        try:
            result = state.apply(op)
        except DivergenceError as exc:
            ran.append(op)
            return Replayed(ran, exc.divergence, refused)
        except MMCheckError:
            refused += 1
            continue
        ran.append(op)
        system.observe(move, result, renaming)
    return Replayed(ran, None, refused)


def save(system: Replayable[Move], replayed: Replayed[Move], file: Path, about: str, mutant: str | None) -> Path:
    """Write a replayed path as a scenario (recording ``mutant`` when one was applied)."""
    if replayed.divergence is not None:
        about = f"{about}; diverges in lockstep: {replayed.divergence.describe()}"
    extra = {} if mutant is None else {"mutant": mutant}
    return dump(Scenario(system.config, tuple(replayed.ops), about=about, extra=extra), file)


@dataclass
class Checked(Generic[Move]):
    """A spec exploration with its paths replayed: the result, each path's replay and the scenario written for it."""

    result: SpecResult[Move]
    replays: list[tuple[str, Replayed[Move], Path]]

    @property
    def diverged(self) -> list[tuple[str, Replayed[Move], Path]]:
        return [entry for entry in self.replays if not entry[1].ok]

    @property
    def ok(self) -> bool:
        return self.result.path is None and not self.diverged

    def summary(self) -> str:
        """One line: how many paths were replayed in lockstep and how many diverged."""
        kinds = "the violation's and " if self.result.path is not None else ""
        return (
            f"replay: {len(self.replays)} paths ({kinds}{len(self.result.deepest)} of the deepest) replayed in "
            f"lockstep (spec, implementation, L0): {len(self.replays) - len(self.diverged)} agree, "
            f"{len(self.diverged)} diverge"
        )


class CheckedSystem(SpecSystem[S, Move], Replayable[Move], Protocol):
    """A spec system whose paths replay in lockstep."""


def explore_and_replay(
    system: CheckedSystem[S, Move],
    depth: int,
    name: str,
    max_states: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[Stats], None] | None = None,
    progress_every: float = 5.0,
    sample: int = 20,
    seed: int = 0,
    folder: Path | None = None,
    mutant: str | None = None,
    workers: int = 1,
) -> Checked[Move]:
    """Explore the spec (on ``workers`` processes: :mod:`proofs.spec_parallel`), then replay in lockstep the
    violation's path (if any) and ``sample`` deepest paths drawn with ``seed``, each saved as a scenario under
    ``folder`` (default ``<counterexamples>/explore-<name>-spec``)."""
    if workers > 1:
        from proofs.spec_parallel import explore_parallel

        result = explore_parallel(
            system, depth, workers, max_states, time_limit, progress, progress_every, sample, seed
        )
    else:
        result = explore_spec(system, depth, max_states, time_limit, progress, progress_every, sample, seed)
    where = folder if folder is not None else counterexample_folder() / f"explore-{name}-spec"
    for stale in (*where.glob("deepest-*.json"), *where.glob("violation.json")):
        stale.unlink()  # the scenarios of an earlier run: the folder holds this run's alone
    replays = []
    paths = [("violation", result.path)] if result.path is not None else []
    paths += [(f"deepest-{number:02d}", path) for number, path in enumerate(result.deepest)]
    for label, path in paths:
        replayed = replay_path(system, path)
        if label == "violation":
            about = f"shortest violation of the spec's invariants found by the spec explorer ({name}): {result.reason}"
        else:
            about = f"one of the deepest paths ({len(path)} ops) of the spec explorer ({name}), seed {seed}"
        replays.append((label, replayed, save(system, replayed, where / f"{label}.json", about, mutant)))
    return Checked(result, replays)


def first_divergence(system: Replayable[Move], paths: Sequence[Sequence[Move]]) -> Replayed[Move] | None:
    """The first of ``paths`` that diverges in lockstep (under whatever mutant is applied), else None."""
    for path in paths:
        replayed = replay_path(system, path)
        if not replayed.ok:
            return replayed
    return None
