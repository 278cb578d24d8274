"""``nox -s mutmut``'s runner: ``mutmut run`` within a time budget, with a progress display on a terminal.

mutmut 3 reports its progress as one status line rewritten in place with
carriage returns (``mutmut/ui/terminal.py`` ``status_printer``, the counts
from ``mutmut/stats.py`` ``print_stats``): mutants done of the total, then
killed, no tests, timed out, suspicious, survived.  This runner reads that
stream and shows it through :class:`proofs.progress.Meter`: on a terminal a
Rich display (mutants done of the total, their rate, killed and survived so
far, the time left in the budget); elsewhere one plain status line every
:data:`PLAIN_EVERY` seconds, so a CI log stays readable.  Every other line
mutmut prints is passed through.

When the budget runs out, mutmut gets SIGINT, as a user's Ctrl-C: it stops
its workers, records what it checked, and the mutants it did not reach stay
"not checked" (:mod:`properties.mutants.mutmut_stats` reports them apart).
"""

from __future__ import annotations

import argparse
import io
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from proofs.progress import Meter

STATUS = re.compile(
    r"(?P<done>\d+)/(?P<total>\d+)\s+🎉 (?P<killed>\d+)\s+🫥 (?P<untested>\d+)\s+⏰ (?P<timeout>\d+)"
    r"\s+🤔 (?P<suspicious>\d+)\s+🙁 (?P<survived>\d+)"
)
PLAIN_EVERY = 30.0
COMMAND = ("mutmut", "run")


@dataclass(frozen=True, slots=True)
class Status:
    """One status line of mutmut's: mutants done of ``total`` and how they ended so far."""

    done: int
    total: int
    killed: int
    untested: int
    timeout: int
    suspicious: int
    survived: int

    def note(self) -> str:
        return f"{self.done}/{self.total}: {self.killed + self.timeout} killed, {self.survived} survived"


def parse_status(line: str) -> Status | None:
    """The counts of a mutmut status line, or None for any other line."""
    found = STATUS.search(line)
    return None if found is None else Status(**{key: int(value) for key, value in found.groupdict().items()})


def pieces(stream: io.BufferedIOBase) -> Iterator[str]:
    """The text of ``stream`` cut at carriage returns and newlines, as mutmut rewrites its line in place."""
    pending = b""
    while chunk := stream.read1(65536):
        pending += chunk
        *whole, pending = re.split(rb"[\r\n]", pending)
        for piece in whole:
            if piece.strip():
                yield piece.decode(errors="replace").rstrip()
    if pending.strip():
        yield pending.decode(errors="replace").rstrip()


def follow(stream: io.BufferedIOBase, meter: Meter, now: Callable[[], float] = time.monotonic) -> Status | None:
    """Show mutmut's output through ``meter`` until the stream ends; the last status seen."""
    last: Status | None = None
    shown_at = -PLAIN_EVERY
    for piece in pieces(stream):
        status = parse_status(piece)
        if status is None:
            meter.plain(piece)
            continue
        last = status
        meter.update(status.done, note=status.note())
        moment = now()
        if moment - shown_at >= PLAIN_EVERY:
            meter.quiet(f"mutmut: {status.note()}")
            shown_at = moment
    return last


def run(command: Sequence[str], budget: float, meter: Meter) -> tuple[int, bool, Status | None]:
    """Run ``command`` (mutmut) for at most ``budget`` seconds: its exit code, whether the budget stopped it,
    and its last status."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stream = cast(io.BufferedIOBase, child.stdout)
    result: list[Status | None] = [None]

    def read() -> None:
        result[0] = follow(stream, meter)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stopped = False
    try:
        code = child.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        stopped = True
        child.send_signal(signal.SIGINT)
        code = child.wait()
    reader.join()
    return code, stopped, result[0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m proofs.mutmut_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=900.0, help="seconds before mutmut is stopped (default 900)")
    p.add_argument("--children", type=int, default=1, help="mutants run at once (mutmut --max-children)")
    p.add_argument("names", nargs="*", help="run only these mutants (mutmut run NAMES); all by default")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.budget > 0 or args.children < 1:
        print("mutmut_run: --budget must be a positive number of seconds, --children at least 1", file=sys.stderr)
        return 2
    with Meter("mutmut", "mutants", budget=args.budget) as meter:
        code, stopped, last = run([*COMMAND, "--max-children", str(args.children), *args.names], args.budget, meter)
    if last is not None:
        print(f"mutmut: {last.note()}" + (f" when the {args.budget:.0f}s budget ran out" if stopped else ""))
    if stopped:
        return 0
    return 0 if code in (0, 130, -signal.SIGINT) else code


if __name__ == "__main__":
    sys.exit(main())
