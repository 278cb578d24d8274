"""The teaching view of the buddy allocator: free lists with block addresses after every step.

``/proc/buddyinfo`` shows how many free blocks each order has; this view
shows which ones, as pfns and physical address ranges, so a reader can watch
``expand()`` split a block and ``__free_one_page`` merge buddies back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from lang.hardware_ops import AllocPages, BuddyInfo, FreePages
from lang.scenario import Scenario
from properties.drivers import ImplRunner, SpecRunner
from spec.alloc import fragmentation
from spec.paging.address import PAGE_SHIFT

BUDDY_OPS = (AllocPages, FreePages, BuddyInfo)
VIEW_MODELS = ("spec", "impl")


def buddyinfo_line(counts: Sequence[int], node: int = 0, zone: str = "Normal") -> str:
    """A ``/proc/buddyinfo`` line for ``counts`` (``frag_show_print``, mm/vmstat.c), without the newline."""
    return f"Node {node}, zone {zone:>8} " + "".join(f"{count:6d} " for count in counts)


def block_text(pfn: int, order: int) -> str:
    """``pfn 0x4 @ 0x4000-0x7fff``: a block's first frame and its physical address range."""
    start = pfn << PAGE_SHIFT
    end = (pfn + (1 << order)) << PAGE_SHIFT
    return f"pfn {pfn:#x} @ {start:#x}-{end - 1:#x}"


def free_list_lines(free_lists: Sequence[Sequence[int]]) -> Iterator[str]:
    """One line per order that has free blocks, its blocks in the order given."""
    for order, pfns in enumerate(free_lists):
        if pfns:
            size_kib = 4 << order
            blocks = ", ".join(block_text(pfn, order) for pfn in pfns)
            yield f"order {order:2} ({size_kib} KiB): {blocks}"


def spec_free_lists(runner: SpecRunner) -> list[list[int]]:
    """The spec's free set as one list per order, lowest pfn first (the spec's lists are sets)."""
    state = runner.buddy
    return [sorted(b.pfn for b in state.free if b.order == order) for order in range(state.max_order + 1)]


def impl_free_lists(runner: ImplRunner) -> list[list[int]]:
    """The implementation's free lists, each in the order allocation takes blocks from it."""
    return [runner.buddy.free_list(order) for order in range(runner.buddy.max_order + 1)]


def fragmentation_lines(counts: Sequence[int]) -> Iterator[str]:
    """``extfrag_index`` and ``unusable_index`` of the zone (:mod:`spec.alloc.fragmentation`), and for each order
    no free block can serve, whether compaction's fragmentation test would let it try."""
    yield f"extfrag_index  {fragmentation.extfrag_line(counts)}"
    yield f"unusable_index {fragmentation.unusable_line(counts)}"
    failing = [o for o in range(len(counts)) if fragmentation.fragmentation_index(counts, o) >= 0 and any(counts)]
    if failing:
        free = sum(c << o for o, c in enumerate(counts))
        verdicts = ", ".join(
            f"{o}: {'compact' if fragmentation.fragindex_allows_compaction(counts, o) else 'reclaim'}" for o in failing
        )
        yield f"{free} pages free, no block of order {failing[0]} or more; by order, {verdicts}"


def buddy_view(scenario: Scenario, model: str = "spec", fragmentation_shown: bool = False) -> Iterator[str]:
    """Run ``scenario`` on one side; after the start, after each buddy op and after each other op that allocated
    or freed frames (a kernel op: the kernel's boot, spawn, fork, a fault), show the free lists (and, with
    ``fragmentation_shown``, the zone's fragmentation indices)."""
    runner: SpecRunner | ImplRunner = SpecRunner(scenario.config) if model == "spec" else ImplRunner(scenario.config)

    def lists() -> list[list[int]]:
        return spec_free_lists(runner) if isinstance(runner, SpecRunner) else impl_free_lists(runner)

    def show() -> Iterator[str]:
        current = lists()
        yield f"    {buddyinfo_line([len(pfns) for pfns in current])}"
        if fragmentation_shown:
            for line in fragmentation_lines([len(pfns) for pfns in current]):
                yield f"    {line}"
        for line in free_list_lines(current):
            yield f"    {line}"

    config = scenario.config
    yield f"{config.frames} frames, max_order {config.max_order}, {model} free lists"
    yield from show()
    for index, op in enumerate(scenario.ops):
        before = lists()
        result = runner.apply(op)
        yield f"{index:3} {json.dumps(op.to_json())}\n    -> {json.dumps(result)}"
        if isinstance(op, BuddyInfo):
            continue
        if isinstance(op, BUDDY_OPS) and runner.buddy_error is not None:
            yield f"    refused, {type(runner.buddy_error).__name__}: {runner.buddy_error} (nothing changed)"
        elif isinstance(op, BUDDY_OPS) or lists() != before:
            yield from show()


def buddy_json(scenario: Scenario, model: str = "spec") -> dict[str, object]:
    """The same run as data: the free lists (pfns per order) at the start and after each op, refusals named."""
    runner: SpecRunner | ImplRunner = SpecRunner(scenario.config) if model == "spec" else ImplRunner(scenario.config)

    def lists() -> list[list[int]]:
        return spec_free_lists(runner) if isinstance(runner, SpecRunner) else impl_free_lists(runner)

    start = lists()
    steps: list[dict[str, object]] = []
    for op in scenario.ops:
        step: dict[str, object] = {"op": op.to_json(), "result": runner.apply(op)}
        if runner.buddy_error is not None and isinstance(op, BUDDY_OPS):
            step["refused"] = f"{type(runner.buddy_error).__name__}: {runner.buddy_error}"
        step["free_lists"] = lists()
        steps.append(step)
    config = scenario.config
    return {"frames": config.frames, "max_order": config.max_order, "model": model, "start": start, "steps": steps}
