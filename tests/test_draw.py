"""mmcheck draw: the picture of a fork, checked by its structure (graph, DOT, SVG), never by its pixels."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dependencies import requires

from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views import draw
from mmcheck.views.draw import Picture, scenario_picture, to_dot, to_text

FORK = Path(__file__).parent / "scenarios" / "linux-kernel-cow-fork.json"
FORK_STEP = 4  # the fork op: both processes map the stored-to page read-only
SVG = "{http://www.w3.org/2000/svg}"


def reaches(edges: set[tuple[str, str]], src: str, dst: str) -> bool:
    """A path of edges leads from ``src`` to ``dst``."""
    seen, todo = {src}, [src]
    while todo:
        here = todo.pop()
        for a, b in edges:
            if a == here and b not in seen:
                seen.add(b)
                todo.append(b)
    return dst in seen


def fork_picture() -> Picture:
    return scenario_picture(load(FORK), FORK.name, FORK_STEP)


def test_after_fork_both_trees_reach_one_cow_frame() -> None:
    """After fork both processes' trees end at the same frame, marked COW, mapped read-only by each."""
    pic = fork_picture()
    cow = [n for n in pic.nodes if "COW" in n.marks]
    assert 1 == len(cow)
    edges = {(e.src, e.dst) for e in pic.edges}
    assert reaches(edges, "pid_1", cow[0].id)
    assert reaches(edges, "pid_2", cow[0].id)
    into = [e for e in pic.edges if e.dst == cow[0].id]
    assert 2 == len(into)
    assert all(" r-- " in e.label + " " and e.marks == ("COW",) for e in into)


def test_after_the_write_fault_the_frames_are_private() -> None:
    """At the end the child wrote: the processes map different frames and nothing is marked."""
    pic = scenario_picture(load(FORK), FORK.name)
    assert [] == [n for n in pic.nodes if n.marks]
    edges = {(e.src, e.dst) for e in pic.edges}
    frames = [n.id for n in pic.nodes if n.kind == "frame"]
    assert 2 == len(frames)
    assert [reaches(edges, "pid_1", f) for f in frames] != [reaches(edges, "pid_2", f) for f in frames]
    assert reaches(edges, "pid_2", "zero")  # the load of the untouched second page maps the zero page


def test_pid_chooses_one_tree() -> None:
    pic = scenario_picture(load(FORK), FORK.name, FORK_STEP, pid=2)
    assert ["pid_2"] == [n.id for n in pic.nodes if n.kind == "process"]


def test_dot_names_every_node_and_edge() -> None:
    pic = fork_picture()
    dot = to_dot(pic)
    for node in pic.nodes:
        assert f'"{node.id}" [label=' in dot
    for edge in pic.edges:
        assert f'"{edge.src}" -> "{edge.dst}"' in dot
    assert "\\nCOW" in dot


@requires("graphviz", None if shutil.which("dot") else "dot is not on PATH (apt-get install graphviz)")
def test_svg_of_a_fork_has_both_processes_the_shared_frame_and_the_cow_mark(tmp_path: Path) -> None:
    """The SVG Graphviz draws holds the same graph: node and edge titles, and the COW text on the frame."""
    out = tmp_path / "fork.svg"
    assert 0 == main(["draw", str(FORK), "--step", str(FORK_STEP), "-o", str(out)])
    root = ET.parse(out).getroot()
    groups: dict[str | None, list[tuple[str, ET.Element]]] = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if title is not None and title.text:
            groups.setdefault(g.get("class"), []).append((title.text, g))
    nodes = {title: g for title, g in groups["node"]}
    edges = {tuple(title.split("->")) for title, _ in groups["edge"]}
    assert {"pid_1", "pid_2", "zero", "free_lists"} <= set(nodes)
    cow = [t for t, g in nodes.items() if "COW" in [text.text for text in g.iter(f"{SVG}text")]]
    assert 1 == len(cow)
    assert reaches(edges, "pid_1", cow[0]) and reaches(edges, "pid_2", cow[0])


def test_svg_without_dot_falls_back_to_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without Graphviz the plain-text picture is written next to the requested file, and the note says so."""
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    assert 0 == main(["draw", str(FORK), "--step", str(FORK_STEP), "-o", str(tmp_path / "fork.svg")])
    assert "dot (Graphviz) not found" in capsys.readouterr().out
    assert not (tmp_path / "fork.svg").exists()
    assert to_text(fork_picture()) == (tmp_path / "fork.txt").read_text()


def test_json_is_the_graph_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["draw", str(FORK), "--step", str(FORK_STEP), "--json"])
    assert fork_picture().to_json() == json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "field"),
    [(["--step", "99"], "--step"), (["--step", "0", "--pid", "2"], "--pid"), (["-o", "out.png"], "-o")],
)
def test_bad_arguments_exit_2_naming_the_field(
    args: list[str], field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["draw", str(FORK), *args])
    assert f"error: {field}:" in capsys.readouterr().err


def test_a_buddy_scenario_draws_its_free_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["draw", str(FORK.parent / "buddy-expand-merge.json"), "--step", "0"])
    out = capsys.readouterr().out
    assert "no processes" in out
    assert "  order 1: 0x2\n  order 2: 0x4\n" in out
