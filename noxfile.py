"""Sessions: ``nox -s verify`` is the main job; ``nox -s tests`` runs the test suite.

Version ranges live in ``pyproject.toml``; every session installs with the exact
pins of ``constraints.txt``, so each session and CI run resolves the same harness.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

CONSTRAINTS = "constraints.txt"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests", "verify"]
nox.options.reuse_existing_virtualenvs = True


def _workers() -> list[str]:
    # loadgroup: tests marked with one xdist_group (the live-kernel oracles) run on the same worker.
    return ["-n", "auto", "--dist", "loadgroup"] if (os.cpu_count() or 1) > 1 else []


@nox.session
def tests(session: nox.Session) -> None:
    """The pytest suite (unit tests, scenario regressions, fast machine runs).

    Checks marked ``slow`` repeat what ``verify`` and ``mutants`` run; pass
    ``-- -m ""`` to include them.
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check,fuzz,plot]")
    session.run("pytest", *_workers(), "-m", "not slow", *session.posargs)


@nox.session
def verify(session: nox.Session) -> None:
    """Proofs, contracts and refinement machines in the ``ci`` profile; one summary line.

    ``nox -s verify -- --coverage`` runs the same checks under coverage.py (``[tool.coverage.run]``):
    an HTML report in ``coverage-html/``, a JSON one in ``.coverage-verify/coverage.json``, one line per
    module, and the gate of :mod:`proofs.coverage_gate` (impl/'s branches taken by verify alone, every
    other one listed with its reason); the session fails if verify or the gate does.
    """
    coverage = "--coverage" in session.posargs
    rest = [arg for arg in session.posargs if arg != "--coverage"]
    session.install("-c", CONSTRAINTS, "-e", ".[check,coverage]" if coverage else ".[check]")
    profile = os.environ.get("MMCHECK_PROFILE", "ci")
    if not coverage:
        session.run("python", "-m", "proofs.verify", "--profile", profile, *rest)
        return
    shutil.rmtree(".coverage-verify", ignore_errors=True)
    Path(".coverage-verify").mkdir()
    session.run("coverage", "run", "-m", "proofs.verify", "--profile", profile, *rest)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "html", "--quiet")
    session.run("coverage", "json", "--quiet", "-o", ".coverage-verify/coverage.json")
    session.run("python", "-m", "proofs.coverage_gate", ".coverage-verify/coverage.json")


@nox.session
def modelcheck(session: nox.Session) -> None:
    """The explorers at bounds larger than verify's: the SMP layer exhausted, then searched deeper.

    Posargs go to ``python -m proofs.modelcheck`` (``--minutes 4``, the budget shared by the runs).
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check]")
    session.run("python", "-m", "proofs.modelcheck", *session.posargs)


@nox.session
def proofs(session: nox.Session) -> None:
    """The Z3 lemmas and inductive proofs alone, each confirmed, refuted or unknown (unknown is not a pass)."""
    session.install("-c", CONSTRAINTS, "-e", ".[check]")
    session.run("python", "-m", "proofs.prove", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Every refinement machine on every core for a time box, sharing one example database; a report at the end.

    ``nox -s fuzz -- --minutes N [--workers K] [--db DIR|redis://host:port/db]``;
    the posargs go to ``python -m proofs.fuzz`` (``--help`` lists them).
    Exits non-zero if any machine fails; each failure is saved as a scenario
    under ``counterexamples/fuzz/``.
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check,fuzz]")
    session.run("python", "-m", "proofs.fuzz", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install("-c", CONSTRAINTS, "-e", ".[lint]")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over all non-test code."""
    session.install("-c", CONSTRAINTS, "-e", ".[typecheck,check,fuzz]")
    session.run("mypy")


@nox.session
def architecture(session: nox.Session) -> None:
    """Check the floors and draw the package graph from the imports: docs/architecture.dot, and .svg with Graphviz."""
    session.install("-c", CONSTRAINTS, "-e", ".")
    session.run("python", "-m", "mmcheck.architecture", "--dot", "docs/architecture.dot")
    if shutil.which("dot"):
        session.run("dot", "-Tsvg", "docs/architecture.dot", "-o", "docs/architecture.svg", external=True)
    else:
        session.log("Graphviz's dot is not installed (apt-get install graphviz): docs/architecture.svg not redrawn")


@nox.session
def bench(session: nox.Session) -> None:
    """Implementation against spec, shootdown counts and harness rates: one table, JSON and a plot in bench-results/.

    ``-- --quick`` is a smoke run of seconds; ``-- --only buddy`` runs one family.
    """
    session.install("-c", CONSTRAINTS, ".[check,plot]")
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session(python="3.12")
def musil(session: nox.Session) -> None:
    """The shared lost-update model (proofs/promela.py) checked by musil, which needs Python 3.12: one JSON line.

    ``nox -s bench`` compares the spec explorer with it through this session's interpreter (or the one
    ``MMCHECK_MUSIL_PYTHON`` names).  Posargs: the number of processes (default 6).
    """
    session.install("-c", CONSTRAINTS, "musil")
    session.run("python", "benchmarks/musil_rate.py", *session.posargs)


@nox.session
def memory(session: nox.Session) -> None:
    """Peak RSS of every bad-input probe and of the largest scenarios the limits accept, each under 1 GiB.

    ``-- --quick`` runs the bad-input probes only; ``-- --json FILE`` keeps the figures.
    """
    session.install("-c", CONSTRAINTS, ".")
    session.run("python", "-m", "benchmarks.memory", *session.posargs)


@nox.session
def qemu(session: nox.Session) -> None:
    """Spec and impl against QEMU's page walker on generated page tables (needs qemu-system-x86 and gcc).

    ``MMCHECK_QEMU_SCENARIOS`` (default 1000) sets how many scenarios run, in
    batches of eight per pair of QEMU boots.
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check]")
    scenarios = int(os.environ.get("MMCHECK_QEMU_SCENARIOS", "1000"))
    env = {
        "MMCHECK_QEMU_BATCH": "8",
        "MMCHECK_QEMU_BATCHES": str(-(-scenarios // 8)),
        "MMCHECK_PROFILE": os.environ.get("MMCHECK_PROFILE", "ci"),
    }
    session.run("pytest", "-m", "qemu", "tests/test_qemu_oracle.py", *session.posargs, env=env)


@nox.session
def numa(session: nox.Session) -> None:
    """Debian's kernel under QEMU with two and four NUMA nodes: placement, policies, migration, numastat.

    Needs qemu-system-x86, gcc and apt-get (for linux-image-amd64); the slow four-node boot runs too.
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check]")
    session.run("pytest", "tests/test_numa_guest.py", "tests/test_numa.py", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Each catalogued mutant against the ci checks of its layer; table, medians, ``mutants: K killed of N``.

    Posargs go to ``mmcheck mutants`` (``--layer buddy``, ``--name wp-ignored``, ``--jobs 1``, ``-v``).
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check]")
    session.run("mmcheck", "mutants", *session.posargs)


@nox.session
def linux(session: nox.Session) -> None:
    """Spec and impl against the live Linux kernel: COW, the zero page, pagemap and smaps (needs root and gcc);
    memory pressure in a memory cgroup with a swap file, and MemAvailable against si_mem_available; the
    OOM killer's victims and oom_score in a cgroup v1 memory group, with and without swap; transparent huge
    pages in the kernel's own THP mode (AnonHugePages, the huge zero page, kpageflags).

    ``MMCHECK_LINUX_SCENARIOS`` (default 300) sets how many generated
    scenarios run, of each kind; the scenario files under tests/scenarios/ run as well.
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check]")
    env = {
        "MMCHECK_LINUX_SCENARIOS": os.environ.get("MMCHECK_LINUX_SCENARIOS", "300"),
        "MMCHECK_PROFILE": os.environ.get("MMCHECK_PROFILE", "ci"),
    }
    tests = [
        "tests/test_linux_oracle.py",
        "tests/test_linux_pressure_oracle.py",
        "tests/test_linux_oom_oracle.py",
        "tests/test_linux_thp_oracle.py",
    ]
    session.run("pytest", *tests, *session.posargs, env=env)


@nox.session
def mutmut(session: nox.Session) -> None:
    """Mutation testing of impl/ (mutmut 3, ``[tool.mutmut]`` in pyproject) against the fast refinement tests.

    All of impl/ makes more than 6,000 mutants, hours on a 2-core machine, so by default a seeded sample of
    ``MMCHECK_MUTMUT_SAMPLE`` (30) mutants of each module runs (:mod:`proofs.mutmut_sample`): the kill rate
    of each module with its 95% interval, and the survivors by name.  ``MMCHECK_MUTMUT_SAMPLE=0`` runs every
    mutant instead, reported by :mod:`properties.mutants.mutmut_stats`.  The time budget in seconds is the
    first posarg or ``MMCHECK_MUTMUT_BUDGET`` (default 1800); when it runs out mutmut is stopped and the
    mutants not yet run are reported as not checked.  ``MMCHECK_MUTMUT_CHILDREN`` sets how many mutants run
    at once (default one per core; 1 leaves a shared machine usable), ``MMCHECK_MUTMUT_SEED`` the sample's
    seed (0).  On a terminal a progress display shows the mutants done, killed and survived and the budget
    left (:mod:`proofs.mutmut_run`).  Every run starts from a fresh copy in ``mutants/`` and uses the
    derandomized ``mutmut`` Hypothesis profile.
    """
    session.install("-c", CONSTRAINTS, "-e", ".[check,mutmut]")
    budget = session.posargs[0] if session.posargs else os.environ.get("MMCHECK_MUTMUT_BUDGET", "1800")
    shutil.rmtree("mutants", ignore_errors=True)
    env = {"MMCHECK_PROFILE": "mutmut"}
    children = os.environ.get("MMCHECK_MUTMUT_CHILDREN", str(os.cpu_count() or 1))
    per_module = os.environ.get("MMCHECK_MUTMUT_SAMPLE", "30")
    if per_module != "0":
        seed = os.environ.get("MMCHECK_MUTMUT_SEED", "0")
        sample = ["--per-module", per_module, "--seed", seed, "--budget", budget, "--children", children]
        session.run("python", "-m", "proofs.mutmut_sample", *sample, env=env)
        return
    session.run("python", "-m", "proofs.mutmut_run", "--budget", budget, "--children", children, env=env)
    session.run("mutmut", "export-cicd-stats", env=env)
    session.run("python", "-m", "properties.mutants.mutmut_stats")
