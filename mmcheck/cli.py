"""The ``mmcheck`` command line.

Exit codes: 0 success, 1 a check failed (divergence, unexpected result),
2 bad input (malformed scenario, an operation outside its domain, an option
out of its range), with a one-line message naming the field or option.  When
the reader of standard output goes away (``mmcheck replay X | head -1``) the
command stops quietly with exit code 141 (128 + SIGPIPE, what a shell reports
for a Unix tool killed by SIGPIPE); an interrupt (Ctrl-C) exits 130.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from lang.errors import InvalidArgument, MMCheckError, UnknownMutant
from lang.hardware_ops import Access
from lang.scenario import KINDS, MODES, load, parse_int, shown
from mmcheck import __version__
from mmcheck.helptext import add_epilogs
from mmcheck.views.buddyview import VIEW_MODELS, buddy_view
from mmcheck.views.walkview import describe_walk
from properties.drivers import SpecRunner
from properties.replay import MODELS, replay
from spec.paging.permissions import Kind, Mode
from spec.paging.walk import walk

if TYPE_CHECKING:
    from rich.console import Console

    from proofs.progress import Meter


def cmd_replay(args: argparse.Namespace) -> int:
    import contextlib

    from properties.mutants import recorded_mutant

    scenario = load(args.file)
    mutant = None if args.no_mutant else recorded_mutant(scenario, args.mutant)
    if mutant is not None:
        print(f"replay: applying mutant {mutant.name} ({mutant.label}) to the implementation", file=sys.stderr)
    with (
        mutant.applied() if mutant is not None else contextlib.nullcontext(),
        replay_meter(len(scenario.ops), args.progress) as meter,
    ):
        report = replay(scenario, args.model, meter.update if meter.live else None)
    if args.json:
        out: dict[str, object] = {"results": report.results}
        if report.divergence is not None:
            d = report.divergence
            out["divergence"] = {"op": d.index, "reason": d.reason, "spec": repr(d.spec), "impl": repr(d.impl)}
        if report.expected_mismatch is not None:
            out["expected_mismatch"] = report.expected_mismatch
        print(json.dumps(out))
    else:
        for index, (op, result) in enumerate(zip(scenario.ops, report.results, strict=False)):
            print(f"{index:3} {json.dumps(op.to_json())}\n    -> {json.dumps(result)}")
    if report.divergence is not None:
        print(f"divergence: {report.divergence.describe()}", file=sys.stderr)
        return 1
    if report.expected_mismatch is not None:
        i = report.expected_mismatch
        assert scenario.expected_results is not None
        print(
            f"ops[{i}] gave {json.dumps(report.results[i])}, expected {json.dumps(scenario.expected_results[i])}",
            file=sys.stderr,
        )
        return 1
    return 0


LONG_SCENARIO = 2000
"""Scenarios of at least this many ops show ``replay``'s progress on a terminal (``--progress``: any, anywhere)."""


def stderr_console(force: bool) -> Console:
    """The console progress is drawn on: standard error, a terminal if it is one or if ``force``."""
    from rich.console import Console

    return Console(file=sys.stderr, force_terminal=True if force else None)


def replay_meter(ops: int, force: bool) -> Meter:
    """The progress of a replay on standard error: drawn on a terminal for long scenarios, or with ``force``;
    silent otherwise, so standard output is the same whether it shows or not."""
    import io

    from rich.console import Console

    from proofs.progress import Meter

    shown = force or ops >= LONG_SCENARIO
    return Meter("replay", "ops", total=ops, console=stderr_console(force) if shown else Console(file=io.StringIO()))


def cmd_walk(args: argparse.Namespace) -> int:
    va = parse_int(args.va, "--va")
    scenario = load(args.file)
    kernel = next((i for i, op in enumerate(scenario.ops) if op.layer == "kernel"), None)
    if kernel is not None:
        raise InvalidArgument(
            f"ops[{kernel}] ({scenario.ops[kernel].name}): walk follows the page tables a machine-level scenario "
            "builds with write_phys and set_cpu; the page tables of a kernel scenario are shown by mmcheck draw"
        )
    runner = SpecRunner(scenario.config)
    for op in scenario.ops:
        if not isinstance(op, Access):
            runner.apply(op)
    state = runner.state
    from spec.paging.mmu import check_cpu

    check_cpu(state, args.cpu)
    ctl = state.cpus[args.cpu]
    kind, mode = Kind(args.kind), Mode(args.mode)
    outcome = walk(state.memory, ctl, va, kind, mode, state.maxphyaddr)
    print("\n".join(describe_walk(va, ctl, kind, mode, outcome)))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import contextlib

    from mmcheck.views.explain import explain
    from properties.mutants import recorded_mutant

    scenario = load(args.file)
    mutant = recorded_mutant(scenario)
    if mutant is not None:
        print(f"explain: applying mutant {mutant.name} ({mutant.label}) to the implementation", file=sys.stderr)
    with mutant.applied() if mutant is not None else contextlib.nullcontext():
        lines, ok = explain(scenario)
    print(json.dumps({"ok": ok, "lines": lines}) if args.json else "\n".join(lines))
    return 0 if ok else 1


def cmd_explore(args: argparse.Namespace) -> int:
    """The spec explorer with its paths replayed in lockstep (default), or the lockstep explorer (``--lockstep``)."""
    from proofs.explore import Stats
    from proofs.progress import Meter

    # With --json the display, if any, goes to standard error: standard output is the JSON object alone.
    console = None
    if args.json:
        from rich.console import Console

        console = Console(file=sys.stderr)
    meter = Meter("explore", "states", budget=args.time_limit, console=console)
    every = 0.25 if meter.live else 5.0

    def progress(stats: Stats) -> None:
        if not args.json:
            meter.quiet(
                f"  ... {stats.distinct} states, {stats.transitions} transitions, depth {stats.depth}, "
                f"{stats.rate:,.0f} states/s, {stats.seconds:.0f}s"
            )
        meter.update(stats.distinct, f"depth {stats.depth}, {stats.transitions} transitions")

    max_states = MAX_STATES[args.layer] if args.max_states is None else args.max_states
    if max_states > MAX_STATES[args.layer]:
        raise InvalidArgument(
            f"--max-states: {max_states} is out of range for --layer {args.layer}: allowed 1..{MAX_STATES[args.layer]}"
        )
    if args.lockstep and args.sample is not None:
        raise InvalidArgument("--sample: the lockstep explorer replays no paths; leave out --lockstep or --sample")
    if args.lockstep and args.workers != 1:
        raise InvalidArgument("--workers: the lockstep explorer runs in one process; leave out --lockstep or --workers")
    mode = "" if args.lockstep else f" mode spec sample {SAMPLE if args.sample is None else args.sample}"
    if args.workers != 1:
        mode += f" workers {args.workers}"
    if args.layer == "smp":
        from proofs.smp_system import SmpBounds

        frames = 16 if args.frames is None else args.frames
        smp = SmpBounds(
            cpus=args.cpus, procs=args.procs, frames=frames, pages=args.pages, flights=args.flights,
            tlb_entries=args.tlb_entries,
        )  # fmt: skip
        arg = (
            f"ARG layer smp cpus {args.cpus} procs {args.procs} frames {frames} pages {args.pages} "
            f"flights {args.flights} tlb_entries {args.tlb_entries} depth {args.depth} max_states {args.max_states} "
            f"seed {args.seed} time_limit {args.time_limit}{mode}"
        )
    else:
        from proofs.systems import BuddyBounds

        frames = 10 if args.frames is None else args.frames
        bounds = BuddyBounds(frames, args.max_order, args.alloc_order, not args.no_bad_frees)
        arg = (
            f"ARG layer {args.layer} frames {frames} max_order {args.max_order} alloc_order {args.alloc_order} "
            f"depth {args.depth} max_states {args.max_states}"
            + (f" time_limit {args.time_limit}" if args.time_limit else "")
            + (f" seed {args.seed}" if mode and args.seed is not None else "")
            + mode
        )
    if not args.json:
        print(arg, flush=True)
    if not args.lockstep:
        return explore_spec_mode(args, smp if args.layer == "smp" else bounds, max_states, meter, progress, every)
    from proofs.explore import run_exploration

    if args.layer == "smp":
        from proofs.smp_system import SmpSystem

        with meter:
            result, saved = run_exploration(
                SmpSystem(smp, seed=args.seed), args.depth, max_states, "smp", progress, args.time_limit, every
            )
            meter.update(result.stats.distinct, "done")
    else:
        from proofs.systems import BuddySystem

        with meter:
            result, saved = run_exploration(
                BuddySystem(bounds), args.depth, max_states, args.layer, progress, args.time_limit, every
            )
            meter.update(result.stats.distinct, "done")
    if args.json:
        violation = None
        if saved is not None:
            violation = {"reason": result.reason, "ops": len(result.path or []), "scenario": str(saved)}
        print(json.dumps({"mode": "lockstep", "layer": args.layer, **stats_json(result.stats), "violation": violation}))
        return 1 if saved is not None else 0
    print_stats(result.stats)
    if saved is not None:
        print(f"violation after {len(result.path or [])} ops: {result.reason}")
        print(f"shortest counterexample saved: {saved} (mmcheck replay {saved}; mmcheck explain {saved})")
        return 1
    return 0


SAMPLE = 20
"""How many of the deepest paths the spec explorer replays in lockstep by default."""


def stats_json(stats: Any) -> dict[str, object]:
    """An exploration's figures for ``--json``."""
    return {
        "distinct": stats.distinct,
        "explored": stats.explored,
        "transitions": stats.transitions,
        "depth": stats.depth,
        "exhausted": stats.exhausted,
        "bound": stats.bound,
        "seconds": round(stats.seconds, 3),
        "states_per_second": round(stats.rate, 1),
        "visited_bytes": stats.visited_bytes,
    }


def print_stats(stats: Any) -> None:
    """The figures as a table on a terminal, else the one-line summary."""
    from mmcheck.views.console import explore_figures, is_terminal, print_table, stats_table

    if is_terminal():
        print_table(stats_table("explore", explore_figures(stats)))
    else:
        print(stats.summary())


def explore_spec_mode(
    args: argparse.Namespace, bounds: Any, max_states: int, meter: Meter, progress: Callable[[Any], None], every: float
) -> int:
    """``explore`` without ``--lockstep``: the spec explorer, then the replay of its paths in lockstep."""
    from proofs.spec_replay import explore_and_replay
    from proofs.spec_systems import SpecBuddySystem, SpecSmpSystem

    system: Any = SpecSmpSystem(bounds) if args.layer == "smp" else SpecBuddySystem(bounds)
    sample = SAMPLE if args.sample is None else args.sample
    seed = 0 if args.seed is None else args.seed
    with meter:
        checked = explore_and_replay(
            system, args.depth, args.layer, max_states, args.time_limit, progress, every, sample, seed,
            workers=args.workers,
        )  # fmt: skip
        meter.update(checked.result.stats.distinct, "done")
    result = checked.result
    if args.json:
        violation = None
        if result.path is not None:
            violation = {"reason": result.reason, "ops": len(result.path), "scenario": str(checked.replays[0][2])}
        replays = [
            {
                "path": label,
                "ops": len(replayed.ops),
                "agrees": replayed.ok,
                "divergence": None if replayed.divergence is None else replayed.divergence.describe(),
                "scenario": str(file),
            }
            for label, replayed, file in checked.replays
        ]
        out = {"mode": "spec", "layer": args.layer, **stats_json(result.stats), "violation": violation}
        print(json.dumps({**out, "replays": replays}))
        return 0 if checked.ok else 1
    print_stats(result.stats)
    print(checked.summary())
    if result.path is not None:
        print(f"spec violation after {len(result.path)} ops: {result.reason}")
        print(f"shortest counterexample saved: {checked.replays[0][2]}")
    for _, replayed, file in checked.diverged:
        assert replayed.divergence is not None
        print(f"diverges in lockstep after {len(replayed.ops)} ops: {replayed.divergence.describe()}")
        print(f"counterexample saved: {file} (mmcheck replay {file}; mmcheck explain {file})")
    if checked.replays:
        print(f"scenarios: {checked.replays[0][2].parent}/ (mmcheck replay FILE)")
    return 0 if checked.ok else 1


def cmd_quiz(args: argparse.Namespace) -> int:
    from mmcheck.views.quiz import generate, quiz_json, render, topic_list

    if args.list:
        print("\n".join(topic_list()))
        return 0
    quiz = generate(args.topic, args.seed, args.questions)
    print(json.dumps(quiz_json(quiz, args.c)) if args.json else "\n".join(render(quiz, answers=args.c)))
    return 0


def cmd_oracle_linux(args: argparse.Namespace) -> int:
    from oracles.linux import oracle as linux_oracle

    scenario = load(args.file)
    verdict = linux_oracle.run(scenario)
    if args.json:
        steps = [{"op": s.op.to_json(), **{side: r for side, r in s.results.items()}} for s in verdict.steps]
        out = {
            "steps": steps,
            "observations": {side: verdict.observations(side) for side in ("linux", *linux_oracle.MODELS)},
            "disagreements": [
                {"op": d.index, "model": d.model, "differs_in": list(d.what), "known": linux_oracle.known_divergence(d)}
                for d in verdict.disagreements
            ],
        }
        print(json.dumps(out))
    else:
        for step in verdict.steps:
            print(f"{step.index:3} {json.dumps(step.op.to_json())}")
            for side in ("linux", *linux_oracle.MODELS):
                print(f"    {side:5} -> {json.dumps(step.results[side])}")
                for line in step.snapshots[side].render():
                    print(f"             {line}")
    for d in verdict.disagreements:
        known = linux_oracle.known_divergence(d)
        print(
            f"disagreement: {d.describe()}" + (f"\n  (reported divergence {known})" if known else ""), file=sys.stderr
        )
    return 0 if verdict.agree else 1


def cmd_oracle_slab(args: argparse.Namespace) -> int:
    from lang.errors import OracleUnavailable
    from oracles.slab import sysfs

    if args.file is not None:
        raise InvalidArgument("oracle slab reads the live kernel's caches and takes no scenario file")
    why = sysfs.unavailable()
    if why is not None:
        raise OracleUnavailable(f"oracle slab: {why}")
    report = sysfs.live_report()
    for line in report.render():
        print(line)
    return 0 if report.agree else 1


def cmd_oracle_pressure(args: argparse.Namespace) -> int:
    from lang.errors import OracleUnavailable
    from oracles.linux import meminfo, pressure
    from oracles.linux.pressure_host import unavailable_pressure

    why = unavailable_pressure()
    if why is not None:
        raise OracleUnavailable(f"oracle pressure: {why}")
    sample = meminfo.live_sample()
    agree = all(sample.agrees(m) for m in meminfo.MODELS)
    out: dict[str, object] = {
        "mem_available": {"kernel": sample.kernel, **sample.models, "tolerance": sample.tolerance, "agree": agree}
    }
    if args.file is not None:
        verdict = pressure.run(load(args.file))
        agree = agree and verdict.agree
        out["agreement"] = {
            m: {
                q: [verdict.agreed[m][q], verdict.compared[m][q]] for q in pressure.QUANTITIES if verdict.compared[m][q]
            }
            for m in pressure.MODELS
        }
        out["abstractions"] = {m: dict(verdict.abstractions[m]) for m in pressure.MODELS}
        out["disagreements"] = [{"op": i, "model": m, "differs_in": list(w)} for i, m, w in verdict.disagreements]
        if not args.json:
            for step in verdict.steps:
                print(f"{step.index:3} {json.dumps(step.op.to_json())}")
                for side in ("linux", *pressure.MODELS):
                    print(f"    {side:5} -> {json.dumps(step.results[side])}")
                    for line in step.views[side].render():
                        print(f"             {line}")
            for model in pressure.MODELS:
                counts = ", ".join(
                    f"{q} {verdict.agreed[model][q]}/{verdict.compared[model][q]}"
                    for q in pressure.QUANTITIES
                    if verdict.compared[model][q]
                )
                known = ", ".join(f"{k} ({n} steps)" for k, n in sorted(verdict.abstractions[model].items()))
                print(
                    f"{model} agrees with linux on {counts}" + (f"; documented abstraction: {known}" if known else "")
                )
        for index, model, what in verdict.disagreements:
            print(f"disagreement: {verdict.describe(index, model, what)}", file=sys.stderr)
    if args.json:
        print(json.dumps(out))
    else:
        verb = "agrees" if agree else "DISAGREES"
        print(f"MemAvailable: {sample.describe()}: the models' si_mem_available {verb}")
    return 0 if agree else 1


def cmd_oracle_oom(args: argparse.Namespace) -> int:
    from lang.errors import OracleUnavailable
    from oracles.linux import oom
    from oracles.linux.pressure_host import cgroup_kind, unavailable_pressure

    case = oom.EXAMPLE if args.file is None else oom.load_case(args.file)
    why = unavailable_pressure() or (None if cgroup_kind() == "v1" else "no cgroup v1 memory controller")
    if why is not None:
        raise OracleUnavailable(f"oracle oom: {why}")
    refused = oom.negative_adj_refused() if min(case.adjs) < 0 else None
    if refused:
        raise OracleUnavailable(f"oracle oom: {refused}")
    from oracles.linux import oom_model

    kernel = oom.run_case(case)
    verdict = oom.check(case, kernel)
    why_not = oom_model.comparable(case)
    own = None if why_not else oom_model.model_run(case)
    own_problems = [] if own is None else oom_model.compare(kernel.killed, kernel.stuck, own)
    if args.json:
        out = {
            "case": case.to_json(),
            "oom_score": [{"process": i, "kernel": got, "model": want} for i, got, want in verdict.scores],
            "victims": [{"kernel": k, "model": m} for k, m in verdict.victims],
            "problems": verdict.problems,
            "own_run": {
                "kernel": kernel.killed,
                "model": None if own is None else list(own.victims),
                "not_compared": why_not,
                "problems": own_problems,
            },
        }
        print(json.dumps(out))
    else:
        for line in oom.report(verdict):
            print(line)
        if own is None:
            print(f"the model's own run not compared: {why_not}")
        else:
            print(f"the model's own run: the kernel killed {kernel.killed}, the model {list(own.victims)}")
            for problem in own_problems:
                print(f"DISAGREES: {problem}")
    return 0 if verdict.agree and not own_problems else 1


def cmd_oracle_thp(args: argparse.Namespace) -> int:
    from lang.errors import OracleUnavailable
    from oracles.linux import thp

    why = thp.unavailable_thp()
    if why is not None:
        raise OracleUnavailable(f"oracle thp: {why}")
    scenario = thp.example(thp.live_settings()) if args.file is None else load(args.file)
    verdict = thp.run(scenario)
    if args.json:
        out = {
            "agreement": {m: {q: list(v) for q, v in thp.agreement([verdict], m).items()} for m in thp.MODELS},
            "known": None if verdict.known is None else {"name": verdict.known[0], "op": verdict.known[1]},
            "disagreements": [{"op": i, "model": m, "differs_in": list(w)} for i, m, w in verdict.disagreements],
        }
        print(json.dumps(out))
    else:
        for line in thp.report(verdict):
            print(line)
    return 0 if verdict.agree else 1


def cmd_oracle_glibc(args: argparse.Namespace) -> int:
    from lang.errors import OracleUnavailable
    from lang.ualloc_ops import UallocOp
    from oracles.glibc import oracle as glibc_oracle

    why = glibc_oracle.unavailable()
    if why is not None:
        raise OracleUnavailable(f"oracle glibc: {why}")
    scenario = load(args.file)
    calls = [op for op in scenario.ops if isinstance(op, UallocOp)]
    if len(calls) != len(scenario.ops) or not calls:
        raise InvalidArgument("oracle glibc runs allocator ops (malloc, calloc, realloc, free, malloc_trim, mallopt)")
    comparison = glibc_oracle.compare(calls)
    if args.json:
        print(
            json.dumps(
                {
                    "glibc": [a.to_json() for a in comparison.glibc],
                    "model": [a.to_json() for a in comparison.model],
                    "first_difference": comparison.first_difference,
                }
            )
        )
    else:
        for index, op in enumerate(calls[: max(len(comparison.glibc), len(comparison.model))]):
            print(f"{index:3} {json.dumps(op.to_json())}")
            for side, answers in (("glibc", comparison.glibc), ("model", comparison.model)):
                shown = json.dumps(answers[index].to_json()) if index < len(answers) else "(no answer)"
                print(f"    {side:5} -> {shown}")
    if not comparison.agrees:
        print(f"disagreement: {comparison.describe()}", file=sys.stderr)
    return 0 if comparison.agrees else 1


def cmd_oracle(args: argparse.Namespace) -> int:
    from oracles.qemu.oracle import compare, run

    if args.oracle == "slab":
        return cmd_oracle_slab(args)
    if args.oracle == "pressure":
        return cmd_oracle_pressure(args)
    if args.oracle == "oom":
        return cmd_oracle_oom(args)
    if args.oracle == "thp":
        return cmd_oracle_thp(args)
    if args.file is None:
        raise InvalidArgument(f"oracle {args.oracle} needs a scenario file")
    if args.oracle == "glibc":
        return cmd_oracle_glibc(args)
    if args.oracle == "linux":
        return cmd_oracle_linux(args)
    scenario = load(args.file)
    qemu = run(scenario)
    verdict = compare(scenario, qemu)
    if args.json:
        out = {
            "results": qemu.results,
            "disagreements": [
                {"op": d.index, "reason": d.reason, "ours": d.ours, "qemu": d.qemu} for d in verdict.disagreements
            ],
            "deviations": dict(verdict.deviations),
        }
        print(json.dumps(out))
    else:
        for index, (op, result) in enumerate(zip(scenario.ops, qemu.results, strict=True)):
            print(f"{index:3} {json.dumps(op.to_json())}\n    qemu -> {json.dumps(result)}")
        for name, count in sorted(verdict.deviations.items()):
            print(f"documented QEMU deviation {name}: {count} op(s)")
    for d in verdict.disagreements:
        print(f"disagreement: {d.describe()}", file=sys.stderr)
    return 0 if verdict.agree else 1


def cmd_buddy(args: argparse.Namespace) -> int:
    from mmcheck.views.buddyview import buddy_json
    from mmcheck.views.console import buddy_table, is_terminal, print_table

    if args.json:
        print(json.dumps(buddy_json(load(args.file), args.model)))
        return 0
    if is_terminal() and not args.fragmentation:
        print_table(buddy_table(buddy_json(load(args.file), args.model)))
        return 0
    for line in buddy_view(load(args.file), args.model, args.fragmentation):
        print(line)
    return 0


def cmd_slab(args: argparse.Namespace) -> int:
    from mmcheck.views.slabview import slab_view

    for line in slab_view(load(args.file), args.model):
        print(line)
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmcheck.views.draw import check_targets, scenario_picture, to_text, write

    if args.output is not None:
        check_targets(Path(args.output), args.force)
    picture = scenario_picture(load(args.file), Path(args.file).name, args.step, args.pid)
    if args.json:
        print(json.dumps(picture.to_json()))
    elif args.output is None:
        print(to_text(picture), end="")
    else:
        for note in write(picture, Path(args.output), args.force):
            print(note)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmcheck import output
    from mmcheck.views.plot import FORMATS, write_plot

    target = Path(args.output)
    output.output_format(target, FORMATS)
    output.check_writable(target, args.force)
    print(write_plot(load(args.file), Path(args.file).name, target, args.model, args.force))
    return 0


def cmd_lru(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmcheck import output
    from mmcheck.views.console import is_terminal, print_table
    from mmcheck.views.lruview import FORMATS, lru_json, lru_lines, lru_table, write_lru

    if args.output is not None:
        target = Path(args.output)
        output.output_format(target, FORMATS)
        output.check_writable(target, args.force)
        print(write_lru(load(args.file), Path(args.file).name, target, args.model, args.force))
        return 0
    run = lru_json(load(args.file), args.model)
    if args.json:
        print(json.dumps(run))
    elif is_terminal():
        print_table(lru_table(run))
    else:
        print("\n".join(lru_lines(run)))
    return 0


def cmd_mutants(args: argparse.Namespace) -> int:
    from pathlib import Path

    from proofs.hunt import hunt_each, summary, table
    from proofs.progress import Meter
    from properties.mutants import select
    from properties.recording import counterexample_folder

    chosen = select(args.layer, args.name)
    if args.list:
        for m in chosen:
            print(f"{m.name:24} {m.layer:6} {m.mirrors}\n{'':31} catches it: {m.invariant}")
        return 0
    if not chosen:
        raise UnknownMutant("no catalogued mutant matches both --layer and --name")
    folder = Path(args.output) if args.output else counterexample_folder() / "mutants"
    layers = ",".join(args.layer or []) or "all"
    print(f"ARG layer {layers} mutants {len(chosen)} jobs {args.jobs} profile ci output {folder}", flush=True)
    order = {m.name: i for i, m in enumerate(chosen)}
    catches = []
    with Meter("mutants", "mutants", total=len(chosen)) as meter:
        for catch in hunt_each(chosen, folder, args.jobs):
            catches.append(catch)
            verdict = f"caught by {catch.caught_by}" if catch.killed else "SURVIVED"
            meter.plain(f"  {len(catches):2}/{len(chosen)} {catch.mutant}: {verdict}")
            meter.advance(f"{sum(not c.killed for c in catches)} survived")
    catches.sort(key=lambda c: order[c.mutant])
    print("\n".join(table(catches)))
    if args.verbose:
        for c in catches:
            for d in c.detections:
                saved = f", {d.steps} ops: {d.scenario}" if d.scenario else ""
                print(f"  {c.mutant} / {d.detector}: {d.status.value} in {d.seconds:.2f}s{saved} {d.detail}".rstrip())
    print(f"counterexamples: {folder}/<mutant>.<detector>.json (mmcheck replay FILE re-applies the mutant)")
    print("\n".join(summary(catches)))
    return 0 if all(c.killed and not c.problems for c in catches) else 1


MAX_STATES = {"buddy": 5_000_000, "smp": 500_000}
"""The most distinct states ``explore`` visits (also its default bound): an SMP state is some 20 KiB, a buddy one
about 1 KiB, so either bound stays within about 10 GiB."""
MAX_JOBS = 32
"""The most mutants ``mutants`` hunts at once (each in its own process, some 300 MiB)."""
MAX_TIME_LIMIT = 7 * 24 * 3600.0
"""The longest ``--time-limit``: a week, in seconds."""
MAX_OPTION_TEXT = 40


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a decimal integer in ``lo..hi`` (the message names the range; argparse names the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) <= MAX_OPTION_TEXT else None
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {shown(text)}")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range: allowed {lo}..{hi}")
        return value

    parse.__name__ = f"integer in {lo}..{hi}"
    return parse


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0, at most :data:`MAX_TIME_LIMIT`."""
    allowed = f"allowed more than 0, at most {MAX_TIME_LIMIT:.0f}"
    try:
        value = float(text) if len(text) <= MAX_OPTION_TEXT else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {shown(text)}: {allowed}")
    if not 0 < value <= MAX_TIME_LIMIT:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: {allowed}")
    return value


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line, cut in the middle to ``limit`` characters (its start and its end show)."""
    text = " ".join(text.split("\n"))
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return f"{text[:half]}\N{HORIZONTAL ELLIPSIS}{text[len(text) - (limit - 1 - half) :]}"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with where to find help), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def cmd_report(args: argparse.Namespace) -> int:
    import contextlib
    from pathlib import Path

    from mmcheck.views.report import build, check_scenario, graphviz, to_html
    from properties.mutants import recorded_mutant

    output = Path(args.output)
    targets = [output] + ([Path(args.screenshot)] if args.screenshot else [])
    for target in targets:
        if target.exists() and not args.force:
            raise MMCheckError(f"{target} exists: not overwritten without --force")
    scenario = load(args.file)
    check_scenario(scenario)
    mutant = recorded_mutant(scenario)
    if mutant is not None:
        print(f"report: applying mutant {mutant.name} ({mutant.label}) to the implementation", file=sys.stderr)
    dot = graphviz()
    with mutant.applied() if mutant is not None else contextlib.nullcontext():
        report = build(scenario, Path(args.file).name, dot)
    output.write_text(to_html(report), encoding="utf-8")
    note = "" if dot is not None else " (Graphviz dot not found: text drawings)"
    print(f"wrote {output}: {len(report.steps)} steps{note}")
    if args.screenshot:
        from mmcheck.views.browser import screenshot

        screenshot(output, Path(args.screenshot))
        print(f"wrote {args.screenshot}: the first step as Chromium shows it")
    stopped = report.stopped
    if stopped is not None:
        print(f"{stopped.status} at op {stopped.index}: {report.verdict}", file=sys.stderr)
    return report.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mmcheck",
        description="Model-checked x86-64 virtual memory: replay, walk and check scenarios.",
    )
    parser.add_argument("--version", action="version", version=f"mmcheck {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="run a scenario on the spec and the implementation and compare")
    p.add_argument("file", help="scenario JSON file (- for standard input)")
    p.add_argument("--json", action="store_true", help="print one JSON object with a results list")
    p.add_argument("--model", choices=MODELS, default="both", help="run one side only (default: both)")
    p.add_argument(
        "--mutant",
        default=None,
        help="apply this catalogued mutant to the implementation (default: the one the file records, if any)",
    )
    p.add_argument(
        "--no-mutant", action="store_true", help="replay on the real implementation even if the file records a mutant"
    )
    p.add_argument(
        "--progress",
        action="store_true",
        help=f"draw progress on standard error even off a terminal or below {LONG_SCENARIO} ops (default: on a "
        f"terminal, for scenarios of {LONG_SCENARIO} ops or more)",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("walk", help="explain the page walk of one address, step by step")
    p.add_argument("file", help="scenario JSON file that sets up memory and CPUs (its accesses are skipped)")
    p.add_argument("--va", required=True, help="linear address, e.g. 0x1010")
    p.add_argument("--kind", choices=KINDS, default="read")
    p.add_argument("--mode", choices=MODES, default="user")
    p.add_argument("--cpu", type=int, default=0)
    p.set_defaults(func=cmd_walk)

    p = sub.add_parser("explain", help="narrate a scenario step by step: the rule that fired, what changed")
    p.add_argument("file", help="scenario JSON file (a counterexample, a regression, an example)")
    p.add_argument("--json", action="store_true", help='print {"ok": ..., "lines": [...]}')
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("explore", help="model-check: every reachable state within a bound, breadth-first")
    p.add_argument("--layer", choices=("buddy", "smp"), default="buddy", help="which system to explore")
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="run spec, implementation and L0 together at every transition (refinement at every interleaving; "
        "slower, for small bounds) instead of the spec alone with its paths replayed in lockstep",
    )
    p.add_argument(
        "--sample",
        type=bounded_int(0, 10_000),
        default=None,
        help=f"spec explorer: how many of the deepest paths to replay in lockstep, 0..10000 (default {SAMPLE})",
    )
    p.add_argument("--json", action="store_true", help="print the figures, the violation and the replays as JSON")
    p.add_argument(
        "--frames", type=bounded_int(1, 256), default=None, help="physical frames, 1..256 (buddy: 10, smp: 16)"
    )
    p.add_argument("--max-order", type=bounded_int(0, 10), default=2, help="largest buddy order, 0..10")
    p.add_argument(
        "--alloc-order", type=bounded_int(0, 10), default=1, help="largest order the explorer allocates, 0..10"
    )
    p.add_argument("--depth", type=bounded_int(0, 1000), default=20, help="maximum operations on a path, 0..1000")
    p.add_argument(
        "--max-states",
        type=bounded_int(1, MAX_STATES["buddy"]),
        default=None,
        help=f"stop after this many distinct states (at most and by default: buddy {MAX_STATES['buddy']}, "
        f"smp {MAX_STATES['smp']})",
    )
    p.add_argument("--no-bad-frees", action="store_true", help="leave out frees with the wrong order")
    p.add_argument("--cpus", type=bounded_int(1, 8), default=2, help="smp: CPUs, 1..8")
    p.add_argument("--procs", type=bounded_int(1, 8), default=2, help="smp: live processes at most, 1..8")
    p.add_argument(
        "--pages", type=bounded_int(1, 16), default=2, help="smp: pages in the window mappings change, 1..16"
    )
    p.add_argument("--flights", type=bounded_int(1, 4), default=1, help="smp: mapping changes in flight at once, 1..4")
    p.add_argument(
        "--tlb-entries",
        type=bounded_int(0, 64),
        default=2,
        help="smp: entries of each CPU's TLB in the implementation, 0..64 (0: no TLB)",
    )
    p.add_argument(
        "--seed",
        type=bounded_int(0, (1 << 64) - 1),
        default=None,
        help="the seed of the sampled deepest paths (default 0); with --lockstep, smp: shuffle the order ops are "
        "tried in (same seed, same run)",
    )
    p.add_argument(
        "--time-limit",
        type=positive_seconds,
        default=None,
        help=f"stop after this many seconds (not exhausted), at most {MAX_TIME_LIMIT:.0f}",
    )
    p.add_argument(
        "--workers",
        type=bounded_int(1, 64),
        default=1,
        help="spec explorer: processes searching at once, the states partitioned by fingerprint, 1..64 (default 1; "
        "the number of cores is the most that helps)",
    )
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("quiz", help="a generated exercise; -c prints the worked answer")
    p.add_argument("--topic", default="walk", help="walk, permissions, buddy, cow, tlb or faults (default: walk)")
    p.add_argument("--list", action="store_true", help="name every topic with what it asks, and exit")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same problem")
    p.add_argument(
        "--questions",
        type=int,
        default=5,
        choices=range(1, 21),
        metavar="1..20",
        help="accesses (walk, permissions, cow), allocator ops (buddy), accesses before the change (tlb)",
    )
    p.add_argument("-c", action="store_true", help="show the answers, worked out step by step")
    p.add_argument("--json", action="store_true", help="print the problem (and with -c the answers) as JSON")
    p.set_defaults(func=cmd_quiz)

    p = sub.add_parser("oracle", help="run a scenario on an independent oracle and compare with spec and impl")
    p.add_argument(
        "oracle",
        choices=("qemu", "linux", "slab", "pressure", "oom", "thp", "glibc"),
        help="qemu: QEMU's x86 page walker in a bare-metal guest; linux: this machine's kernel, in real processes; "
        "slab: this kernel's slab caches (/sys/kernel/slab) against the slab geometry, no scenario file; "
        "pressure: MemAvailable against si_mem_available, and a pressure scenario (if given) in a memory cgroup "
        "with a swap file, with agreement counts per compared quantity; "
        "oom: the OOM killer's victims and oom_score in a cgroup v1 memory group (an OOM case file if given); "
        "thp: transparent huge pages in the kernel's own THP mode (AnonHugePages, the huge zero page, kpageflags), "
        "an example or a THP scenario; glibc: this machine's glibc 2.36 malloc in a process of its own against the "
        "ptmalloc model, every answer exactly",
    )
    p.add_argument(
        "file",
        nargs="?",
        default=None,
        help="scenario JSON file: MMU ops (write_phys, read_phys, set_cpu, access) for qemu, kernel ops for linux, "
        "kernel and pressure ops for pressure, an OOM case (limit, swap, tasks, offender_adj, grow) for oom, "
        "allocator ops (malloc, free, ...) for glibc",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object with a results list")
    p.set_defaults(func=cmd_oracle)

    p = sub.add_parser("buddy", help="show the buddy allocator's free lists, with block addresses, after each step")
    p.add_argument("file", help="scenario JSON file with alloc_pages / free_pages ops")
    p.add_argument(
        "--model",
        choices=VIEW_MODELS,
        default="spec",
        help="spec: free sets, lowest pfn first; impl: free lists in the order allocation takes them",
    )
    p.add_argument("--json", action="store_true", help="print the free lists at the start and after each op as JSON")
    p.add_argument(
        "--fragmentation",
        action="store_true",
        help="with each buddyinfo line, the extfrag_index and unusable_index lines (mm/vmstat.c formulas) and "
        "the orders compaction would be tried for (vm.extfrag_threshold 500)",
    )
    p.set_defaults(func=cmd_buddy)

    p = sub.add_parser("slab", help="show each slab cache's slabs and freelists after each step of a slab scenario")
    p.add_argument("file", help="scenario JSON file with slab ops (kmem_cache_create, kmalloc, kfree ...)")
    p.add_argument(
        "--model",
        choices=VIEW_MODELS,
        default="spec",
        help="spec: the spec's slab state; impl: the implementation's, read through the slab abstraction",
    )
    p.set_defaults(func=cmd_slab)

    p = sub.add_parser("mutants", help="apply each catalogued bug to the implementation; show which check catches it")
    p.add_argument("--layer", action="append", help="only mutants of this layer (repeatable): walk, buddy, ...")
    p.add_argument("--name", action="append", help="only the mutant of this name (repeatable)")
    p.add_argument(
        "--jobs",
        type=bounded_int(1, MAX_JOBS),
        default=min(os.cpu_count() or 1, MAX_JOBS),
        help=f"mutants hunted at once, 1..{MAX_JOBS} (default: cores)",
    )
    p.add_argument("--output", default=None, help="folder for counterexamples (default: <counterexamples>/mutants)")
    p.add_argument("--list", action="store_true", help="list the catalogue (name, layer, what it mirrors) and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="every detector's verdict, time and scenario")
    p.set_defaults(func=cmd_mutants)

    p = sub.add_parser(
        "draw", help="draw the page-table trees, shared and COW frames and free lists after a step of a scenario"
    )
    p.add_argument("file", help="scenario JSON file with kernel-level ops (spawn, mmap, fork, store ...)")
    p.add_argument("--step", type=int, default=None, help="draw the state after op K (default: after the last op)")
    p.add_argument("--pid", type=int, default=None, help="draw this process only (default: every live process)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="out.svg (needs Graphviz dot, else writes out.txt), out.dot or out.txt; default: text to stdout",
    )
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.add_argument("--json", action="store_true", help="print the graph description (nodes, edges, free lists) as JSON")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser(
        "plot",
        help="plot a scenario over its steps: a buddy one's free blocks per order, a kernel one's Rss and Pss per "
        "process and free frames (needs matplotlib)",
    )
    p.add_argument("file", help="scenario JSON file: buddy ops (alloc_pages, free_pages) or kernel ops")
    p.add_argument("-o", "--output", required=True, help="out.png, out.svg or out.pdf")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.add_argument(
        "--model", choices=VIEW_MODELS, default="spec", help="buddy: whose free lists to count (default: spec)"
    )
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("lru", help="show the four LRU lists after each step of a kernel scenario (memory pressure)")
    p.add_argument("file", help="scenario JSON file with kernel-level ops (store, file_read, reclaim ...)")
    p.add_argument(
        "--model",
        choices=VIEW_MODELS,
        default="spec",
        help="spec: the spec's lists, lowest frame first; impl: the implementation's lists, tail (next scanned) first",
    )
    p.add_argument("-o", "--output", default=None, help="draw frames by steps to out.svg, out.png or out.pdf")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.add_argument("--json", action="store_true", help="print the lists after each op as JSON")
    p.set_defaults(func=cmd_lru)

    p = sub.add_parser(
        "report", help="write one self-contained HTML page that steps through a scenario: story, results, drawings"
    )
    p.add_argument("file", help="scenario JSON file")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write (report.html)")
    p.add_argument("--force", action="store_true", help="overwrite the output (and screenshot) if they exist")
    p.add_argument("--screenshot", default=None, help="also write a PNG of the first step, taken by headless Chromium")
    p.set_defaults(func=cmd_report)

    add_catalogue_commands(sub)
    add_epilogs(sub)
    return parser


def add_catalogue_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """``new`` and ``scenarios``: a starting scenario of a kind, and the shipped scenarios."""
    from mmcheck.views.catalogue import KINDS

    p = sub.add_parser("new", help="write a starting scenario of a kind, with comments in its about, that replays")
    p.add_argument("kind", choices=KINDS, help="the layer it exercises")
    p.add_argument("-o", "--output", default=None, help="the file to write (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("scenarios", help="list the shipped scenarios: kind, op count and what each shows")
    p.add_argument(
        "folders", nargs="*", default=None, help="folders to list instead (default: the project's tests/scenarios)"
    )
    p.add_argument("--kind", choices=KINDS, default=None, help="only scenarios of this kind")
    p.add_argument("--json", action="store_true", help="print a JSON list of {path, kind, ops, about}")
    p.set_defaults(func=cmd_scenarios)


def cmd_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmcheck import output
    from mmcheck.views.catalogue import template

    text = template(args.kind)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    output.output_format(target, ("json",))
    output.check_writable(target, args.force)
    output.write_file(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    print(f"wrote {target}: a {args.kind} scenario (mmcheck replay {target})")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmcheck.views.catalogue import ROOT, SHIPPED, entries, listing

    found = entries([Path(f) for f in args.folders] if args.folders else SHIPPED)
    if args.kind is not None:
        found = [e for e in found if e.kind == args.kind]
    if args.json:
        print(json.dumps([{"path": str(e.path), "kind": e.kind, "ops": e.ops, "about": e.about} for e in found]))
    else:
        print("\n".join(listing(found, Path.cwd() if args.folders else ROOT)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
        return 141
    except KeyboardInterrupt:
        return 130
    return code


def run(argv: Sequence[str] | None) -> int:
    """Parse the arguments and run the command; bad input is one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except MMCheckError as exc:
        print(f"mmcheck: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"mmcheck: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    return code


def quiet_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush does not fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
