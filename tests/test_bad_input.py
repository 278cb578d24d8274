"""Bad input, over every command that reads a scenario: exit code 2, one line naming the field, no traceback.

Each class of malformed file runs through ``replay``, ``explain``, ``walk``,
``buddy``, ``draw``, ``plot``, ``oracle qemu`` and ``oracle linux``; for the
oracles the parse must fail before any oracle runs (their ``run`` is replaced
by one that fails the test).  The rest covers the options (ranges, output
files), a closed pipe, standard input and ``--version``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import lang.scenario
from lang.errors import MMCheckError, ScenarioError
from lang.kernel_ops import MAX_MAPPED_PAGES, MAX_PAGES, MAX_PROCESSES
from lang.scenario import MAX_DEPTH, MAX_OPS, OP_TYPES, Op, load, shown
from mmcheck import __version__
from mmcheck.cli import main
from properties.replay import replay

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"
BUDDY = SCENARIOS / "buddy-expand-merge.json"
FORK = SCENARIOS / "linux-kernel-cow-fork.json"
GOOD = {"config": {"frames": 16}, "ops": [{"op": "read_phys", "pa": "0x0"}]}
BASE = "0x100000000000"

COMMANDS: dict[str, Callable[[str, Path], list[str]]] = {
    "replay": lambda f, tmp: ["replay", f],
    "explain": lambda f, tmp: ["explain", f],
    "walk": lambda f, tmp: ["walk", f, "--va", "0x1000"],
    "buddy": lambda f, tmp: ["buddy", f],
    "draw": lambda f, tmp: ["draw", f],
    "plot": lambda f, tmp: ["plot", f, "-o", str(tmp / "out.png")],
    "oracle qemu": lambda f, tmp: ["oracle", "qemu", f],
    "oracle linux": lambda f, tmp: ["oracle", "linux", f],
}


def spawn_mmap(pages: int) -> list[dict[str, object]]:
    return [{"op": "spawn"}, {"op": "mmap", "pid": 1, "va": BASE, "pages": pages, "prot": "rw-"}]


def text(obj: object) -> bytes:
    return json.dumps(obj).encode()


MACHINE_OPS: dict[str, dict[str, object]] = {
    "alloc_pages": {"op": "alloc_pages", "order": 0},
    "free_pages": {"op": "free_pages", "pfn": 0, "order": 0},
    "write_phys": {"op": "write_phys", "pa": "0x1000", "value": 5},
    "read_phys": {"op": "read_phys", "pa": "0x1000"},
    "access": {"op": "access", "cpu": 0, "va": "0x1000", "kind": "read", "mode": "user"},
    "set_cpu": {
        "op": "set_cpu", "cpu": 0, "cr3": "0x1000", "wp": True, "smep": False, "smap": False, "ac": False,
        "nxe": False, "la57": False,
    },
}  # fmt: skip

# name -> (file bytes, text the one-line message must contain: the field at fault).
BAD: dict[str, tuple[bytes, str]] = {
    # 1. encodings, nesting, numbers, op names
    "not-utf8": (b'{"config": {"frames": 16}, "ops": [], "about": "\xff"}', "bad.json: not UTF-8 text: byte 0xff at"),
    "utf16-without-bom": (json.dumps(GOOD).encode("utf-16-le"), "byte 0x00 at offset 1"),
    "utf16-bom-broken": (b"\xff\xfe" + b"{\x00\x00\xd8", "not UTF-16 text"),
    "deep-nesting": (b"[" * 100_000, "nested more than 32"),
    "deep-in-a-field": (b'{"about": ' + b"[" * 40 + b"]" * 40 + b"}", "about[0][0]"),
    "5000-digit-number": (b'{"config": {"frames": ' + b"9" * 5000 + b"}}", "config.frames: a number of 5000"),
    "5000-digit-string": (b'{"config": {"frames": "' + b"9" * 5000 + b'"}, "ops": []}', "config.frames: expected an"),
    "nan": (b'{"config": {"frames": NaN}, "ops": []}', "config.frames: nan is not a finite number"),
    "infinity": (b'{"config": {"frames": 1e999}, "ops": []}', "config.frames: inf is not a finite number"),
    "lone-surrogate": (b'{"config": {"frames": 16}, "ops": [{"op": "\\ud800"}]}', "ops[0].op: not valid Unicode"),
    "op-name-list": (text({"config": {"frames": 16}, "ops": [{"op": ["spawn"]}]}), "ops[0].op: unknown operation"),
    "op-name-object": (text({"config": {"frames": 16}, "ops": [{"op": {"a": 1}}]}), "ops[0].op: unknown operation"),
    "op-name-missing": (text({"config": {"frames": 16}, "ops": [{"pid": 1}]}), "ops[0].op: missing"),
    "top-level-list": (b"[1, 2]", "scenario: expected an object"),
    "empty-file": (b"", "not valid JSON"),
    # 2. expected results that are not objects
    "expected-null": (text({**GOOD, "expected_results": [None]}), "expected_results[0]: expected an object"),
    "expected-int": (text({**GOOD, "expected_results": [3]}), "expected_results[0]: expected an object"),
    "expected-list": (text({**GOOD, "expected_results": [[]]}), "expected_results[0]: expected an object"),
    "expected-string": (text({**GOOD, "expected_results": ["ok"]}), "expected_results[0]: expected an object"),
    "expected-too-few": (text({**GOOD, "expected_results": []}), "expected_results: expected a list of 1"),
    # 3. unknown and duplicate keys
    "typo-top-level": (text({**GOOD, "expected_result": [{"ok": True}]}), "expected_result: unknown key"),
    "typo-in-wrapper": (text({"scenario": {**GOOD, "expected_result": []}}), "scenario.expected_result: unknown key"),
    "given-twice": (text({"scenario": GOOD, "config": {"frames": 4}}), "config: given both"),
    "duplicate-top-level": (b'{"config": {"frames": 16}, "ops": [], "ops": []}', "ops: duplicate key"),
    "duplicate-in-op": (b'{"config": {"frames": 16}, "ops": [{"op": "read_phys", "pa": 0, "pa": 8}]}', "ops[0].pa"),
    "duplicate-in-config": (b'{"config": {"frames": 16, "frames": 8}, "ops": []}', "config.frames: duplicate"),
    "about-not-text": (text({**GOOD, "about": ["x"]}), "about: expected a string"),
    "mutant-not-text": (text({**GOOD, "mutant": 3}), "mutant: expected a mutant's name"),
    # 4. kernel ops mixed with machine-level ops, either way round
    **{
        f"mix-spawn-then-{name}": (text({"config": {"frames": 64}, "ops": [{"op": "spawn"}, op]}), "ops[1].op")
        for name, op in MACHINE_OPS.items()
    },
    **{
        f"mix-{name}-then-spawn": (text({"config": {"frames": 64}, "ops": [op, {"op": "spawn"}]}), "ops[1].op")
        for name, op in MACHINE_OPS.items()
    },
    # 5. sizes
    "mmap-1e9-pages": (text({"config": {"frames": 16}, "ops": spawn_mmap(10**9)}), "ops[1].pages"),
    "mapped-pages-total": (
        text({"config": {"frames": 16}, "ops": [*spawn_mmap(MAX_PAGES), *spawn_mmap(MAX_PAGES)[1:] * 2]}),
        f"ops[3]: mapped pages add up to {3 * MAX_PAGES} here: allowed at most {MAX_MAPPED_PAGES}",
    ),
    "processes-total": (
        text({"config": {"frames": 16}, "ops": [{"op": "spawn"}] * (MAX_PROCESSES + 1)}),
        f"ops[{MAX_PROCESSES}]: processes add up to",
    ),
    "too-many-ops": (text({"config": {"frames": 16}, "ops": [{"op": "buddyinfo"}] * (MAX_OPS + 1)}), "ops: 100001"),
    "frames-too-many": (text({"config": {"frames": 1 << 30}, "ops": []}), "config.frames: 0x40000000 is out of range"),
    # 9. a 3 MB field: cut, with its path and what is allowed
    "3mb-value": (text({"config": {"frames": 16}, "ops": [{"op": "read_phys", "pa": "7" * 3_000_000}]}), "ops[0].pa"),
    "3mb-key": (text({"config": {"frames": 16}, "ops": [{"op": "read_phys", "k" * 3_000_000: 1}]}), "ops[0].kkk"),
    "3mb-op-name": (text({"config": {"frames": 16}, "ops": [{"op": "x" * 3_000_000}]}), "allowed access, alloc_pages"),
}  # fmt: skip


@pytest.fixture
def no_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running an oracle fails the test: bad input must be refused before."""
    import oracles.linux.oracle
    import oracles.qemu.oracle

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an oracle ran on bad input")

    monkeypatch.setattr(oracles.qemu.oracle, "run", refuse)
    monkeypatch.setattr(oracles.linux.oracle, "run", refuse)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``mmcheck ARGV`` in this process: exit code, stdout, stderr (argparse errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, field: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr that names ``field``, at most a few hundred characters."""
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err
    assert err.endswith("\n") and "\n" not in err[:-1], err[:2000]
    assert field in err, err[:2000]
    assert len(err) < 1200


@pytest.mark.usefixtures("no_oracle")
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BAD)
def test_bad_file_exits_2_naming_the_field(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, field = BAD[case]
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    assert_refused(*run_main(COMMANDS[command](str(path), tmp_path), capsys), field)
    assert not (tmp_path / "out.png").exists()


def test_a_file_larger_than_the_limit_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lang.scenario, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({**GOOD, "about": "x" * 200}))
    assert_refused(*run_main(["replay", str(path)], capsys), "big.json: more than 100 bytes")


BUDDYINFO3 = '"ops": [{"op": "buddyinfo"}, {"op": "buddyinfo"}, {"op": "buddyinfo"}]'


@pytest.mark.parametrize(
    ("limit", "content", "count", "message"),
    [
        ("MAX_CONTAINERS", BUDDYINFO3, 6, "6 '{' and '[': a scenario file may hold at most 5 objects and arrays"),
        ("MAX_STRINGS", '"ops": [], "about": "a", "qemu_results": ["b"]', 7, "7 strings: a scenario file may hold"),
        ("MAX_NUMBERS", '"ops": [], "qemu_results": [1, 2, 3, 4.5, 6]', 6, "more than 5 numbers: a scenario file"),
    ],
)
def test_objects_strings_and_numbers_are_counted_before_they_take_memory(
    limit: str, content: str, count: int, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A file with ``count`` of them is refused when the limit is one less (5, to keep the files small), and
    replays when it is ``count``."""
    path = tmp_path / "many.json"
    path.write_text('{"config": {"frames": 16}, ' + content + "}")
    monkeypatch.setattr(lang.scenario, limit, count - 1)
    assert_refused(*run_main(["replay", str(path)], capsys), f"many.json: {message}")
    monkeypatch.setattr(lang.scenario, limit, count)
    assert 0 == main(["replay", str(path)])


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_byte_order_mark_announces_the_encoding(
    encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """UTF-16 and UTF-32 are read when a byte-order mark says so (and UTF-8 with one)."""
    data = json.dumps(GOOD).encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path = tmp_path / "s.json"
    path.write_bytes(data)
    assert load(path).ops == lang.scenario.Scenario.from_json(GOOD).ops
    assert run_main(["replay", str(path)], capsys)[0] == 0


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    """The top-level object is depth 1: a recorded value may hold arrays down to depth :data:`MAX_DEPTH`, no deeper."""
    nested: object = []
    for _ in range(MAX_DEPTH - 2):
        nested = [nested]
    raw = json.dumps({**GOOD, "qemu_results": nested})
    assert lang.scenario.loads(raw).extra["qemu_results"] == nested
    with pytest.raises(ScenarioError, match="nested more than"):
        lang.scenario.loads(json.dumps({**GOOD, "qemu_results": [nested]}))


def test_the_repository_scenario_files_still_load() -> None:
    """Every scenario file kept in the repository (and the shared examples beside it, if present) parses."""
    roots = [ROOT / "tests", ROOT / "oracles", ROOT / "docs", ROOT.parent / "shared" / "examples"]
    files = [p for root in roots if root.is_dir() for p in sorted(root.rglob("*.json"))]
    scenarios = [p for p in files if {"ops", "scenario"} & set(json.loads(p.read_text()))]
    assert len(scenarios) >= 30
    for path in scenarios:
        load(path)


# --- what bad input replay and explain used to take for a divergence --------------------------------


@pytest.mark.parametrize("command", ["replay", "explain"])
def test_spawn_then_alloc_pages_is_bad_input_not_a_divergence(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mix.json"
    path.write_text(json.dumps({"config": {"frames": 64}, "ops": [{"op": "spawn"}, MACHINE_OPS["alloc_pages"]]}))
    code, out, err = run_main([command, str(path)], capsys)
    assert_refused(code, out, err, "ops[1].op: alloc_pages is a machine-level op")
    assert "kernel and machine layers" in err


# --- 10. walk and buddy on a kernel scenario ---------------------------------------------------------


def test_walk_refuses_a_kernel_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["walk", str(FORK), "--va", BASE], capsys)
    assert_refused(code, out, err, "ops[0] (spawn): walk follows the page tables a machine-level scenario builds")


def test_buddy_shows_the_frames_a_kernel_scenario_allocates(capsys: pytest.CaptureFixture[str]) -> None:
    """After spawn (the kernel boots) and after fork, the free lists are shown, and they are not all free."""
    code, out, _ = run_main(["buddy", str(FORK), "--json"], capsys)
    assert code == 0
    run = json.loads(out)
    spawn = run["steps"][0]
    assert spawn["op"]["op"] == "spawn" and spawn["free_lists"] != run["start"]
    code, out, _ = run_main(["buddy", str(FORK)], capsys)
    lines = out.splitlines()
    after_spawn = lines[lines.index(next(line for line in lines if '"op": "spawn"' in line)) + 2]
    assert after_spawn.lstrip().startswith("Node 0, zone")
    fork = next(i for i, line in enumerate(lines) if '"op": "fork"' in line)
    assert lines[fork + 2].lstrip().startswith("Node 0, zone")


# --- 5 and 6. options: sizes and meaningless numbers --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["explore", "--depth=-1"], "argument --depth: -1 is out of range: allowed 0..1000"),
        (["explore", "--max-states=-5"], "argument --max-states: -5 is out of range"),
        (["explore", "--max-states=0"], "argument --max-states: 0 is out of range"),
        (["explore", "--time-limit=-1"], "argument --time-limit: -1 is out of range"),
        (["explore", "--time-limit=0"], "argument --time-limit: 0 is out of range"),
        (["explore", "--time-limit=nan"], "argument --time-limit: expected a finite number"),
        (["explore", "--time-limit=inf"], "argument --time-limit: expected a finite number"),
        (["explore", "--procs", "0"], "argument --procs: 0 is out of range: allowed 1..8"),
        (["explore", "--tlb-entries=-1"], "argument --tlb-entries: -1 is out of range: allowed 0..64"),
        (["explore", "--layer", "smp", "--pages", str(10**9)], "argument --pages: 1000000000 is out of range"),
        (["explore", "--layer", "smp", "--cpus", str(10**9)], "argument --cpus: 1000000000 is out of range"),
        (["explore", "--frames", str(10**6)], "argument --frames: 1000000 is out of range: allowed 1..256"),
        (["explore", "--frames", "9" * 5000], "argument --frames: expected an integer in 1..256"),
        (["explore", "--depth", "x"], "argument --depth: expected an integer in 0..1000, got 'x'"),
        (["explore", "--layer", "smp", "--max-states", "600000"], "--max-states: 600000 is out of range for"),
        (["mutants", "--jobs", "0"], "argument --jobs: 0 is out of range: allowed 1..32"),
        (["mutants", "--jobs", "1000000"], "argument --jobs: 1000000 is out of range: allowed 1..32"),
        (["quiz", "--questions", "0"], "argument --questions"),
    ],
)
def test_options_out_of_range_exit_2_naming_the_option(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(*run_main(argv, capsys), field)


# --- 7. output files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("out.xyz", "-o: 'OUT/out.xyz' has suffix '.xyz': allowed .png, .svg, .pdf"),
        ("out.txt", "suffix '.txt'"),
        ("out", "has no suffix"),
    ],
)
def test_plot_refuses_a_format_it_cannot_write(
    name: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    # The path appears as error messages show a value (lang.scenario.shown: cut when long, as tmp paths under
    # pytest-xdist can be).
    expected = field.replace(f"'OUT/{name}'", shown(str(out)))
    assert_refused(*run_main(["plot", str(BUDDY), "-o", str(out)], capsys), expected)
    assert not out.exists()


@pytest.mark.parametrize("command", ["draw", "plot"])
@pytest.mark.parametrize("target", ["/dev/null.svg", "/proc/self/x.svg", "/sys/x.svg"])
def test_draw_and_plot_refuse_system_paths(command: str, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = FORK if command == "draw" else BUDDY
    assert_refused(*run_main([command, str(scenario), "-o", target], capsys), f"is under /{target.split('/')[1]}")


@pytest.mark.parametrize(("command", "name"), [("draw", "pic.dot"), ("draw", "pic.txt"), ("plot", "pic.svg")])
def test_an_existing_file_is_kept_unless_force(
    command: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    out.write_text("unrelated")
    scenario = str(FORK if command == "draw" else BUDDY)
    assert_refused(*run_main([command, scenario, "-o", str(out)], capsys), "exists: give --force to overwrite it")
    assert out.read_text() == "unrelated"
    code, printed, _ = run_main([command, scenario, "-o", str(out), "--force"], capsys)
    assert (code, printed) == (0, f"wrote {out}\n")
    assert out.read_text() != "unrelated"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_plot_says_the_name_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out.pdf"
    assert run_main(["plot", str(BUDDY), "-o", str(out)], capsys)[:2] == (0, f"wrote {out}\n")
    assert out.read_bytes().startswith(b"%PDF")


def test_draw_without_graphviz_keeps_an_unrelated_text_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asked for pic.svg without dot, draw would write pic.txt: an existing pic.txt is kept unless --force."""
    from mmcheck.views import draw

    monkeypatch.setattr(draw.shutil, "which", lambda name: None)  # type: ignore[attr-defined]
    (tmp_path / "pic.txt").write_text("unrelated")
    argv = ["draw", str(FORK), "-o", str(tmp_path / "pic.svg")]
    assert_refused(*run_main(argv, capsys), "dot (Graphviz) not found")
    assert (tmp_path / "pic.txt").read_text() == "unrelated"
    assert run_main([*argv, "--force"], capsys)[0] == 0
    assert (tmp_path / "pic.txt").read_text().startswith("linux-kernel-cow-fork.json after step")


# --- 8. a closed pipe, standard input, --version ---------------------------------------------------------


def test_a_closed_pipe_ends_quietly_with_141(tmp_path: Path) -> None:
    """``mmcheck replay X | head -1``: the reader goes away; no message, exit code 141 (128 + SIGPIPE)."""
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"config": {"frames": 16}, "ops": [{"op": "read_phys", "pa": "0x0"}] * 5000}))
    process = subprocess.Popen(
        [sys.executable, "-m", "mmcheck", "replay", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"  0 ")
    process.stdout.close()
    err = process.stderr.read()
    assert (process.wait(timeout=60), err) == (141, b"")


def test_replay_reads_standard_input() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mmcheck", "replay", "-", "--json"],
        input=(SCENARIOS / "sdm-mmu-walk.json").read_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        json.loads(done.stdout)["results"]
        == json.loads((SCENARIOS / "sdm-mmu-walk.json").read_text())["expected_results"]
    )


def test_bad_standard_input_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mmcheck", "replay", "-"],
        input=b"[" * 100_000,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr == b"mmcheck: error: <stdin>: nested more than 32 arrays and objects deep\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--version"], capsys)[:2] == (0, f"mmcheck {__version__}\n")


@pytest.mark.parametrize("case", ["not-utf8", "deep-nesting", "5000-digit-number", "3mb-value"])
def test_the_installed_command_prints_no_traceback(case: str, tmp_path: Path) -> None:
    """The same refusals from a separate process: exit 2, one line on stderr."""
    data, field = BAD[case]
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-m", "mmcheck", "replay", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert_refused(done.returncode, done.stdout, done.stderr, field)


# --- any JSON value, any bytes: a typed error or a scenario, never another exception ---------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
FIELD_VALUES = (
    st.integers(0, 8)
    | st.sampled_from([BASE, "0x0", "0x1000", "0x1ff000", "rw-", "r--", "read", "write", "user", "dontneed"])
    | st.booleans()
    | JSON_VALUES
)
# Plausible values by field name, so that many generated ops parse and replay; any other field gets FIELD_VALUES.
PLAUSIBLE: dict[str, st.SearchStrategy[object]] = {
    "pid": st.integers(1, 3),
    "cpu": st.integers(0, 1),
    "va": st.sampled_from([BASE, "0x100000001000", "0x0", "0x1000"]),
    "pages": st.integers(0, 3),
    "prot": st.sampled_from(["rw-", "r--", "r-x", "---"]),
    "value": st.integers(0, 9),
    "mode": st.sampled_from(["user", "supervisor"]),
    "kind": st.sampled_from(["read", "write", "fetch"]),
    "advice": st.just("dontneed"),
    "pin": st.integers(1, 3),
    "pending": st.integers(1, 3),
    "pa": st.sampled_from(["0x0", "0x1000", "0x1008", "0x2000"]),
    "cr3": st.sampled_from(["0x1000", "0x2000"]),
    "order": st.integers(0, 3),
    "pfn": st.integers(0, 8),
}


def json_keys(cls: type[Op]) -> list[str]:
    """The keys an op's JSON object has: its fields, ``background`` written ``async``."""
    return ["async" if f.name == "background" else f.name for f in fields(cls)]  # type: ignore[arg-type]


@st.composite
def ops_of(draw: st.DrawFn, layer: str) -> dict[str, object]:
    """An op of ``layer`` (or of any layer), plausible fields; one in ten has a field spoilt, dropped or added."""
    ops = sorted((c for c in OP_TYPES.values() if c.layer in ("", layer)), key=lambda c: c.name)
    cls = draw(st.sampled_from(ops))
    body: dict[str, object] = {"op": cls.name}
    for key in json_keys(cls):
        body[key] = draw(PLAUSIBLE.get(key, st.booleans()))
    spoil = draw(st.integers(0, 29))
    if spoil == 0 and len(body) > 1:
        body[draw(st.sampled_from(sorted(body)))] = draw(FIELD_VALUES)
    elif spoil == 1:
        body.pop(draw(st.sampled_from(sorted(body))))
    elif spoil == 2:
        body[draw(st.text(max_size=6))] = draw(FIELD_VALUES)
    return body


LAYERS = sorted({cls.layer for cls in OP_TYPES.values()} - {""})
OPS = st.sampled_from(LAYERS).flatmap(lambda layer: st.lists(ops_of(layer), max_size=10))
CONFIGS = st.fixed_dictionaries(
    {"frames": st.integers(1, 64)},
    optional={"cpus": st.integers(1, 3), "max_order": st.integers(0, 6), "tlb_entries": st.integers(0, 4)},
)
SPOILT_CONFIGS = st.dictionaries(st.sampled_from(["frames", "cpus", "levels", "bogus"]), FIELD_VALUES, max_size=3)
SCENARIO_LIKE = st.fixed_dictionaries({"config": CONFIGS, "ops": OPS}, optional={"about": st.text(max_size=8)})
ANNOTATED = st.fixed_dictionaries(
    {"config": CONFIGS | SPOILT_CONFIGS, "ops": OPS},
    optional={"expected_results": st.lists(JSON_VALUES, max_size=10), "about": JSON_VALUES, "mutant": JSON_VALUES},
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"])
# The profile's budget (ci: 200), never more than 300 examples: each replays at most ten ops.
BOUNDED = settings(max_examples=min(settings().max_examples, 300))


def parse_then_replay(data: bytes) -> None:
    """Parse ``data``; replay what parses.  Only :class:`MMCheckError` may come out, and no divergence."""
    try:
        scenario = lang.scenario.loads(data)
    except MMCheckError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event(f"parsed: {len(scenario.ops)} ops" if len(scenario.ops) < 2 else "parsed: 2 ops or more")
    try:
        report = replay(scenario)
    except MMCheckError as exc:
        event(f"replay refused: {type(exc).__name__}")
        return
    assert report.divergence is None, report.divergence.describe()
    event("replayed to the end")


@BOUNDED
@given(JSON_VALUES | SCENARIO_LIKE | ANNOTATED)
def test_any_json_value_parses_or_is_refused(raw: object) -> None:
    with contextlib.suppress(MMCheckError):
        lang.scenario.Scenario.from_json(raw)


@BOUNDED
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    parse_then_replay(data)


@BOUNDED
@given(SCENARIO_LIKE, ENCODINGS)
def test_generated_scenarios_replay_or_are_refused(raw: object, encoding: str) -> None:
    """Mostly plausible ops of one layer: many parse, and replay runs them (or refuses one as bad input)."""
    parse_then_replay(json.dumps(raw).encode(encoding))


@BOUNDED
@given(JSON_VALUES | ANNOTATED, ENCODINGS)
def test_any_json_file_parses_and_replays_or_is_refused(raw: object, encoding: str) -> None:
    parse_then_replay(json.dumps(raw).encode(encoding))


@pytest.mark.parametrize(
    "op",
    [
        {"op": "kmem_cache_shrink", "cache": ["x"] * 100_000},
        {"op": "fsync", "file": "y" * 100_000},
        {"op": "file_create", "file": "a", "pages": 1, "words": ["z" * 100_000]},
    ],
)
def test_a_huge_cache_or_file_name_or_file_content_is_cut_in_the_message(op: dict[str, object]) -> None:
    with pytest.raises(ScenarioError) as refused:
        lang.scenario.loads(json.dumps({"config": {"frames": 16}, "ops": [op]}))
    message = str(refused.value)
    key = next(k for k in op if k not in ("op", "file", "pages")) if "words" in op else list(op)[1]
    assert message.startswith(f"ops[0].{key}: expected") and len(message) < 300, message[:400]
