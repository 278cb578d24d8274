"""``mmcheck slab FILE``: each cache's slabs and freelists after each step, on both sides."""

from __future__ import annotations

from pathlib import Path

import pytest

from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views.slabview import slab_view

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("slab-*.json"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_spec_and_impl_views_agree(path: Path) -> None:
    """The implementation, read through the abstraction, shows the same slabs as the spec at every step."""
    scenario = load(str(path))
    spec = list(slab_view(scenario, "spec"))
    impl = list(slab_view(scenario, "impl"))
    assert spec[0].endswith("spec slab state") and impl[0].endswith("impl slab state")
    assert spec[1:] == impl[1:]
    assert any(line.startswith("    cache ") for line in spec)


def test_object_caching_view_follows_the_freelist(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slab", "tests/scenarios/slab-object-caching.json"]) == 0
    out = capsys.readouterr().out
    assert "cache inode: object 100 B in 112 B slots (free pointer at 104, ctor), order 0, 36 per slab" in out
    assert "slab pfn 0x0 order 0 (cpu 0): 1 of 36 in use, freelist 0xffff888000000070," in out
    # The free pushes the object back at the head; the next allocation takes it again.
    assert "0 of 36 in use, freelist 0xffff888000000000, 0xffff888000000070," in out
    assert "... 27 more" in out


def test_impl_model_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slab", "tests/scenarios/slab-double-free.json", "--model", "impl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 cpu(s), ") and "impl slab state" in out.splitlines()[0]
    assert '"type": "SlabDoubleFree"' in out
