"""mmcheck lru: the four LRU lists after each step, spec and implementation, text, JSON and a picture."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views.lruview import LISTS, lru_json, lru_lines
from properties.drivers import Lockstep

LIFE = Path(__file__).parent / "scenarios" / "pressure-page-life.json"
BUDDY = Path(__file__).parent / "scenarios" / "buddy-expand-merge.json"


def members(step: dict[str, object]) -> dict[str, list[int]]:
    lists = step["lists"]
    assert isinstance(lists, dict)
    return {name: sorted(e["pfn"] for e in lists[name]) for name in LISTS}


def test_impl_lists_are_the_lockstep_spec_lists_in_scan_order() -> None:
    """The implementation's lists hold the pages the spec's lists hold when the spec takes the implementation's
    choices (a lockstep run), at every step."""
    scenario = load(LIFE)
    impl = lru_json(scenario, "impl")["steps"]
    assert isinstance(impl, list)
    lockstep = Lockstep(scenario.config)
    for op, step in zip(scenario.ops, impl, strict=True):
        lockstep.apply(op)
        k = lockstep.spec.kernel.kernel
        assert k is not None
        spec = {
            name: sorted(
                p for p, page in k.pages.items() if page.lru and f"{page.lru} {'anon' if page.anon else 'file'}" == name
            )
            for name in LISTS
        }
        assert members(step) == spec


def test_the_oldest_page_is_at_the_tail_and_the_dirty_file_page_is_marked() -> None:
    impl = lru_json(load(LIFE), "impl")["steps"]
    assert isinstance(impl, list)
    after_two_stores = impl[4]["lists"]["inactive anon"]
    assert [e["pfn"] for e in after_two_stores] == [0x12, 0x13]  # the first store's page is scanned first
    assert all(e["referenced"] for e in after_two_stores)
    after_file_store = impl[20]["lists"]["inactive file"]
    assert [(e["what"], e["dirty"]) for e in after_file_store] == [
        ("file f page 0 (frame 0xa)", False),
        ("file f page 1 (frame 0xb)", True),
    ]
    assert not any(impl[22]["lists"].values())  # reclaim of 8 freed every page on the lists


def test_text_says_when_every_list_is_empty() -> None:
    lines = "\n".join(lru_lines(lru_json(load(LIFE), "spec")))
    assert "inactive anon: anon frame 0xa (pid 1 0x10000000), ref; anon frame 0xb (pid 1 0x10001000), ref" in lines
    assert "every LRU list is empty" in lines


def test_cli_json_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lru", str(LIFE), "--json", "--model", "impl"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["model"] == "impl" and len(run["steps"]) == len(load(LIFE).ops)
    assert main(["lru", str(BUDDY)]) == 2
    assert "lru shows a kernel scenario" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib")
def test_svg_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lru.svg"
    assert main(["lru", str(LIFE), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "inactive anon" in text
    assert main(["lru", str(LIFE), "-o", str(out)]) == 2  # exists, no --force
    assert "exists" in capsys.readouterr().err
