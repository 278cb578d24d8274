"""The glibc oracle: one sequence of allocator calls run in real glibc and in the ptmalloc model, answer by answer.

The driver (``driver.c`` beside this module, compiled with gcc on first use
into the cache folder) runs the calls in a fresh process of its own, with an
empty environment so no ``GLIBC_TUNABLES`` or ``MALLOC_*`` variable changes
glibc's defaults, and reports after each call where the pointer landed (an
offset from the heap start, the break before the first call, or from its
mmapped chunk's mapping), ``malloc_usable_size``, ``sbrk (0)`` and
``mallinfo2 ()``.  The model (:class:`impl.ualloc.ptmalloc.Process`) answers
the same calls in the same form; the oracle compares them exactly.

A call glibc aborts (``malloc_printerr``: it prints the message on stderr and
raises SIGABRT, ``LIBC_FATAL_STDERR_`` keeps the message off the tty) ends the
process: that call's answer is the abort with glibc's message.

:func:`generate` draws single-threaded sequences of well-formed calls (every
free and realloc names a pointer still live) from a seed, mixing the sizes
each part of malloc serves: tcache and fastbin sizes, small and large bins,
requests around ``M_MMAP_THRESHOLD``, with ``malloc_trim`` and ``mallopt``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from impl.ualloc.ptmalloc import Process
from lang import ualloc_ops as uops
from lang.errors import OracleError, OracleUnavailable
from oracles.linux.host import compiled

DRIVER_SOURCE = Path(__file__).resolve().parent / "driver.c"
CFLAGS = ["-O2", "-Wall", "-Werror"]
TIMEOUT = float(os.environ.get("MMCHECK_GLIBC_TIMEOUT", "30"))


def unavailable() -> str | None:
    """Why the glibc oracle cannot run here, or None when it can."""
    if os.uname().machine != "x86_64":
        return f"the glibc oracle compares a 64-bit x86 glibc, this is {os.uname().machine}"
    try:
        done = subprocess.run(["gcc", "--version"], capture_output=True, check=False)
    except FileNotFoundError:
        return "gcc not found: the oracle compiles its driver (apt-get install gcc libc6-dev)"
    if done.returncode:
        return "gcc does not run: the oracle compiles its driver (apt-get install gcc libc6-dev)"
    version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    if not version.startswith("glibc 2.36"):
        return f"the model is glibc 2.36's malloc, this libc is {version or 'not glibc'}"
    return None


def build_driver() -> Path:
    """The driver program, compiled once per source version."""
    return compiled(DRIVER_SOURCE, CFLAGS, "glibc-driver", "the glibc oracle's driver")


def encode(ops: Sequence[uops.UallocOp]) -> str:
    """The driver's input: one call a line (``driver.c``'s header)."""
    lines = []
    for op in ops:
        if isinstance(op, uops.Malloc):
            lines.append(f"m {op.size}")
        elif isinstance(op, uops.Calloc):
            lines.append(f"c {op.count} {op.size}")
        elif isinstance(op, uops.Realloc):
            lines.append(f"r {op.call} {op.size}")
        elif isinstance(op, uops.Free):
            lines.append(f"f {op.call}")
        elif isinstance(op, uops.MallocTrim):
            lines.append(f"t {op.pad}")
        elif isinstance(op, uops.Mallopt):
            lines.append(f"o {uops.MALLOPT_PARAMS[op.param]} {op.value}")
        else:
            raise TypeError(f"not an allocator op: {op!r}")
    return "\n".join(lines) + "\n"


_KINDS = {"h": "heap", "m": "mmapped", "n": "null", "-": "none"}


def decode_line(line: str) -> uops.MallocAnswer:
    """One answer line of the driver."""
    parts = line.split()
    if len(parts) != 16 or parts[1] not in _KINDS:
        raise OracleError(f"the glibc driver wrote an unreadable line: {line!r}")
    numbers = [int(x) for x in parts[2:]]
    return uops.MallocAnswer(_KINDS[parts[1]], numbers[0], numbers[1], numbers[2], numbers[3], numbers[4],
                             tuple(numbers[5:]))


def run_glibc(ops: Sequence[uops.UallocOp]) -> tuple[uops.MallocAnswer, ...]:
    """The answers of real glibc, one per call (fewer when it aborted: the last is then the abort)."""
    driver = build_driver()
    try:
        done = subprocess.run(
            [str(driver)], input=encode(ops), capture_output=True, text=True, timeout=TIMEOUT,
            env={"LIBC_FATAL_STDERR_": "1"}, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OracleError(f"the glibc driver did not finish {len(ops)} calls in {TIMEOUT} s") from exc
    lines = done.stdout.splitlines()
    if not lines or not lines[0].startswith("S "):
        raise OracleError(f"the glibc driver wrote no start line (exit {done.returncode}): {done.stderr.strip()}")
    start = lines[0].split()
    if start[1] != "0":
        raise OracleUnavailable(f"the break started {start[1]} bytes into its page: the model starts it page-aligned")
    answers = [decode_line(line) for line in lines[1:]]
    if done.returncode == -signal.SIGABRT and len(answers) < len(ops):
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "(no message)"
        answers.append(uops.MallocAnswer("none", 0, 0, 0, 0, 0, (), message))
    elif done.returncode or len(answers) != len(ops):
        raise OracleError(
            f"the glibc driver stopped after {len(answers)} of {len(ops)} calls (exit {done.returncode}): "
            f"{done.stderr.strip()}"
        )
    return tuple(answers)


def run_model(ops: Sequence[uops.UallocOp]) -> tuple[uops.MallocAnswer, ...]:
    """The model's answers, one per call, stopping after the first abort as glibc does."""
    process = Process()
    answers = []
    for op in ops:
        answer = process.apply(op)
        answers.append(answer)
        if answer.abort:
            break
    return tuple(answers)


@dataclass(frozen=True, slots=True)
class Comparison:
    """glibc's and the model's answers to one sequence, and the first call where they differ (-1: none)."""

    ops: tuple[uops.UallocOp, ...]
    glibc: tuple[uops.MallocAnswer, ...]
    model: tuple[uops.MallocAnswer, ...]

    @property
    def first_difference(self) -> int:
        for index, (real, modelled) in enumerate(zip(self.glibc, self.model, strict=False)):
            if real != modelled:
                return index
        return -1 if len(self.glibc) == len(self.model) else min(len(self.glibc), len(self.model))

    @property
    def agrees(self) -> bool:
        return self.first_difference == -1

    def describe(self) -> str:
        at = self.first_difference
        if at == -1:
            return f"{len(self.ops)} calls agree"
        real = self.glibc[at].to_json() if at < len(self.glibc) else "(no answer)"
        modelled = self.model[at].to_json() if at < len(self.model) else "(no answer)"
        return f"call {at} ({self.ops[at].to_json()}): glibc {real}, model {modelled}"


def compare(ops: Sequence[uops.UallocOp]) -> Comparison:
    """Run ``ops`` in glibc and in the model."""
    return Comparison(tuple(ops), run_glibc(ops), run_model(ops))


# --- generated sequences -------------------------------------------------------------------------------

_SIZE_BANDS: tuple[tuple[int, int, int], ...] = (
    (0, 24, 4),  # the smallest chunk, 0x20
    (25, 120, 6),  # fastbin and tcache sizes
    (121, 1032, 5),  # small bins, still tcache sizes
    (1033, 4096, 3),  # large bins past the tcache
    (4097, 64 * 1024, 2),  # large bins
    (100 * 1024, 300 * 1024, 2),  # around M_MMAP_THRESHOLD and its dynamic raise
)


def _size(rng: random.Random) -> int:
    low, high, _ = rng.choices(_SIZE_BANDS, weights=[band[2] for band in _SIZE_BANDS])[0]
    return rng.randint(low, high)


def generate(seed: int, length: int = 60) -> tuple[uops.UallocOp, ...]:
    """A sequence of ``length`` well-formed calls drawn from ``seed``: every free and realloc names a live pointer.

    Most sizes come from a small palette drawn for the sequence, so a size
    class fills its tcache bin (7) and spills into the fastbins or the
    unsorted bin, and large bins hold several chunks of one size.
    """
    rng = random.Random(seed)
    palette = [_size(rng) for _ in range(rng.randint(2, 6))]
    ops: list[uops.UallocOp] = []
    live: list[int] = []

    def size() -> int:
        return rng.choice(palette) if rng.random() < 0.6 else _size(rng)

    for index in range(length):
        roll = rng.random()
        if live and roll < 0.38:
            ops.append(uops.Free(live.pop(rng.randrange(len(live)))))
        elif live and roll < 0.48:
            ops.append(uops.Realloc(live.pop(rng.randrange(len(live))), size()))
            live.append(index)
        elif roll < 0.55:
            ops.append(uops.Calloc(rng.randint(1, 8), rng.randint(1, 600)))
            live.append(index)
        elif roll < 0.57:
            ops.append(uops.MallocTrim(rng.choice((0, 0, 4096, 128 * 1024))))
        elif roll < 0.58:
            param = rng.choice(tuple(uops.MALLOPT_PARAMS))
            value = {
                "M_MXFAST": rng.choice((0, 32, 64, 128, 160)),
                "M_TRIM_THRESHOLD": rng.choice((0, 4096, 64 * 1024, 256 * 1024)),
                "M_TOP_PAD": rng.choice((0, 4096, 64 * 1024)),
                "M_MMAP_THRESHOLD": rng.choice((4096, 64 * 1024, 256 * 1024)),
                "M_MMAP_MAX": rng.choice((0, 1, 65536)),
            }[param]
            ops.append(uops.Mallopt(param, value))
        else:
            ops.append(uops.Malloc(size()))
            live.append(index)
    return tuple(ops)


def mismatch_scenario(comparison: Comparison, seed: int) -> dict[str, object]:
    """A disagreement as a scenario: the calls up to the first difference, glibc's answers as its expected results."""
    at = comparison.first_difference
    ops = comparison.ops[: at + 1]
    return {
        "about": f"glibc oracle, generated sequence {seed}: {comparison.describe()}",
        "config": {"frames": 64},
        "ops": [op.to_json() for op in ops],
        "expected_results": [answer.to_json() for answer in comparison.glibc[: at + 1]],
    }
