"""The teaching view of the LRU lists: which pages each of the four lists holds after every step.

Linux keeps every anonymous page and every page-cache page on one of four
lists (``enum lru_list``, include/linux/mmzone.h): inactive and active,
anonymous and file.  New pages go on an inactive list; reclaim scans an
inactive list from its tail (mm/vmscan.c ``shrink_folio_list``): a
referenced page (``PG_referenced`` or a young PTE, ``folio_referenced``)
gets a second chance on the active list (``folio_check_references``), an
unreferenced one is evicted; ``shrink_active_list`` moves active pages back.
This view shows the lists after each op, each page with what refers to it,
``ref`` when it is referenced and ``dirty`` when it is a dirty file page.

``spec``: the spec's lists are sets (the spec allows reclaim any order), shown
lowest frame first.  ``impl``: the implementation's doubly linked lists in
their real order, tail (the next page reclaim looks at) first, each page
named through the abstraction (:func:`properties.abstraction.abstract_kernel`).

A picture (``-o out.svg``, ``.png`` or ``.pdf``; matplotlib, as ``mmcheck
plot``): frames by steps, each cell coloured by the list the frame is on, a
dot where it is referenced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lang.errors import MMCheckError
from lang.kernel_ops import KernelOp
from lang.scenario import Scenario
from mmcheck import output
from mmcheck.views.plot import MissingMatplotlib
from mmcheck.views.pressurestory import page_name
from properties.abstraction import abstract_kernel
from properties.drivers import ImplRunner, SpecRunner
from spec.mm.kernel import Kernel
from spec.pressure import lru

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LISTS = ("inactive anon", "active anon", "inactive file", "active file")
FORMATS = ("png", "svg", "pdf")
Entry = dict[str, Any]


def entry(k: Kernel, pfn: int) -> Entry:
    """One page on a list, in the spec's terms."""
    page = k.pages[pfn]
    return {
        "pfn": pfn,
        "what": page_name(k, pfn),
        "referenced": lru.referenced(k, pfn),
        "dirty": page.dirty,
    }


def spec_lists(k: Kernel) -> dict[str, list[Entry]]:
    """The four lists of a spec state, lowest frame first."""
    out: dict[str, list[Entry]] = {name: [] for name in LISTS}
    for pfn, page in sorted(k.pages.items()):
        if page.lru:
            out[f"{page.lru} {'anon' if page.anon else 'file'}"].append(entry(k, pfn))
    return out


def impl_lists(runner: ImplRunner) -> dict[str, list[Entry]]:
    """The implementation's four lists in their own order, tail first (``enum lru_list`` order: 0..3)."""
    kernel = runner.kernel.kernel
    assert kernel is not None
    named = abstract_kernel(kernel)
    return {name: [entry(named, pfn) for pfn in kernel.pressure.from_tail(n)] for n, name in enumerate(LISTS)}


def lru_json(scenario: Scenario, model: str = "spec") -> dict[str, object]:
    """The lists after every op (empty before the kernel boots)."""
    if not any(isinstance(op, KernelOp) for op in scenario.ops):
        raise MMCheckError("lru shows a kernel scenario: it needs kernel ops (spawn, mmap, load, store, reclaim ...)")
    runner: SpecRunner | ImplRunner = SpecRunner(scenario.config) if model == "spec" else ImplRunner(scenario.config)
    steps = []
    for op in scenario.ops:
        result = runner.apply(op)
        if isinstance(runner, SpecRunner):
            k = runner.kernel.kernel
            lists = spec_lists(k) if k is not None else {name: [] for name in LISTS}
        else:
            lists = impl_lists(runner) if runner.kernel.kernel is not None else {name: [] for name in LISTS}
        steps.append({"op": op.to_json(), "result": result, "lists": lists})
    order = "lowest frame first" if model == "spec" else "tail (next to scan) first"
    return {"model": model, "frames": scenario.config.frames, "order": order, "steps": steps}


def entry_text(e: Mapping[str, Any]) -> str:
    """``0x12 ref`` (what the page is comes in the long form only)."""
    return f"{e['pfn']:#x}" + (" ref" if e["referenced"] else "") + (" dirty" if e["dirty"] else "")


def lru_lines(run: Mapping[str, object]) -> Iterator[str]:
    """The plain form: each op and its result, then the lists that are not empty, each page described."""
    steps = cast(list[dict[str, Any]], run["steps"])
    yield f"{run['frames']} frames, {run['model']} LRU lists ({run['order']})"
    shown: object = None
    for index, step in enumerate(steps):
        yield f"{index:3} {json.dumps(step['op'])}\n    -> {json.dumps(step['result'])}"
        if step["lists"] == shown:
            continue
        shown = step["lists"]
        if not any(step["lists"].values()):
            yield "    every LRU list is empty"
        for name in LISTS:
            pages = step["lists"][name]
            if pages:
                described = "; ".join(
                    f"{e['what']}" + (", ref" if e["referenced"] else "") + (", dirty" if e["dirty"] else "")
                    for e in pages
                )
                yield f"    {name:13}: {described}"


def lru_table(run: Mapping[str, object]) -> Any:
    """The run as a Rich table: a row per op, a column per list."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{run['frames']} frames, {run['model']} LRU lists ({run['order']}; ref: referenced)")
    table.add_column("#", justify="right")
    table.add_column("op")
    table.add_column("result")
    for name in LISTS:
        table.add_column(name, style="green" if "active " in name and "inactive" not in name else "")
    for index, step in enumerate(cast(list[dict[str, Any]], run["steps"])):
        args = ", ".join(f"{k}={v}" for k, v in step["op"].items() if k != "op")
        table.add_row(
            Text(str(index)),
            Text(f"{step['op']['op']}({args})"),
            Text(json.dumps(step["result"])),
            *(Text(" ".join(entry_text(e) for e in step["lists"][name])) for name in LISTS),
        )
    return table


def lru_figure(run: Mapping[str, object], title: str) -> Figure:
    """Frames (rows) by steps (columns), each cell coloured by its list, a dot where the page is referenced."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.colors import ListedColormap
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise MissingMatplotlib(
            "mmcheck lru -o needs matplotlib, which is not installed: pip install -e '.[plot]'"
        ) from exc
    steps = cast(list[dict[str, Any]], run["steps"])
    frames = sorted({e["pfn"] for step in steps for name in LISTS for e in step["lists"][name]})
    if not frames:
        raise MMCheckError("lru -o: no page is ever on an LRU list in this scenario, nothing to draw")
    row = {pfn: i for i, pfn in enumerate(frames)}
    grid = [[0] * len(steps) for _ in frames]
    dots: list[tuple[int, int]] = []
    for x, step in enumerate(steps):
        for code, name in enumerate(LISTS, 1):
            for e in step["lists"][name]:
                grid[row[e["pfn"]]][x] = code
                if e["referenced"]:
                    dots.append((x, row[e["pfn"]]))
    colours = ["#f2f2f2", "#9ecae1", "#08519c", "#fdae6b", "#a63603"]
    figure = Figure(figsize=(max(6.0, 0.3 * len(steps) + 2), max(3.0, 0.3 * len(frames) + 1.5)), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(grid, cmap=ListedColormap(colours), vmin=0, vmax=len(LISTS), aspect="auto", interpolation="nearest")
    if dots:
        axes.scatter([d[0] for d in dots], [d[1] for d in dots], s=10, c="black", label="referenced")
    axes.set_yticks(range(len(frames)), [f"{pfn:#x}" for pfn in frames])
    axes.set_xticks(range(len(steps)), [f"{i}" for i in range(len(steps))], fontsize="small")
    axes.set_xlabel("after op")
    axes.set_ylabel("frame")
    axes.set_title(f"{title}: LRU lists ({run['model']})")
    handles = [Patch(color=colours[i + 1], label=name) for i, name in enumerate(LISTS)]
    handles.append(Patch(color=colours[0], label="on no list / free"))
    figure.legend(handles=handles, loc="outside lower center", ncols=5, fontsize="small")
    return figure


def write_lru(scenario: Scenario, title: str, path: Path, model: str = "spec", force: bool = False) -> str:
    """Save the picture to ``path`` (png, svg or pdf from the suffix); the note to print."""
    fmt = output.output_format(path, FORMATS)
    output.check_writable(path, force)
    figure = lru_figure(lru_json(scenario, model), title)
    output.write_file(path, lambda temporary: figure.savefig(temporary, format=fmt))
    return f"wrote {path}"
