"""The mutant catalogue: realistic defects of ``impl/`` the harness must catch, as an importable registry.

Each :class:`Mutant` mirrors a real bug (a kernel commit or CVE from the
linux-mm reference, an SDM misreading, a textbook error) and is applied only
while a check runs, by patching ``impl/`` code in memory: the shipped
implementation contains no bug switches.  :mod:`.hunt` runs the checks
``verify`` runs for a mutant's layer with the mutant applied, and
``mmcheck mutants`` / ``nox -s mutants`` print which caught each one.

A layer adds its mutants as a tuple in a module of this package and lists it
in :data:`MUTANTS`; :data:`proofs.hunt.DETECTORS` says which
checks hunt them.
"""

from __future__ import annotations

from lang.errors import ScenarioError, UnknownMutant
from lang.scenario import Scenario
from properties.mutants.buddy import BUDDY_MUTANTS
from properties.mutants.catalogue import Mutant, Patch, Replace, SourcePatch, swapped
from properties.mutants.ceiling import CEILING_MUTANTS
from properties.mutants.huge import HUGE_MUTANTS
from properties.mutants.kernel import KERNEL_MUTANTS
from properties.mutants.memcg import MEMCG_MUTANTS
from properties.mutants.oom import OOM_MUTANTS
from properties.mutants.pcid import NOPCID_MUTANTS
from properties.mutants.pressure import PRESSURE_MUTANTS
from properties.mutants.slab import SLAB_MUTANTS
from properties.mutants.slab_debug import SLAB_DEBUG_MUTANTS
from properties.mutants.slab_meminfo import SLAB_MEMINFO_MUTANTS
from properties.mutants.smaps import SMAPS_MUTANTS
from properties.mutants.thp import THP_MUTANTS
from properties.mutants.tlb import TLB_MUTANTS
from properties.mutants.walk import WALK_MUTANTS
from properties.mutants.workingset import WORKINGSET_MUTANTS

MUTANTS: tuple[Mutant, ...] = (
    WALK_MUTANTS
    + BUDDY_MUTANTS
    + KERNEL_MUTANTS
    + TLB_MUTANTS
    + HUGE_MUTANTS
    + SLAB_MUTANTS
    + SLAB_DEBUG_MUTANTS
    + NOPCID_MUTANTS
    + PRESSURE_MUTANTS
    + CEILING_MUTANTS
    + SMAPS_MUTANTS
    + OOM_MUTANTS
    + WORKINGSET_MUTANTS
    + SLAB_MEMINFO_MUTANTS
    + THP_MUTANTS
    + MEMCG_MUTANTS
)
LAYERS: tuple[str, ...] = tuple(dict.fromkeys(m.layer for m in MUTANTS))

__all__ = [
    "LAYERS",
    "MUTANTS",
    "Mutant",
    "Patch",
    "Replace",
    "SourcePatch",
    "by_name",
    "recorded_mutant",
    "select",
    "swapped",
]


def by_name(name: str) -> Mutant:
    """The catalogued mutant called ``name``, or :class:`~lang.errors.UnknownMutant`."""
    for mutant in MUTANTS:
        if mutant.name == name:
            return mutant
    raise UnknownMutant(f"no mutant named {name!r}: `mmcheck mutants --list` shows the catalogue")


def select(layers: list[str] | None = None, names: list[str] | None = None) -> tuple[Mutant, ...]:
    """The mutants of ``layers`` (all when None), or exactly those called ``names`` (each must exist)."""
    if layers:
        unknown = sorted(set(layers) - set(LAYERS))
        if unknown:
            raise UnknownMutant(f"no mutants in layer(s) {', '.join(unknown)}: layers are {', '.join(LAYERS)}")
    chosen = [by_name(name) for name in names] if names else list(MUTANTS)
    return tuple(m for m in chosen if not layers or m.layer in layers)


def recorded_mutant(scenario: Scenario, name: str | None = None) -> Mutant | None:
    """The mutant called ``name``, else the one ``scenario`` records under ``"mutant"``, else None.

    A counterexample found against a mutant diverges only while that mutant
    is applied, so replaying it re-applies the mutant it names.
    """
    recorded = scenario.extra.get("mutant")
    chosen = name or recorded
    if chosen is None:
        return None
    if not isinstance(chosen, str):
        raise ScenarioError("mutant", f"must be the name of a catalogued mutant, got {chosen!r}")
    return by_name(chosen)
