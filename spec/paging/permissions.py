"""Access rights of x86-64 paging and the page-fault error code.

A linear address is a *supervisor-mode address* when any entry on its path
has U/S=0, else a *user-mode address*.  Over the whole path R/W and U/S are
effectively ANDed and XD is ORed (Intel SDM Vol. 3A 4.6.1).  The rules then
depend on the mode of the access (CPL 3 or below), its kind (data read, data
write, instruction fetch), and four control bits: CR0.WP, CR4.SMEP, CR4.SMAP
with RFLAGS.AC, and EFER.NXE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """What the access does: a data read, a data write, or an instruction fetch."""

    READ = "read"
    WRITE = "write"
    FETCH = "fetch"


class Mode(enum.Enum):
    """The privilege of the access: CPL 3 (user) or CPL 0-2 (supervisor)."""

    USER = "user"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True, slots=True)
class Control:
    """The control bits a page walk depends on (one CPU's CR0, CR3, CR4, EFER, RFLAGS).

    ``cr3`` holds the physical address of the top-level table (bits 51:12).
    """

    cr3: int = 0
    wp: bool = False
    smep: bool = False
    smap: bool = False
    ac: bool = False
    nxe: bool = False
    la57: bool = False

    @property
    def levels(self) -> int:
        """4 or 5 levels of paging, as CR4.LA57 selects (SDM 4.5)."""
        return 5 if self.la57 else 4


@dataclass(frozen=True, slots=True)
class Rights:
    """Rights accumulated over the entries walked so far.

    ``writable`` and ``user`` are the AND of R/W and U/S, ``no_exec`` the OR
    of XD.  Before any entry is walked every right is granted.
    """

    writable: bool = True
    user: bool = True
    no_exec: bool = False


def combine(rights: Rights, writable: bool, user: bool, xd: bool) -> Rights:
    """Add one entry's R/W, U/S and XD to the rights of the path (SDM 4.6.1).

    Rights only shrink along a path:

    post: rights.writable or not __return__.writable
    post: rights.user or not __return__.user
    post: __return__.no_exec or not rights.no_exec
    """
    return Rights(
        writable=rights.writable and writable,
        user=rights.user and user,
        no_exec=rights.no_exec or xd,
    )


def access_allowed(rights: Rights, kind: Kind, mode: Mode, ctl: Control) -> bool:
    """Whether an access of ``kind`` in ``mode`` is allowed with these path rights.

    The rules of Intel SDM Vol. 3A 4.6.1, one case per line:

    - user mode: supervisor-mode addresses never; reads always; writes
      only if writable on every level (CR0.WP does not matter); fetches
      unless XD with NXE=1;
    - supervisor fetch: never from a user-mode address with SMEP=1,
      otherwise unless XD with NXE=1;
    - supervisor read or write of a user-mode address: blocked by SMAP=1
      unless RFLAGS.AC=1 (all accesses here are explicit);
    - supervisor write: allowed if writable on every level or CR0.WP=0.

    Consequences: user mode never reaches a supervisor-mode address; only a
    supervisor write with WP=0 goes through a read-only path; with NXE=1 no
    fetch goes through an XD path.

    post: not (__return__ and mode is Mode.USER and not rights.user)
    post: not (__return__ and kind is Kind.WRITE and not rights.writable) or (mode is Mode.SUPERVISOR and not ctl.wp)
    post: not (__return__ and kind is Kind.FETCH and ctl.nxe and rights.no_exec)
    """
    exec_blocked = ctl.nxe and rights.no_exec
    if mode is Mode.USER:
        if not rights.user:
            return False
        if kind is Kind.WRITE:
            return rights.writable
        if kind is Kind.FETCH:
            return not exec_blocked
        return True
    if kind is Kind.FETCH:
        return not (rights.user and ctl.smep) and not exec_blocked
    if rights.user and ctl.smap and not ctl.ac:
        return False
    if kind is Kind.WRITE:
        return rights.writable or not ctl.wp
    return True


# Page-fault error code bits (SDM Vol. 3A 4.7).
PF_P = 1 << 0
PF_WR = 1 << 1
PF_US = 1 << 2
PF_RSVD = 1 << 3
PF_ID = 1 << 4

ERROR_CODE_NAMES = ((PF_P, "P"), (PF_WR, "W"), (PF_US, "U"), (PF_RSVD, "RSVD"), (PF_ID, "I/D"))


def error_code(kind: Kind, mode: Mode, ctl: Control, present: bool, reserved: bool) -> int:
    """The #PF error code pushed for this access (SDM Vol. 3A 4.7).

    P is 0 for a not-present entry and 1 for a protection or reserved-bit
    violation; RSVD implies P.  I/D is set for a fetch only when NXE=1 or
    SMEP=1 (in IA-32e mode PAE is always on).

    post: bool(__return__ & PF_P) or not __return__ & PF_RSVD
    post: bool(__return__ & PF_WR) == (kind is Kind.WRITE) and bool(__return__ & PF_US) == (mode is Mode.USER)
    """
    code = 0
    if present or reserved:
        code |= PF_P
    if kind is Kind.WRITE:
        code |= PF_WR
    if mode is Mode.USER:
        code |= PF_US
    if reserved:
        code |= PF_RSVD
    if kind is Kind.FETCH and (ctl.nxe or ctl.smep):
        code |= PF_ID
    return code


def describe_error_code(code: int) -> str:
    """Readable decoding, e.g. ``"P W U"`` or ``"not-present read, supervisor"``."""
    cause = "protection" if code & PF_P else "not-present"
    if code & PF_RSVD:
        cause = "reserved-bit"
    kind = "fetch" if code & PF_ID else ("write" if code & PF_WR else "read")
    mode = "user" if code & PF_US else "supervisor"
    return f"{cause} {kind}, {mode} mode"
