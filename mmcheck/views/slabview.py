"""The teaching view of the slab allocator: each cache's slabs and freelists after every step.

``/proc/slabinfo`` counts objects and slabs; this view shows which slabs a
cache has (pfn, order, whether a CPU holds it or it is on the partial list)
and each slab's freelist, head first, so a reader can watch an allocation
take the head, a free push the object back, and an empty slab go back to the
buddy allocator.  The implementation's state is read through the slab
abstraction (:func:`properties.slab.abstraction.abstract_slab`), so both
sides are shown in the spec's terms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from lang.scenario import Scenario
from lang.slab_ops import SlabOp
from properties.drivers import ImplRunner, SpecRunner
from properties.slab.abstraction import abstract_slab
from spec.slab.cache import Cache, Slab, SlabState

SHOWN_FREE = 8  # free objects shown per slab before "... N more"


def runner_state(runner: SpecRunner | ImplRunner) -> SlabState | None:
    """The slab state of ``runner``: the spec's value, or the implementation's abstracted; None before any slab op."""
    if isinstance(runner, SpecRunner):
        return runner.slab.state
    slub = runner.slab.slub
    return None if slub is None else abstract_slab(slub)


def slab_line(cache: Cache, slab: Slab) -> str:
    cpus = [str(cpu) for cpu, pfn in enumerate(cache.cpu_slab) if pfn == slab.pfn]
    where = f"cpu {','.join(cpus)}" if cpus else "partial" if slab.pfn in cache.partial else "full"
    free = ", ".join(hex(addr) for addr in slab.freelist[:SHOWN_FREE])
    more = len(slab.freelist) - SHOWN_FREE
    tail = f", ... {more} more" if more > 0 else ""
    head = f"freelist {free}{tail}" if slab.freelist else "freelist empty"
    return f"slab pfn {slab.pfn:#x} order {slab.order} ({where}): {slab.inuse} of {slab.objects} in use, {head}"


def state_lines(state: SlabState | None) -> Iterator[str]:
    """Every cache that is not an unused kmalloc cache, with its names and slabs."""
    if state is None:
        yield "no slab allocator yet"
        return
    for cache in state.caches:
        slabs = sorted((s for s in state.slabs.values() if s.cache == cache.name), key=lambda s: s.pfn)
        if cache.kmalloc and not slabs:
            continue
        g = cache.geometry
        aliases = sorted(name for name, real in state.names.items() if real == cache.name and name != cache.name)
        named = f", aliases {', '.join(aliases)}" if aliases else ""
        ctor = ", ctor" if g.ctor else ""
        yield (
            f"cache {cache.name}: object {g.object_size} B in {g.size} B slots (free pointer at {g.offset}{ctor}), "
            f"order {g.order}, {g.objects} per slab{named}"
        )
        if not slabs:
            yield "  no slabs"
        for slab in slabs:
            yield f"  {slab_line(cache, slab)}"


def slab_view(scenario: Scenario, model: str = "spec") -> Iterator[str]:
    """Run ``scenario`` on one side; after each slab op that changed the slab state, show every used cache."""
    runner: SpecRunner | ImplRunner = SpecRunner(scenario.config) if model == "spec" else ImplRunner(scenario.config)
    yield f"{scenario.config.cpus} cpu(s), {scenario.config.frames} frames, {model} slab state"
    shown: object = None
    for index, op in enumerate(scenario.ops):
        result = runner.apply(op)
        yield f"{index:3} {json.dumps(op.to_json())}\n    -> {json.dumps(result)}"
        if not isinstance(op, SlabOp):
            continue
        state = runner_state(runner)
        layout = None if state is None else (state.caches, dict(state.names), dict(state.slabs))
        if layout is not None and layout == shown:
            continue
        shown = layout
        for line in state_lines(state):
            yield f"    {line}"
