"""The live Linux kernel as an oracle for transparent huge pages: THP faults, the huge zero page, splits, fork.

A THP scenario runs on the models and on the kernel as the COW oracle runs one (:mod:`oracles.linux.oracle`: the
same workers, one live process per model process, the same window), with the THP policy the kernel already
has: the oracle reads ``/sys/kernel/mm/transparent_hugepage/{enabled,defrag,use_zero_page}`` and never writes
them (the machine is shared), so every ``thp`` op of a scenario must set the value the kernel has
(:func:`check_settings`).  On a machine in ``madvise`` mode a THP needs ``MADV_HUGEPAGE``
(mm/huge_memory.c ``__thp_vma_allowable_orders``: ``VM_HUGEPAGE`` or ``enabled=always``).

The oracle's workers advise every new mapping ``MADV_NOHUGEPAGE`` (so the COW oracle never meets a THP); the
models are given the same advice after each ``mmap`` here (:class:`ThpModelRun`), so a VMA's THP flags are the
same on every side and a THP exists only where the scenario advises ``hugepage``.

After every step, for every live process, both sides are compared as the COW oracle compares them (the op's
result, present pages, zero-page mappings, exclusive bits, frame sharing, Rss/Pss/USS/Anonymous of the window's
VMAs) and in:

- ``AnonHugePages``: the window's VMAs' in ``/proc/PID/smaps`` (fs/proc/task_mmu.c ``smaps_pmd_entry``: only a
  PMD-mapped anonymous THP counts) against the model's ``smaps``;
- ``huge zero page``: the pages mapping the huge zero page (``/proc/kpageflags`` ``KPF_ZERO_PAGE`` on a frame
  other than the 4 KiB zero page: fs/proc/page.c ``stable_page_flags`` sets it with ``KPF_THP`` for
  ``is_huge_zero_folio``) against the model's pages on its huge zero folio;
- ``kpageflags THP`` (the implementation only): the pages whose frame ``KPF_THP`` marks (an anonymous large
  folio), against the implementation's frames with ``PG_THP``.  The kernel splits a PMD at once but queues the
  folio for a deferred split (mm/huge_memory.c ``deferred_split_folio``, done by the shrinker), where the model
  splits the folio with the PMD; a page only the kernel marks, that the model maps as a small page of a split
  THP, is counted as ``deferred-split``, not as a disagreement.

Two kernel behaviours the model does not have stop a run where they happen, counted by name and not as
disagreements (:data:`KNOWN_DIVERGENCES`): a write to the huge zero page, which Linux 6.13 and later answer with a
new THP where 6.12 (the model) splits the PMD and copies 4 KiB (generated scenarios leave such stores out,
:func:`settle`), and a khugepaged collapse during the step (``thp_collapse_alloc`` grew).

The pages observed are a sample (:data:`SAMPLE`): subpages 0, 1, 255 and 511 of each of the two 2 MiB ranges
and the four pages after them.  ``vmstat``'s THP counters are machine-wide on the kernel and are not compared.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lang import ops
from lang.errors import MMCheckError, OracleError, OracleUnavailable, OracleUnsupported
from lang.pressure_ops import SmapsOp
from lang.scenario import Config, Op, Result, Scenario
from lang.thp_ops import ThpSetting
from oracles.linux.host import PAGE_SHIFT, WINDOW, unavailable
from oracles.linux.live import LinuxRun, ModelRun, Snapshot
from oracles.linux.oracle import check_frames, check_supported, differences
from properties.drivers import ImplRunner, SpecRunner

THP_SYSFS = Path("/sys/kernel/mm/transparent_hugepage")
KPAGEFLAGS = Path("/proc/kpageflags")
KPF_THP, KPF_ZERO_PAGE = 22, 24  # include/uapi/linux/kernel-page-flags.h
PG_THP = 32  # impl.mm.thp: the frame heads or is part of an anonymous THP
HUGE = 512
BASE = WINDOW[0]  # 1 GiB aligned: both 2 MiB ranges sit in one page directory
REGION = 2 * HUGE + 4
SUBPAGES = (0, 1, 255, 511)
SAMPLE = tuple(
    [(BASE >> PAGE_SHIFT) + head * HUGE + sub for head in range(2) for sub in SUBPAGES]
    + [(BASE >> PAGE_SHIFT) + 2 * HUGE + i for i in range(4)]
)
# Enough frames that the model never lacks an order-9 block where the kernel has one.
CONFIG = Config(frames=8192, cpus=2, max_order=10)
THP_QUANTITIES = ("AnonHugePages", "huge zero page", "kpageflags THP")
MODELS = ("spec", "impl")


# --- the kernel's policy ---------------------------------------------------------------------------


def live_settings() -> dict[str, str]:
    """The kernel's THP policy: the bracketed choice of ``enabled`` and ``defrag``, and ``use_zero_page``."""
    out = {}
    for name in ("enabled", "defrag"):
        text = (THP_SYSFS / name).read_text()
        chosen = [word[1:-1] for word in text.split() if word.startswith("[")]
        if len(chosen) != 1:
            raise OracleError(f"{THP_SYSFS / name} reads {text.strip()!r}: no single [chosen] value")
        out[name] = chosen[0]
    out["use_zero_page"] = (THP_SYSFS / "use_zero_page").read_text().strip()
    return out


def unavailable_thp() -> str | None:
    """Why the THP oracle cannot run here, or None when it can."""
    reason = unavailable()
    if reason:
        return reason
    if not (THP_SYSFS / "enabled").exists():
        return f"{THP_SYSFS} is missing: the kernel has no transparent huge pages (CONFIG_TRANSPARENT_HUGEPAGE)"
    if live_settings()["enabled"] == "never":
        return f"{THP_SYSFS}/enabled is never: the kernel makes no THPs (the oracle does not change it)"
    if not os.access(KPAGEFLAGS, os.R_OK):
        return f"{KPAGEFLAGS} is not readable (CONFIG_PROC_PAGE_MONITOR, root)"
    return None


def prelude(settings: Mapping[str, str]) -> list[Op]:
    """The kernel's policy as ``thp`` ops, one process running the window's region, advised ``hugepage``."""
    return [
        *(ThpSetting(name, settings[name]) for name in ("enabled", "defrag", "use_zero_page")),
        ops.Spawn(),
        ops.Switch(0, 1),
        ops.Mmap(1, BASE, REGION, "rw-"),
        ops.Madvise(1, BASE, REGION, "hugepage"),
    ]


def check_settings(scenario: Scenario, settings: Mapping[str, str]) -> None:
    """Refuse a ``thp`` op setting a value the kernel does not have: the oracle never writes sysfs."""
    for index, op in enumerate(scenario.ops):
        if isinstance(op, ThpSetting) and settings.get(op.setting) != op.value:
            raise OracleUnsupported(
                f"ops[{index}] (thp): {op.setting} {op.value!r}, but the kernel's is {settings.get(op.setting)!r}; "
                "the oracle does not change the shared machine's THP policy"
            )


# --- what each side shows of THPs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThpView:
    """One side's THP observations after a step."""

    anon_huge_kb: Mapping[int, int]
    huge_zero: frozenset[tuple[int, int]]
    present: frozenset[tuple[int, int]]
    thp_pages: frozenset[tuple[int, int]] | None  # None: not observed on this side


def kpageflags(pfns: Iterable[int]) -> dict[int, int]:
    """The ``/proc/kpageflags`` word of each frame."""
    out = {}
    fd = os.open(KPAGEFLAGS, os.O_RDONLY)
    try:
        for pfn in sorted(set(pfns)):
            out[pfn] = int.from_bytes(os.pread(fd, 8, 8 * pfn), "little")
    finally:
        os.close(fd)
    return out


def kernel_view(linux: LinuxRun, snap: Snapshot) -> ThpView:
    """What the kernel shows: smaps, pagemap and kpageflags of every live process."""
    present = {key: v.pfn for key, v in snap.pages.items() if v.present}
    flags = kpageflags(present.values())
    zero = {key for key, pfn in present.items() if flags[pfn] >> KPF_ZERO_PAGE & 1 and pfn != snap.zero_pfn}
    thp = {key for key, pfn in present.items() if flags[pfn] >> KPF_THP & 1 and not flags[pfn] >> KPF_ZERO_PAGE & 1}
    anon_huge = {pid: int(window_smaps(linux.proc(pid).real_pid)["AnonHugePages"]) for pid in snap.stats}
    return ThpView(anon_huge, frozenset(zero), frozenset(present), frozenset(thp))


class ThpModelRun(ModelRun):
    """A model answering the THP oracle's questions; every new mapping advised ``nohugepage``, as the workers do."""

    def apply(self, index: int, op: Op) -> Result:
        result = super().apply(index, op)
        if isinstance(op, ops.Mmap) and not op.huge and result.get("ok"):
            self.runner.apply(ops.Madvise(op.pid, op.va, op.pages, "nohugepage"))
        return result

    def view(self, snap: Snapshot) -> ThpView:
        kernel = self.runner.kernel.kernel
        zero_pfn = None if kernel is None else kernel.thp.zero_pfn
        present = {key: v.pfn for key, v in snap.pages.items() if v.present}
        zero = {key for key, pfn in present.items() if zero_pfn is not None and zero_pfn <= pfn < zero_pfn + HUGE}
        anon_huge = {pid: self.runner.apply(SmapsOp(pid)).get("AnonHugePages", 0) for pid in snap.stats}
        thp: frozenset[tuple[int, int]] | None = None
        if isinstance(self.runner, ImplRunner) and self.runner.kernel.kernel is not None:
            frame_flags = self.runner.kernel.kernel.flags  # PG_THP is on the folio's head frame
            thp = frozenset(key for key, pfn in present.items() if frame_flags[pfn - pfn % HUGE] & PG_THP)
        return ThpView(anon_huge, frozenset(zero), frozenset(present), thp)


def thp_differences(model: ThpView, kernel: ThpView) -> dict[str, str]:
    """Each THP quantity: ``agree``, ``differ`` or a known kind (``deferred-split``); absent when not observed."""
    out = {
        "AnonHugePages": "agree" if model.anon_huge_kb == kernel.anon_huge_kb else "differ",
        "huge zero page": "agree" if model.huge_zero == kernel.huge_zero else "differ",
    }
    if model.thp_pages is not None and kernel.thp_pages is not None:
        extra = kernel.thp_pages - model.thp_pages
        if model.thp_pages == kernel.thp_pages:
            out["kpageflags THP"] = "agree"
        elif model.thp_pages <= kernel.thp_pages and extra <= model.present:
            out["kpageflags THP"] = "deferred-split"  # small pages on the model, of a folio not yet split here
        else:
            out["kpageflags THP"] = "differ"
    return out


# --- divergences the kernel's version explains -------------------------------------------------------

# The model follows Linux 6.12; a newer kernel may differ on purpose.  Each: name -> why.
KNOWN_DIVERGENCES = {
    "huge-zero-wp-thp": (
        "a write to the huge zero page: Linux 6.12 splits the PMD and copies one 4 KiB page (mm/huge_memory.c "
        "do_huge_pmd_wp_page: is_huge_zero_pmd -> fallback); since 'mm: Allocate THP on hugezeropage wp-fault' "
        "(Linux 6.13, do_huge_zero_wp_pmd) the kernel maps a new THP instead"
    ),
    "khugepaged-collapse": (
        "khugepaged collapsed a range while the step ran (thp_collapse_alloc grew): it scans VM_HUGEPAGE VMAs every "
        "scan_sleep_millisecs (10 s) and collapses 512 PTEs with up to max_ptes_none (511) empty "
        "(mm/khugepaged.c hpage_collapse_scan_pmd), on its own timer; the model has no khugepaged yet"
    ),
}


def collapses() -> int:
    """``thp_collapse_alloc`` of ``/proc/vmstat``: the THPs khugepaged (or MADV_COLLAPSE) made, machine-wide."""
    for line in Path("/proc/vmstat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "thp_collapse_alloc":
            return int(value)
    return 0


def huge_zero_write(op: Op, before: ThpView | None, kernel_pid: int | None) -> bool:
    """``op`` is a store to a page the kernel mapped on its huge zero page before the step."""
    if not isinstance(op, ops.Store) or before is None or kernel_pid is None:
        return False
    return (kernel_pid, op.va >> PAGE_SHIFT) in before.huge_zero or any(
        pid == kernel_pid and vpn >> 9 == op.va >> PAGE_SHIFT >> 9 for pid, vpn in before.huge_zero
    )


# --- running ---------------------------------------------------------------------------------------

SMAPS_COMPARED = ("Rss", "Anonymous", "AnonHugePages")


def smaps_fields(result: Result) -> Result:
    """The ``smaps`` fields the THP oracle compares (the window's VMAs on the kernel, the process on the model)."""
    return {key: result.get(key, 0) for key in SMAPS_COMPARED}


def window_smaps(pid: int) -> Result:
    """``Rss``, ``Anonymous`` and ``AnonHugePages`` (kB) summed over the window's VMAs of ``/proc/PID/smaps``."""
    totals = dict.fromkeys(SMAPS_COMPARED, 0)
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = WINDOW[0] <= lo and hi <= WINDOW[1]
            elif inside and head[:-1] in totals:
                totals[head[:-1]] += int(line.split()[1])
    return totals


def kernel_apply(linux: LinuxRun, op: Op) -> Result:
    """One op on the kernel: ``thp`` ops are checked, not run (:func:`check_settings`); ``smaps`` reads the window."""
    if isinstance(op, ThpSetting):
        return {"ok": True}
    if isinstance(op, SmapsOp):
        return window_smaps(linux.proc(op.pid).real_pid)
    return linux.apply(op)


@dataclass
class ThpStep:
    """One op on every side: results, and each model's differences from the kernel by quantity."""

    index: int
    op: Op
    results: dict[str, Result]
    verdicts: dict[str, dict[str, str]]
    kernel: ThpView


@dataclass
class ThpRun:
    """All steps of one scenario, and the first disagreeing step of each model."""

    steps: list[ThpStep] = field(default_factory=list)
    disagreements: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)
    known: tuple[str, int] | None = None  # the known divergence the run stopped at, and its op

    @property
    def agree(self) -> bool:
        return not self.disagreements

    def counts(self) -> Counter[tuple[str, str, str]]:
        """(model, quantity, verdict) over every step."""
        return Counter((m, q, v) for step in self.steps for m, per in step.verdicts.items() for q, v in per.items())


def on_huge_zero(spec: SpecRunner, pid: int, va: int) -> bool:
    """The spec maps ``va`` of ``pid`` on its huge zero page."""
    kernel = spec.kernel.kernel
    if kernel is None or kernel.thp.zero_pfn is None or pid not in kernel.procs:
        return False
    got = spec.apply(ops.PagemapOp(pid, va))
    return bool(got["present"]) and kernel.thp.zero_pfn <= got["pfn"] < kernel.thp.zero_pfn + HUGE


def settle(config: Config, program: Sequence[Op], about: str) -> Scenario:
    """``program`` without its stores to the huge zero page (:data:`KNOWN_DIVERGENCES`), cut before the first op
    the spec refuses (a split of a THP two processes map is not modelled)."""
    spec = SpecRunner(config)
    kept: list[Op] = []
    running = [0] * config.cpus
    for op in program:
        if isinstance(op, ops.Store) and on_huge_zero(spec, running[op.cpu], op.va):
            continue
        try:
            spec.apply(op)
        except MMCheckError:
            break
        kept.append(op)
        if isinstance(op, ops.Switch):
            running[op.cpu] = op.pid
        if isinstance(op, ops.Mmap) and not op.huge:
            spec.apply(ops.Madvise(op.pid, op.va, op.pages, "nohugepage"))
    return Scenario(config, tuple(kept), about=about)


def run(scenario: Scenario, models: Sequence[str] = MODELS) -> ThpRun:
    """Run ``scenario`` on the live kernel and on each model, comparing after every step.

    Raises :class:`OracleUnavailable` (not root, no THP), :class:`OracleUnsupported` (a ``thp`` op the kernel's
    policy contradicts, or what the COW oracle refuses) and :class:`ReplayInputError` (an op a model refuses).
    """
    reason = unavailable_thp()
    if reason:
        raise OracleUnavailable(reason)
    check_settings(scenario, live_settings())
    check_supported(replace(scenario, ops=tuple(op for op in scenario.ops if not isinstance(op, SmapsOp))))
    pages = SAMPLE
    sides = {m: ThpModelRun(scenario.config, m, pages) for m in models}
    model_steps = {}
    for m, side in sides.items():
        steps = []
        for i, op in enumerate(scenario.ops):
            result = side.apply(i, op)
            snap = side.snapshot()
            steps.append((result, snap, side.view(snap)))
        model_steps[m] = steps
    check_frames(scenario, {m: [(r, s) for r, s, _ in steps] for m, steps in model_steps.items()})
    verdict = ThpRun()
    before: ThpView | None = None
    with LinuxRun(scenario.config, pages) as linux:
        for index, op in enumerate(scenario.ops):
            pid = linux.current[op.cpu] if isinstance(op, ops.Store) and op.cpu < len(linux.current) else None
            collapsed = collapses()
            result = kernel_apply(linux, op)
            snap = linux.snapshot()
            view = kernel_view(linux, snap)
            if huge_zero_write(op, before, pid):
                verdict.known = ("huge-zero-wp-thp", index)
                break
            if collapses() != collapsed:
                verdict.known = ("khugepaged-collapse", index)
                break
            before = view
            results = {"linux": result}
            verdicts: dict[str, dict[str, str]] = {}
            for m in models:
                m_result, m_snap, m_view = model_steps[m][index]
                results[m] = m_result
                base = differences(
                    op, smaps_fields(m_result) if isinstance(op, SmapsOp) else m_result, result, m_snap, snap
                )
                per = {name: "differ" if name in base else "agree" for name in QUANTITIES}
                per.update(thp_differences(m_view, view))
                verdicts[m] = per
                bad = tuple(q for q, v in per.items() if v == "differ")
                if bad and not any(d[1] == m for d in verdict.disagreements):
                    verdict.disagreements.append((index, m, bad))
            verdict.steps.append(ThpStep(index, op, results, verdicts, view))
    return verdict


# The COW oracle's quantities (oracles.linux.oracle.differences), by the names it reports.
QUANTITIES = (
    "result",
    "live processes",
    "present pages",
    "zero-page mappings",
    "exclusive bits",
    "frame sharing",
    "rss/pss/uss/anon",
)


# --- generated scenarios ---------------------------------------------------------------------------

STARTS = (BASE, BASE, BASE + 0x200000, BASE + 0x1000, BASE + 0x200000 - 0x1000, BASE + 0x100000)
LENGTHS = (1, 2, 511, 512, 512, 513, 1024, 1028)
PROTS = ("rw-", "rw-", "r--", "---")
CHANGES = ("munmap", "mprotect", "dontneed", "hugepage", "nohugepage", "mmap")


def generate(seed: int, settings: Mapping[str, str], steps: int = 14) -> Scenario:
    """A THP scenario: the prelude, then ``steps`` random stores, loads, range changes on and off the 2 MiB
    boundaries, one fork at most, the child's exit; cut where the spec refuses (:func:`cut_at_refusal`)."""
    rng = random.Random(seed)
    program = prelude(settings)
    child, next_pid = 0, 2
    for _ in range(steps):
        kind = rng.choices(("store", "load", "change", "fork", "exit"), (5, 3, 4, 1, 1))[0]
        if kind == "fork" and not child:
            program += [ops.Fork(1), ops.Switch(1, next_pid)]
            child, next_pid = next_pid, next_pid + 1
        elif kind == "exit" and child:
            program += [ops.Exit(child)]
            child = 0
        elif kind in ("store", "load"):
            cpu = 1 if child and rng.random() < 0.3 else 0
            va = (rng.choice(SAMPLE) << PAGE_SHIFT) + 8 * rng.randrange(2)
            program.append(ops.Store(cpu, va, rng.choice((1, 2, 0xBEEF))) if kind == "store" else ops.Load(cpu, va))
        elif kind == "change":
            change, va, pages = rng.choice(CHANGES), rng.choice(STARTS), rng.choice(LENGTHS)
            pid = child if child and rng.random() < 0.3 else 1
            if change == "munmap":
                program.append(ops.Munmap(pid, va, pages))
            elif change == "mprotect":
                program.append(ops.Mprotect(pid, va, pages, rng.choice(PROTS)))
            elif change == "mmap":
                program.append(ops.Mmap(pid, va, pages, rng.choice(PROTS)))
            else:
                program.append(ops.Madvise(pid, va, pages, change))
    return settle(CONFIG, program, f"generated THP scenario, seed {seed}")


def agreement(runs: Iterable[ThpRun], model: str = "impl") -> dict[str, tuple[int, int]]:
    """Per quantity: (steps agreeing or of a known kind, steps compared), for one model."""
    agreed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for one in runs:
        for (m, quantity, v), n in one.counts().items():
            if m == model:
                total[quantity] += n
                agreed[quantity] += n if v != "differ" else 0
    return {q: (agreed[q], total[q]) for q in total}


def example(settings: Mapping[str, str]) -> Scenario:
    """The THP case ``mmcheck oracle thp`` runs without a file: a THP written, the huge zero page read, a fork
    sharing both, the child's exit, the THP reused by its one remaining mapping, then split at an munmap edge."""
    program = [
        *prelude(settings),
        ops.Store(0, BASE + 8, 7),
        ops.Load(0, BASE + 0x200000),
        ops.Fork(1),
        ops.Switch(1, 2),
        ops.Load(1, BASE + 8),
        ops.Exit(2),
        ops.Store(0, BASE + 16, 9),
        ops.Munmap(1, BASE + 0x1000, 1),
        ops.Mprotect(1, BASE + 0x1FF000, 2, "r--"),
    ]
    return settle(CONFIG, program, "the THP oracle's example")


def report(verdict: ThpRun, models: Sequence[str] = MODELS) -> list[str]:
    """Agreement per model and quantity, the known divergence the run stopped at, the first disagreements."""
    lines = []
    for model in models:
        counts = agreement([verdict], model)
        deferred = sum(n for (m, q, v), n in verdict.counts().items() if m == model and v == "deferred-split")
        text = ", ".join(f"{q} {a}/{t}" for q, (a, t) in counts.items())
        lines.append(f"{model} agrees with linux on {text}" + (f" ({deferred} deferred-split)" if deferred else ""))
    if verdict.known:
        name, index = verdict.known
        lines.append(f"stopped at ops[{index}]: known divergence {name}: {KNOWN_DIVERGENCES[name]}")
    for index, model, what in verdict.disagreements:
        lines.append(f"disagreement: ops[{index}] ({verdict.steps[index].op.name}) {model}: {', '.join(what)}")
    return lines
