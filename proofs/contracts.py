"""CrossHair checks of the contracts written in the pure spec functions' docstrings.

The contracts are PEP 316 ``pre:``/``post:`` lines in the docstrings of
spec/paging/address.py (split, join), spec/paging/pte.py (decode, encode) and
spec/paging/permissions.py (combine, access_allowed, error_code): documentation a
reader sees, and claims ``crosshair check`` searches for counterexamples to.

CrossHair explores each function's paths symbolically for a while.  It
reports each postcondition as *confirmed over all paths*, *not confirmed*
(searched without a counterexample until the per-condition timeout; bit
tricks on symbolic values end here, which is why the Z3 lemmas of
:mod:`proofs.lemmas` prove those rules), or an error with a counterexample.
A check here is:

- refuted when CrossHair reports any error;
- unknown when CrossHair is missing, crashes, overruns the time budget, or
  gives no verdict for some ``post:`` line of the module (so a contract that
  was silently skipped does not pass);
- confirmed otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lang.verdict import Status, Verdict, check, timed

ROOT = Path(__file__).resolve().parent.parent
PER_CONDITION_TIMEOUT = 4.0
BUDGET_SECONDS = 150.0

_REPORT = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<level>error|info|warning): (?P<message>.*)$")
CONFIRMED_ALL_PATHS = "Confirmed over all paths."
SEARCHED = "Not confirmed."


def crosshair_available() -> bool:
    """True when the ``crosshair`` package can be imported by this interpreter."""
    return importlib.util.find_spec("crosshair") is not None


def source_file(target: str) -> Path:
    """The file of a module name (``spec.paging.pte``) or a path to a ``.py`` file."""
    if target.endswith(".py"):
        return Path(target).resolve()
    spec = importlib.util.find_spec(target)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no module {target!r} to check")
    return Path(spec.origin).resolve()


def postcondition_lines(path: Path) -> set[int]:
    """Line numbers of the ``post:`` lines of a module's docstrings."""
    return {n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith("post:")}


def crosshair_check(
    targets: Sequence[str],
    per_condition_timeout: float = PER_CONDITION_TIMEOUT,
    budget: float = BUDGET_SECONDS,
) -> tuple[Status, str]:
    """Run ``crosshair check --analysis_kind=PEP316`` on ``targets`` and judge its report."""
    if not crosshair_available():
        return Status.UNKNOWN, "crosshair is not installed (pip install crosshair-tool)"
    command = [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        "--analysis_kind=PEP316",
        f"--per_condition_timeout={per_condition_timeout}",
        "--report_all",
        *targets,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return Status.UNKNOWN, f"crosshair did not finish within the {budget:.0f}s budget"
    reports = [m for m in map(_REPORT.match, done.stdout.splitlines()) if m]
    errors = [m.group(0) for m in reports if m.group("level") == "error"]
    if errors:
        return Status.REFUTED, "\n".join(errors)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return Status.UNKNOWN, f"crosshair exited {done.returncode}: " + " / ".join(tail)
    reported = {(Path(m.group("file")).resolve(), int(m.group("line"))) for m in reports}
    expected = {(path, n) for path in map(source_file, targets) for n in postcondition_lines(path)}
    missing = sorted(expected - reported)
    if missing:
        return Status.UNKNOWN, "no verdict for " + ", ".join(f"{p.name}:{n}" for p, n in missing)
    everywhere = sum(m.group("message") == CONFIRMED_ALL_PATHS for m in reports)
    return Status.CONFIRMED, f"{everywhere} of {len(reports)} postconditions confirmed on all paths, the rest searched"


ADDRESS = "spec.paging.address: split/join contracts (index ranges, join then split, canonical result)"
PTE = "spec.paging.pte: decode/encode contracts (encode inverts decode, 64-bit result)"
PERMISSIONS = (
    "spec.paging.permissions: combine/access_allowed/error_code contracts (rights shrink, isolation, W/U bits)"
)


@check("crosshair", ADDRESS)
def address_contracts() -> Verdict:
    return timed(ADDRESS, lambda: crosshair_check(["spec.paging.address"]))


@check("crosshair", PTE)
def pte_contracts() -> Verdict:
    return timed(PTE, lambda: crosshair_check(["spec.paging.pte"]))


@check("crosshair", PERMISSIONS)
def permissions_contracts() -> Verdict:
    return timed(PERMISSIONS, lambda: crosshair_check(["spec.paging.permissions"]))


BUDDY = "spec.alloc.buddy: buddy arithmetic and split contracts (buddy differs, merged block below, halves inside)"


@check("crosshair", BUDDY)
def buddy_contracts() -> Verdict:
    return timed(BUDDY, lambda: crosshair_check(["spec.alloc.buddy"]))
