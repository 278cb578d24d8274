"""Pictures of a kernel-level state: page-table trees, shared frames, COW marks, the zero page, free lists.

``mmcheck draw FILE`` replays a scenario on the spec up to a step and draws
the state it reached.  The drawing is built in two stages so it can be tested
without looking at pixels:

1. :func:`picture` turns the spec state into a :class:`Picture`, a plain
   graph description: one node per process, per page-table page and per
   frame a user entry maps, edges labelled with the entry index that leads
   there, and the buddy allocator's free lists;
2. :func:`to_dot` and :func:`to_text` render that description as Graphviz
   DOT (``dot -Tsvg`` draws it) or as an indented plain-text tree.

A frame is marked **COW** when private entries of more than one place map
it and every one of them is read-only: the state fork leaves behind until a
write fault copies the page (mm/memory.c ``copy_present_ptes``,
``do_wp_page``).  A frame mapped more than once through a *writable* private
entry is marked **SHARED WRITABLE**: the COW invariant is broken there.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lang.errors import MMCheckError, OutputRefused, ScenarioError
from lang.scenario import Scenario
from mmcheck import output
from properties.drivers import SpecRunner
from properties.replay import ReplayInputError
from spec.alloc.buddy import BuddyState
from spec.mm.kernel import Kernel, Leaf, Space
from spec.mm.vma import find
from spec.paging.address import PAGE_SHIFT
from spec.paging.tlb import GLOBAL_PCID, Tlb, TlbEntry

TABLE_NAMES = {4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}
FORMATS = ("svg", "dot", "txt")
MAX_WORDS = 3
MAX_TLB_ENTRIES = 6


@dataclass(frozen=True, slots=True)
class Node:
    """A box in the picture.  ``kind`` is ``process``, ``table``, ``frame`` or ``zero``; ``marks`` e.g. ``("COW",)``."""

    id: str
    kind: str
    label: str
    marks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow: a process to its PML4, or an entry (``label``, e.g. ``PT[0] r--``) to what it maps."""

    src: str
    dst: str
    label: str
    marks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Picture:
    """A state as a graph: the process trees, the frames they map, and the buddy free lists (pfns per order)."""

    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    free_lists: tuple[tuple[int, ...], ...]

    def node(self, node_id: str) -> Node:
        """The node called ``node_id``."""
        return next(n for n in self.nodes if n.id == node_id)

    def children(self, node_id: str) -> list[Edge]:
        """The edges leaving ``node_id``, in drawing order."""
        return [e for e in self.edges if e.src == node_id]

    def to_json(self) -> dict[str, Any]:
        """The description as JSON-ready data."""
        return {
            "title": self.title,
            "nodes": [{**asdict(n), "marks": list(n.marks)} for n in self.nodes],
            "edges": [{**asdict(e), "marks": list(e.marks)} for e in self.edges],
            "free_lists": [list(pfns) for pfns in self.free_lists],
        }


# --- state -> picture ---------------------------------------------------------------------------


def rights(leaf: Leaf) -> str:
    """``rw-``-style rights of a leaf entry; ``---`` for a PROT_NONE entry (P clear)."""
    if not leaf.present:
        return "---"
    return "r" + ("w" if leaf.writable else "-") + ("-" if leaf.nx else "x")


def private_mappings(k: Kernel) -> Counter[tuple[int, bool]]:
    """How many private user entries map each frame, split by writable or not: ``(pfn, writable) -> count``."""
    counts: Counter[tuple[int, bool]] = Counter()
    for sp in k.procs.values():
        for vpn, leaf in sp.leaves.items():
            vma = find(sp.vmas, vpn)
            if vma is not None and not vma.shared and leaf.pfn != k.zero_pfn:
                counts[leaf.pfn, leaf.writable] += 1
    return counts


def frame_marks(k: Kernel, pfn: int) -> tuple[str, ...]:
    """``("COW",)`` for a read-only private frame mapped more than once, ``("SHARED WRITABLE",)`` when broken."""
    counts = private_mappings(k)
    total = counts[pfn, True] + counts[pfn, False]
    if total < 2:
        return ()
    return ("SHARED WRITABLE",) if counts[pfn, True] else ("COW",)


def frame_label(k: Kernel, pfn: int) -> str:
    """``frame 0xa`` with its counts and its first non-zero words."""
    page = k.pages.get(pfn)
    if page is None:
        return f"frame {pfn:#x}"
    words = sorted(page.words.items())
    shown = " ".join(f"[{offset:#x}]={value:#x}" for offset, value in words[:MAX_WORDS])
    more = " ..." if len(words) > MAX_WORDS else ""
    counts = f"refcount {page.refcount}, mapcount {page.mapcount}"
    return f"frame {pfn:#x}\n{counts}" + (f"\n{shown}{more}" if words else "\nall zero")


def frame_id(k: Kernel, pfn: int) -> str:
    """The node id of a frame; the zero page has its own."""
    return "zero" if pfn == k.zero_pfn else f"frame_{pfn:#x}"


def table_id(pfn: int) -> str:
    """The node id of a page-table page."""
    return f"table_{pfn:#x}"


def process_edges(k: Kernel, pid: int, sp: Space) -> Iterator[tuple[Node | None, Edge]]:
    """The tree of one process, top-down: each new table node with the edge that reaches it, then the leaves."""
    yield Node(table_id(sp.root), "table", f"PML4\npfn {sp.root:#x}"), Edge(f"pid_{pid}", table_id(sp.root), "CR3")
    for (level, prefix), pfn in sorted(sp.tables.items(), key=lambda item: (-item[0][0], item[0][1])):
        parent = sp.root if level == 3 else sp.tables[level + 1, prefix >> 9]
        label = f"{TABLE_NAMES[level + 1]}[{prefix & 511}]"
        yield (
            Node(table_id(pfn), "table", f"{TABLE_NAMES[level]}\npfn {pfn:#x}"),
            Edge(table_id(parent), table_id(pfn), label),
        )
    for vpn, leaf in sorted(sp.leaves.items()):
        marks = frame_marks(k, leaf.pfn) if leaf.pfn != k.zero_pfn else ()
        if leaf.huge:  # a PD entry with PS=1 maps the 2 MiB frame directly (SDM Vol. 3A 4.5.4)
            label = f"PD[{(vpn >> 9) & 511}] PS=1 va {vpn << PAGE_SHIFT:#x} {rights(leaf)} 2 MiB"
            yield None, Edge(table_id(sp.tables[2, vpn >> 18]), frame_id(k, leaf.pfn), label, marks)
            continue
        label = f"PT[{vpn & 511}] va {vpn << PAGE_SHIFT:#x} {rights(leaf)}"
        yield None, Edge(table_id(sp.tables[1, vpn >> 9]), frame_id(k, leaf.pfn), label, marks)


def kernel_nodes(k: Kernel, pids: Sequence[int]) -> tuple[list[Node], list[Edge]]:
    """The nodes and edges of the processes ``pids``: their trees, the frames they map, and the zero page."""
    nodes = [Node("zero", "zero", f"zero page\npfn {k.zero_pfn:#x}")]
    edges: list[Edge] = []
    frames: set[int] = set()
    for pid in pids:
        sp = k.procs[pid]
        nodes.append(Node(f"pid_{pid}", "process", f"pid {pid}"))
        for node, edge in process_edges(k, pid, sp):
            if node is not None and node not in nodes:
                nodes.append(node)
            edges.append(edge)
        frames |= {leaf.pfn for leaf in sp.leaves.values() if leaf.pfn != k.zero_pfn}
    nodes += [Node(frame_id(k, pfn), "frame", frame_label(k, pfn), frame_marks(k, pfn)) for pfn in sorted(frames)]
    return nodes, edges


def free_lists(state: BuddyState) -> tuple[tuple[int, ...], ...]:
    """The free blocks' pfns per order, lowest first."""
    return tuple(tuple(sorted(b.pfn for b in state.free if b.order == order)) for order in range(state.max_order + 1))


def picture(kernel: Kernel | None, buddy: BuddyState, title: str, pids: Sequence[int] | None = None) -> Picture:
    """The picture of a state; ``pids`` chooses the processes drawn (all by default)."""
    if kernel is None:
        return Picture(title, (), (), free_lists(buddy))
    chosen = sorted(kernel.procs) if pids is None else list(pids)
    nodes, edges = kernel_nodes(kernel, chosen)
    return Picture(title, tuple(nodes), tuple(edges), free_lists(buddy))


def tlb_entry_text(entry: TlbEntry) -> str:
    """``0x10000000 -> frame 0xa rw- PCID 2``: one cached translation."""
    allowed = "r" + ("w" if entry.writable else "-") + ("-" if entry.nx else "x")
    pcid = "global" if entry.pcid == GLOBAL_PCID else f"PCID {entry.pcid}"
    size = " 2 MiB" if entry.huge else ""
    return f"{entry.vpn << PAGE_SHIFT:#x} -> frame {entry.pfn:#x} {allowed}{size} {pcid}"


def tlb_lines(title: str, entries: frozenset[TlbEntry]) -> list[str]:
    """A heading and the entries, user ones first, at most :data:`MAX_TLB_ENTRIES` of them."""
    shown = sorted(entries, key=lambda e: (e.pcid == GLOBAL_PCID, e.pcid, e.vpn, e.pfn, e.writable))
    lines = [f"{title}: {len(shown)}" if shown else f"{title}: none"]
    lines += [tlb_entry_text(e) for e in shown[:MAX_TLB_ENTRIES]]
    if len(shown) > MAX_TLB_ENTRIES:
        lines.append(f"... {len(shown) - MAX_TLB_ENTRIES} more")
    return lines


def with_cpus(pic: Picture, kernel: Kernel | None, held: Sequence[Tlb] | None = None) -> Picture:
    """``pic`` with a node per CPU: the mm it has loaded (an edge to that process), its PCID, the stale
    translations the spec allows its TLB to hold, and (``held``) the translations a TLB does hold."""
    if kernel is None:
        return pic
    nodes, edges = list(pic.nodes), list(pic.edges)
    drawn = {n.id for n in nodes}
    for cpu, state in enumerate(kernel.cpus):
        running = kernel.current[cpu] if cpu < len(kernel.current) else 0
        if state.loaded == 0:
            what = "init_mm (no user mm)"
        elif state.lazy or running != state.loaded:
            what = f"lazy: kernel thread on pid {state.loaded}'s mm"
        else:
            what = f"runs pid {state.loaded}"
        label = [f"cpu {cpu}", what, f"PCID {state.pcid}"]
        if cpu < len(kernel.tlbs):
            label += tlb_lines("stale entries the spec allows", kernel.tlbs[cpu].entries)
        if held is not None and cpu < len(held):
            label += tlb_lines("TLB holds (implementation)", held[cpu].entries)
        nodes.append(Node(f"cpu_{cpu}", "cpu", "\n".join(label)))
        target = f"pid_{state.loaded}"
        if state.loaded and target in drawn:
            edges.append(Edge(f"cpu_{cpu}", target, f"CR3, PCID {state.pcid}" + (" (lazy)" if state.lazy else "")))
    return Picture(pic.title, tuple(nodes), tuple(edges), pic.free_lists)


# --- scenario -> state --------------------------------------------------------------------------


def state_after(scenario: Scenario, step: int | None) -> tuple[SpecRunner, int]:
    """Replay ``scenario`` on the spec through op ``step`` (the last op by default); the runner and the step."""
    last = len(scenario.ops) - 1
    if step is None:
        step = last
    if not 0 <= step <= last:
        raise ScenarioError("--step", f"{step} is not an op of this scenario: allowed 0..{last}")
    runner = SpecRunner(scenario.config)
    for index, op in enumerate(scenario.ops[: step + 1]):
        try:
            runner.apply(op)
        except MMCheckError as exc:
            raise ReplayInputError(index, op.name, exc) from exc
    return runner, step


def scenario_picture(scenario: Scenario, name: str, step: int | None = None, pid: int | None = None) -> Picture:
    """The picture of the state after op ``step`` of ``scenario``, of process ``pid`` only if given."""
    runner, step = state_after(scenario, step)
    kernel = runner.kernel.kernel
    if pid is not None and (kernel is None or pid not in kernel.procs):
        live = [] if kernel is None else sorted(kernel.procs)
        raise ScenarioError("--pid", f"pid {pid} is not a live process after step {step}: allowed {live}")
    op = scenario.ops[step]
    title = f"{name} after step {step} ({op.name})"
    return picture(kernel, runner.buddy, title, None if pid is None else [pid])


# --- picture -> text and DOT --------------------------------------------------------------------


def one_line(label: str) -> str:
    """A multi-line label on one line."""
    return label.replace("\n", ", ")


def tree_lines(pic: Picture, node_id: str, depth: int) -> Iterator[str]:
    """The subtree below ``node_id``, indented two spaces per level."""
    for edge in pic.children(node_id):
        target = pic.node(edge.dst)
        marks = "".join(f" [{mark}]" for mark in target.marks)
        yield f"{'  ' * depth}{edge.label} -> {one_line(target.label)}{marks}"
        if target.kind == "table":
            yield from tree_lines(pic, target.id, depth + 1)


def free_list_text(free: Sequence[Sequence[int]]) -> list[str]:
    """One line per order with free blocks."""
    lines = [f"  order {order}: " + ", ".join(f"{pfn:#x}" for pfn in pfns) for order, pfns in enumerate(free) if pfns]
    return lines or ["  (none: every frame is allocated)"]


def to_text(pic: Picture) -> str:
    """The picture as an indented plain-text tree per process, then the free lists."""
    lines = [pic.title]
    processes = [n for n in pic.nodes if n.kind == "process"]
    if not pic.nodes:
        lines.append("no processes: the scenario has no kernel-level ops up to this step")
    for node in processes:
        lines.append(node.label)
        lines += tree_lines(pic, node.id, 1)
    for node in pic.nodes:
        if node.kind == "cpu":
            lines.append(one_line(node.label))
    if pic.nodes:
        zero = pic.node("zero")
        lines.append(f"{one_line(zero.label)} (shared by every process, never writable)")
    lines.append("buddy free lists (pfns by order):")
    lines += free_list_text(pic.free_lists)
    return "\n".join(lines) + "\n"


def quoted(text: str) -> str:
    """A DOT string literal; newlines become centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


NODE_STYLE = {
    "process": 'shape=box, style="rounded,filled", fillcolor="#cfe2ff"',
    "table": 'shape=box, style=filled, fillcolor="#f0f0f0"',
    "frame": 'shape=box3d, style=filled, fillcolor="#e8f5e9"',
    "zero": 'shape=octagon, style=filled, fillcolor="#fff3cd"',
    "cpu": 'shape=box, style="rounded,filled", fillcolor="#e1d5f5"',
}
MARK_STYLE = {"COW": 'color="#c62828", penwidth=2', "SHARED WRITABLE": 'color="#c62828", penwidth=4, style=bold'}


def dot_node(node: Node) -> str:
    """One node statement."""
    label = node.label + "".join(f"\n{mark}" for mark in node.marks)
    style = NODE_STYLE[node.kind]
    if node.marks:
        style = style.replace("#e8f5e9", "#ffcdd2") + ", " + MARK_STYLE[node.marks[0]]
    return f"  {quoted(node.id)} [label={quoted(label)}, {style}];"


def dot_edge(edge: Edge) -> str:
    """One edge statement; a COW mapping is dashed and red."""
    label = edge.label + "".join(f" {mark}" for mark in edge.marks)
    style = ', style=dashed, color="#c62828", fontcolor="#c62828"' if edge.marks else ""
    return f"  {quoted(edge.src)} -> {quoted(edge.dst)} [label={quoted(label)}{style}];"


def to_dot(pic: Picture) -> str:
    """The picture as a Graphviz digraph: trees left to right, the free lists as a note."""
    free = "\\l".join(line.strip() for line in free_list_text(pic.free_lists)) + "\\l"
    lines = [
        "digraph mmcheck {",
        "  rankdir=LR;",
        f"  label={quoted(pic.title)}; labelloc=t;",
        '  node [fontname="monospace", fontsize=10]; edge [fontname="monospace", fontsize=9];',
    ]
    lines += [dot_node(node) for node in pic.nodes]
    lines += [dot_edge(edge) for edge in pic.edges]
    lines.append(f'  "free_lists" [shape=note, label="buddy free lists (pfns by order)\\l{free}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- files --------------------------------------------------------------------------------------


def output_format(path: Path) -> str:
    """``svg``, ``dot`` or ``txt`` from the file name."""
    return output.output_format(path, FORMATS)


def targets(path: Path) -> list[Path]:
    """The files a write to ``path`` creates: the text picture beside it when an SVG is asked for without Graphviz."""
    if output_format(path) == "svg" and shutil.which("dot") is None:
        return [path.with_suffix(".txt")]
    return [path]


def check_targets(path: Path, force: bool) -> None:
    """Refuse before anything is drawn if :func:`write` would write where it must not (see :mod:`mmcheck.output`)."""
    for target in targets(path):
        try:
            output.check_writable(target, force)
        except OutputRefused as exc:
            if target == path:
                raise
            reason = str(exc).removeprefix("-o: ")
            raise OutputRefused(f"-o: dot (Graphviz) not found, so {path} would be written as text: {reason}") from None


def render_svg(dot_text: str, path: Path) -> None:
    """Run Graphviz ``dot -Tsvg``; raise :class:`MMCheckError` if it fails."""
    dot = shutil.which("dot")
    assert dot is not None
    done = subprocess.run([dot, "-Tsvg", "-o", str(path)], input=dot_text, text=True, capture_output=True)
    if done.returncode != 0:
        raise MMCheckError(f"dot -Tsvg failed: {done.stderr.strip()}")


def svg_text(dot_text: str, dot: str) -> str:
    """The SVG Graphviz ``dot`` draws of ``dot_text``, from its ``<svg`` element on (no XML prolog or DOCTYPE)."""
    done = subprocess.run([dot, "-Tsvg"], input=dot_text, text=True, capture_output=True)
    if done.returncode != 0:
        raise MMCheckError(f"dot -Tsvg failed: {done.stderr.strip()}")
    return done.stdout[done.stdout.index("<svg") :]


def write(pic: Picture, path: Path, force: bool = False) -> list[str]:
    """Write the picture to ``path`` in the format its suffix names; the notes to print.

    Without Graphviz an SVG request writes the plain-text picture next to it
    (``out.svg`` -> ``out.txt``) and says so.  An existing file is replaced
    only with ``force``.
    """
    fmt = output_format(path)
    check_targets(path, force)
    if fmt == "svg" and shutil.which("dot") is None:
        fallback = path.with_suffix(".txt")
        output.write_file(fallback, lambda temporary: temporary.write_text(to_text(pic)))
        return [f"dot (Graphviz) not found: wrote the plain-text picture to {fallback} instead of {path}"]
    if fmt == "svg":
        output.write_file(path, lambda temporary: render_svg(to_dot(pic), temporary))
    else:
        text = to_dot(pic) if fmt == "dot" else to_text(pic)
        output.write_file(path, lambda temporary: temporary.write_text(text))
    return [f"wrote {path}"]
