"""The slab quiz: the spec's geometry and step answers agree with what the implementation computes and does."""

from __future__ import annotations

import pytest

from impl.slab import geometry as impl_geometry
from lang import ops
from mmcheck.cli import main
from mmcheck.views import quiz_slab
from properties.drivers import ImplRunner

SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_part_one_geometry_is_the_implementations(seed: int) -> None:
    """Slot, free pointer, order and objects of part one, from the spec, equal impl/slab/geometry.py's."""
    quiz = quiz_slab.generate(seed, 1)
    answer = quiz_slab.solve(quiz)
    shape, g = answer.shape, answer.geometry
    layout = impl_geometry.calculate_sizes(shape.size, shape.align, shape.ctor, shape.cpus)
    assert layout is not None
    assert (layout.size, layout.offset, layout.order, layout.objects) == (g.size, g.offset, g.order, g.objects)


@pytest.mark.parametrize("seed", range(40))
def test_part_two_answers_are_what_the_implementation_does(seed: int) -> None:
    """Each step's kind matches the implementation's own lists: a new slab adds one, a refill comes off its
    partial list, a free that lists a full slab puts it there."""
    quiz = quiz_slab.generate(seed)
    steps = iter(quiz_slab.solve(quiz).steps)
    runner = ImplRunner(quiz.scenario.config)
    for index, op in enumerate(quiz.scenario.ops):
        slub = runner.slab.slub
        slabs = len(slub.slabs()) if slub else 0
        partial = [s.pfn for s in slub.names[quiz_slab.CACHE].partial] if slub and index > 0 else []
        result = runner.apply(op)
        if index < quiz.setup:
            continue
        step = next(steps)
        assert step.result == result
        slub = runner.slab.slub
        assert slub is not None
        now = len(slub.slabs())
        if isinstance(op, ops.KmemCacheAlloc):
            assert (step.kind == "new slab") == (now == slabs + 1)
            taken = slub.page_slab[(int(str(result["addr"]), 16) - 0xFFFF888000000000) >> 12].pfn
            assert (step.kind == "partial") == (taken in partial)
        else:
            assert isinstance(op, ops.KmemCacheFree)
            pfn = (op.addr - 0xFFFF888000000000) >> 12
            was, now_listed = pfn in partial, pfn in [s.pfn for s in slub.names[quiz_slab.CACHE].partial]
            expected = {
                "cpu slab": (False, False),
                "to partial": (False, True),
                "stays partial": (True, True),
                "discarded": (was, False),
            }.get(step.kind, (was, True))
            assert expected == (was, now_listed)
            assert (step.kind == "discarded") == (now == slabs - 1)


def test_the_order_reasoning_ends_at_the_order_picked() -> None:
    for seed in range(60):
        answer = quiz_slab.solve(quiz_slab.generate(seed, 1))
        reasoning = quiz_slab.order_lines(answer.shape, answer.geometry)
        assert reasoning[-1].startswith(f"order {answer.geometry.order} ") and reasoning[-1].endswith("fits")


def test_cli_answers_every_question_and_hides_them_without_c(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", "slab", "--seed", "7", "-c"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ["ARG topic slab", "ARG seed 7"] == out[:2]
    steps = len(quiz_slab.solve(quiz_slab.generate(7)).steps)
    assert 2 + steps + 1 == sum(line.strip().startswith("answer:") for line in out)
    assert any("calculate_order" in line for line in out)
    assert main(["quiz", "--topic", "slab", "--seed", "7"]) == 0
    assert "answer:" not in capsys.readouterr().out


def test_json_gives_the_geometry_with_answers() -> None:
    data = quiz_slab.quiz_json(quiz_slab.generate(5), True)
    answer = quiz_slab.solve(quiz_slab.generate(5))
    assert data["geometry"] == {
        "size": answer.geometry.size,
        "offset": answer.geometry.offset,
        "order": answer.geometry.order,
        "objects": answer.geometry.objects,
    }
    assert "geometry" not in quiz_slab.quiz_json(quiz_slab.generate(5), False)
