"""A page walk told step by step, for a person learning how translation works."""

from __future__ import annotations

from spec.paging.address import LEVEL_NAMES, level_shift, page_offset, table_index
from spec.paging.permissions import Control, Kind, Mode, Rights, describe_error_code
from spec.paging.pte import P as PRESENT
from spec.paging.pte import flag_names
from spec.paging.walk import GeneralProtection, MachineCheck, Outcome, PageFault, Translation


def rights_text(rights: Rights) -> str:
    """``"rw- user"``-style summary of accumulated rights."""
    rwx = "r" + ("w" if rights.writable else "-") + ("-" if rights.no_exec else "x")
    return f"{rwx} {'user' if rights.user else 'supervisor'}"


def describe_walk(va: int, ctl: Control, kind: Kind, mode: Mode, outcome: Outcome) -> list[str]:
    """Lines explaining how ``va`` was translated (or why it faulted)."""
    lines = [
        f"{kind.value} of {va:#x} in {mode.value} mode, {ctl.levels}-level paging, CR3={ctl.cr3:#x}",
        f"  controls: WP={int(ctl.wp)} SMEP={int(ctl.smep)} SMAP={int(ctl.smap)} AC={int(ctl.ac)} NXE={int(ctl.nxe)}",
    ]
    if isinstance(outcome, GeneralProtection):
        width = 12 + 9 * ctl.levels
        lines.append(f"  not canonical: bits 63..{width - 1} are not all equal -> #GP (vector 13)")
        return lines
    indices = ", ".join(f"{LEVEL_NAMES[level]}[{table_index(va, level)}]" for level in range(ctl.levels, 0, -1))
    lines.append(f"  indices: {indices}, offset {page_offset(va, 1):#x}")
    steps = outcome.steps if isinstance(outcome, Translation | PageFault) else ()
    used = outcome.used if isinstance(outcome, PageFault) else len(steps)
    for number, step in enumerate(steps):
        entry = f"  {step.table:>4}[{table_index(va, step.level):3}] at {step.entry_pa:#x} = {step.entry:#018x}"
        if number < used:
            lines.append(f"{entry}  [{flag_names(step.entry)}]  rights so far: {rights_text(step.rights)}")
        elif step.entry & PRESENT:
            lines.append(f"{entry}  [{flag_names(step.entry)}]  reserved bits set: the walk stops")
        else:
            lines.append(f"{entry}  not present: the walk stops")
    if isinstance(outcome, Translation):
        size = {1: "4 KiB", 2: "2 MiB", 3: "1 GiB"}[outcome.level]
        lines.append(
            f"  -> {size} page, offset {page_offset(va, outcome.level):#x} "
            f"({level_shift(outcome.level)} bits): physical address {outcome.pa:#x}"
        )
    elif isinstance(outcome, PageFault):
        lines.append(
            f"  -> #PF (vector 14), error code {outcome.error_code:#x} "
            f"= {describe_error_code(outcome.error_code)}; CR2 = {va:#x}"
        )
    elif isinstance(outcome, MachineCheck):
        lines.append(f"  -> entry address {outcome.pa:#x} is outside physical memory: machine check (vector 18)")
    return lines
