"""The implementation's functions the benchmarks time: ``docs/bench-paths.txt``, which verify must reach.

A speed figure of the benchmarks says something about the implementation
only if the path it times is one a refinement check drives: an optimized
path no check runs can be fast and wrong.  This module runs the quick bench
(``benchmarks.run --quick``, the same families at small sizes; all but
``harness``, which times the refinement machines themselves, for a number of
seconds, so what it reaches varies from run to run) with a trace hook and
names every function of ``impl/`` it enters, as
``path::qualified name`` (coverage.py's naming of functions in its JSON
report).  The names are kept in :data:`LISTING`; the coverage gate
(:mod:`proofs.coverage_gate`) fails when one of them has no line run by
verify's checks, and ``tests/test_bench_paths.py`` fails when the listing is
not what the quick bench calls.

``python -m benchmarks.paths --write`` rewrites the listing; ``--check``
exits 1 when it is stale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LISTING = ROOT / "docs" / "bench-paths.txt"
IMPL = str(ROOT / "impl") + "/"
HEADER = (
    "# Functions of impl/ the quick bench (python -m benchmarks.run --quick, all families but harness) calls:\n"
    "# each must be run by verify's checks (the coverage gate, python -m proofs.coverage_gate).\n"
    "# Written by python -m benchmarks.paths --write; tests/test_bench_paths.py checks it is current.\n"
)


def impl_functions_called(run: Callable[[], object]) -> set[str]:
    """Every named function of ``impl/`` that ``run`` enters (lambdas, comprehensions and nested helpers are
    part of the function that holds them)."""
    seen: set[tuple[str, str]] = set()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code  # a global trace function sees "call" events only; returning None traces no lines
        if code.co_filename.startswith(IMPL) and "<" not in code.co_qualname:
            seen.add((code.co_filename, code.co_qualname))

    # A trace hook, not a profile hook: the slab family times its loop under cProfile, which takes the profile
    # hook and leaves none behind.
    previous = sys.gettrace()
    sys.settrace(hook)
    try:
        run()
    finally:
        sys.settrace(previous)
    return {f"{Path(path).relative_to(ROOT).as_posix()}::{name}" for path, name in seen}


def bench_functions() -> set[str]:
    """The ``impl/`` functions the quick bench calls, the harness family left out (its output is discarded)."""
    from benchmarks import run as bench

    families = [arg for family in bench.FAMILIES if family != "harness" for arg in ("--only", family)]
    with tempfile.TemporaryDirectory() as out:

        def quick() -> None:
            if bench.main(["--quick", "--out", out, *families]) != 0:
                raise RuntimeError("the quick bench failed")

        return impl_functions_called(quick)


def render(names: set[str]) -> str:
    return HEADER + "".join(f"{name}\n" for name in sorted(names))


def read_listing(path: Path = LISTING) -> set[str]:
    """The listed names (comments and blank lines left out)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paths", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"rewrite {LISTING.relative_to(ROOT)}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the listing is not what the bench calls")
    args = p.parse_args(argv)
    found = bench_functions()
    if args.write:
        LISTING.write_text(render(found))
        print(f"bench paths: wrote {len(found)} functions to {LISTING.relative_to(ROOT)}", file=sys.stderr)
        return 0
    listed = read_listing()
    for name in sorted(found - listed):
        print(f"bench paths: called by the bench, not listed: {name}", file=sys.stderr)
    for name in sorted(listed - found):
        print(f"bench paths: listed, not called by the bench: {name}", file=sys.stderr)
    return 0 if found == listed else 1


if __name__ == "__main__":
    sys.exit(main())
