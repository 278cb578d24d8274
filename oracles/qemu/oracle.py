"""QEMU's x86 page walker as a second, independent oracle for MMU scenarios.

A tiny bare-metal guest (``oracles/qemu/``, built here with gcc and ld into a
cache folder) boots under ``qemu-system-x86_64 -cpu max -accel tcg`` through
multiboot, receives the scenario's operations as a multiboot module, writes
the scenario's words at their own guest-physical addresses, and performs
every access on QEMU's software MMU under the scenario's CR3 and control bits.
Many scenarios run in one boot; one boot serves one paging mode (4 or 5
levels) and one MAXPHYADDR, since CR4.LA57 only changes with paging off (Intel
SDM Vol. 3A 4.1.1) and ``phys-bits`` is a property of the virtual CPU.

Every access runs with CR4.PCIDE=0, whatever the config's ``pcid`` says:
QEMU's TCG offers no PCID (``-cpu max`` has CPUID.01H:ECX.PCID clear, and
``+pcid`` is dropped with a warning), so PCIDE cannot be set.  A ``pcid: false``
scenario thus runs as configured, and a ``pcid: true`` one is compared just as
faithfully, because what the oracle compares does not depend on PCIDE: the
walk, the permission checks, the error code and the A/D writes are the same
with PCIDE=0 and 1 (Intel SDM Vol. 3A 4.5-4.8; PCIDE only chooses which PCID
tags a TLB entry and which entries an invalidation drops, 4.10.1), and the
one place CR3's meaning differs, bits 11:0 (the PCID with PCIDE=1; PWT and PCD
with PCIDE=0), is 0 in every CR3 the oracle accepts (a page-aligned frame).
No TLB entry survives to an access either: the MOV to CR3 before each one
drops every entry (PCIDE=0 and CR4.PGE=0).  The TLB rules of ``pcid`` are the
SMP layer's, checked by the SMP machines, not here.

What comes back, per operation, in the shape of ``mmcheck replay --json``:

- ``write_phys`` and ``set_cpu``: ``{"ok": true}`` (``set_cpu`` only changes
  what the driver sends with each later access);
- ``read_phys``: ``{"value": "0x.."}``, read from guest memory, so it shows
  the accessed and dirty bits QEMU set;
- ``access``: ``{"fault": {"vector": 14, "error_code": E}}``, ``{"fault":
  {"vector": 13}}``, or ``{"pa": null}`` for a successful access.  The
  processor does not tell software the physical address it reached, so the
  oracle only says the access succeeded; the physical address is checked
  through the spec and the implementation only.

After each access the guest also reports every scenario word the processor
changed (its A/D writes), so :func:`compare` can check them against what the
SDM allows for that very access (:func:`spec.paging.walk.ad_update_allowed`), not
only at the end.

How each access is made (see ``oracles/qemu/``): a read loads the byte at the
address; a write loads it and stores it back (a locked read-modify-write
would not do: single-threaded TCG splits it into a load and a store, so its
fault would carry the load's error code), and when the load faults, a plain
store is tried to get the write's error code.  Both run at CPL 0 or, after
IRETQ, at CPL 3.  A fetch is an IRETQ to the address with RFLAGS.TF=1: a #PF
with CR2 and RIP equal to the address means the fetch faulted; any later
event means it succeeded.  Nothing is placed at the target (that would change
scenario memory); the one instruction that runs there finds every general
register non-canonical, so zero bytes (``add [rax], al``) raise #GP without
touching memory.  The extra load of a write sets only A bits, which the SDM
allows a write that then faults to have set as well (4.8).

What the oracle refuses (:class:`OracleUnsupported`), rather than answer
wrongly: scenario memory above 64 MiB (the guest lives there); words in the
legacy hole 0xa0000-0xfffff (not RAM on a PC); present entries pointing into
the hole or outside scenario memory (the spec calls a walk off the end of
memory a machine check, QEMU would read guest memory); an access through the
top-level slot 511 the guest borrows, or a present entry pointing at a top-level
table (a walk could then read slot 511 at a lower level); and a
scenario that accesses memory under both 4- and 5-level paging.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lang.errors import OracleError, OracleUnavailable, OracleUnsupported
from lang.hardware_ops import Access, ReadPhys, SetCpu, WritePhys
from lang.scenario import Result, Scenario
from properties.drivers import SpecRunner
from properties.replay import replay
from spec.paging.address import PAGE_SHIFT, level_shift
from spec.paging.permissions import PF_P, PF_RSVD, Kind
from spec.paging.physmem import PhysMemory
from spec.paging.pte import PS, has_reserved_bits
from spec.paging.walk import Outcome, PageFault, ad_update_allowed

ROOT = Path(__file__).resolve().parents[2]
GUEST_DIR = Path(__file__).resolve().parent
GUEST_SOURCES = ("boot.S", "guest.c", "guest.ld")
QEMU = "qemu-system-x86_64"

GUEST_BASE = 0x4000000
LEGACY_HOLE = (0xA0000, 0x100000)
SLOT = 511
PAGE = 4096

MAGIC = int.from_bytes(b"MMCHKQ01", "little")
CMD_BEGIN, CMD_WRITE, CMD_READ, CMD_ACCESS, CMD_END = 1, 2, 3, 4, 5
KIND_CODES = {"read": 0, "write": 1, "fetch": 2}
FLAG_BITS = {"user": 2, "wp": 3, "smep": 4, "smap": 5, "ac": 6, "nxe": 7}

CFLAGS = [
    *("-O2", "-ffreestanding", "-fno-builtin", "-fno-pic", "-fno-pie", "-mcmodel=kernel", "-mno-red-zone"),
    *("-mgeneral-regs-only", "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-Wall", "-Wextra", "-Werror"),
]

# Ways QEMU 7.2 departs from the SDM, each accepted only in its exact form.
DEVIATIONS = {
    "rsvd-without-p": (
        "QEMU 7.2 reports a reserved-bit #PF with error code bit 0 (P) clear; "
        "Intel SDM Vol. 3A 4.7 sets RSVD only together with P=1"
    ),
    "a-on-reserved-large-leaf": (
        "QEMU 7.2 sets A in a 2 MiB or 1 GiB leaf before it checks the leaf's reserved address bits "
        "(20:13 or 29:13), so the reserved-bit #PF leaves A set in the entry that caused it; "
        "Intel SDM Vol. 3A 4.8 sets A only in entries used for translation, and such an entry ends it (4.7)"
    ),
}


def missing_tools() -> str | None:
    """Why the oracle cannot run here (a missing program), or None when it can."""
    for tool in (QEMU, "gcc", "ld", "objcopy"):
        if shutil.which(tool) is None:
            hint = " (apt-get install qemu-system-x86)" if tool == QEMU else " (apt-get install gcc binutils)"
            return f"{tool} not found on PATH{hint}"
    return None


def cache_root() -> Path:
    """Where the QEMU oracles cache their builds: ``$MMCHECK_CACHE`` or ``.cache/`` at the project root (not in git)."""
    return Path(os.environ.get("MMCHECK_CACHE", ROOT / ".cache"))


def cache_folder() -> Path:
    """Where built guests go: ``qemu-oracle/`` in :func:`cache_root`."""
    return cache_root() / "qemu-oracle"


def build_guest() -> Path:
    """The guest image, built from ``oracles/qemu/`` once per source version and cached."""
    reason = missing_tools()
    if reason:
        raise OracleUnavailable(reason)
    digest = hashlib.sha256(" ".join(CFLAGS).encode())
    for name in GUEST_SOURCES:
        digest.update((GUEST_DIR / name).read_bytes())
    target = cache_folder() / digest.hexdigest()[:16] / "guest.bin"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        objects = [str(work / "boot.o"), str(work / "guest.o")]
        steps = [
            ["gcc", "-c", *CFLAGS, "-o", str(work / "guest.o"), str(GUEST_DIR / "guest.c")],
            ["gcc", "-c", "-fno-pic", "-o", str(work / "boot.o"), str(GUEST_DIR / "boot.S")],
            ["ld", "-T", str(GUEST_DIR / "guest.ld"), "-nostdlib", "-o", str(work / "guest.elf"), *objects],
            ["objcopy", "-O", "binary", str(work / "guest.elf"), str(work / "guest.bin")],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode:
                raise OracleError(f"building the guest failed: {' '.join(step)}\n{done.stderr}")
        os.replace(work / "guest.bin", target)
    return target


@dataclass(frozen=True, slots=True)
class Controls:
    """One CPU's control state as the driver tracks it between ``set_cpu`` ops."""

    cr3: int = 0
    wp: bool = False
    smep: bool = False
    smap: bool = False
    ac: bool = False
    nxe: bool = False
    la57: bool = False


def access_flags(op: Access, ctl: Controls) -> int:
    """The guest's flag word for one access."""
    flags = KIND_CODES[op.kind] | (op.mode == "user") << FLAG_BITS["user"]
    for name in ("wp", "smep", "smap", "ac", "nxe"):
        flags |= bool(getattr(ctl, name)) << FLAG_BITS[name]
    return flags


def top_index(va: int, la57: bool) -> int:
    """Index into the top-level table (PML5 or PML4) of ``va``."""
    return (va >> (48 if la57 else 39)) & 0x1FF


def is_canonical(va: int, la57: bool) -> bool:
    """Bits 63:N-1 all equal, N = 57 or 48 (SDM Vol. 3A 4.5)."""
    top = va >> (56 if la57 else 47)
    return top in (0, (1 << (64 - (56 if la57 else 47))) - 1)


def in_hole(pa: int) -> bool:
    """True for the PC's legacy VGA/BIOS window, which is not RAM."""
    return LEGACY_HOLE[0] <= pa < LEGACY_HOLE[1]


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked scenario ready for the guest: its paging mode and its command words."""

    la57: bool
    maxphyaddr: int
    commands: tuple[tuple[int, int, int, int], ...]


def plan(scenario: Scenario) -> Plan:
    """Check the scenario is within what the oracle runs faithfully and encode it.

    Raises :class:`OracleUnsupported` naming the op or word at fault.
    """
    config = scenario.config
    size = config.frames * PAGE
    if size > GUEST_BASE:
        raise OracleUnsupported(f"config.frames={config.frames}: the oracle runs at most {GUEST_BASE // PAGE} frames")
    cpus = [Controls() for _ in range(config.cpus)]
    commands: list[tuple[int, int, int, int]] = [(CMD_BEGIN, size, 0, 0)]
    modes: set[bool] = set()
    top_frames: set[int] = set()
    present_targets: dict[int, int] = {}
    addr_mask = ((1 << config.maxphyaddr) - 1) & ~(PAGE - 1)
    for index, op in enumerate(scenario.ops):
        where = f"ops[{index}] ({op.name})"
        if isinstance(op, (WritePhys, ReadPhys)):
            if op.pa % 8 or not 0 <= op.pa < size:
                raise OracleUnsupported(f"{where}: pa {op.pa:#x} is not an aligned word inside memory")
            if in_hole(op.pa):
                raise OracleUnsupported(f"{where}: pa {op.pa:#x} lies in the legacy hole 0xa0000-0xfffff")
        if isinstance(op, WritePhys):
            if op.value & 1:
                present_targets[op.pa] = op.value & addr_mask
            else:
                present_targets.pop(op.pa, None)
            commands.append((CMD_WRITE, op.pa, op.value, 0))
        elif isinstance(op, ReadPhys):
            commands.append((CMD_READ, op.pa, 0, 0))
        elif isinstance(op, SetCpu):
            if op.cpu >= config.cpus:
                raise OracleUnsupported(f"{where}: cpu {op.cpu} does not exist")
            if op.cr3 % PAGE or not 0 <= op.cr3 < size or in_hole(op.cr3):
                raise OracleUnsupported(f"{where}: cr3 {op.cr3:#x} is not a frame of usable memory")
            cpus[op.cpu] = Controls(op.cr3, op.wp, op.smep, op.smap, op.ac, op.nxe, op.la57)
        elif isinstance(op, Access):
            if op.cpu >= config.cpus:
                raise OracleUnsupported(f"{where}: cpu {op.cpu} does not exist")
            ctl = cpus[op.cpu]
            modes.add(ctl.la57)
            top_frames.add(ctl.cr3)
            if is_canonical(op.va, ctl.la57) and top_index(op.va, ctl.la57) == SLOT:
                raise OracleUnsupported(f"{where}: va {op.va:#x} uses top-level slot {SLOT}, which the guest borrows")
            check_present_targets(present_targets, top_frames, size, where)
            commands.append((CMD_ACCESS, op.va, ctl.cr3, access_flags(op, ctl)))
        else:
            raise OracleUnsupported(f"{where}: the QEMU oracle runs MMU ops only")
    if len(modes) > 1:
        raise OracleUnsupported("the scenario accesses memory under both 4- and 5-level paging")
    check_present_targets(present_targets, top_frames, size, "final memory")
    commands.append((CMD_END, 0, 0, 0))
    return Plan(modes.pop() if modes else False, config.maxphyaddr, tuple(commands))


def check_present_targets(targets: dict[int, int], top_frames: set[int], size: int, where: str) -> None:
    """Present words must point inside usable memory, and not at a top-level table.

    A word that points at a top-level table could let a walk read that
    table's slot 511 as a lower-level entry, which would find the guest's
    entry instead of the scenario's.  (The scenario's own word in slot 511 is
    saved and restored around each access, and only a walk through slot 511
    would read it, which the access check refuses.)
    """
    for pa, target in targets.items():
        if target >= size or in_hole(target):
            raise OracleUnsupported(f"{where}: the present word at {pa:#x} points to {target:#x}, not usable memory")
        if target in top_frames:
            raise OracleUnsupported(f"{where}: the present word at {pa:#x} points at the top-level table {target:#x}")


def encode(plans: Sequence[Plan]) -> bytes:
    """The guest's input module: a header, then four 64-bit words per command."""
    la57 = {p.la57 for p in plans}
    assert len(la57) == 1, "one paging mode per boot"
    out = [struct.pack("<4Q", MAGIC, int(la57.pop()), 0, 0)]
    for p in plans:
        out.extend(struct.pack("<4Q", *command) for command in p.commands)
    return b"".join(out)


@dataclass
class QemuRun:
    """What QEMU did with one scenario: a result per op and, per access, the words it changed."""

    results: list[Result] = field(default_factory=list)
    changes: list[dict[int, int]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)


def boot(plans: Sequence[Plan], timeout: float | None = None) -> list[str]:
    """Run the plans in one QEMU boot; the guest's output lines from READY to DONE."""
    image = build_guest()
    maxphyaddr = {p.maxphyaddr for p in plans}
    assert len(maxphyaddr) == 1, "one MAXPHYADDR per boot"
    if timeout is None:
        timeout = 60.0 + 0.5 * len(plans)
    with tempfile.TemporaryDirectory(prefix="mmcheck-qemu-") as tmp:
        module, output = Path(tmp) / "input.bin", Path(tmp) / "output.txt"
        module.write_bytes(encode(plans))
        command = [
            QEMU,
            "-machine", "pc",
            "-cpu", f"max,phys-bits={maxphyaddr.pop()}",
            "-accel", "tcg",
            "-m", "256M",
            "-nodefaults",
            "-nographic",
            "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-debugcon", f"file:{output}",
            "-kernel", str(image),
            "-initrd", str(module),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise OracleError(f"QEMU did not finish within {timeout:.0f} s") from None
        lines = output.read_text().splitlines() if output.exists() else []
    if not lines or lines[-1] != "DONE":
        tail = "\n".join(lines[-5:])
        raise OracleError(f"the guest stopped early (QEMU exit {done.returncode}): {tail}\n{done.stderr.strip()}")
    if "READY" not in lines:
        raise OracleError("the guest never reported READY")
    return lines[lines.index("READY") + 1 : -1]


def access_result(line: str) -> Result:
    """One access line of the guest (``OK vec err cr2 rip`` or ``F ...``) as a result."""
    if line.startswith("X "):
        return {"unexpected": line[2:]}
    word, vector, error, _cr2, _rip = line.split()
    if word == "OK":
        return {"pa": None}
    fault: dict[str, int] = {"vector": int(vector, 16)}
    if fault["vector"] == 14:
        fault["error_code"] = int(error, 16)
    return {"fault": fault}


def decode(scenario: Scenario, lines: list[str]) -> tuple[QemuRun, list[str]]:
    """Split the guest's lines into one scenario's run; return the lines left over."""
    run = QemuRun()
    pos = 0
    for op in scenario.ops:
        changes: dict[int, int] = {}
        if isinstance(op, ReadPhys):
            tag, value = lines[pos].split()
            if tag != "V":
                raise OracleError(f"expected a value line, got {lines[pos]!r}")
            run.results.append({"value": hex(int(value, 16))})
            run.raw.append(lines[pos])
            pos += 1
        elif isinstance(op, Access):
            run.results.append(access_result(lines[pos]))
            run.raw.append(lines[pos])
            pos += 1
            while pos < len(lines) and lines[pos].startswith("C "):
                _, pa, value = lines[pos].split()
                changes[int(pa, 16)] = int(value, 16)
                pos += 1
        else:
            run.results.append({"ok": True})
            run.raw.append("")
        run.changes.append(changes)
    if pos >= len(lines) or lines[pos] != "E":
        raise OracleError(f"expected the end of a scenario, got {lines[pos : pos + 1]!r}")
    return run, lines[pos + 1 :]


def run_many(scenarios: Sequence[Scenario], timeout: float | None = None) -> list[QemuRun | OracleUnsupported]:
    """Run scenarios on QEMU, one boot per (paging mode, MAXPHYADDR); unsupported ones are returned as errors."""
    plans: list[Plan | OracleUnsupported] = []
    for scenario in scenarios:
        try:
            plans.append(plan(scenario))
        except OracleUnsupported as exc:
            plans.append(exc)
    out: list[QemuRun | OracleUnsupported] = [p if isinstance(p, OracleUnsupported) else QemuRun() for p in plans]
    groups: dict[tuple[bool, int], list[tuple[int, Plan]]] = {}
    for index, p in enumerate(plans):
        if isinstance(p, Plan):
            groups.setdefault((p.la57, p.maxphyaddr), []).append((index, p))
    for members in groups.values():
        lines = boot([p for _, p in members], timeout)
        for i, _ in members:
            out[i], lines = decode(scenarios[i], lines)
    return out


def run(scenario: Scenario, timeout: float | None = None) -> QemuRun:
    """Run one scenario on QEMU; raise :class:`OracleUnsupported` if it is outside the oracle's reach."""
    result = run_many([scenario], timeout)[0]
    if isinstance(result, OracleUnsupported):
        raise result
    return result


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One op where QEMU and the spec (or the implementation) disagree."""

    index: int
    op: dict[str, Any]
    reason: str
    ours: Any
    qemu: Any

    def describe(self) -> str:
        """One paragraph for a person."""
        return f"op {self.index} {self.op}: {self.reason}\n  spec/impl: {self.ours}\n  qemu:      {self.qemu}"


@dataclass
class Comparison:
    """The verdict of one scenario: disagreements, and the documented deviations that were accepted."""

    disagreements: list[Disagreement] = field(default_factory=list)
    deviations: Counter[str] = field(default_factory=Counter)

    @property
    def agree(self) -> bool:
        """No disagreement beyond the documented deviations."""
        return not self.disagreements


def access_deviation(ours: Result, qemu: Result) -> str | None:
    """Which documented deviation explains ``qemu`` differing from ``ours``, if any."""
    fault, qfault = ours.get("fault"), qemu.get("fault")
    if fault and qfault and fault.get("vector") == 14 == qfault.get("vector"):
        code = fault["error_code"]
        if code & PF_RSVD and qfault.get("error_code") == code & ~PF_P:
            return "rsvd-without-p"
    return None


def access_agrees(ours: Result, qemu: Result) -> bool:
    """Same outcome: both succeed (QEMU cannot report the physical address), or the same fault."""
    if "pa" in ours and "pa" in qemu:
        return True
    return ours == qemu


def compare(scenario: Scenario, qemu: QemuRun) -> Comparison:
    """Compare QEMU's run with the spec and the implementation op by op.

    The spec follows QEMU's A/D choices: after each access it checks QEMU's
    writes are what Intel SDM Vol. 3A 4.8 allows for that walk, then continues
    from QEMU's memory, so later reads compare exactly.  The implementation
    (through :func:`properties.replay.replay`, which checks it against the spec)
    must give the same access results.
    """
    verdict = Comparison()
    report = replay(scenario)
    if report.divergence is not None:
        d = report.divergence
        verdict.disagreements.append(Disagreement(d.index, d.op.to_json(), "spec and impl diverge", d.spec, d.impl))
        return verdict
    spec = SpecRunner(scenario.config)
    for index, op in enumerate(scenario.ops):
        got = qemu.results[index]
        before = spec.state.memory
        ours = spec.apply(op)
        where = op.to_json()
        if isinstance(op, Access):
            for side, result in (("spec", ours), ("impl", report.results[index])):
                if access_agrees(result, got):
                    continue
                deviation = access_deviation(result, got)
                if deviation is None:
                    verdict.disagreements.append(Disagreement(index, where, f"{side} result differs", result, got))
                elif side == "spec":
                    verdict.deviations[deviation] += 1
            after = qemu_memory(before, qemu.changes[index])
            assert spec.last_outcome is not None
            nxe = spec.state.cpus[op.cpu].nxe
            ad_deviation = ad_update_deviation(
                before, after, spec.last_outcome, Kind(op.kind), scenario.config.maxphyaddr, nxe
            )
            if ad_deviation is not None:
                verdict.deviations[ad_deviation] += 1
            elif not ad_update_allowed(before, after, spec.last_outcome, Kind(op.kind)):
                changed = {hex(pa): hex(v) for pa, v in qemu.changes[index].items()}
                spec_after = {hex(pa): hex(v) for pa, v in spec.state.memory.nonzero() if before.words.get(pa) != v}
                verdict.disagreements.append(Disagreement(index, where, "A/D writes not allowed", spec_after, changed))
            spec.state = replace(spec.state, memory=after)
        elif ours != got:
            verdict.disagreements.append(Disagreement(index, where, "result differs", ours, got))
    return verdict


def ad_update_deviation(
    before: PhysMemory, after: PhysMemory, outcome: Outcome, kind: Kind, maxphyaddr: int, nxe: bool
) -> str | None:
    """The documented deviation that explains QEMU's A/D writes, if they are not allowed but it is exactly that one.

    ``a-on-reserved-large-leaf``: a reserved-bit fault in a 2 MiB or 1 GiB
    leaf whose only reserved bits are its low address bits, with A set in that
    leaf as well as what the SDM allows.
    """
    if ad_update_allowed(before, after, outcome, kind) or not isinstance(outcome, PageFault):
        return None
    if not outcome.error_code & PF_RSVD:
        return None
    leaf = outcome.steps[-1]
    low = ((1 << level_shift(leaf.level)) - 1) & ~((1 << (PAGE_SHIFT + 1)) - 1)
    if leaf.level not in (2, 3) or not leaf.entry & PS or not leaf.entry & low:
        return None
    if has_reserved_bits(leaf.entry & ~low, leaf.level, maxphyaddr, nxe):
        return None
    widened = replace(outcome, used=len(outcome.steps))
    return "a-on-reserved-large-leaf" if ad_update_allowed(before, after, widened, kind) else None


def qemu_memory(before: PhysMemory, changes: dict[int, int]) -> PhysMemory:
    """Spec memory ``before`` with the words QEMU changed during one access."""
    words = dict(before.words)
    for pa, value in changes.items():
        if value:
            words[pa] = value
        else:
            words.pop(pa, None)
    return PhysMemory(before.frames, MappingProxyType(words))


def check_scenarios(scenarios: Sequence[Scenario]) -> list[Comparison | OracleUnsupported]:
    """Run scenarios on QEMU and compare each with the spec and the implementation."""
    runs = run_many(scenarios)
    return [r if isinstance(r, OracleUnsupported) else compare(s, r) for s, r in zip(scenarios, runs, strict=True)]
