"""Peak memory of the bad-input probes and of the largest scenarios the limits let through.

``python -m benchmarks.memory`` writes each probe's scenario file, runs ``mmcheck replay`` on it in a
fresh interpreter and reads that process's peak resident set size (the high-water mark ``VmHWM`` of
/proc/self/status, printed by the process itself when the command returns; Linux only).  A probe passes when
the command gives the exit code it must (2 for bad input, 0 for a scenario at the limits) and its peak stays
under the budget, 1 GiB
(issue #18: "memory stays bounded, each probe under 1 GiB").  Exit 1 if any probe fails.

The probes are the size classes of tests/test_bad_input.py (nesting, long numbers, long strings and keys,
too many ops, too many pages or processes, an oversized file) and, beside them, what the limits accept:
:data:`lang.scenario.MAX_OPS` ops, ``mmap`` of :data:`lang.kernel_ops.MAX_PAGES` pages touched, the
:data:`lang.kernel_ops.MAX_MAPPED_PAGES` total, :data:`lang.kernel_ops.MAX_PROCESSES` processes.
``--quick`` runs the bad-input probes only (seconds).  Results: a table, and ``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lang.kernel_ops import MAX_MAPPED_PAGES, MAX_PAGES, MAX_PROCESSES
from lang.scenario import MAX_CONTAINERS, MAX_FILE_BYTES, MAX_NUMBERS, MAX_OPS, MAX_STRINGS

BUDGET_MIB = 1024
BASE = 0x100000000000
PAGE = 4096

CHILD = """
import sys
from mmcheck.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(f"@@peak-kib {peak} exit {code}", file=sys.stderr)
"""
# VmHWM is the peak RSS of this process's own address space: unlike getrusage's ru_maxrss it starts afresh at
# exec, so the parent's size at fork time is not counted.


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _frames(n: int) -> dict[str, int]:
    return {"frames": n}


def _mmap(pid: int, va: int, pages: int) -> dict[str, object]:
    return {"op": "mmap", "pid": pid, "va": hex(va), "pages": pages, "prot": "rw-"}


def _touch(va: int, pages: int) -> list[dict[str, object]]:
    return [{"op": "store", "cpu": 0, "va": hex(va + i * PAGE), "value": i} for i in range(pages)]


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    what: str
    exit_code: int
    data: Callable[[], bytes]
    quick: bool = True


PROBES: tuple[Probe, ...] = (
    Probe("deep-nesting", "'[' 100,000 times", 2, lambda: b"[" * 100_000),
    Probe("deep-nesting-64mib", "'[' up to the file size limit", 2, lambda: b"[" * MAX_FILE_BYTES),
    Probe(
        "5000-digit-number", "an integer of 5,000 digits", 2, lambda: b'{"config": {"frames": ' + b"9" * 5000 + b"}}"
    ),
    Probe(
        "huge-number-60mib",
        "an integer of 60 MiB of digits",
        2,
        lambda: b'{"config": {"frames": ' + b"9" * (60 << 20) + b'}, "ops": []}',
    ),
    Probe(
        "3mb-value",
        "a 3 MB string where an address belongs",
        2,
        lambda: _json({"config": _frames(16), "ops": [{"op": "read_phys", "pa": "7" * 3_000_000}]}),
    ),
    Probe(
        "3mb-key",
        "a 3 MB key",
        2,
        lambda: _json({"config": _frames(16), "ops": [{"op": "read_phys", "k" * 3_000_000: 1}]}),
    ),
    Probe(
        "too-many-ops",
        f"{MAX_OPS + 1:,} ops",
        2,
        lambda: _json({"config": _frames(16), "ops": [{"op": "buddyinfo"}] * (MAX_OPS + 1)}),
    ),
    Probe(
        "ops-in-64mib",
        "a 64 MiB file of small ops",
        2,
        lambda: b'{"config": {"frames": 16}, "ops": [' + b'{"op":"buddyinfo"},' * (MAX_FILE_BYTES // 19 - 4) + b"{}]}",
    ),
    Probe(
        "objects-at-limit",
        f"{MAX_CONTAINERS:,} objects (the most a file may hold), refused later",
        2,
        lambda: b'{"config": {"frames": 16}, "ops": [' + b'{"op":"buddyinfo"},' * (MAX_CONTAINERS - 4) + b"{}]}",
    ),
    Probe(
        "strings-at-limit",
        f"{MAX_STRINGS:,} strings (the most a file may hold)",
        2,
        lambda: b'{"config": {"frames": 16}, "ops": [], "about": [' + b'"ab",' * (MAX_STRINGS - 5) + b'""]}',
    ),
    Probe(
        "all-at-limit",
        "the most objects, strings and numbers a file may hold, together",
        2,
        lambda: (
            b'{"ops": ['
            + b'{"a":1000,"b":1001,"c":1002,"d":1003},' * (MAX_CONTAINERS - 4)
            + b'{}], "about": ['
            + b"1000," * (MAX_NUMBERS - 4 * (MAX_CONTAINERS - 4) - 1)
            + b"1]}"
        ),
    ),
    Probe(
        "arrays-in-64mib",
        "a 64 MiB file of empty arrays",
        2,
        lambda: b"[" + b"[]," * (MAX_FILE_BYTES // 3 - 1) + b"[]]",
    ),
    Probe(
        "numbers-in-64mib", "a 64 MiB file of integers", 2, lambda: b"[" + b"1000," * (MAX_FILE_BYTES // 5 - 1) + b"1]"
    ),
    Probe(
        "floats-in-64mib", "a 64 MiB file of fractions", 2, lambda: b"[" + b"0.5," * (MAX_FILE_BYTES // 4 - 1) + b"1]"
    ),
    Probe(
        "mmap-1e9-pages",
        "mmap of 10^9 pages",
        2,
        lambda: _json({"config": _frames(16), "ops": [{"op": "spawn"}, _mmap(1, BASE, 10**9)]}),
    ),
    Probe(
        "mapped-pages-total",
        f"mmaps of {3 * MAX_PAGES:,} pages in all",
        2,
        lambda: _json(
            {
                "config": _frames(16),
                "ops": [{"op": "spawn"}] + [_mmap(1, BASE + i * (MAX_PAGES * PAGE), MAX_PAGES) for i in range(3)],
            }
        ),
    ),
    Probe(
        "processes-total",
        f"{MAX_PROCESSES + 1} spawns",
        2,
        lambda: _json({"config": _frames(16), "ops": [{"op": "spawn"}] * (MAX_PROCESSES + 1)}),
    ),
    Probe("file-too-large", f"a file of {MAX_FILE_BYTES + 1:,} bytes", 2, lambda: b" " * (MAX_FILE_BYTES + 1)),
    Probe(
        "max-ops",
        f"{MAX_OPS:,} ops, replayed",
        0,
        lambda: _json({"config": _frames(16), "ops": [{"op": "buddyinfo"}] * MAX_OPS}),
        quick=False,
    ),
    Probe(
        "max-pages-touched",
        f"mmap of {MAX_PAGES:,} pages, 4,096 of them written",
        0,
        lambda: _json(
            {
                "config": _frames(8192),
                "ops": [
                    {"op": "spawn"},
                    {"op": "switch", "cpu": 0, "pid": 1},
                    _mmap(1, BASE, MAX_PAGES),
                    *_touch(BASE, 4096),
                ],
            }
        ),
        quick=False,
    ),
    Probe(
        "max-mapped-total",
        f"{MAX_MAPPED_PAGES:,} pages mapped by {MAX_PROCESSES} processes, forked",
        0,
        lambda: _json(
            {
                "config": _frames(4096),
                "ops": [
                    {"op": "spawn"},
                    _mmap(1, BASE, MAX_MAPPED_PAGES // MAX_PROCESSES),
                    *({"op": "fork", "pid": 1} for _ in range(MAX_PROCESSES - 1)),
                ],
            }
        ),
        quick=False,
    ),
)


@dataclass(frozen=True, slots=True)
class Measured:
    name: str
    what: str
    exit_code: int
    expected_exit: int
    peak_mib: float
    seconds: float
    file_mib: float

    @property
    def ok(self) -> bool:
        return self.exit_code == self.expected_exit and self.peak_mib < BUDGET_MIB


def measure(probe: Probe, folder: Path) -> Measured:
    """Run ``mmcheck replay`` on the probe's file in a fresh interpreter; its exit code and peak RSS."""
    path = folder / f"{probe.name}.json"
    data = probe.data()
    path.write_bytes(data)
    del data
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "replay", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    path.unlink()
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("@@peak-kib ")]
    if not line:
        raise RuntimeError(f"{probe.name}: the probe's process ended without its figures: {done.stderr[-2000:]}")
    _, kib, _, code = line[-1].split()
    return Measured(probe.name, probe.what, int(code), probe.exit_code, int(kib) / 1024, seconds, size / (1 << 20))


def table(rows: Sequence[Measured]) -> list[str]:
    out = [f"{'probe':20} {'file MiB':>9} {'exit':>5} {'peak MiB':>9} {'seconds':>8}  what", "-" * 100]
    for r in rows:
        verdict = "" if r.ok else f"  FAILED (exit {r.exit_code}, wanted {r.expected_exit}; budget {BUDGET_MIB} MiB)"
        out.append(
            f"{r.name:20} {r.file_mib:9.1f} {r.exit_code:5} {r.peak_mib:9.1f} {r.seconds:8.1f}  {r.what}{verdict}"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the bad-input probes only")
    parser.add_argument("--only", action="append", help="run only the probe of this name (repeatable)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    chosen = [p for p in PROBES if (not args.quick or p.quick) and (not args.only or p.name in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmcheck-memory-") as folder:
        for probe in chosen:
            rows.append(measure(probe, Path(folder)))
            print(table(rows)[-1], flush=True)
    print("\n".join(table(rows)))
    worst = max(rows, key=lambda r: r.peak_mib)
    print(f"largest peak: {worst.peak_mib:.1f} MiB ({worst.name}); budget {BUDGET_MIB} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "ok": r.ok} for r in rows], indent=1) + "\n")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
