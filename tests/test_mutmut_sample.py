"""The stratified mutmut sample: the draw, the interval and the per-module figures (mutmut itself faked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs import mutmut_sample


def write_meta(root: Path, module: str, codes: dict[str, int | None]) -> None:
    meta = root / f"{module}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))


def test_the_draw_is_seeded_per_module_and_bounded(tmp_path: Path) -> None:
    write_meta(tmp_path, "impl/a.py", {f"impl.a.x_f__mutmut_{i}": None for i in range(100)})
    write_meta(tmp_path, "impl/b.py", {f"impl.b.x_g__mutmut_{i}": None for i in range(3)})
    names = mutmut_sample.listing(tmp_path)
    first = mutmut_sample.sample(names, 10, seed=7)
    assert first == mutmut_sample.sample(names, 10, seed=7)
    assert first != mutmut_sample.sample(names, 10, seed=8)
    assert len(first["impl/a.py"]) == 10 and len(set(first["impl/a.py"])) == 10
    assert first["impl/b.py"] == sorted(names["impl/b.py"])  # fewer than asked: all of them
    alone = mutmut_sample.sample({"impl/a.py": names["impl/a.py"]}, 10, seed=7)
    assert alone["impl/a.py"] == first["impl/a.py"]  # one module's draw does not depend on the others
    with pytest.raises(ValueError, match="--per-module must be at least 1, not 0"):
        mutmut_sample.sample(names, 0, seed=0)


def test_the_wilson_interval() -> None:
    low, high = mutmut_sample.wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = mutmut_sample.wilson(36, 40)
    assert low == pytest.approx(0.7694, abs=1e-3) and high == pytest.approx(0.9604, abs=1e-3)
    assert mutmut_sample.wilson(0, 0) == (0.0, 1.0)


def test_rates_count_killed_survived_untested_and_unchecked(tmp_path: Path) -> None:
    codes: dict[str, int | None] = {"m0": 1, "m1": -24, "m2": 0, "m3": 33, "m4": None, "m5": 0}
    write_meta(tmp_path, "impl/a.py", codes)
    names = mutmut_sample.listing(tmp_path)
    (row,) = mutmut_sample.rates(names, {"impl/a.py": sorted(codes)})
    assert (row.killed, row.survived, row.untested, row.unchecked) == (2, ("m2", "m5"), ("m3",), 1)
    assert "2 killed of   4 checked  50.0%" in row.line()


def test_main_runs_only_the_unchecked_sample_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "mutants"
    write_meta(root, "impl/a.py", {"impl.a.m0": 1, "impl.a.m1": None, "impl.a.m2": None})
    ran: list[list[str]] = []

    def fake_run(argv: list[str]) -> int:
        ran.append(argv)
        write_meta(root, "impl/a.py", {"impl.a.m0": 1, "impl.a.m1": 0, "impl.a.m2": 1})
        return 0

    monkeypatch.setattr(mutmut_sample, "MUTANTS", root)
    monkeypatch.setattr(mutmut_sample.mutmut_run, "main", fake_run)
    assert mutmut_sample.main(["--per-module", "3", "--budget", "5"]) == 0
    assert ran == [["--budget", "5.0", "--children", "1", "--", "impl.a.m1", "impl.a.m2"]]
    out = capsys.readouterr().out
    assert "2 killed of   3 checked" in out and "survived: impl.a.m1" in out
