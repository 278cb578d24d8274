"""The command line: exit codes, JSON output, and errors that name the field at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcheck.cli import main

SCENARIOS = Path(__file__).parent / "scenarios"
SDM = SCENARIOS / "sdm-mmu-walk.json"


def write(tmp_path: Path, obj: object) -> str:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(obj))
    return str(path)


def test_replay_json_prints_one_object_with_results(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints a single object whose results list has one entry per op."""
    assert main(["replay", str(SDM), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = json.loads(SDM.read_text())["expected_results"]
    assert expected == out["results"]


@pytest.mark.parametrize("model", ["spec", "impl"])
def test_replay_one_side(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--model runs one side alone and still gives the recorded answers."""
    assert main(["replay", str(SDM), "--json", "--model", model]) == 0
    assert json.loads(SDM.read_text())["expected_results"] == json.loads(capsys.readouterr().out)["results"]


def test_replay_exits_1_on_unexpected_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recorded answer that the model does not give is a failure (exit 1) naming the op."""
    scenario = {
        "config": {"frames": 4},
        "ops": [{"op": "read_phys", "pa": "0x0"}],
        "expected_results": [{"value": "0x1"}],
    }
    assert main(["replay", write(tmp_path, scenario)]) == 1
    assert "ops[0]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("op", "where"),
    [
        ({"op": "write_phys", "pa": "0x1004", "value": 1}, "aligned"),
        ({"op": "write_phys", "pa": "0x4000", "value": 1}, "outside memory"),
        ({"op": "read_phys", "pa": "0x7"}, "aligned"),
        ({"op": "access", "cpu": 3, "va": "0x0", "kind": "read", "mode": "user"}, "cpu 3 does not exist"),
        (
            {"op": "set_cpu", "cpu": 0, "cr3": "0x1001", "wp": 1, "smep": 0, "smap": 0, "ac": 0, "nxe": 0, "la57": 0},
            "ops[1].wp",
        ),
        (
            {
                "op": "set_cpu",
                "cpu": 0,
                "cr3": "0x1008",
                "wp": True,
                "smep": False,
                "smap": False,
                "ac": False,
                "nxe": False,
                "la57": False,
            },
            "4 KiB aligned",
        ),
        ({"op": "access", "cpu": 0, "va": "0x0", "kind": "execute", "mode": "user"}, "ops[1].kind"),
        ({"op": "teleport"}, "ops[1].op"),
        ({"op": "read_phys", "pa": "0x0", "size": 8}, "ops[1].size"),
        ({"op": "read_phys", "pa": "zero"}, "ops[1].pa"),
    ],
)
def test_bad_input_exits_2_and_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], op: dict[str, object], where: str
) -> None:
    """Bad input is exit code 2 with a message that says what was wrong."""
    scenario = {"config": {"frames": 4, "cpus": 1}, "ops": [{"op": "write_phys", "pa": "0x0", "value": "0x1"}, op]}
    assert main(["replay", write(tmp_path, scenario)]) == 2
    assert where in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "where"),
    [({}, "config.frames"), ({"frames": 0}, "config.frames"), ({"frames": 4, "colour": 1}, "config.colour")],
)
def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], config: object, where: str) -> None:
    """A config with a missing, out-of-range or unknown key is rejected by name."""
    assert main(["replay", write(tmp_path, {"config": config, "ops": []})]) == 2
    assert where in capsys.readouterr().err


def test_malformed_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{ not json")
    assert main(["replay", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_walk_explains_each_level(capsys: pytest.CaptureFixture[str]) -> None:
    """walk prints one line per entry read and the final physical address."""
    assert main(["walk", str(SDM), "--va", "0x201234", "--kind", "write", "--mode", "supervisor"]) == 0
    out = capsys.readouterr().out
    assert ["PML4[  0]", "PDPT[  0]", "PD[  1]"] == [line.split(" at ")[0].strip() for line in out.splitlines()[3:6]]
    assert "2 MiB page" in out
    assert out.rstrip().endswith("physical address 0x201234")


def test_walk_explains_a_fault(capsys: pytest.CaptureFixture[str]) -> None:
    """A faulting walk ends with the vector and the decoded error code."""
    assert main(["walk", str(SDM), "--va", "0x2010", "--kind", "fetch"]) == 0
    assert "#PF (vector 14), error code 0x15 = protection fetch, user mode" in capsys.readouterr().out
